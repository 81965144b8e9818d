//! Requests and connections meant to take the server down: patches that grow an object
//! exponentially or past the object limit, connections that never finish a request, a watcher
//! that never reads, more watches than one user may hold. Each is refused or cut off within a
//! bound while kubectl keeps working, and the server's memory (VmRSS and VmHWM of the server
//! process) stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_testkit::{assert_status, eventually, http, kube_client, Server};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const CMS: &str = "/api/v1/namespaces/default/configmaps";
const MIB: usize = 1024 * 1024;

/// The API port's header-read timeout and TLS handshake timeout (crates/apiserver/src/conn.rs).
const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack for a loaded 2-core CI machine.
const MARGIN: Duration = Duration::from_secs(25);

fn proc_status_mib(s: &Server, field: &str) -> u64 {
    let pid = s.pid().expect("server running");
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"));
    kib / 1024
}

/// Resident memory of the server now, and its peak so far, in MiB.
fn rss(s: &Server) -> u64 {
    proc_status_mib(s, "VmRSS")
}

fn peak_rss(s: &Server) -> u64 {
    proc_status_mib(s, "VmHWM")
}

fn kubectl_answers(s: &Server) {
    let start = Instant::now();
    s.ok(&["get", "namespace", "default", "-o", "name"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "kubectl took {:?}",
        start.elapsed()
    );
}

#[test]
fn patch_bombs_and_oversized_results_are_refused_with_memory_bounded() {
    let s = Server::start(BIN);
    let before = rss(&s);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb"},
        "data": {"k": "x".repeat(100_000)}});
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(cm.to_string().as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 201, "{body}");
    let bomb = format!("{CMS}/bomb");

    // 30 copies of /data into itself: unbounded, 2^30 times 100 kB.
    let ops: Vec<Value> = (0..30)
        .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/x{i}")}))
        .collect();
    let ops = Value::Array(ops).to_string();
    let (code, body) = http(
        &s,
        "PATCH",
        &bomb,
        Some(ops.as_bytes()),
        "application/json-patch+json",
        true,
    );
    assert_status(
        code,
        &body,
        422,
        "Invalid",
        "Unable to complete the copy, the accumulated size increase of copy is",
    );

    // Results over 1.5 MiB from a body under the 3 MiB request limit.
    let big = json!({"data": {"big": "y".repeat(MIB + MIB / 2)}}).to_string();
    for ct in [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        let (code, body) = http(&s, "PATCH", &bomb, Some(big.as_bytes()), ct, true);
        assert_status(code, &body, 422, "Invalid", "request is too large");
    }
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb"},
        "data": {"big": "z".repeat(MIB + MIB / 2)}})
    .to_string();
    let (code, body) = http(
        &s,
        "PATCH",
        &format!("{bomb}?fieldManager=abuse"),
        Some(applied.as_bytes()),
        "application/apply-patch+yaml",
        true,
    );
    assert_status(code, &body, 422, "Invalid", "request is too large");
    let (code, body) = http(
        &s,
        "PATCH",
        &format!("{CMS}/new-one?fieldManager=abuse"),
        Some(applied.replace("\"bomb\"", "\"new-one\"").as_bytes()),
        "application/apply-patch+yaml",
        true,
    );
    assert_status(code, &body, 422, "Invalid", "request is too large");

    // Plain creates and updates are held to the same object limit as patch results: a
    // ConfigMap whose data is within its own 1 MiB limit but whose labels make it larger.
    let labels: serde_json::Map<String, Value> = (0..5_000)
        .map(|i| {
            (
                format!("example.com/label-{i:05}-{}", "k".repeat(40)),
                json!("v".repeat(63)),
            )
        })
        .collect();
    let big_cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big-one", "labels": labels},
        "data": {"big": "v".repeat(1_000_000)}})
    .to_string();
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(big_cm.as_bytes()),
        "application/json",
        true,
    );
    assert_status(code, &body, 422, "Invalid", "request is too large");
    let big_update = big_cm.replace("\"big-one\"", "\"bomb\"");
    let (code, body) = http(
        &s,
        "PUT",
        &bomb,
        Some(big_update.as_bytes()),
        "application/json",
        true,
    );
    assert_status(code, &body, 422, "Invalid", "request is too large");

    // An update whose body names no namespace takes the URL's, as upstream.
    let small = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bomb"},
        "data": {"k": "x".repeat(100_000)}})
    .to_string();
    let (code, body) = http(
        &s,
        "PUT",
        &bomb,
        Some(small.as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metadata"]["namespace"], "default", "{body}");

    // A body over 3 MiB is refused before it is parsed.
    let huge = json!({"data": {"big": "w".repeat(3 * MIB + 1)}}).to_string();
    let (code, body) = http(
        &s,
        "PATCH",
        &bomb,
        Some(huge.as_bytes()),
        "application/merge-patch+json",
        true,
    );
    assert_status(
        code,
        &body,
        413,
        "RequestEntityTooLarge",
        "limit is 3145728",
    );

    // Nothing was stored, and the server still answers.
    let got = s.get_json(&["configmap", "bomb"]);
    assert_eq!(
        got["data"].as_object().map(|d| d.len()),
        Some(1),
        "{}",
        got["data"].to_string().len()
    );
    kubectl_answers(&s);
    let peak = peak_rss(&s);
    eprintln!("patch bombs: RSS {before} MiB at start, peak {peak} MiB");
    assert!(
        peak < before + 200,
        "server peaked at {peak} MiB resident (started at {before} MiB)"
    );
}

fn tls_connector(s: &Server) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(s.ca_file()).expect("CA file") {
        roots.add(c.expect("CA certificate")).expect("CA root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

fn server_addr(s: &Server) -> SocketAddr {
    s.url()
        .trim_start_matches("https://")
        .parse()
        .expect("server address")
}

fn server_name() -> rustls_pki_types::ServerName<'static> {
    rustls_pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into())
}

/// Reads until the server closes the connection (EOF or reset); how long that took, or None
/// if it stayed open for `limit`.
async fn time_to_close<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    closed.ok().map(|_| start.elapsed())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn half_open_connections_are_closed_at_the_header_and_handshake_timeouts() {
    const TLS_CONNS: usize = 200;
    const TCP_CONNS: usize = 200;
    const SILENT_TLS_CONNS: usize = 50;
    let s = Server::start(BIN);
    let before = rss(&s);
    let addr = server_addr(&s);
    let connector = tls_connector(&s);
    let rt = runtime();
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tls_tasks = Vec::new();
    // Half a request head (the blank line that ends it never comes), or after the handshake
    // not a byte: no request head has begun.
    let half_head: &'static [u8] = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    let senders = std::iter::repeat_n(half_head, TLS_CONNS)
        .chain(std::iter::repeat_n(&b""[..], SILENT_TLS_CONNS));
    for sent in senders {
        let connector = connector.clone();
        let ready = ready.clone();
        tls_tasks.push(rt.spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut tls = connector
                .connect(server_name(), tcp)
                .await
                .expect("TLS handshake");
            tls.write_all(sent).await.expect("half a request");
            tls.flush().await.expect("flush");
            ready.fetch_add(1, Ordering::SeqCst);
            time_to_close(&mut tls, HEADER_TIMEOUT + MARGIN + MARGIN).await
        }));
    }
    let mut tcp_tasks = Vec::new();
    for _ in 0..TCP_CONNS {
        let ready = ready.clone();
        tcp_tasks.push(rt.spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            // The first bytes of a TLS record, and then nothing.
            tcp.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
            ready.fetch_add(1, Ordering::SeqCst);
            time_to_close(&mut tcp, HANDSHAKE_TIMEOUT + MARGIN + MARGIN).await
        }));
    }
    eventually(Duration::from_secs(60), "all connections opened", || {
        (ready.load(Ordering::SeqCst) == TLS_CONNS + SILENT_TLS_CONNS + TCP_CONNS).then_some(())
    });
    // While they are open, the server answers as usual and holds little memory for them.
    let opened = Instant::now();
    while opened.elapsed() < HANDSHAKE_TIMEOUT / 2 {
        kubectl_answers(&s);
        std::thread::sleep(Duration::from_millis(500));
    }
    let held = rss(&s);
    assert!(
        held < before + 150,
        "{held} MiB resident with {} half-open connections (started at {before} MiB)",
        TLS_CONNS + SILENT_TLS_CONNS + TCP_CONNS
    );
    for (what, tasks, limit) in [
        ("TLS", tls_tasks, HEADER_TIMEOUT + MARGIN),
        ("plain TCP", tcp_tasks, HANDSHAKE_TIMEOUT + MARGIN),
    ] {
        let mut slowest = Duration::ZERO;
        for t in tasks {
            let closed = rt.block_on(t).expect("task");
            let took =
                closed.unwrap_or_else(|| panic!("a half-open {what} connection stayed open"));
            slowest = slowest.max(took);
        }
        assert!(
            slowest <= limit,
            "the last half-open {what} connection was closed after {slowest:?}"
        );
    }
    kubectl_answers(&s);
}

/// The garbage collector watches every resource, ConfigMaps included, from some time after
/// start: without controllers, the watchers gauge counts only the test's watches.
const NO_CONTROLLERS: [&str; 2] = ["--disable-controllers", "all"];

/// The `apiserver_registered_watchers` gauge for ConfigMaps.
fn configmap_watchers(s: &Server) -> Option<u64> {
    let out = s.ok(&["get", "--raw", "/metrics"]);
    out.lines()
        .filter(|l| l.starts_with("apiserver_registered_watchers") && l.contains("configmaps"))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_watcher_that_never_reads_is_dropped_at_its_timeout() {
    const TIMEOUT_SECONDS: u64 = 10;
    let s = Server::start_with(BIN, &NO_CONTROLLERS);
    let before = rss(&s);
    let addr = server_addr(&s);
    let connector = tls_connector(&s);
    let token = s.admin_token();
    let rt = runtime();
    let mut watcher = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        // A small window: the server's writes block as soon as its buffers fill.
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = sock.connect(addr).await.expect("connect");
        let mut tls = connector
            .connect(server_name(), tcp)
            .await
            .expect("TLS handshake");
        let req = format!(
            "GET {CMS}?watch=true&timeoutSeconds={TIMEOUT_SECONDS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tls.write_all(req.as_bytes()).await.expect("watch request");
        tls.flush().await.expect("flush");
        tls
    });
    let started = Instant::now();
    eventually(
        Duration::from_secs(30),
        "the watch to be registered",
        || (configmap_watchers(&s) == Some(1)).then_some(()),
    );
    // Far more events than socket buffers hold: 300 writes of a 64 kB ConfigMap (19 MB).
    let written = rt.block_on(async {
        let cms: Api<ConfigMap> = Api::namespaced(kube_client(s.kubeconfig()).await, "default");
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "flood"}, "data": {"k": "v".repeat(64 * 1024)}
        }))
        .expect("configmap");
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        let mut bytes = 0usize;
        for i in 0..300 {
            let p = json!({"data": {"i": i.to_string()}});
            cms.patch("flood", &PatchParams::default(), &Patch::Merge(&p))
                .await
                .expect("patch");
            bytes += 64 * 1024;
        }
        bytes
    });
    let mid = rss(&s);
    // Dropped by the server: its gauge returns to zero soon after the timeout...
    eventually(
        Duration::from_secs(TIMEOUT_SECONDS) + MARGIN,
        "the watch to be dropped",
        || (configmap_watchers(&s) == Some(0)).then_some(()),
    );
    // ...and so is the connection, with most of the events never sent.
    let (closed, read) = rt.block_on(async {
        let start = Instant::now();
        let mut read = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Duration::from_secs(TIMEOUT_SECONDS) + MARGIN;
        let r = tokio::time::timeout(
            deadline.saturating_sub(started.elapsed()) + Duration::from_secs(5),
            async {
                loop {
                    match watcher.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
            },
        )
        .await;
        (r.ok().map(|_| start.elapsed()), read)
    });
    assert!(
        closed.is_some(),
        "the connection of a watcher that never read was still open {:?} after the watch began ({read} bytes read)",
        started.elapsed()
    );
    assert!(
        read < written / 2,
        "the server sent {read} of {written} bytes to a client that did not read"
    );
    assert!(
        mid < before + 150,
        "{mid} MiB resident while the watcher did not read (started at {before} MiB)"
    );
    kubectl_answers(&s);
}

#[test]
fn watches_beyond_the_per_user_limit_are_429() {
    let s = Server::start_with(
        BIN,
        &[&NO_CONTROLLERS[..], &["--max-watches-per-user", "3"]].concat(),
    );
    let watch_path = |timeout: u32| format!("{CMS}?watch=true&timeoutSeconds={timeout}");
    // Refused watches take no place and leave the watchers gauge alone.
    for _ in 0..5 {
        let (code, body) = http(
            &s,
            "GET",
            &format!("{CMS}?watch=true&labelSelector=a%20in%20(b"),
            None,
            "application/json",
            true,
        );
        assert_eq!(code, 400, "{body}");
    }
    let mut open: Vec<std::process::Child> = (0..3)
        .map(|_| {
            std::process::Command::new("curl")
                .args(["-s", "-N", "-o", "/dev/null", "--cacert"])
                .arg(s.ca_file())
                .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())])
                .arg(format!("{}{}", s.url(), watch_path(120)))
                .spawn()
                .expect("curl")
        })
        .collect();
    eventually(Duration::from_secs(30), "three open watches", || {
        (configmap_watchers(&s) == Some(3)).then_some(())
    });
    let (code, body) = http(&s, "GET", &watch_path(1), None, "application/json", true);
    assert_status(code, &body, 429, "TooManyRequests", "3 open watches");
    // Other requests of the same user, and kubectl's own watch after a place frees, work.
    kubectl_answers(&s);
    let mut first = open.remove(0);
    let _ = first.kill();
    let _ = first.wait();
    eventually(
        Duration::from_secs(30),
        "a watch place to come back",
        || {
            let (code, _) = http(&s, "GET", &watch_path(1), None, "application/json", true);
            (code == 200).then_some(())
        },
    );
    for mut c in open {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// On demand (BENCHMARKS.md, "Hardening: connections and watches"): the server's resident
/// memory with 1,000 half-open TLS connections, then with 1,000 idle watches (each on its own
/// connection), and after both are gone.
/// `cargo nextest run -p capstan --test abuse --run-ignored only memory_of` (or cargo test
/// ... -- --ignored --nocapture).
#[test]
#[ignore]
fn memory_of_half_open_connections_and_idle_watches() {
    use futures::StreamExt;
    const N: usize = 1000;
    const OPENING: usize = 50;
    let s = Server::start_with(
        BIN,
        &[&NO_CONTROLLERS[..], &["--max-watches-per-user", "2000"]].concat(),
    );
    let addr = server_addr(&s);
    let connector = tls_connector(&s);
    let token = s.admin_token();
    let rt = runtime();
    let settle = || std::thread::sleep(Duration::from_secs(2));
    settle();
    let idle = rss(&s);

    // Opened 50 at a time: a burst of 1,000 TLS handshakes at once would run into the 10 s
    // handshake timeout on 2 cores. The server closes each 15 s after its half request, so
    // memory is read as soon as the last is open.
    let opening = Instant::now();
    let half_open: Vec<_> = rt.block_on(
        futures::stream::iter((0..N).map(|_| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut tls = connector
                    .connect(server_name(), tcp)
                    .await
                    .expect("TLS handshake");
                tls.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .await
                    .expect("half a request");
                tls
            }
        }))
        .buffer_unordered(OPENING)
        .collect(),
    );
    let opened_in = opening.elapsed();
    let with_half_open = rss(&s);
    drop(half_open);
    settle();
    let after_half_open = rss(&s);

    let log_path = s.log_path();
    let watches: Vec<_> = rt.block_on(futures::stream::iter((0..N).map(|_| {
        let connector = connector.clone();
        let log_path = log_path.clone();
        let req = format!(
            "GET {CMS}?watch=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        async move {
            let opening_w = Instant::now();
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut tls = connector
                .connect(server_name(), tcp)
                .await
                .expect("TLS handshake");
            tls.write_all(req.as_bytes()).await.expect("watch");
            tls.flush().await.expect("flush");
            // The response head comes at once; the body waits for events.
            let mut head = vec![0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(60), tls.read(&mut head))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let status = String::from_utf8_lossy(&head[..n])
                .lines()
                .next()
                .unwrap_or("no answer")
                .to_string();
            if status.contains(" 200 ") {
                Some(tls)
            } else {
                let port = tls.get_ref().0.local_addr().map(|a| a.port()).unwrap_or(0);
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let mine: Vec<&str> = text.lines().filter(|l| l.contains(&format!(":{port}"))).collect();
                eprintln!(
                    "a watch from port {port} got {status:?} after {:?}:\n{}",
                    opening_w.elapsed(),
                    mine.join("\n")
                );
                None
            }
        }
    }))
    .buffer_unordered(OPENING)
    .collect());
    let answered = watches.iter().flatten().count() as u64;
    assert!(
        answered as usize >= N * 99 / 100,
        "only {answered} of {N} watches answered"
    );
    let mut seen = None;
    let all = capstan_testkit::poll(Duration::from_secs(120), || {
        seen = configmap_watchers(&s);
        seen >= Some(answered)
    });
    assert!(all, "{seen:?} of {answered} watches registered");
    settle();
    let with_watches = rss(&s);
    drop(watches);
    eventually(Duration::from_secs(60), "the watches to end", || {
        (configmap_watchers(&s) == Some(0)).then_some(())
    });
    settle();
    let after_watches = rss(&s);
    let per = |with: u64, base: u64| (with.saturating_sub(base) * 1024) as f64 / N as f64;
    println!(
        "{answered} of {N} watches answered. RSS MiB: idle {idle}; {N} half-open TLS connections (opened in {opened_in:?}) {with_half_open} (~{:.0} KiB each), after they closed {after_half_open}; {N} idle watches {with_watches} (~{:.0} KiB each), after they ended {after_watches}; peak {}",
        per(with_half_open, idle),
        per(with_watches, after_half_open),
        peak_rss(&s)
    );
}
