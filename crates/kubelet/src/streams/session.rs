//! One exec or attach session: the client's WebSocket (channel.k8s.io v5 or v4, relayed
//! byte for byte by the API server) bridged to SPDY streams on containerd's stream server.
//!
//! Each WebSocket message is one channel byte and data: 0 stdin, 1 stdout, 2 stderr, 3 the
//! error channel (a metav1.Status, with the exit code), 4 resize; v5 adds `255 0`, "stdin is
//! closed", which becomes a FIN on the SPDY stdin stream (the reason the upstream side is SPDY:
//! WebSocket v4 cannot half-close). Both directions are forwarded one message at a time, each
//! waiting for the other side to take it, so a slow reader slows the process instead of
//! filling memory.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy::{self, Frame, HeaderWriter};

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// The WebSocket subprotocols served, preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V4,
}

impl Protocol {
    pub const SUPPORTED: [(&'static str, Protocol); 2] = [
        ("v5.channel.k8s.io", Protocol::V5),
        ("v4.channel.k8s.io", Protocol::V4),
    ];

    /// The first protocol of the client's `Sec-WebSocket-Protocol` list that is served.
    pub fn negotiate(offered: &str) -> Option<(&'static str, Protocol)> {
        offered
            .split(',')
            .map(str::trim)
            .find_map(|p| Self::SUPPORTED.iter().find(|(name, _)| *name == p).copied())
    }
}

/// Which standard streams the session carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// SPDY stream ids of the session's streams (client streams are odd, from 1).
#[derive(Clone, Copy, Debug, Default)]
struct Ids {
    error: u32,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
const CH_CLOSE: u8 = 255;

/// Frames waiting for the SPDY writer: few, so a slow runtime slows the client.
const WRITE_QUEUE: usize = 16;
/// How long a finished session waits for the client to answer its WebSocket close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Opens the streams `want` asks for on an upgraded SPDY connection and relays until the
/// process ends (the runtime closes the connection) or the client goes away.
pub async fn run<S>(ws: Ws, proto: Protocol, spdy_io: S, want: Wanted) -> std::io::Result<()>
where
    S: AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(spdy_io);
    let mut next = 1u32;
    let mut take = |on: bool| {
        on.then(|| {
            let id = next;
            next += 2;
            id
        })
    };
    let ids = Ids {
        error: take(true).unwrap_or(1),
        stdin: take(want.stdin),
        stdout: take(want.stdout),
        stderr: take(want.stderr && !want.tty),
        resize: take(want.tty),
    };
    let mut headers = HeaderWriter::new();
    for (id, kind) in [
        (Some(ids.error), "error"),
        (ids.stdin, "stdin"),
        (ids.stdout, "stdout"),
        (ids.stderr, "stderr"),
        (ids.resize, "resize"),
    ] {
        if let Some(id) = id {
            wr.write_all(&headers.syn_stream(id, &[("streamType", kind)])?)
                .await?;
        }
    }
    wr.flush().await?;

    let (ws_tx, ws_rx) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = async move {
        while let Some(b) = rx.recv().await {
            wr.write_all(&b).await?;
            wr.flush().await?;
        }
        wr.shutdown().await
    };
    let uplink = uplink(ws_rx, tx.clone(), ids, proto);
    let downlink = downlink(&mut rd, ws_tx, tx, ids);
    tokio::pin!(writer, uplink, downlink);
    tokio::select! {
        r = &mut downlink => {
            // The process is done and the client told; let it acknowledge the close.
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut uplink).await;
            r
        }
        // The client closed or dropped: dropping the SPDY connection ends the process's
        // stdin (and its terminal, which hangs up an interactive shell).
        () = &mut uplink => Ok(()),
        r = &mut writer => r,
    }
}

/// Client to runtime: stdin data, resizes, and (v5) the end of stdin.
async fn uplink(
    mut ws_rx: SplitStream<Ws>,
    tx: mpsc::Sender<Bytes>,
    mut ids: Ids,
    proto: Protocol,
) {
    while let Some(msg) = ws_rx.next().await {
        let b = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        let Some((&channel, rest)) = b.split_first() else {
            continue;
        };
        let frames: Vec<Bytes> = match (channel, ids.stdin, ids.resize) {
            (CH_STDIN, Some(id), _) => rest
                .chunks(spdy::MAX_DATA)
                .map(|c| spdy::data(id, false, c))
                .collect(),
            (CH_RESIZE, _, Some(id)) => vec![spdy::data(id, false, rest)],
            (CH_CLOSE, Some(id), _) if proto == Protocol::V5 && rest.first() == Some(&CH_STDIN) => {
                ids.stdin = None;
                vec![spdy::data(id, true, &[])]
            }
            _ => continue,
        };
        for f in frames {
            if tx.send(f).await.is_err() {
                return;
            }
        }
    }
}

/// Runtime to client: stdout and stderr as they come, then the status and a normal close.
async fn downlink<R: AsyncRead + Unpin>(
    rd: &mut R,
    mut ws_tx: SplitSink<Ws, Message>,
    tx: mpsc::Sender<Bytes>,
    ids: Ids,
) -> std::io::Result<()> {
    let mut status: Vec<u8> = Vec::new();
    let ws_err = |e| std::io::Error::other(format!("writing to the client: {e}"));
    loop {
        match spdy::read_frame(rd).await {
            Ok(Some(Frame::Data { stream, data, .. })) => {
                let channel = if Some(stream) == ids.stdout {
                    CH_STDOUT
                } else if Some(stream) == ids.stderr {
                    CH_STDERR
                } else if stream == ids.error {
                    // Bounded: a Status is small; anything beyond is not one.
                    if status.len() + data.len() <= 64 * 1024 {
                        status.extend_from_slice(&data);
                    }
                    continue;
                } else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                let mut msg = Vec::with_capacity(1 + data.len());
                msg.push(channel);
                msg.extend_from_slice(&data);
                ws_tx
                    .send(Message::Binary(msg.into()))
                    .await
                    .map_err(ws_err)?;
            }
            Ok(Some(Frame::Ping { id })) => {
                let _ = tx.send(spdy::ping(id)).await;
            }
            Ok(Some(Frame::GoAway)) | Ok(None) => break,
            Ok(Some(_)) => {}
            Err(e) => {
                tracing::debug!(error = %e, "stream server connection ended");
                break;
            }
        }
    }
    if !status.is_empty() {
        let mut msg = Vec::with_capacity(1 + status.len());
        msg.push(CH_ERROR);
        msg.extend_from_slice(&status);
        ws_tx
            .send(Message::Binary(msg.into()))
            .await
            .map_err(ws_err)?;
    }
    let _ = ws_tx
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offered_known_protocol_wins() {
        assert_eq!(
            Protocol::negotiate("v5.channel.k8s.io"),
            Some(("v5.channel.k8s.io", Protocol::V5))
        );
        assert_eq!(
            Protocol::negotiate("channel.k8s.io, v4.channel.k8s.io,v5.channel.k8s.io"),
            Some(("v4.channel.k8s.io", Protocol::V4))
        );
        assert_eq!(Protocol::negotiate("base64.channel.k8s.io"), None);
    }
}
