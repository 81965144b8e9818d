//! `pods/proxy`, `services/proxy` and `nodes/proxy`: any method and path after `/proxy`
//! forwarded to a pod's IP, to a ready endpoint of a Service (picked at random, as upstream),
//! or to a node's kubelet (over the API server's client-certificate TLS). The `{name}` segment
//! may carry a port, `name:port` (a number or a port name). Bodies stream both ways, and an
//! `Upgrade` request (WebSocket) switches both connections and copies bytes.

use std::net::IpAddr;

use capstan_api::catalogue;
use http::{header, HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::codec::decode_stored;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::node_proxy;
use crate::registry::Registry;

/// What a proxy path addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Pod { ns: String, name: String },
    Service { ns: String, name: String },
    Node { name: String },
}

/// A parsed proxy request path.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyPath {
    pub target: Target,
    /// The `:port` of the name segment, if any.
    pub port: Option<String>,
    /// `https` when the name segment starts with `https:`.
    pub scheme: Option<String>,
    /// The path after `/proxy` (at least `/`).
    pub rest: String,
}

/// Splits `[scheme:]name[:port]` as upstream's SplitSchemeNamePort.
fn split_name(id: &str) -> Option<(Option<String>, String, Option<String>)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => (None, *n, None),
        [n, p] => (None, *n, Some(*p)),
        [s, n, p] if *s == "http" || *s == "https" => (Some(*s), *n, Some(*p)),
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    Some((
        scheme.map(str::to_string),
        name.to_string(),
        port.filter(|p| !p.is_empty()).map(str::to_string),
    ))
}

/// Recognises `/api/v1/namespaces/{ns}/pods|services/{id}/proxy[/rest]` and
/// `/api/v1/nodes/{id}/proxy[/rest]`.
pub fn parse(path: &str) -> Option<ProxyPath> {
    let after = path.strip_prefix("/api/v1/")?;
    let segs: Vec<&str> = after.splitn(6, '/').collect();
    // (namespace and kind, or a node; the id segment; where the path after /proxy starts)
    let (ns_kind, id, tail_at) = match segs.as_slice() {
        ["namespaces", ns, kind @ ("pods" | "services"), id, "proxy", ..] => {
            (Some((*ns, *kind)), *id, 5)
        }
        ["nodes", id, "proxy", ..] => (None, *id, 3),
        _ => return None,
    };
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned();
    let (scheme, name, port) = split_name(&id)?;
    let rest = format!("/{}", segs.get(tail_at..).unwrap_or_default().join("/"));
    let target = match ns_kind {
        Some((ns, "pods")) => Target::Pod {
            ns: ns.to_string(),
            name,
        },
        Some((ns, _)) => Target::Service {
            ns: ns.to_string(),
            name,
        },
        None => Target::Node { name },
    };
    Some(ProxyPath {
        target,
        port,
        scheme,
        rest,
    })
}

fn info(plural: &str) -> ApiResult<&'static catalogue::ResourceInfo> {
    catalogue::lookup("", "v1", plural).ok_or_else(|| ApiError::internal(format!("no {plural}")))
}

/// A container port of `pod` by name or number.
fn pod_port(pod: &Value, port: &str) -> Option<u16> {
    if let Ok(n) = port.parse::<u16>() {
        return Some(n);
    }
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

/// Where a pod proxy request goes.
async fn pod_address(
    reg: &Registry,
    ns: &str,
    name: &str,
    port: Option<&str>,
) -> ApiResult<(IpAddr, u16)> {
    let pods = info("pods")?;
    let pod = decode_stored(pods, &reg.get(pods, Some(ns), name).await?)?;
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::service_unavailable(format!("pod {name} does not have an IP address yet"))
        })?
        .parse::<IpAddr>()
        .map_err(ApiError::internal)?;
    let port = match port {
        None => 80,
        Some(p) => pod_port(&pod, p).ok_or_else(|| {
            ApiError::bad_request(format!("no container port {p:?} found for pod {name:?}"))
        })?,
    };
    Ok((ip, port))
}

/// A ready endpoint of Service `ns/name` for its port `port` (the only port when none).
async fn service_address(
    reg: &Registry,
    ns: &str,
    name: &str,
    port: Option<&str>,
) -> ApiResult<(IpAddr, u16)> {
    let services = info("services")?;
    let svc = decode_stored(services, &reg.get(services, Some(ns), name).await?)?;
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let svc_port = match port {
        None if ports.len() == 1 => ports.first().cloned(),
        None => ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or("").is_empty())
            .cloned(),
        Some(p) => ports
            .iter()
            .find(|x| {
                x["name"] == p || x["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(p)
            })
            .cloned(),
    }
    .ok_or_else(|| {
        ApiError::service_unavailable(format!(
            "no service port {:?} found for service {name:?}",
            port.unwrap_or("")
        ))
    })?;
    let port_name = svc_port["name"].as_str().unwrap_or("").to_string();
    let no_endpoints =
        || ApiError::service_unavailable(format!("no endpoints available for service {name:?}"));
    let endpoints = info("endpoints")?;
    let ep = match reg.get(endpoints, Some(ns), name).await {
        Ok(kv) => decode_stored(endpoints, &kv)?,
        Err(e) if e.code == 404 => return Err(no_endpoints()),
        Err(e) => return Err(e),
    };
    let mut candidates: Vec<(IpAddr, u16)> = Vec::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let Some(port) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|s| s.parse().ok()) {
                candidates.push((ip, port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(no_endpoints());
    }
    let i = rand::random_range(0..candidates.len());
    Ok(candidates[i])
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and the caller's credentials stay here.
fn forwarded(name: &HeaderName, upgrade: bool) -> bool {
    let n = name.as_str();
    let hop = matches!(
        n,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
    );
    !hop || (upgrade && (n == "connection" || n == "upgrade"))
}

/// Serves one proxy request.
pub async fn serve(
    reg: &Registry,
    p: ProxyPath,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let is_https = p.scheme.as_deref() == Some("https");
    let (ip, port, tls) = match &p.target {
        Target::Pod { ns, name } | Target::Service { ns, name } if is_https => {
            let _ = (ns, name);
            return Err(ApiError::not_implemented(
                "proxying to pods and services over https is not implemented; use http",
            ));
        }
        Target::Pod { ns, name } => {
            let (ip, port) = pod_address(reg, ns, name, p.port.as_deref()).await?;
            (ip, port, false)
        }
        Target::Service { ns, name } => {
            let (ip, port) = service_address(reg, ns, name, p.port.as_deref()).await?;
            (ip, port, false)
        }
        Target::Node { name } => {
            let pod_like = serde_json::json!({"spec": {"nodeName": name}});
            let (ip, kubelet) = node_proxy::kubelet_of(reg, &pod_like, name).await?;
            let port = match p.port.as_deref() {
                None => kubelet,
                Some(x) => x
                    .parse::<u16>()
                    .map_err(|_| ApiError::bad_request(format!("invalid port {x:?}")))?,
            };
            (ip, port, true)
        }
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{}?{q}", p.rest),
        None => p.rest.clone(),
    };
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let (parts, body) = req.into_parts();
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(&path_and_query)
        .header(header::HOST, format!("{ip}:{port}"));
    for (k, v) in parts.headers.iter() {
        if forwarded(k, upgrade) {
            up = up.header(k, v.clone());
        }
    }
    let client_req = Request::from_parts(parts, ());
    let up = up.body(body).map_err(ApiError::internal)?;
    let fail = |e: String| {
        ApiError::service_unavailable(format!(
            "error trying to reach service: dial tcp {ip}:{port}: {e}"
        ))
    };
    let resp = if tls {
        let stream = node_proxy::dial(ip, port, &path_and_query).await?;
        send(TokioIo::new(stream), up).await.map_err(fail)?
    } else {
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect((ip, port)),
        )
        .await
        .map_err(|_| fail("i/o timeout".into()))?
        .map_err(|e| fail(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        send(TokioIo::new(tcp), up).await.map_err(fail)?
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(switch(client_req, resp));
    }
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(streamed(body));
    *out.status_mut() = parts.status;
    for (k, v) in parts.headers.iter() {
        if forwarded(k, false) {
            out.headers_mut().append(k, v.clone());
        }
    }
    Ok(out)
}

async fn send<T>(io: T, req: Request<Incoming>) -> Result<Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// The upstream's body as it comes; an upstream failure just ends it.
fn streamed(body: Incoming) -> Body {
    let stream = futures::stream::unfold(body, |mut b| async move {
        loop {
            match b.frame().await {
                Some(Ok(f)) if f.is_data() => {
                    return Some((Ok::<_, std::convert::Infallible>(f), b));
                }
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    });
    BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream))
}

/// Answers 101 with the upstream's headers and copies bytes between the two upgrades.
fn switch(client_req: Request<()>, resp: Response<Incoming>) -> Response<Body> {
    let mut out = Response::new(Body::default());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers().iter() {
        out.headers_mut().append(k, v.clone());
    }
    // The client's upgrade is reached through its request's extensions.
    tokio::spawn(async move {
        let (client, upstream) =
            match tokio::try_join!(hyper::upgrade::on(client_req), hyper::upgrade::on(resp)) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "proxied upgrade failed");
                    return;
                }
            };
        let _ =
            tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream))
                .await;
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_parse_with_ports_and_rest() {
        let p = parse("/api/v1/namespaces/ns/services/web:80/proxy/a/b").expect("svc");
        assert_eq!(
            p.target,
            Target::Service {
                ns: "ns".into(),
                name: "web".into()
            }
        );
        assert_eq!(p.port.as_deref(), Some("80"));
        assert_eq!(p.rest, "/a/b");
        let p = parse("/api/v1/namespaces/ns/pods/p/proxy").expect("pod");
        assert_eq!(p.rest, "/");
        assert_eq!(p.port, None);
        let p = parse("/api/v1/namespaces/ns/pods/https:p:8443/proxy/").expect("pod");
        assert_eq!(p.scheme.as_deref(), Some("https"));
        assert_eq!(p.rest, "/");
        let p = parse("/api/v1/nodes/n1/proxy/metrics/x").expect("node");
        assert_eq!(p.target, Target::Node { name: "n1".into() });
        assert_eq!(p.rest, "/metrics/x");
        let p = parse("/api/v1/nodes/n1:10255/proxy").expect("node");
        assert_eq!(p.port.as_deref(), Some("10255"));
        assert_eq!(p.rest, "/");
        assert!(parse("/api/v1/namespaces/ns/pods/p/log").is_none());
        assert!(parse("/api/v1/namespaces/ns/configmaps/c/proxy").is_none());
    }
}
