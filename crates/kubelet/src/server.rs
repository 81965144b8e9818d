//! The kubelet port: HTTPS with a serving certificate signed by the cluster CA, and only
//! clients holding a certificate from that CA with the clientAuth usage (the API server)
//! admitted. Serves `/containerLogs/{ns}/{pod}/{container}` (what pods/log proxies to),
//! `/exec/...`, `/attach/...` and `/portForward/...` (upgrades, see [`crate::streams`]), `/healthz` and
//! `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::cri::api as pb;
use crate::logs;
use crate::pods::observe::keys;
use crate::pods::Shared;
use crate::streams;

/// The kubelet port's TLS material (PEM).
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA whose client certificates are admitted.
    pub client_ca_pem: String,
}

/// Start-up errors of the server (fatal for the agent).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubelet TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A client (anyone who can reach the port: it binds all addresses) has this long to finish
/// the TLS handshake, and then each request head, including the wait for the next request on
/// a kept-alive connection. Log streams are bodies and are not limited.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Open connections; only API servers are admitted, so a few hundred is generous, and more
/// are closed at once instead of holding memory.
const MAX_CONNECTIONS: usize = 512;

fn text(code: u16, s: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(s.into())).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn tls_config(t: &Tls) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let e = |m: String| Error::Tls(m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(t.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|x| e(format!("serving certificate: {x}")))?;
    let key = PrivateKeyDer::from_pem_slice(t.key_pem.as_bytes())
        .map_err(|x| e(format!("serving key: {x}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(t.client_ca_pem.as_bytes()) {
        let c = c.map_err(|x| e(format!("client CA: {x}")))?;
        roots.add(c).map_err(|x| e(format!("client CA: {x}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|x| e(format!("client verifier: {x}")))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|x| e(x.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|x| e(x.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Binds `addr` and serves until `shutdown` flips.
pub async fn spawn(
    addr: SocketAddr,
    tls: &Tls,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let acceptor = TlsAcceptor::from(tls_config(tls)?);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    tracing::info!(%addr, "kubelet port serving (logs, metrics)");
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::spawn(async move {
        let mut full = false;
        loop {
            let (tcp, peer) = tokio::select! {
                _ = crate::util::stopped(&mut shutdown) => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                if !full {
                    tracing::warn!(
                        "kubelet port: too many open connections; closing new ones until some end"
                    );
                }
                full = true;
                continue;
            };
            full = false;
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "kubelet port: TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "kubelet port: TLS handshake timed out");
                        return;
                    }
                };
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(handle(shared, req).await) }
                });
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(())
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    // Upgrades (exec, attach, port-forward) take the request itself, so they are routed first.
    let segments = path.clone();
    let parts: Vec<&str> = segments.trim_start_matches('/').split('/').collect();
    let stream = match parts.as_slice() {
        ["exec", ns, pod, container] => Some((streams::Kind::Exec, *ns, *pod, *container)),
        ["attach", ns, pod, container] => Some((streams::Kind::Attach, *ns, *pod, *container)),
        ["portForward", ns, pod] => Some((streams::Kind::PortForward, *ns, *pod, "")),
        _ => None,
    };
    if let Some((kind, ns, pod, container)) = stream {
        return match streams::serve(shared, req, kind, ns, pod, container).await {
            Ok(r) => r.map(|b| b.map_err(|e| match e {}).boxed_unsync()),
            Err(e) => {
                tracing::info!(%path, status = e.status, error = %e.message, "stream request refused");
                text(e.status, e.message)
            }
        };
    }
    if req.method() != http::Method::GET {
        return text(405, "method not allowed");
    }
    match path.as_str() {
        "/healthz" => return text(200, "ok"),
        "/metrics" => return text(200, shared.metrics.render()),
        _ => {}
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", ns, pod, container] => {
            container_logs(shared, ns, pod, container, &query).await
        }
        _ => text(404, format!("404 page not found: {path}")),
    }
}

async fn container_logs(
    shared: Arc<Shared>,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = match logs::Options::from_query(query) {
        Ok(o) => o,
        Err(e) => return text(e.http_status(), e.to_string()),
    };
    let (attempt, file) = match logs::locate(&shared.logs_dir, ns, pod, container, opts.previous) {
        Ok(x) => x,
        Err(e) => return text(e.http_status(), e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
    let cri = shared.cri.clone();
    tokio::spawn(logs::stream(file, opts, tx, move || {
        let cri = cri.clone();
        let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
        async move {
            let filter = pb::ContainerFilter {
                label_selector: [
                    (keys::POD_NAMESPACE.to_string(), ns),
                    (keys::POD_NAME.to_string(), pod),
                    (keys::CONTAINER_NAME.to_string(), container),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            match cri.list_containers(Some(filter)).await {
                Ok(list) => list.iter().any(|c| {
                    c.metadata.as_ref().is_some_and(|m| m.attempt == attempt)
                        && c.state == pb::ContainerState::ContainerRunning as i32
                }),
                // Unsure: keep following.
                Err(_) => true,
            }
        }
    }));
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

use futures::StreamExt;
