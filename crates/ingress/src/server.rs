//! The node's ingress ports ([`serve_http`], [`serve_https`]): accept loops handing each
//! connection to hyper (HTTP/1.1 with upgrades, HTTP/2 by preface: h2c on port 80, ALPN h2 on
//! 443) and the shared [`Proxy`]. Bounded like the API server's ports: a handshake and a
//! request head must arrive in time, and connections are capped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::proxy::Proxy;

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An HTTP/1.1 request head must arrive within this (also a kept-alive connection's idle limit).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Client connections open at once per port; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16_384;

/// Why a port could not be served. Not retryable: the port is taken or not ours to bind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the ingress port {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` (port 0 picks a free one; the bound address is returned).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local = l.local_addr().unwrap_or(addr);
    Ok((l, local))
}

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(250);
    b
}

/// Serves plain HTTP (and h2c) on `listener` until shutdown.
pub async fn serve_http(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    accept_loop(listener, shutdown, move |stream, peer, shutdown, permit| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            serve_conn(stream, peer, "http", proxy, shutdown).await;
            drop(permit);
        });
    })
    .await
}

/// Serves HTTPS on `listener` with `tls` until shutdown.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: Arc<Proxy>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    accept_loop(listener, shutdown, move |stream, peer, shutdown, permit| {
        let proxy = proxy.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_conn(tls, peer, "https", proxy, shutdown).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    })
    .await
}

async fn accept_loop(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    spawn: impl Fn(TcpStream, SocketAddr, watch::Receiver<bool>, OwnedSemaphorePermit),
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = crate::stopped(&mut shutdown) => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // The permit lives as long as the connection's task.
                spawn(stream, peer, shutdown.clone(), permit);
            }
            Err(e) => {
                // Out of descriptors and the like: back off a little rather than spin.
                tracing::warn!(error = %e, "accepting an ingress connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    scheme: &'static str,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| proxy.clone().handle(req, peer, scheme));
    let builder = builder();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "ingress connection ended with an error");
            }
        }
        _ = crate::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
