//! `Forwarder`: relays a question outside the cluster zone to the host's resolvers, over UDP
//! (over TCP when the client asked over TCP, or when the UDP answer came back truncated), trying
//! each upstream in turn. Answers are not cached: every forwarded query asks upstream, so memory
//! does not grow with queries; a bounded number of queries may be in flight at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// Queries forwarded at once; beyond this, queries get SERVFAIL at once instead of waiting.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long one upstream gets to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest UDP answer accepted from upstream (EDNS's common ceiling).
const MAX_UDP: usize = 4096;

/// Errors are per query and not retried here (the client retries); each is logged at debug.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("too many forwarded queries in flight")]
    Busy,
    #[error("no upstream resolver configured")]
    NoUpstream,
    #[error("upstream {upstream} did not answer: {source}")]
    Exchange {
        upstream: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Forwarder {
    upstreams: Arc<Vec<SocketAddr>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams: Arc::new(upstreams),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            timeout: UPSTREAM_TIMEOUT,
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` (a whole DNS message whose first two bytes are its ID) and returns the
    /// first upstream's answer with the same ID.
    pub async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>, Error> {
        let _permit = self.permits.try_acquire().map_err(|_| Error::Busy)?;
        let mut last = Error::NoUpstream;
        for upstream in self.upstreams.iter() {
            let attempt = if tcp {
                tokio::time::timeout(self.timeout, exchange_tcp(*upstream, query)).await
            } else {
                tokio::time::timeout(self.timeout, exchange_udp(*upstream, query)).await
            };
            let result = match attempt {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out",
                )),
            };
            match result {
                // A truncated UDP answer: ask the same upstream again over TCP.
                Ok(answer) if !tcp && is_truncated(&answer) => {
                    match tokio::time::timeout(self.timeout, exchange_tcp(*upstream, query)).await {
                        Ok(Ok(full)) => return Ok(full),
                        // The truncated answer still tells the client to retry over TCP.
                        _ => return Ok(answer),
                    }
                }
                Ok(answer) => return Ok(answer),
                Err(source) => {
                    last = Error::Exchange {
                        upstream: *upstream,
                        source,
                    }
                }
            }
        }
        Err(last)
    }
}

fn is_truncated(msg: &[u8]) -> bool {
    msg.get(2).is_some_and(|b| b & 0x02 != 0)
}

fn same_id(query: &[u8], answer: &[u8]) -> bool {
    query.len() >= 2 && answer.len() >= 12 && query[..2] == answer[..2]
}

async fn exchange_udp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    } else {
        "[::]:0".parse().map_err(std::io::Error::other)?
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Anything else arriving on this port (a late answer, a spoof attempt) is ignored.
        if same_id(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    if !same_id(query, &answer) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "answer for another query",
        ));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_udp_query_is_relayed_and_a_dead_upstream_skipped() {
        let live = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let live_addr = live.local_addr().expect("addr");
        // A port nobody answers on: its ICMP error (or timeout) moves on to the next upstream.
        let dead = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let dead_addr = dead.local_addr().expect("addr");
        drop(dead);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = live.recv_from(&mut buf).await.expect("recv");
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80; // QR
            live.send_to(&answer, from).await.expect("send");
        });
        let f = Forwarder::new(vec![dead_addr, live_addr]);
        let query = [0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let answer = f.exchange(&query, false).await.expect("answer");
        assert_eq!(&answer[..2], &[0xab, 0xcd]);
        assert_eq!(answer[2] & 0x80, 0x80);
    }

    #[tokio::test]
    async fn no_upstream_is_an_error_not_a_hang() {
        let f = Forwarder::new(Vec::new());
        assert!(matches!(
            f.exchange(&[0; 12], false).await,
            Err(Error::NoUpstream)
        ));
    }
}
