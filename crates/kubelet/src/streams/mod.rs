//! The kubelet port's streaming endpoints, `/exec/{ns}/{pod}/{container}`,
//! `/attach/{ns}/{pod}/{container}` and `/portForward/{ns}/{pod}` (upstream's paths), reached
//! only through the API server.
//!
//! Before answering 101 the agent finds the running container (or the pod's sandbox), asks the
//! runtime for a stream URL (CRI Exec / Attach / PortForward) and upgrades to SPDY/3.1 there,
//! so every failure is still an HTTP error the API server can turn into a Status. Then, by
//! what the client speaks:
//! - WebSocket channel.k8s.io v5/v4 (exec, attach): [`session`] translates to SPDY streams;
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl's port-forward): the messages carry SPDY
//!   frames, so [`tunnel`] only moves their bytes to the runtime's SPDY connection;
//! - SPDY/3.1 (older clients), and WebSocket port-forward (`v4.channel.k8s.io`: the Python
//!   client, kube-rs), which the runtime serves itself: the handshake goes to the runtime and
//!   bytes are copied both ways, the runtime picking the protocol.

pub mod session;
pub mod spdy;
pub mod tunnel;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::cri::api as pb;
use crate::pods::observe::keys;
use crate::pods::Shared;
use session::{Protocol, Wanted};

/// What a streaming request runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// A refused streaming request: the HTTP status and the message the API server relays.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// The options of an exec or attach request, from its query string.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub command: Vec<String>,
    pub want: Wanted,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "t" | "T")
}

impl Options {
    pub fn from_query(kind: Kind, query: &str) -> Result<Self, Refusal> {
        let mut o = Options::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "command" => o.command.push(v.into_owned()),
                "stdin" => o.want.stdin = truthy(&v),
                "stdout" => o.want.stdout = truthy(&v),
                "stderr" => o.want.stderr = truthy(&v),
                "tty" => o.want.tty = truthy(&v),
                _ => {}
            }
        }
        if kind == Kind::Exec && o.command.is_empty() {
            return Err(refuse(
                400,
                "you must specify at least one command for the container",
            ));
        }
        if !(o.want.stdin || o.want.stdout || o.want.stderr) {
            return Err(refuse(
                400,
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        // A terminal merges stderr into stdout, as upstream's stream server does.
        if o.want.tty {
            o.want.stderr = false;
        }
        Ok(o)
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The newest running container `container` of pod `ns/pod`.
async fn running_container(
    shared: &Shared,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Refusal> {
    let filter = pb::ContainerFilter {
        state: Some(pb::ContainerStateValue {
            state: pb::ContainerState::ContainerRunning as i32,
        }),
        label_selector: [
            (keys::POD_NAMESPACE.to_string(), ns.to_string()),
            (keys::POD_NAME.to_string(), pod.to_string()),
            (keys::CONTAINER_NAME.to_string(), container.to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let list = shared
        .cri
        .list_containers(Some(filter))
        .await
        .map_err(|e| refuse(500, format!("listing containers: {}", e.message())))?;
    list.into_iter()
        .max_by_key(|c| c.metadata.as_ref().map_or(0, |m| m.attempt))
        .map(|c| c.id)
        .ok_or_else(|| refuse(404, format!("container not found ({container:?})")))
}

/// Upgrades at a stream server URL from CRI with the `upgrade` headers (SPDY/3.1 and the
/// protocols offered, or a client's WebSocket handshake); returns the connection and the
/// stream server's 101 headers.
async fn dial_stream_server(
    url: &str,
    upgrade: Vec<(&'static str, HeaderValue)>,
) -> Result<(Upgraded, http::HeaderMap), Refusal> {
    let fail = |e: String| {
        refuse(
            500,
            format!("connecting to the runtime's stream server: {e}"),
        )
    };
    let uri: http::Uri = url.parse().map_err(|e| fail(format!("{url}: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| fail(format!("{url}: no host")))?
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| fail(format!("{authority}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::get(path).header(header::HOST, &authority);
    for (k, v) in upgrade {
        req = req.header(k, v);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(refuse(if code >= 400 { code } else { 500 }, msg));
    }
    let headers = resp.headers().clone();
    let io = hyper::upgrade::on(resp)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok((io, headers))
}

type Upgraded = hyper::upgrade::Upgraded;

const STREAM_PROTOCOL: &str = "X-Stream-Protocol-Version";
/// kubectl 1.30+'s port-forward: SPDY/3.1 frames carried in WebSocket binary messages.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The SPDY subprotocol of port-forward streams on the runtime's stream server.
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// How the client speaks, from its upgrade request.
enum Transport {
    /// channel.k8s.io v5/v4 over WebSocket, translated to SPDY streams by [`session`].
    Channel {
        key: String,
        name: &'static str,
        proto: Protocol,
    },
    /// SPDY inside WebSocket messages (port-forward), relayed as bytes by [`tunnel`].
    Tunnel { key: String },
    /// SPDY/3.1 itself (older clients), relayed as bytes; the runtime picks the protocol.
    Spdy { offered: Vec<String> },
    /// WebSocket port-forward (`v4.channel.k8s.io`, `portforward.k8s.io`: the Python client,
    /// kube-rs), which the runtime's stream server speaks itself: the client's handshake goes
    /// to it unchanged and the bytes are relayed.
    RuntimeWebSocket {
        handshake: Vec<(&'static str, HeaderValue)>,
    },
}

/// Handshake headers a WebSocket client's request carries to the runtime.
const WEBSOCKET_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];
/// Headers of the runtime's WebSocket 101 the client needs.
const WEBSOCKET_SWITCH_HEADERS: [&str; 4] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
];

fn transport(req: &Request<Incoming>, kind: Kind) -> Result<Transport, Refusal> {
    let upgrade = header_str(req, header::UPGRADE);
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let offered: Vec<String> = req
            .headers()
            .get_all(STREAM_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return Ok(Transport::Spdy { offered });
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(refuse(400, "Upgrade request required"));
    }
    let key = header_str(req, header::SEC_WEBSOCKET_KEY).to_string();
    if key.is_empty() {
        return Err(refuse(400, "missing Sec-WebSocket-Key"));
    }
    let offered = header_str(req, header::SEC_WEBSOCKET_PROTOCOL);
    if kind == Kind::PortForward {
        if offered.split(',').any(|p| p.trim() == TUNNEL_PROTOCOL) {
            return Ok(Transport::Tunnel { key });
        }
        let handshake = WEBSOCKET_HEADERS
            .iter()
            .flat_map(|h| req.headers().get_all(*h).iter().map(|v| (*h, v.clone())))
            .collect();
        return Ok(Transport::RuntimeWebSocket { handshake });
    }
    let (name, proto) = Protocol::negotiate(offered).ok_or_else(|| {
        refuse(
            400,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{offered}], server supports [v5.channel.k8s.io v4.channel.k8s.io]"
            ),
        )
    })?;
    Ok(Transport::Channel { key, name, proto })
}

/// The ready sandbox of pod `ns/pod`.
async fn ready_sandbox(shared: &Shared, ns: &str, pod: &str) -> Result<String, Refusal> {
    let filter = pb::PodSandboxFilter {
        state: Some(pb::PodSandboxStateValue {
            state: pb::PodSandboxState::SandboxReady as i32,
        }),
        label_selector: [
            (keys::POD_NAMESPACE.to_string(), ns.to_string()),
            (keys::POD_NAME.to_string(), pod.to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let list = shared
        .cri
        .list_pod_sandbox(Some(filter))
        .await
        .map_err(|e| refuse(500, format!("listing pod sandboxes: {}", e.message())))?;
    list.into_iter()
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| refuse(404, format!("pod not found (\"{ns}/{pod}\")")))
}

/// Ports named in a port-forward query (`ports=80,8080` or repeated).
fn query_ports(query: &str) -> Result<Vec<i32>, Refusal> {
    let mut ports = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "ports" || k == "port" {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(i32::from(n)),
                    _ => return Err(refuse(400, format!("invalid port {p:?}"))),
                }
            }
        }
    }
    Ok(ports)
}

/// The runtime's stream URL for this request.
async fn stream_url(
    shared: &Shared,
    kind: Kind,
    query: &str,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Refusal> {
    let url = if kind == Kind::PortForward {
        let port = query_ports(query)?;
        let pod_sandbox_id = ready_sandbox(shared, ns, pod).await?;
        shared
            .cri
            .port_forward(pb::PortForwardRequest {
                pod_sandbox_id,
                port,
            })
            .await
    } else {
        let opts = Options::from_query(kind, query)?;
        let container_id = running_container(shared, ns, pod, container).await?;
        let want = opts.want;
        if kind == Kind::Exec {
            shared
                .cri
                .exec(pb::ExecRequest {
                    container_id,
                    cmd: opts.command,
                    tty: want.tty,
                    stdin: want.stdin,
                    stdout: want.stdout,
                    stderr: want.stderr,
                })
                .await
        } else {
            shared
                .cri
                .attach(pb::AttachRequest {
                    container_id,
                    stdin: want.stdin,
                    tty: want.tty,
                    stdout: want.stdout,
                    stderr: want.stderr,
                })
                .await
        }
    };
    url.map_err(|e| refuse(500, e.message()))
}

fn websocket_switch(key: &str, protocol: &str) -> Response<Empty<Bytes>> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(protocol) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    resp
}

async fn websocket(upgraded: Upgraded) -> session::Ws {
    let mut cfg = WebSocketConfig::default();
    // One message is one read of a pipe or one stdin chunk; bound what is buffered.
    cfg.max_message_size = Some(16 << 20);
    cfg.max_frame_size = Some(16 << 20);
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await
}

/// Serves one exec, attach or port-forward request: the 101 answer, or a refusal.
pub async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Response<Empty<Bytes>>, Refusal> {
    let transport = transport(&req, kind)?;
    let query = req.uri().query().unwrap_or("").to_string();
    let url = stream_url(&shared, kind, &query, ns, pod, container).await?;
    let want = match kind {
        Kind::PortForward => Wanted::default(),
        _ => Options::from_query(kind, &query)?.want,
    };
    let spdy = |offered: &[&str]| {
        let mut h = vec![
            ("connection", HeaderValue::from_static("Upgrade")),
            ("upgrade", HeaderValue::from_static("SPDY/3.1")),
        ];
        h.extend(
            offered
                .iter()
                .filter_map(|p| HeaderValue::from_str(p).ok())
                .map(|v| (STREAM_PROTOCOL, v)),
        );
        h
    };
    let upgrade = match &transport {
        Transport::Channel { .. } => spdy(&["v4.channel.k8s.io"]),
        Transport::Tunnel { .. } => spdy(&[PORT_FORWARD_PROTOCOL]),
        Transport::Spdy { offered } => {
            spdy(&offered.iter().map(String::as_str).collect::<Vec<_>>())
        }
        Transport::RuntimeWebSocket { handshake } => handshake.clone(),
    };
    let (runtime_io, switched) = dial_stream_server(&url, upgrade).await?;
    let resp = match &transport {
        Transport::Channel { key, name, .. } => websocket_switch(key, name),
        Transport::Tunnel { key } => websocket_switch(key, TUNNEL_PROTOCOL),
        Transport::Spdy { .. } => {
            let mut resp = Response::new(Empty::new());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = resp.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Some(v) = switched.get(STREAM_PROTOCOL) {
                h.insert(STREAM_PROTOCOL, v.clone());
            }
            resp
        }
        Transport::RuntimeWebSocket { .. } => {
            let mut resp = Response::new(Empty::new());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            for h in WEBSOCKET_SWITCH_HEADERS {
                for v in switched.get_all(h) {
                    resp.headers_mut().append(h, v.clone());
                }
            }
            resp
        }
    };
    let metrics = shared.metrics.clone();
    let what = match kind {
        Kind::PortForward => format!("port-forward {ns}/{pod}"),
        _ => format!("{kind:?} {ns}/{pod}/{container}").to_lowercase(),
    };
    tracing::info!(session = %what, tty = want.tty, stdin = want.stdin, "stream session starting");
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "stream client upgrade failed");
                return;
            }
        };
        metrics.stream_sessions.inc();
        let (how, r) = match transport {
            Transport::Channel { name, proto, .. } => {
                let ws = websocket(upgraded).await;
                (
                    name,
                    session::run(ws, proto, TokioIo::new(runtime_io), want).await,
                )
            }
            Transport::Tunnel { .. } => {
                let ws = websocket(upgraded).await;
                (
                    TUNNEL_PROTOCOL,
                    tunnel::run(ws, TokioIo::new(runtime_io)).await,
                )
            }
            Transport::Spdy { .. } | Transport::RuntimeWebSocket { .. } => {
                let mut client = TokioIo::new(upgraded);
                let mut runtime = TokioIo::new(runtime_io);
                let r = tokio::io::copy_bidirectional(&mut client, &mut runtime)
                    .await
                    .map(|_| ());
                ("relayed", r)
            }
        };
        metrics.stream_sessions.dec();
        match r {
            Ok(()) => tracing::info!(session = %what, protocol = how, "stream session ended"),
            Err(e) => {
                tracing::info!(session = %what, protocol = how, error = %e, "stream session ended")
            }
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn options_need_a_command_and_a_stream() {
        let o = Options::from_query(
            Kind::Exec,
            "command=sh&command=-c&command=echo+hi&stdout=true&stderr=1&tty=false",
        )
        .expect("valid");
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.want.stdout && o.want.stderr && !o.want.stdin && !o.want.tty);
        let e = Options::from_query(Kind::Exec, "stdout=true").expect_err("no command");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("at least one command"));
        let e = Options::from_query(Kind::Attach, "").expect_err("no stream");
        assert!(e.message.contains("at least 1 of stdin, stdout, stderr"));
        let o =
            Options::from_query(Kind::Attach, "stdin=1&stdout=1&stderr=1&tty=1").expect("attach");
        assert!(o.want.tty && !o.want.stderr, "a terminal has no stderr");
    }
}
