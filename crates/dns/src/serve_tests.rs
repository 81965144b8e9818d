//! The server over real sockets on loopback: UDP and TCP, truncation, forwarding to a fake
//! upstream, and garbage packets.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::*;

fn query(name: &str, t: RecordType, edns: bool) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

async fn udp(server: SocketAddr, bytes: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("a DNS message")
}

async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let bytes = m.to_vec().expect("encode");
    let mut s = TcpStream::connect(server).await.expect("connect");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.expect("length");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.expect("body");
    Message::from_vec(&buf).expect("a DNS message")
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r: &Record| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// A fake upstream resolver on loopback: every A question gets 192.0.2.1.
async fn fake_upstream() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_available = true;
            for question in &q.queries {
                r.add_query(question.clone());
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(hickory_server::proto::rr::rdata::A(
                        "192.0.2.1".parse().expect("ip"),
                    )),
                ));
            }
            let _ = s.send_to(&r.to_vec().expect("encode"), from).await;
        }
    });
    addr
}

struct Running {
    addr: SocketAddr,
    index: Index,
    _stop: watch::Sender<bool>,
}

async fn start(upstreams: Vec<SocketAddr>) -> Running {
    let listeners = Listeners::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listeners.local_addr().expect("addr");
    let index = Index::new();
    let zone = Arc::new(Zone::new("cluster.local", Vec::new()).expect("zone"));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve(
        listeners,
        index.clone(),
        zone,
        forward::Forwarder::new(upstreams),
        rx,
    ));
    Running {
        addr,
        index,
        _stop: tx,
    }
}

fn add_web(index: &Index) {
    let s: Service =
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}}))
        .expect("svc");
    index.apply_service(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_udp_and_tcp_with_the_question_echoed() {
    let r = start(Vec::new()).await;
    add_web(&r.index);
    let q = query("web.default.svc.cluster.local.", RecordType::A, false);
    let a = udp(r.addr, &q.to_vec().expect("encode")).await;
    assert_eq!(a.metadata.id, q.metadata.id);
    assert!(a.metadata.authoritative);
    assert_eq!(a.queries, q.queries);
    assert_eq!(addresses(&a), ["10.43.0.20"]);
    let a = tcp(r.addr, &q).await;
    assert_eq!(addresses(&a), ["10.43.0.20"]);
    let a = udp(
        r.addr,
        &query("nope.default.svc.cluster.local.", RecordType::A, true)
            .to_vec()
            .expect("encode"),
    )
    .await;
    assert_eq!(a.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(a.authorities.len(), 1);
    assert!(a.edns.is_some(), "an EDNS question gets an EDNS answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let r = start(Vec::new()).await;
    let s: Service =
        serde_json::from_value(json!({"metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None"}}))
        .expect("svc");
    r.index.apply_service(&s);
    let endpoints: Vec<_> = (1..=100)
        .map(|i| json!({"addresses": [format!("10.42.1.{i}")], "conditions": {"ready": true}}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "big-1", "namespace": "default",
        "labels": {"kubernetes.io/service-name": "big"}}, "addressType": "IPv4", "endpoints": endpoints}))
    .expect("slice");
    r.index.apply_slice(&slice);
    let q = query("big.default.svc.cluster.local.", RecordType::A, false);
    let a = udp(r.addr, &q.to_vec().expect("encode")).await;
    assert!(a.metadata.truncation, "100 A records exceed 512 bytes");
    assert!(a.answers.is_empty());
    // With EDNS (1232 bytes) all 100 records (~1.6 kB) still do not fit.
    let q2 = query("big.default.svc.cluster.local.", RecordType::A, true);
    let a = udp(r.addr, &q2.to_vec().expect("encode")).await;
    assert!(a.metadata.truncation);
    let a = tcp(r.addr, &q).await;
    assert!(!a.metadata.truncation);
    assert_eq!(addresses(&a).len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_zone_are_forwarded_upstream() {
    let up = fake_upstream().await;
    let r = start(vec![up]).await;
    let q = query("www.example.org.", RecordType::A, false);
    let a = udp(r.addr, &q.to_vec().expect("encode")).await;
    assert_eq!(
        a.metadata.id, q.metadata.id,
        "the client's ID, not the upstream one"
    );
    assert_eq!(addresses(&a), ["192.0.2.1"]);
    assert!(!a.metadata.authoritative);
    let forwarded = metrics::global().render();
    assert!(
        forwarded.contains("dns_forwarded_requests_total{result=\"ok\"}"),
        "{forwarded}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_upstream_outside_names_fail_with_servfail() {
    let r = start(Vec::new()).await;
    let a = udp(
        r.addr,
        &query("www.example.org.", RecordType::A, false)
            .to_vec()
            .expect("encode"),
    )
    .await;
    assert_eq!(a.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_packets_do_not_stop_the_server() {
    use rand::Rng;
    let r = start(Vec::new()).await;
    add_web(&r.index);
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut rng = rand::rng();
    for i in 0..2000 {
        let len = rng.random_range(0..600);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Half of them look like a query header, so the parser goes further in.
        if i % 2 == 0 && bytes.len() >= 12 {
            bytes[2] = 0x01;
            bytes[3] = 0;
            bytes[4] = 0;
            bytes[5] = 1;
        }
        sock.send_to(&bytes, r.addr).await.expect("send");
    }
    // Garbage over TCP too: a length prefix promising more than is sent, then a close.
    if let Ok(mut t) = TcpStream::connect(r.addr).await {
        let _ = t.write_all(&[0x01, 0x00, 0xde, 0xad]).await;
    }
    let a = udp(
        r.addr,
        &query("web.default.svc.cluster.local.", RecordType::A, false)
            .to_vec()
            .expect("encode"),
    )
    .await;
    assert_eq!(addresses(&a), ["10.43.0.20"]);
    let a = tcp(
        r.addr,
        &query("web.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(addresses(&a), ["10.43.0.20"]);
}
