//! Stream benchmarks (on demand, not in CI), each against a baseline on the same node in the
//! same run, alternating so both see the same load:
//! - `kubectl exec pod -- true` round trips against `ctr tasks exec` of the same command in the
//!   same container (containerd's own client; crictl is not installed on these machines);
//! - a 1 GiB HTTP response (busybox httpd, a CGI streaming zeros) through `kubectl
//!   port-forward` against the same response read straight from the pod IP.
//!
//! ```sh
//! cargo build --release -p capstan
//! CAPSTAN_BENCH_BIN=/var/tmp/wt-streams-target/release/capstan \
//!   cargo test -p capstan --test streams_bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a failed step is the test failing

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capstan_testkit::agent::BUSYBOX;
use capstan_testkit::{eventually, Server};

const ROUNDS: usize = 40;
/// busybox httpd on port 9000 with a CGI streaming zeros for as long as the client reads.
const ZERO: &str = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: application/octet-stream\\necho\\nexec cat /dev/zero\\n' > /www/cgi-bin/zero && chmod +x /www/cgi-bin/zero && exec httpd -f -p 9000 -h /www";
const GIB: u64 = 1 << 30;

fn bin() -> String {
    std::env::var("CAPSTAN_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_capstan").into())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let (p50, p99) = (percentile(&v, 50.0), percentile(&v, 99.0));
    println!(
        "{name}: n={} p50={:.1} ms p99={:.1} ms min={:.1} ms max={:.1} ms",
        v.len(),
        p50 * 1000.0,
        p99 * 1000.0,
        v[0] * 1000.0,
        v[v.len() - 1] * 1000.0
    );
    (p50, p99)
}

fn timed(mut c: Command) -> f64 {
    let t = Instant::now();
    let out = c.output().expect("run");
    assert!(out.status.success(), "{c:?}: {out:?}");
    t.elapsed().as_secs_f64()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Reads `n` bytes from `addr`; the seconds it took.
fn read_stream(addr: (&str, u16), n: u64) -> Option<f64> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    std::io::Write::write_all(&mut s, b"GET /cgi-bin/zero HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < n {
        let k = s.read(&mut buf).ok()?;
        if k == 0 {
            return None;
        }
        got += k as u64;
    }
    Some(t.elapsed().as_secs_f64())
}

#[test]
#[ignore = "benchmark: run on demand"]
fn exec_round_trips_and_port_forward_throughput() {
    let s = Server::start_with_agent(&bin(), &[]);
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bench\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [sh, -c, {ZERO:?}]\n"
    ));
    s.wait_pod_field(
        "bench",
        "{.status.phase}",
        "Running",
        Duration::from_secs(90),
    );
    let sock = s.data_dir().join("agent/containerd/run/containerd.sock");
    let ctr = |args: &[&str]| {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&sock).args(["-n", "k8s.io"]).args(args);
        c
    };
    let ids = ctr(&[
        "containers",
        "ls",
        "-q",
        "labels.\"io.kubernetes.pod.name\"==bench,labels.\"io.kubernetes.container.name\"==main",
    ])
    .output()
    .expect("ctr");
    let id = String::from_utf8_lossy(&ids.stdout)
        .lines()
        .next()
        .expect("the container's id")
        .to_string();

    // exec round trips.
    let (mut kubectl, mut floor) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let mut k = Command::new("kubectl");
        k.arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(["exec", "bench", "--", "true"]);
        let c = ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            &format!("bench-{i}"),
            &id,
            "true",
        ]);
        kubectl.push(timed(k));
        floor.push(timed(c));
    }
    let gets: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let mut g = Command::new("kubectl");
            g.arg("--kubeconfig")
                .arg(s.kubeconfig())
                .args(["get", "pod", "bench", "-o", "name"]);
            timed(g)
        })
        .collect();
    let (k50, k99) = summary("kubectl exec bench -- true", kubectl);
    let (f50, f99) = summary("ctr tasks exec (same container)", floor);
    summary("kubectl get pod (kubectl's own fixed cost)", gets);
    println!("exec ratio: p50 {:.2}x, p99 {:.2}x", k50 / f50, k99 / f99);

    // port-forward throughput: 1 GiB, three rounds each, alternating.
    let ip = s.jsonpath(&["pod", "bench"], "{.status.podIP}");
    let port = free_port();
    let mut pf = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["port-forward", "pod/bench", &format!("{port}:9000")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    eventually(Duration::from_secs(30), "the forward listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let (mut through, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = eventually(
            Duration::from_secs(120),
            "1 GiB through port-forward",
            || read_stream(("127.0.0.1", port), GIB),
        );
        let d = eventually(Duration::from_secs(120), "1 GiB from the pod IP", || {
            read_stream((ip.as_str(), 9000), GIB)
        });
        through.push(GIB as f64 / t / 1e6);
        direct.push(GIB as f64 / d / 1e6);
    }
    let _ = pf.kill();
    let _ = pf.wait();
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    let (t, d) = (median(through.clone()), median(direct.clone()));
    println!("port-forward 1 GiB: {through:.0?} MB/s, median {t:.0} MB/s");
    println!("pod IP directly 1 GiB: {direct:.0?} MB/s, median {d:.0} MB/s");
    println!("port-forward ratio: {:.2}x of direct", t / d);
}
