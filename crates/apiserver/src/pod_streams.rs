//! `pods/exec`, `pods/attach` and `pods/portforward`: checked here as upstream checks them
//! (the pod, its container, its phase, the command), then relayed to the node's kubelet.
//!
//! The client's upgrade (WebSocket: channel.k8s.io v5 or v4, or kubectl's SPDY-in-WebSocket
//! port-forward; or SPDY/3.1 from older clients) is sent on to the kubelet's
//! `/exec/{ns}/{pod}/{container}`, `/attach/...` or `/portForward/{ns}/{pod}` with the same
//! key and protocol headers over the API server's mutually authenticated TLS connection; the
//! kubelet's 101 (or its refusal, as a Status) is the client's answer. After the switch the
//! API server copies bytes both ways without looking at them: the kubelet owns the protocol
//! (and its translation to the runtime's SPDY), and each direction moves only as fast as the
//! other end reads.

use std::net::IpAddr;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;

use crate::codec::decode_stored;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::node_proxy;
use crate::registry::Registry;
use crate::route::ResourceRoute;

/// Request headers that make up a WebSocket handshake, passed to the kubelet as they are.
const HANDSHAKE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    STREAM_PROTOCOL,
];
/// Response headers of the kubelet's 101 the client needs.
const SWITCH_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    STREAM_PROTOCOL,
];
/// SPDY's protocol negotiation header (a list, possibly repeated).
const STREAM_PROTOCOL: &str = "x-stream-protocol-version";

/// Whether `r` is a streaming subresource this module serves.
pub fn serves(r: &ResourceRoute) -> bool {
    r.info.plural == "pods"
        && r.name.is_some()
        && matches!(
            r.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
}

/// The query parameters a kubelet understands, passed through.
const PARAMS: &[&str] = &["command", "stdin", "stdout", "stderr", "tty", "ports"];

/// GET or POST on pods/{name}/exec, pods/{name}/attach or pods/{name}/portforward.
pub async fn connect(
    reg: &Registry,
    sessions: Gauge,
    r: &ResourceRoute,
    method: &Method,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    if *method != Method::GET && *method != Method::POST {
        return Err(ApiError::method_not_supported());
    }
    let sub = r.subresource.as_deref().unwrap_or("exec");
    let name = r.name.as_deref().unwrap_or_default();
    let kv = reg.get(r.info, r.namespace.as_deref(), name).await?;
    let pod = decode_stored(r.info, &kv)?;
    let ns = r.namespace.as_deref().unwrap_or("default");
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let asked = query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let container = if sub == "portforward" {
        String::new()
    } else {
        node_proxy::pick_container(&pod, name, asked)?
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if sub != "portforward" && (phase == "Succeeded" || phase == "Failed") {
        let doing = if sub == "exec" {
            "exec into"
        } else {
            "attach to"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {doing} a container in a completed pod; current phase is {phase}"
        )));
    }
    if sub == "exec" && !query.iter().any(|(k, _)| k == "command") {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") && !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let (ip, port) = node_proxy::kubelet_of(reg, &pod, name).await?;
    let path = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query.iter().filter(|(k, _)| PARAMS.contains(&k.as_str())) {
            s.append_pair(k, v);
        }
        match sub {
            "portforward" => format!("/portForward/{ns}/{name}?{}", s.finish()),
            _ => format!("/{sub}/{ns}/{name}/{container}?{}", s.finish()),
        }
    };
    let what = match sub {
        "portforward" => format!("portforward {ns}/{name}"),
        _ => format!("{sub} {ns}/{name}/{container}"),
    };
    relay(ip, port, &path, req, sessions, what).await
}

/// Sends the handshake to the kubelet; on its 101, answers 101 and copies bytes both ways.
async fn relay(
    ip: IpAddr,
    port: u16,
    path: &str,
    client_req: Request<Incoming>,
    sessions: Gauge,
    what: String,
) -> ApiResult<Response<Body>> {
    let tls = node_proxy::dial(ip, port, path).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| node_proxy::unreachable(ip, port, path, e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut up = Request::get(path).header(header::HOST, format!("{ip}:{port}"));
    for h in HANDSHAKE_HEADERS {
        for v in client_req.headers().get_all(h) {
            up = up.header(h, v.clone());
        }
    }
    let up = up.body(Empty::<Bytes>::new()).map_err(ApiError::internal)?;
    let resp = sender
        .send_request(up)
        .await
        .map_err(|e| node_proxy::unreachable(ip, port, path, e))?;
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status.as_u16() {
            400 => ApiError::bad_request(msg),
            404 => ApiError::new(404, "NotFound", msg),
            code => ApiError::new(code, "InternalError", msg),
        });
    }
    let mut out = Response::new(Body::default());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in SWITCH_HEADERS {
        for v in resp.headers().get_all(h) {
            out.headers_mut().append(h, v.clone());
        }
    }
    tokio::spawn(async move {
        let (client, kubelet) =
            match tokio::try_join!(hyper::upgrade::on(client_req), hyper::upgrade::on(resp)) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "stream upgrade failed");
                    return;
                }
            };
        sessions.inc();
        tracing::info!(session = %what, "stream relayed to the kubelet");
        let mut client = TokioIo::new(client);
        let mut kubelet = TokioIo::new(kubelet);
        let r = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
        sessions.dec();
        match r {
            Ok((up, down)) => {
                tracing::info!(session = %what, bytes_in = up, bytes_out = down, "stream ended")
            }
            Err(e) => tracing::info!(session = %what, error = %e, "stream ended"),
        }
    });
    Ok(out)
}
