//! The proxier against the real `nft`, in a throwaway network namespace: every script the
//! generator writes must be accepted by the kernel, diffs must leave nothing behind, and a
//! restart must adopt the table. The ignored `programming_latency_at_scale` is the benchmark
//! recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_api::net::Cidr;
use capstan_proxy::fragment::Fragment;
use capstan_proxy::rules::{self, NodeContext};
use capstan_proxy::{Metrics, NftCommand, Proxier};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("cpx-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "creating netns {name}");
        Netns(name)
    }

    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .expect("nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn service(i: u32, node_port: bool, affinity: bool) -> Service {
    let mut s = Service::default();
    s.metadata.namespace = Some("bench".into());
    s.metadata.name = Some(format!("svc-{i}"));
    s.spec = Some(ServiceSpec {
        type_: Some(if node_port { "NodePort" } else { "ClusterIP" }.into()),
        cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            protocol: Some("TCP".into()),
            node_port: node_port.then_some(30000 + i as i32),
            ..Default::default()
        }]),
        session_affinity: affinity.then(|| "ClientIP".into()),
        session_affinity_config: affinity.then_some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(60),
            }),
        }),
        ..Default::default()
    });
    s
}

fn slice(i: u32, n: u32, generation: u32) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: (0..n)
            .map(|e| Endpoint {
                // A new generation replaces one endpoint (a pod rescheduled), as a rollout does.
                addresses: vec![format!(
                    "10.{}.{}.{}",
                    if e == 0 { 100 + generation % 100 } else { 100 },
                    i / 250,
                    e + 1 + (i % 20) * 10
                )],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                node_name: Some("n1".into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn node() -> NodeContext {
    NodeContext {
        node_name: "n1".into(),
        pod_cidr: Cidr::parse("10.42.0.0/24").ok(),
    }
}

fn key(i: u32) -> String {
    format!("bench/svc-{i}")
}

fn frag(svc: &Service, sl: Option<&EndpointSlice>) -> Fragment {
    rules::fragment(svc, sl, &node())
}

#[test]
fn the_kernel_accepts_every_sync_and_deleting_a_service_leaves_nothing_of_it() {
    let ns = Netns::new("t");
    let nf = Arc::new(NftCommand {
        netns: Some(ns.0.clone()),
    });
    let mut p = Proxier::new("cpxtest", nf.clone(), Metrics::default());
    let svcs: Vec<Service> = (0..5).map(|i| service(i, i % 2 == 0, i == 3)).collect();
    let all: HashMap<String, Fragment> = svcs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sl = slice(i as u32, 3, 0);
            (key(i as u32), frag(s, (i != 4).then_some(&sl)))
        })
        .collect();
    p.sync_all(all).expect("full sync");
    let listing = ns.nft(&["list", "table", "ip", "cpxtest"]);
    assert!(listing.contains("svc-bench/svc-0/tcp/80"), "{listing}");
    assert!(
        listing.contains("tcp . 30000 : goto ext-bench/svc-0/tcp/80"),
        "{listing}"
    );
    assert!(listing.contains("aff60-bench/svc-3/tcp/80__"), "{listing}");
    assert!(
        listing.contains("10.96.0.5 . tcp . 80 : goto reject-chain"),
        "{listing}"
    );

    // Endpoints move, a Service gains endpoints, one goes away entirely.
    let moved = slice(1, 2, 1);
    let s = p
        .sync_changed(vec![
            (key(1), frag(&svcs[1], Some(&moved))),
            (key(4), frag(&svcs[4], Some(&slice(4, 1, 0)))),
            (key(3), Fragment::default()),
        ])
        .expect("incremental sync");
    assert!(s.changes > 0);
    let listing = ns.nft(&["-j", "list", "table", "ip", "cpxtest"]);
    assert!(
        !listing.contains("bench/svc-3/"),
        "svc-3 left something: {listing}"
    );
    assert!(
        listing.contains("10.101."),
        "moved endpoints are programmed"
    );
    assert!(
        !listing.contains("\"10.100.0.11\""),
        "the replaced endpoint is gone"
    );

    // A restart adopts the table: same content, one transaction, nothing deleted first.
    let mut again = Proxier::new("cpxtest", nf.clone(), Metrics::default());
    let all: HashMap<String, Fragment> = [
        (key(0), frag(&svcs[0], Some(&slice(0, 3, 0)))),
        (key(1), frag(&svcs[1], Some(&moved))),
    ]
    .into_iter()
    .collect();
    again.sync_all(all).expect("adoption");
    let listing = ns.nft(&["list", "table", "ip", "cpxtest"]);
    assert!(!listing.contains("bench/svc-4/"), "{listing}");
    assert!(listing.contains("svc-bench/svc-1/tcp/80"), "{listing}");
    assert!(again.remove_table().expect("delete"));
    assert_eq!(ns.nft(&["list", "tables"]).trim(), "");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// 1,000 Services with 10 endpoints each (10,000 endpoints), then one EndpointSlice change at a
/// time: the time from the change to `nft` having committed it (the rule is in effect when
/// nft returns), generation and diff included.
#[test]
#[ignore = "benchmark: cargo test -p capstan-proxy --release --test netns -- --ignored --nocapture"]
fn programming_latency_at_scale() {
    let ns = Netns::new("b");
    let nf = Arc::new(NftCommand {
        netns: Some(ns.0.clone()),
    });
    let mut p = Proxier::new("cpxbench", nf, Metrics::default());
    let n = 1000u32;
    let svcs: Vec<Service> = (0..n).map(|i| service(i, i % 10 == 0, false)).collect();
    let started = Instant::now();
    let all: HashMap<String, Fragment> = svcs
        .iter()
        .enumerate()
        .map(|(i, s)| (key(i as u32), frag(s, Some(&slice(i as u32, 10, 0)))))
        .collect();
    let generated = started.elapsed();
    let full = p.sync_all(all).expect("full sync");
    let full_took = started.elapsed();
    let rules = ns.nft(&["list", "table", "ip", "cpxbench"]).lines().count();
    println!(
        "full sync of {n} services / {} endpoints: generate {:?}, total {:?}, {} statements, {} lines listed",
        n * 10,
        generated,
        full_took,
        full.changes,
        rules
    );
    let mut lat = Vec::new();
    for round in 0..300u32 {
        let i = (round * 37) % n;
        let t = Instant::now();
        let f = frag(&svcs[i as usize], Some(&slice(i, 10, 1 + round % 98)));
        let s = p.sync_changed(vec![(key(i), f)]).expect("sync");
        assert!(s.changes > 0);
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "one EndpointSlice change (an endpoint replaced) → rule committed, 300 changes: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    // A burst: 100 Services changed at once, one transaction.
    let t = Instant::now();
    let changed: Vec<(String, Fragment)> = (0..100u32)
        .map(|i| {
            (
                key(i * 7),
                frag(&svcs[(i * 7) as usize], Some(&slice(i * 7, 10, 500))),
            )
        })
        .collect();
    let s = p.sync_changed(changed).expect("burst");
    println!(
        "100 services changed in one sync: {:?} ({} statements)",
        t.elapsed(),
        s.changes
    );
    assert!(p.remove_table().expect("delete"));
}
