//! Per-connection limits of the API port: how long a connection may sit without a request in
//! flight, how long a write may stay blocked on a client that does not read, and how many
//! connections may be open at once. hyper bounds header reads (HTTP/1.1) and pings (HTTP/2)
//! itself once given a timer; what it cannot see (a connection idle between HTTP/2 streams or
//! before protocol detection, a response stuck behind a full socket) is enforced here, in
//! [`ConnIo`], the transport every connection is served through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits of one listening port.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// TLS handshake (from accept until the handshake completes).
    pub handshake: Duration,
    /// HTTP/1.1: from the start of reading a request head (including waiting for the next
    /// request of a kept-alive connection) until its headers are complete.
    pub header_read: Duration,
    /// Any connection with no request in flight (HTTP/2 without streams, a client that never
    /// sends a recognisable preface) is closed after this long; before its first request,
    /// after `header_read`.
    pub idle: Duration,
    /// A write blocked this long (the client reads nothing) ends the connection.
    pub write_stall: Duration,
    /// After a watch ended at its timeout or at shutdown, a write still blocked this long
    /// ends the connection: the client was not reading the watch.
    pub stall_after_watch_end: Duration,
    /// Open connections; more are accepted and closed at once.
    pub max_connections: usize,
    /// HTTP/2 streams (concurrent requests) per connection.
    pub h2_max_streams: u32,
    /// HTTP/2 PING interval; a peer that does not answer within `h2_ping_timeout` is dropped.
    pub h2_ping_interval: Duration,
    pub h2_ping_timeout: Duration,
}

/// The API port's limits. 250 streams per connection is Go's HTTP/2 default (what upstream
/// serves with unless configured); the header timeout is short because kubectl and client
/// libraries send a request head in one write, and long enough for a loaded machine.
pub const API_LIMITS: Limits = Limits {
    handshake: Duration::from_secs(10),
    header_read: Duration::from_secs(15),
    idle: Duration::from_secs(90),
    write_stall: Duration::from_secs(120),
    stall_after_watch_end: Duration::from_secs(5),
    max_connections: 4096,
    h2_max_streams: 250,
    h2_ping_interval: Duration::from_secs(30),
    h2_ping_timeout: Duration::from_secs(20),
};

/// What the requests of one connection tell its transport.
#[derive(Debug, Default)]
pub struct Control {
    in_flight: AtomicUsize,
    /// Whether a request has started on this connection.
    served: AtomicBool,
    /// When the connection last had no request in flight (connection start at first).
    idle_since: Mutex<Option<Instant>>,
    /// Set when a watch ended by timeout or shutdown: a blocked write is then cut short.
    watch_ended_at: Mutex<Option<Instant>>,
    /// A switched protocol (upgrade) owns the transport from then on: no idle or stall limits.
    upgraded: AtomicBool,
    waker: AtomicWaker,
}

impl Control {
    pub fn new() -> Arc<Self> {
        let c = Self::default();
        *c.idle_since.lock() = Some(Instant::now());
        Arc::new(c)
    }

    /// Marks a request in flight until the returned guard is dropped (with the response body).
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// A watch on this connection ended at its timeout or at shutdown: if the client is not
    /// reading, stop waiting for it.
    pub fn watch_ended(&self) {
        tracing::debug!("a watch ended at its timeout or at shutdown");
        *self.watch_ended_at.lock() = Some(Instant::now());
        self.waker.wake();
    }

    pub fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::SeqCst);
    }

    fn idle_deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.upgraded.load(Ordering::SeqCst) || self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        // Before its first request a connection is a client that finished its handshake and
        // sent nothing hyper could take for a request (no HTTP/1.1 header timer runs yet).
        let limit = if self.served.load(Ordering::SeqCst) {
            limits.idle
        } else {
            limits.header_read
        };
        self.idle_since.lock().map(|t| t + limit)
    }
}

/// A request in flight on a connection; dropping it ends the request.
pub struct InFlight(Arc<Control>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock() = Some(Instant::now());
            // The transport may be parked in a read with no idle timer armed.
            self.0.waker.wake();
        }
    }
}

/// Keeps `guard` (the request in flight) until hyper has taken the whole response body, so a
/// watch or log stream counts as in flight for as long as it runs.
pub fn hold_until_sent(
    resp: http::Response<crate::handlers::Body>,
    guard: InFlight,
) -> http::Response<crate::handlers::Body> {
    use http_body_util::BodyExt;
    resp.map(|inner| {
        Held {
            inner,
            _guard: guard,
        }
        .boxed_unsync()
    })
}

struct Held<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's transport with the idle and write-stall limits of [`Limits`].
pub struct ConnIo<T> {
    inner: T,
    ctl: Arc<Control>,
    limits: Limits,
    idle_timer: Pin<Box<Sleep>>,
    stall_timer: Pin<Box<Sleep>>,
    stalled_since: Option<Instant>,
}

impl<T> ConnIo<T> {
    pub fn new(inner: T, ctl: Arc<Control>, limits: Limits) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        Self {
            inner,
            ctl,
            limits,
            idle_timer: Box::pin(tokio::time::sleep_until(far)),
            stall_timer: Box::pin(tokio::time::sleep_until(far)),
            stalled_since: None,
        }
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.ctl.waker.register(cx.waker());
        let Some(deadline) = self.ctl.idle_deadline(&self.limits) else {
            return Ok(());
        };
        if self.idle_timer.deadline() != deadline {
            self.idle_timer.as_mut().reset(deadline);
        }
        match self.idle_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Passes a write's outcome through, turning a write blocked for too long into an error
    /// that ends the connection.
    fn check_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        res: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if res.is_ready() {
            self.stalled_since = None;
            if matches!(res, Poll::Ready(Ok(_))) {
                // The client reads: a watch that ended needs nothing more from us.
                *self.ctl.watch_ended_at.lock() = None;
            }
            return res;
        }
        if self.ctl.upgraded.load(Ordering::SeqCst) {
            return res;
        }
        self.ctl.waker.register(cx.waker());
        let now = Instant::now();
        let since = *self.stalled_since.get_or_insert(now);
        let mut deadline = since + self.limits.write_stall;
        if let Some(ended) = *self.ctl.watch_ended_at.lock() {
            deadline = deadline.min(since.max(ended) + self.limits.stall_after_watch_end);
        }
        if self.stall_timer.deadline() != deadline {
            self.stall_timer.as_mut().reset(deadline);
        }
        if now >= deadline || self.stall_timer.as_mut().poll(cx).is_ready() {
            tracing::debug!(
                stalled_ms = (now - since).as_millis() as u64,
                "closing a connection whose client stopped reading"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        res
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check_idle(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check_write(cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check_write(cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.check_write(cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check_write(cx, res)
    }
}

/// Counts open connections against [`Limits::max_connections`], and says once (not per
/// refused connection) when the limit is reached.
pub struct Gate {
    permits: Arc<tokio::sync::Semaphore>,
    full: AtomicBool,
    port: &'static str,
}

impl Gate {
    pub fn new(limits: &Limits, port: &'static str) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            full: AtomicBool::new(false),
            port,
        }
    }

    /// A place for one more connection, or None (the caller closes it).
    pub fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                if self.full.swap(false, Ordering::SeqCst) {
                    tracing::info!(port = self.port, "accepting connections again");
                }
                Some(p)
            }
            Err(_) => {
                if !self.full.swap(true, Ordering::SeqCst) {
                    tracing::warn!(
                        port = self.port,
                        "too many open connections; closing new ones until some end"
                    );
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn quick() -> Limits {
        Limits {
            header_read: Duration::from_millis(100),
            idle: Duration::from_millis(200),
            write_stall: Duration::from_millis(300),
            stall_after_watch_end: Duration::from_millis(100),
            ..API_LIMITS
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_while_a_request_runs() {
        let (a, _b) = tokio::io::duplex(64);
        let ctl = Control::new();
        let mut io = ConnIo::new(a, ctl.clone(), quick());
        let guard = ctl.request_started();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_millis(500), io.read(&mut buf)).await;
        assert!(r.is_err(), "a request in flight keeps the connection");
        drop(guard);
        let r = tokio::time::timeout(Duration::from_secs(2), io.read(&mut buf))
            .await
            .expect("closed in time");
        assert_eq!(r.expect_err("idle").kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
        let (a, _b) = tokio::io::duplex(64);
        let mut io = ConnIo::new(a, Control::new(), quick());
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(2), io.read(&mut buf))
            .await
            .expect("closed in time");
        assert_eq!(r.expect_err("silent").kind(), io::ErrorKind::TimedOut);
        assert!(
            start.elapsed() < Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_write_the_client_never_reads_ends_the_connection() {
        let (a, _b) = tokio::io::duplex(16);
        let ctl = Control::new();
        let _guard = ctl.request_started();
        let mut io = ConnIo::new(a, ctl.clone(), quick());
        let r = tokio::time::timeout(Duration::from_secs(2), io.write_all(&[0u8; 1024]))
            .await
            .expect("ended in time");
        assert_eq!(r.expect_err("stalled").kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_watch_ending_cuts_a_stalled_write_short() {
        let (a, _b) = tokio::io::duplex(16);
        let ctl = Control::new();
        let _guard = ctl.request_started();
        let limits = Limits {
            write_stall: Duration::from_secs(60),
            ..quick()
        };
        let mut io = ConnIo::new(a, ctl.clone(), limits);
        let c = ctl.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.watch_ended();
        });
        let r = tokio::time::timeout(Duration::from_secs(2), io.write_all(&[0u8; 1024]))
            .await
            .expect("cut short after the watch ended");
        assert!(r.is_err());
    }
}
