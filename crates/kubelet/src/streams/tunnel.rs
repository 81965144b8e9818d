//! kubectl's port-forward (1.30 and later): a SPDY/3.1 connection whose bytes travel in
//! WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`). The runtime's stream server
//! speaks the same SPDY port-forward protocol (streams of type `error` and `data` per port
//! and request id), and the client chose every stream id and header block, so the agent moves
//! the bytes unchanged: message payloads to the runtime, reads from the runtime as messages.
//! Each direction waits for the other side to take a chunk before reading the next.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::session::Ws;

/// Largest chunk read from the runtime and sent as one message.
const CHUNK: usize = 32 * 1024;

/// Relays until either side ends.
pub async fn run<S>(ws: Ws, runtime: S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(runtime);
    let up = async {
        while let Some(msg) = ws_rx.next().await {
            match msg {
                Ok(Message::Binary(b)) => wr.write_all(&b).await?,
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => return Err(std::io::Error::other(format!("client: {e}"))),
            }
        }
        wr.shutdown().await
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            ws_tx
                .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                .await
                .map_err(|e| std::io::Error::other(format!("client: {e}")))?;
        }
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        Ok(())
    };
    // Either end finishing ends the session: the client stopping closes the runtime's
    // connection (and its port connections), the runtime closing tells the client.
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}
