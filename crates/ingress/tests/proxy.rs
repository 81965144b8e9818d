//! The proxy end to end in one process: a real listener and the real `Proxy` in front of
//! in-process hyper upstreams on loopback (no cluster). Covers what the acceptance test
//! cannot with the busybox images: WebSocket-style upgrades both ways, the forwarded headers
//! as the upstream sees them, h2c from clients, the retry on another endpoint and the 502.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capstan_ingress::metrics::Metrics;
use capstan_ingress::proxy::Proxy;
use capstan_ingress::router::{Endpoints, Table};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::RwLock;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream answering with the request's headers as `name: value` lines, and switching
/// to an echo of raw bytes when asked to upgrade.
async fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|mut req: Request<Incoming>| async move {
                    if req.headers().contains_key("upgrade") {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            let mut buf = [0u8; 64];
                            loop {
                                let n = io.read(&mut buf).await.unwrap_or(0);
                                if n == 0 {
                                    return;
                                }
                                io.write_all(&buf[..n]).await.unwrap();
                            }
                        });
                        let r = Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("upgrade", "websocket")
                            .header("connection", "upgrade")
                            .body(Empty::<Bytes>::new().boxed())
                            .unwrap();
                        return Ok::<_, Infallible>(r);
                    }
                    let mut text = format!("{} {}\n", req.method(), req.uri());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
                    }
                    Ok(Response::new(Full::new(Bytes::from(text)).boxed()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn refused() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// The ingress on a loopback port, routing `host` to a Service whose endpoints are `eps`.
async fn ingress(eps: &[SocketAddr]) -> SocketAddr {
    ingress_with_metrics(eps).await.0
}

async fn ingress_with_metrics(eps: &[SocketAddr]) -> (SocketAddr, Arc<Metrics>) {
    ingress_with(eps, Duration::from_secs(60)).await
}

async fn ingress_with(
    eps: &[SocketAddr],
    response_timeout: Duration,
) -> (SocketAddr, Arc<Metrics>) {
    let ing = serde_json::from_value(json!({
        "metadata": {"name": "i", "namespace": "default"},
        "spec": {"rules": [{"host": "app.test", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap();
    let mut endpoints = Endpoints::default();
    endpoints.services.insert(
        "default/web".into(),
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"ports": [{"port": 80}]},
            }))
            .unwrap(),
        ),
    );
    for (i, e) in eps.iter().enumerate() {
        endpoints.add_slice(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("web-{i}"), "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"port": e.port()}],
                "endpoints": [{"addresses": [e.ip().to_string()]}],
            }))
            .unwrap(),
        ));
    }
    let table = Table::build(&[Arc::new(ing)], &endpoints);
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(
        Proxy::new(Arc::new(RwLock::new(Arc::new(table))), metrics.clone())
            .with_response_timeout(response_timeout),
    );
    let (l, addr) = capstan_ingress::server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // Never flipped: the listener lives as long as the test's runtime.
    let (tx, rx) = tokio::sync::watch::channel(false);
    std::mem::forget(tx);
    tokio::spawn(capstan_ingress::server::serve_http(l, proxy, rx));
    (addr, metrics)
}

async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn requests_reach_the_upstream_with_forwarded_headers() {
    let up = upstream().await;
    let ing = ingress(&[up]).await;
    let out = raw(
        ing,
        "GET /a/b?c=d HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 192.0.2.7\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("GET /a/b?c=d\n"), "{out}");
    assert!(out.contains("host: app.test\n"), "{out}");
    assert!(
        out.contains("x-forwarded-for: 192.0.2.7, 127.0.0.1\n"),
        "{out}"
    );
    assert!(out.contains("x-real-ip: 127.0.0.1\n"), "{out}");
    assert!(out.contains("x-forwarded-proto: http\n"), "{out}");
    assert!(out.contains("x-forwarded-host: app.test\n"), "{out}");
    let missing = raw(
        ing,
        "GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn an_upgraded_connection_echoes_both_ways() {
    let up = upstream().await;
    let ing = ingress(&[up]).await;
    let mut s = TcpStream::connect(ing).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn http2_without_tls_is_served() {
    let up = upstream().await;
    let ing = ingress(&[up]).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let resp = client
        .request(
            Request::get(format!("http://{ing}/h2"))
                .header("host", "app.test")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("GET /h2\n"), "{body}");
}

#[tokio::test]
async fn a_refused_endpoint_is_retried_on_another_and_alone_answers_502() {
    let up = upstream().await;
    let dead = refused().await;
    let (ing, metrics) = ingress_with_metrics(&[dead, up]).await;
    // Round robin starts somewhere; every GET must succeed whichever endpoint comes first.
    for _ in 0..6 {
        let out = raw(
            ing,
            "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    // The first request to meet the refusing endpoint was retried; then it was skipped.
    assert_eq!(metrics.retries.get(), 1);
    let text = metrics.render();
    assert!(
        text.contains("capstan_ingress_requests_total{code=\"200\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("capstan_ingress_upstream_seconds_count 6"),
        "{text}"
    );
    let only_dead = ingress(&[dead]).await;
    let out = raw(
        only_dead,
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    let none = ingress(&[]).await;
    let out = raw(
        none,
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_gets_504() {
    // Accepts connections and reads nothing: the request is sent, no response comes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let (ing, _) = ingress_with(&[silent], Duration::from_millis(300)).await;
    let out = raw(
        ing,
        "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
}
