//! The Kubernetes REST API over HTTPS.
//!
//! Entry points: [`ApiServer::new`] builds the server around a [`capstan_store::Store`];
//! [`serve`] accepts TLS connections (HTTP/1.1 and HTTP/2) and hands each request to
//! [`ApiServer::handle`], which authenticates, routes ([`route`]) and dispatches to
//! [`handlers`]. All writes go through [`registry::Registry`]; lists and watches through
//! [`read`]. Kind-specific behaviour comes from the `capstan-api` catalogue.

// ApiError carries a whole Status (message, details, causes); it is built on the error path
// only, so its size is not worth boxing every error for.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod bootstrap;
pub mod codec;
pub mod components;
pub mod conn;
pub mod discovery;
pub mod error;
pub mod fieldmanager;
pub mod handlers;
pub mod metrics;
pub mod node_certs;
pub mod node_join;
pub mod node_proxy;
pub mod params;
pub mod patch;
pub mod pki;
pub mod pod_streams;
pub mod protobuf;
pub mod proxy;
pub mod read;
pub mod registry;
pub mod route;
pub mod scale;
pub mod strict;
pub mod table;
pub mod watch_limit;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::discovery::Aggregated;
use crate::error::{ApiError, ApiResult};
use crate::handlers::{error_response, json_response, json_value_response, Body, Req};
use crate::metrics::Metrics;
use crate::params::Query;
use crate::registry::Registry;
use crate::route::Route;
use crate::watch_limit::WatchLimit;

/// Largest request body accepted (upstream's limit for JSON).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What /version reports. kubectl's dispatcher picks its binary by `minor`.
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "32");
pub const GIT_VERSION: &str = concat!("v1.32.0+capstan-", env!("CARGO_PKG_VERSION"));

pub struct ApiServer {
    pub registry: Registry,
    pub auth: Authenticator,
    pub metrics: Metrics,
    /// host:port clients should use, for legacy discovery.
    pub advertise: String,
    ready: AtomicBool,
    shutdown: tokio::sync::watch::Receiver<bool>,
    watch_limit: WatchLimit,
}

/// Who sent a request and on which connection: what per-client limits need.
#[derive(Clone, Default)]
struct Caller {
    user: String,
    conn: Option<Arc<conn::Control>>,
}

impl ApiServer {
    pub fn new(
        registry: Registry,
        auth: Authenticator,
        advertise: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            registry,
            auth,
            metrics: Metrics::new(),
            advertise,
            ready: AtomicBool::new(false),
            shutdown,
            watch_limit: WatchLimit::default(),
        }
    }

    /// Replaces the default limit of open watches per user.
    pub fn with_watch_limit(mut self, limit: WatchLimit) -> Self {
        self.watch_limit = limit;
        self
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Serves one request; never fails: errors become Status responses.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        if path.starts_with(node_join::PREFIX) {
            let user = self.auth.authenticate(req.headers());
            return node_join::handle(req, user).await;
        }
        let query = Query::parse(req.uri().query());
        let route = route::parse(&path);
        let anonymous_ok = matches!(route, Ok(Route::Version | Route::Health(_)));
        let (verb, resource) = metric_labels(&method, &route, &query);
        let user = self
            .auth
            .authenticate(req.headers())
            .or_else(|| node_join::authenticate(req.headers()));
        let caller = Caller {
            user: user.map(|u| u.name).unwrap_or_default(),
            conn: req.extensions().get::<Arc<conn::Control>>().cloned(),
        };
        let response = if !anonymous_ok && caller.user.is_empty() {
            error_response(&ApiError::unauthorized())
        } else if let Some(target) = proxy::parse(&path) {
            // pods/proxy, services/proxy, nodes/proxy: any method, any path after /proxy.
            match proxy::serve(&self.registry, target, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        } else {
            match route {
                Err(e) => error_response(&e),
                Ok(route) => match self
                    .clone()
                    .dispatch(method.clone(), route, query, req, caller)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        if e.code >= 500 {
                            tracing::warn!(%method, %path, code = e.code, error = %e.message, "request failed");
                        }
                        error_response(&e)
                    }
                },
            }
        };
        let code = response.status().as_u16();
        self.metrics.observe(verb, &resource, code, start.elapsed());
        tracing::debug!(%method, %path, code, elapsed_ms = start.elapsed().as_secs_f64() * 1000.0, "request");
        response
    }

    async fn dispatch(
        self: Arc<Self>,
        method: Method,
        route: Route,
        query: Query,
        req: Request<Incoming>,
        caller: Caller,
    ) -> ApiResult<Response<Body>> {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let get_only = |m: &Method| -> ApiResult<()> {
            if *m == Method::GET || *m == Method::HEAD {
                Ok(())
            } else {
                Err(ApiError::method_not_supported())
            }
        };
        let json_doc = |v: serde_json::Value| json_value_response(200, v, "application/json");
        match route {
            Route::Version => {
                get_only(&method)?;
                Ok(json_doc(version_info()))
            }
            Route::Health(which) => {
                get_only(&method)?;
                let ok = which != "readyz" || self.is_ready();
                let mut r = json_response(
                    if ok { 200 } else { 503 },
                    if ok { "ok" } else { "not ready" },
                    "text/plain; charset=utf-8",
                );
                r.headers_mut().insert(
                    "x-content-type-options",
                    http::HeaderValue::from_static("nosniff"),
                );
                Ok(r)
            }
            Route::Metrics => {
                get_only(&method)?;
                Ok(json_response(
                    200,
                    self.metrics.render(),
                    "text/plain; version=0.0.4; charset=utf-8",
                ))
            }
            Route::CoreGroup | Route::Groups => {
                get_only(&method)?;
                let core = matches!(route, Route::CoreGroup);
                match Aggregated::from_accept(accept.as_deref()) {
                    Some(which) => Ok(json_value_response(
                        200,
                        discovery::aggregated(core, which),
                        &which.content_type(),
                    )),
                    None if core => Ok(json_doc(discovery::api_versions(&self.advertise))),
                    None => Ok(json_doc(discovery::api_group_list())),
                }
            }
            Route::Group(g) => {
                get_only(&method)?;
                discovery::api_group(&g)
                    .map(json_doc)
                    .ok_or_else(ApiError::no_such_resource)
            }
            Route::GroupVersion { group, version } => {
                get_only(&method)?;
                Ok(json_doc(discovery::api_resource_list(&group, &version)))
            }
            Route::OpenApiV3Index => {
                get_only(&method)?;
                Ok(json_response(
                    200,
                    Bytes::from_static(capstan_openapi::index()),
                    capstan_openapi::CONTENT_TYPE,
                ))
            }
            Route::OpenApiV3(path) => {
                get_only(&method)?;
                let (_hash, doc) =
                    capstan_openapi::document(&path).ok_or_else(ApiError::no_such_resource)?;
                let mut r =
                    json_response(200, Bytes::from_static(doc), capstan_openapi::CONTENT_TYPE);
                // Documents are addressed by content hash, so they can be cached for long.
                if query.get("hash").is_some() {
                    r.headers_mut().insert(
                        header::CACHE_CONTROL,
                        http::HeaderValue::from_static("public, immutable"),
                    );
                }
                Ok(r)
            }
            Route::OpenApiV2 => {
                get_only(&method)?;
                // kubectl validates on the client against this (protobuf only) when /openapi/v3 cannot vouch for a kind, e.g. any `kind: List` file.
                let if_none_match = req
                    .headers()
                    .get(header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok());
                let reply = capstan_openapi::v2::respond(accept.as_deref(), if_none_match);
                let mut r = json_response(
                    reply.status,
                    Bytes::from_static(reply.body),
                    reply.content_type,
                );
                r.headers_mut()
                    .insert(header::VARY, http::HeaderValue::from_static("Accept"));
                if let Some(etag) = reply.etag.and_then(|e| http::HeaderValue::from_str(e).ok()) {
                    r.headers_mut().insert(header::ETAG, etag);
                }
                Ok(r)
            }
            // Upgrades: the request (not its body) goes on to the kubelet.
            Route::Resource(rr) if pod_streams::serves(&rr) => {
                let sessions = self.metrics.stream_sessions.clone();
                pod_streams::connect(&self.registry, sessions, &rr, &method, req).await
            }
            Route::Resource(rr) => {
                let body = read_body(req).await?;
                let handler_req = Req {
                    route: rr,
                    query,
                    accept: accept.as_deref(),
                    content_type: content_type.as_deref(),
                    user_agent: user_agent.as_deref(),
                    body,
                };
                self.resource_request(method, handler_req, caller).await
            }
        }
    }

    async fn resource_request(
        self: Arc<Self>,
        method: Method,
        req: Req<'_>,
        caller: Caller,
    ) -> ApiResult<Response<Body>> {
        let reg = &self.registry;
        let name = req.route.name.clone();
        if !req.route.info.verbs.is_empty() {
            let verb = match (&method, &name) {
                (&Method::GET, None) if req.query.flag("watch") => "watch",
                (&Method::GET, None) => "list",
                (&Method::GET, Some(_)) => "get",
                (&Method::POST, None) => "create",
                (&Method::PUT, _) => "update",
                (&Method::PATCH, _) => "patch",
                (&Method::DELETE, None) => "deletecollection",
                (&Method::DELETE, Some(_)) => "delete",
                _ => "",
            };
            if req.route.subresource.is_none()
                && !verb.is_empty()
                && !req.route.info.verbs.contains(&verb)
            {
                return Err(ApiError::method_not_supported());
            }
        }
        match (method, name) {
            (Method::GET, _) if req.query.flag("watch") => self.watch(&req, caller).await,
            (Method::GET, None) => handlers::list(reg, &req).await,
            (Method::GET, Some(n)) => handlers::get(reg, &req, &n).await,
            (Method::POST, None) => handlers::create(reg, &req).await,
            (Method::POST, Some(n)) => handlers::create_subresource(reg, &req, &n).await,
            (Method::PUT, Some(n)) => handlers::update(reg, &req, &n).await,
            (Method::PATCH, Some(n)) => handlers::patch(reg, &req, &n).await,
            (Method::DELETE, Some(n)) => handlers::delete(reg, &req, &n).await,
            (Method::DELETE, None) => handlers::delete_collection(reg, &req).await,
            _ => Err(ApiError::method_not_supported()),
        }
    }

    async fn watch(self: &Arc<Self>, req: &Req<'_>, caller: Caller) -> ApiResult<Response<Body>> {
        let slot = self.watch_limit.acquire(&caller.user)?;
        let labels = metrics::ResourceLabels {
            resource: req.route.info.plural.to_string(),
        };
        self.metrics.watchers.get_or_create(&labels).inc();
        // Released when the watch body ends, or when the closure is dropped uncalled because
        // the watch was refused (a bad selector, say): the gauge and the place must not leak.
        let registered = Registered {
            api: self.clone(),
            labels,
            _slot: slot,
        };
        let on_end = move || drop(registered);
        let on_cut = move || {
            if let Some(c) = caller.conn {
                c.watch_ended();
            }
        };
        handlers::watch(&self.registry, req, self.shutdown.clone(), on_end, on_cut).await
    }
}

/// One open watch as counted by the watchers gauge and the per-user limit.
struct Registered {
    api: Arc<ApiServer>,
    labels: metrics::ResourceLabels,
    _slot: watch_limit::Slot,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.api.metrics.watchers.get_or_create(&self.labels).dec();
    }
}

/// Reads a request body up to [`MAX_BODY_BYTES`]; larger ones are 413.
async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY_BYTES {
            drain(req.into_body()).await;
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
    }
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                drain(body).await;
                return Err(ApiError::too_large(MAX_BODY_BYTES));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards what is left of an oversized body (up to a bound), so an HTTP/1.1 client
/// still sending it receives the 413 instead of a reset connection.
async fn drain(mut body: Incoming) {
    let mut left: usize = 16 * MAX_BODY_BYTES;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            frame = body.frame() => match frame {
                Some(Ok(f)) => {
                    let n = f.data_ref().map_or(0, |d| d.len());
                    match left.checked_sub(n) {
                        Some(l) => left = l,
                        None => return,
                    }
                }
                _ => return,
            },
        }
    }
}

fn metric_labels(
    method: &Method,
    route: &Result<Route, ApiError>,
    q: &Query,
) -> (&'static str, String) {
    let (resource, named) = match route {
        Ok(Route::Resource(r)) => {
            let mut res = r.info.plural.to_string();
            if let Some(s) = &r.subresource {
                res = format!("{res}/{s}");
            }
            (res, r.name.is_some())
        }
        _ => (String::new(), true),
    };
    let verb = match *method {
        Method::GET if q.flag("watch") => "WATCH",
        Method::GET if !named => "LIST",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if !named => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    };
    (verb, resource)
}

/// The /version document.
pub fn version_info() -> serde_json::Value {
    json!({
        "major": KUBERNETES_VERSION.0,
        "minor": KUBERNETES_VERSION.1,
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("CAPSTAN_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("CAPSTAN_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// TLS settings for serving: the serving certificate and key, with ALPN for h2 and http/1.1.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("parsing the serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("parsing the serving key: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("building the TLS configuration: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// How long in-flight requests may run after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` flips, then drains in-flight requests. Every
/// connection is held to [`conn::API_LIMITS`]: handshake, header, idle and write-stall
/// timeouts, a cap on open connections and on HTTP/2 streams, HTTP/2 pings.
pub async fn serve(
    api: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let limits = conn::API_LIMITS;
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let gate = conn::Gate::new(&limits, "api");
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .keep_alive_interval(limits.h2_ping_interval)
        .keep_alive_timeout(limits.h2_ping_timeout);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = gate.admit() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let ctl = conn::Control::new();
            let io = conn::ConnIo::new(tls, ctl.clone(), limits);
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let api = api.clone();
                let ctl = ctl.clone();
                async move {
                    let in_flight = ctl.request_started();
                    req.extensions_mut().insert(ctl.clone());
                    let resp = api.handle(req).await;
                    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                        ctl.set_upgraded();
                    }
                    Ok::<_, std::convert::Infallible>(conn::hold_until_sent(resp, in_flight))
                }
            });
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("stopped accepting connections; draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}
