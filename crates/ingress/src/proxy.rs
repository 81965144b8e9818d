//! One request through the ingress ([`Proxy::handle`]): route by host and path in the current
//! table, forward over a keep-alive pool to a ready endpoint (round robin) with the
//! X-Forwarded-* headers, retry an idempotent request once on another endpoint when the first
//! fails before answering (an endpoint that cannot be connected to is skipped for a while),
//! and pass upgraded connections (WebSocket) through both ways.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::RwLock;

use crate::metrics::Metrics;
use crate::router::{Route, Table};

pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// How long connecting to an endpoint may take: endpoints are pod IPs on this node's bridge
/// (or a routed neighbour), so anything slower is a gone pod.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle upstream connections are kept this long for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle upstream connections kept per endpoint.
const POOL_MAX_IDLE_PER_ENDPOINT: usize = 256;
/// How long an upstream may take to send its response head (ingress-nginx's
/// proxy-read-timeout); then the client gets 504 and the upstream request is dropped.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Hop-by-hop headers (RFC 9110 section 7.6.1) a proxy must not forward.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The proxy shared by every connection of both ports.
pub struct Proxy {
    pub table: Arc<RwLock<Arc<Table>>>,
    pub metrics: Arc<Metrics>,
    client: Client<HttpConnector, ProxyBody>,
    response_timeout: Duration,
}

impl Proxy {
    pub fn new(table: Arc<RwLock<Arc<Table>>>, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(POOL_IDLE));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_ENDPOINT)
            .build(connector);
        Self {
            table,
            metrics,
            client,
            response_timeout: RESPONSE_TIMEOUT,
        }
    }

    /// The same proxy with another limit for upstream response heads.
    pub fn with_response_timeout(mut self, limit: Duration) -> Self {
        self.response_timeout = limit;
        self
    }

    /// Answers one request from `peer` that came in over `scheme` (`http` or `https`).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let resp = self.forward(req, peer, scheme).await;
        self.metrics.count(resp.status().as_u16());
        Ok(resp)
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
    ) -> Response<ProxyBody> {
        let host = request_host(&req);
        let table = self.table.read().clone();
        let backend = match table.route(&host, req.uri().path()) {
            Route::NotFound => return page(StatusCode::NOT_FOUND, "no Ingress rule matches"),
            Route::Backend(b) => b.clone(),
        };
        let Some(first) = backend.pick() else {
            let why = backend
                .problem
                .clone()
                .unwrap_or_else(|| format!("service {} has no ready endpoint", backend.name));
            return page(StatusCode::SERVICE_UNAVAILABLE, &why);
        };
        let upgrade = wants_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        // Only a request without a body may be sent twice; its body is then rebuilt empty.
        let retryable = upgrade.is_none()
            && matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && body.is_end_stream();
        let headers = upstream_headers(&parts.headers, &host, peer, scheme, upgrade.is_some());
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let build = |addr: SocketAddr, body: ProxyBody| -> Option<Request<ProxyBody>> {
            let uri: Uri = format!("http://{addr}{path}").parse().ok()?;
            let mut r = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(Version::HTTP_11)
                .body(body)
                .ok()?;
            *r.headers_mut() = headers.clone();
            Some(r)
        };
        let first_body = if retryable {
            empty()
        } else {
            body.boxed_unsync()
        };
        let Some(up) = build(first, first_body) else {
            return page(
                StatusCode::BAD_REQUEST,
                "the request path cannot be forwarded",
            );
        };
        let started = Instant::now();
        let attempts = async {
            let mut result = self.client.request(up).await;
            if let Err(e) = &result {
                if e.is_connect() {
                    backend.eject(first);
                }
                let other = backend.pick_other(first).unwrap_or(first);
                if retryable {
                    tracing::debug!(backend = %backend.name, endpoint = %first, error = %e, retry = %other, "upstream failed; retrying once");
                    self.metrics.retries.inc();
                    if let Some(up) = build(other, empty()) {
                        result = self.client.request(up).await;
                    }
                }
            }
            result
        };
        let result = tokio::time::timeout(self.response_timeout, attempts).await;
        self.metrics
            .upstream_seconds
            .observe(started.elapsed().as_secs_f64());
        let Ok(result) = result else {
            return page(
                StatusCode::GATEWAY_TIMEOUT,
                &format!(
                    "the upstream of {} did not answer within {:?}",
                    backend.name, self.response_timeout
                ),
            );
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(backend = %backend.name, error = %e, "upstream request failed");
                return page(
                    StatusCode::BAD_GATEWAY,
                    &format!("the upstream of {} did not answer", backend.name),
                );
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = upgrade {
                let upstream_side = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client_side, upstream_side) {
                        Ok((c, u)) => {
                            let mut c = TokioIo::new(c);
                            let mut u = TokioIo::new(u);
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, empty());
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, body.boxed_unsync())
    }
}

/// The host a request is for: its Host header, else (HTTP/2) the URI's authority.
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// An HTTP/1.1 request asking to switch protocols (`Connection: upgrade` + `Upgrade`).
fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers, and those the Connection header names; an upgrade keeps
/// `Upgrade` and gets `Connection: upgrade` back.
fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(upgrade && n == header::UPGRADE) {
            h.remove(n);
        }
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        h.remove(header::UPGRADE);
    }
}

/// The headers sent upstream: the client's minus hop-by-hop ones, with Host kept and
/// X-Forwarded-For (appended to), X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP set as
/// ingress-nginx sets them.
fn upstream_headers(
    orig: &HeaderMap,
    host: &str,
    peer: SocketAddr,
    scheme: &'static str,
    upgrade: bool,
) -> HeaderMap {
    let mut h = orig.clone();
    strip_hop_by_hop(&mut h, upgrade);
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
        _ => ip.clone(),
    };
    let set = |h: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    if !h.contains_key(header::HOST) {
        set(&mut h, "host", host);
    }
    set(&mut h, "x-forwarded-for", &xff);
    set(&mut h, "x-real-ip", &ip);
    set(&mut h, "x-forwarded-proto", scheme);
    set(&mut h, "x-forwarded-host", host);
    h
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The ingress's own answer (404, 502, 503): a small HTML page naming the reason.
pub fn page(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let reason = reason
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let html = format!(
        "<html>\n<head><title>{title}</title></head>\n<body>\n<center><h1>{title}</h1></center>\n<center>{reason}</center>\n<hr><center>capstan ingress</center>\n</body>\n</html>\n"
    );
    let mut r = Response::new(
        Full::new(Bytes::from(html))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_are_set_and_hop_by_hop_ones_dropped() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("myapp.example.com"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        let peer: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let out = upstream_headers(&h, "myapp.example.com", peer, "https", false);
        assert_eq!(out["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
        assert_eq!(out["x-real-ip"], "127.0.0.1");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "myapp.example.com");
        assert_eq!(out["host"], "myapp.example.com");
        for gone in ["connection", "x-drop", "te", "upgrade"] {
            assert!(!out.contains_key(gone), "{gone} was forwarded");
        }
        let up = upstream_headers(&h, "h", peer, "http", true);
        assert_eq!(up["upgrade"], "websocket");
        assert_eq!(up["connection"], "upgrade");
    }
}
