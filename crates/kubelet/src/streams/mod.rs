//! The kubelet port's streaming endpoints, `/exec/{ns}/{pod}/{container}` and
//! `/attach/{ns}/{pod}/{container}` (upstream's paths), reached only through the API server.
//!
//! A request is a WebSocket upgrade (channel.k8s.io v5 or v4). Before answering 101 the agent
//! finds the running container, asks the runtime for a stream URL (CRI Exec / Attach) and
//! upgrades to SPDY/3.1 there (`X-Stream-Protocol-Version: v4.channel.k8s.io`), so every
//! failure is still an HTTP error the API server can turn into a Status. [`session`] then
//! relays the two.

pub mod session;
pub mod spdy;

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

/// Upgrades to SPDY/3.1 at a stream server URL from CRI.
async fn dial_stream_server(url: &str) -> Result<Upgraded, Refusal> {
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
    let req = Request::post(path)
        .header(header::HOST, &authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
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
    hyper::upgrade::on(resp)
        .await
        .map_err(|e| fail(e.to_string()))
}

type Upgraded = hyper::upgrade::Upgraded;

/// Serves one exec or attach request: the 101 answer, or a refusal.
pub async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Response<Empty<Bytes>>, Refusal> {
    if !header_str(&req, header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err(refuse(400, "Upgrade request required"));
    }
    let key = header_str(&req, header::SEC_WEBSOCKET_KEY).to_string();
    if key.is_empty() {
        return Err(refuse(400, "missing Sec-WebSocket-Key"));
    }
    let offered = header_str(&req, header::SEC_WEBSOCKET_PROTOCOL);
    let (proto_name, proto) = Protocol::negotiate(offered).ok_or_else(|| {
        refuse(
            400,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{offered}], server supports [v5.channel.k8s.io v4.channel.k8s.io]"
            ),
        )
    })?;
    let opts = Options::from_query(kind, req.uri().query().unwrap_or(""))?;
    let id = running_container(&shared, ns, pod, container).await?;
    let want = opts.want;
    let url = match kind {
        Kind::Exec => {
            shared
                .cri
                .exec(pb::ExecRequest {
                    container_id: id,
                    cmd: opts.command,
                    tty: want.tty,
                    stdin: want.stdin,
                    stdout: want.stdout,
                    stderr: want.stderr,
                })
                .await
        }
        Kind::Attach => {
            shared
                .cri
                .attach(pb::AttachRequest {
                    container_id: id,
                    stdin: want.stdin,
                    tty: want.tty,
                    stdout: want.stdout,
                    stderr: want.stderr,
                })
                .await
        }
    }
    .map_err(|e| refuse(500, e.message()))?;
    let spdy_io = dial_stream_server(&url).await?;
    let metrics = shared.metrics.clone();
    let what = format!("{kind:?} {ns}/{pod}/{container}").to_lowercase();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "stream client upgrade failed");
                return;
            }
        };
        let mut cfg = WebSocketConfig::default();
        // One message is one read of a pipe or one stdin chunk; bound what is buffered.
        cfg.max_message_size = Some(16 << 20);
        cfg.max_frame_size = Some(16 << 20);
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(cfg)).await;
        metrics.stream_sessions.inc();
        tracing::info!(session = %what, protocol = proto_name, tty = want.tty, stdin = want.stdin, "stream session started");
        let r = session::run(ws, proto, TokioIo::new(spdy_io), want).await;
        metrics.stream_sessions.dec();
        match r {
            Ok(()) => tracing::info!(session = %what, "stream session ended"),
            Err(e) => tracing::info!(session = %what, error = %e, "stream session ended"),
        }
    });
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(proto_name),
    );
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
