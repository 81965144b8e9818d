//! Cluster DNS benchmark (on demand): queries/s and latency percentiles with dnsperf (Debian's
//! `dnsperf`) for Service names against a server holding 1,000 Services, and the idle memory
//! cluster DNS adds (a server with `--cluster-dns-port 0` beside one with DNS). See BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release -p capstan
//! CAPSTAN_BENCH_BIN=/var/tmp/wt-dns-target/release/capstan \
//!   cargo test -p capstan --test cluster_dns_bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::process::Command;
use std::time::Duration;

use capstan_testkit::dns::{dns_endpoint, free_dns_port};
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const SERVICES: usize = 1000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn resolves(ip: &str, port: u16, name: &str) -> bool {
    let out = Command::new("dig")
        .args([
            &format!("@{ip}"),
            "-p",
            &port.to_string(),
            "+short",
            "+tries=1",
            "+time=2",
            name,
        ])
        .output()
        .expect("dig");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs dnsperf for `seconds` with `clients` clients and `outstanding` queries in flight;
/// returns (queries/s, lost, latencies in s).
fn dnsperf(
    ip: &str,
    port: u16,
    file: &std::path::Path,
    seconds: u32,
    clients: u32,
    outstanding: u32,
) -> (f64, u64, Vec<f64>) {
    let out = Command::new("dnsperf")
        .args(["-s", ip, "-p", &port.to_string(), "-d"])
        .arg(file)
        .args([
            "-l",
            &seconds.to_string(),
            "-c",
            &clients.to_string(),
            "-q",
            &outstanding.to_string(),
            "-v",
        ])
        .output()
        .expect("dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no queries/s in dnsperf's output:\n{text}"));
    let lost = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Verbose lines: "> NOERROR name A 0.000123" (the last field is the latency in seconds).
    let mut lat: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    (qps, lost, lat)
}

#[test]
#[ignore = "benchmark: run on demand (see BENCHMARKS.md)"]
fn cluster_dns_queries_per_second_with_1000_services() {
    let bin = std::env::var("CAPSTAN_BENCH_BIN").unwrap_or_else(|_| BIN.to_string());
    let port = free_dns_port();
    let off = Server::start_with(&bin, &["--cluster-dns-port", "0"]);
    let on = Server::start_with(&bin, &["--cluster-dns-port", &port.to_string()]);
    let ip = dns_endpoint(&on);
    // Both idle for the same time after start (memory settles after the first lists).
    std::thread::sleep(Duration::from_secs(5));
    let (rss_off, rss_on) = (
        rss_kib(off.pid().expect("pid")),
        rss_kib(on.pid().expect("pid")),
    );

    let mut yaml = String::new();
    for i in 0..SERVICES {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
        ));
    }
    on.ok_stdin(&["apply", "-f", "-"], &yaml);
    off.ok_stdin(&["apply", "-f", "-"], &yaml);
    let last = format!("svc-{}.default.svc.cluster.local", SERVICES - 1);
    eventually(
        Duration::from_secs(60),
        "the last Service resolving",
        || resolves(&ip, port, &last).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let rss_loaded = rss_kib(on.pid().expect("pid"));
    let rss_loaded_off = rss_kib(off.pid().expect("pid"));
    drop(off);

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("queries.txt");
    let mut queries = String::new();
    for i in 0..SERVICES {
        queries.push_str(&format!("svc-{i}.default.svc.cluster.local A\n"));
        if i % 10 == 0 {
            queries.push_str(&format!(
                "_http._tcp.svc-{i}.default.svc.cluster.local SRV\n"
            ));
            queries.push_str(&format!("missing-{i}.default.svc.cluster.local A\n"));
        }
    }
    std::fs::write(&file, queries).expect("write");
    // One query in flight (each query's own latency), then 8 clients with 64 in flight (the
    // most it answers; latency then includes queueing).
    for (clients, outstanding) in [(1, 1), (8, 64)] {
        let (qps, lost, lat) = dnsperf(&ip, port, &file, 10, clients, outstanding);
        assert!(!lat.is_empty());
        eprintln!(
            "dnsperf -c {clients} -q {outstanding}, 10 s: {qps:.0} queries/s, lost {lost}, latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} answers)",
            percentile(&lat, 0.50) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            lat[lat.len() - 1] * 1e3,
            lat.len()
        );
    }
    let rss_after = rss_kib(on.pid().expect("pid"));
    eprintln!(
        "server RSS: DNS off {rss_off} KiB, DNS on {rss_on} KiB (+{} KiB) idle and empty; \
         with {SERVICES} Services: DNS off {rss_loaded_off} KiB, DNS on {rss_loaded} KiB (+{} KiB); \
         after the dnsperf runs {rss_after} KiB",
        rss_on as i64 - rss_off as i64,
        rss_loaded as i64 - rss_loaded_off as i64
    );
}
