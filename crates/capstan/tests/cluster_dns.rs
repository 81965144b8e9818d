//! Cluster DNS served by `capstan server`, asked with the real `dig` (bind9-dnsutils): Service
//! A and SRV records, a headless Service and its endpoints' names, ExternalName as CNAME,
//! NXDOMAIN with the SOA, TCP, a name outside the cluster forwarded to a fake resolver on
//! loopback, Services appearing and disappearing without a restart, and the kube-dns Service,
//! EndpointSlice and ConfigMap the server publishes. No containers are needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use capstan_testkit::dns::{dns_endpoint, fake_upstream, free_dns_port};
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

struct Dig {
    server: String,
    port: u16,
}

/// One `dig` answer: status, answer and authority lines.
#[derive(Debug)]
struct Reply {
    status: String,
    answers: Vec<String>,
    authority: Vec<String>,
    truncated: bool,
}

impl Reply {
    /// The last field of each answer line (the address, target or CNAME).
    fn data(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .answers
            .iter()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect();
        v.sort();
        v
    }
}

impl Dig {
    fn ask(&self, name: &str, qtype: &str, extra: &[&str]) -> Reply {
        let out = Command::new("dig")
            .arg(format!("@{}", self.server))
            .args(["-p", &self.port.to_string()])
            .args([
                "+tries=1",
                "+time=3",
                "+noall",
                "+comments",
                "+answer",
                "+authority",
            ])
            .args(extra)
            .arg(name)
            .arg(qtype)
            .output()
            .expect("dig (apt-get install bind9-dnsutils)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or("NO ANSWER")
            .to_string();
        let mut answers = Vec::new();
        let mut authority = Vec::new();
        let mut section = "";
        for line in text.lines() {
            if line.starts_with(";; ANSWER SECTION") {
                section = "answer";
            } else if line.starts_with(";; AUTHORITY SECTION") {
                section = "authority";
            } else if line.starts_with(';') || line.trim().is_empty() {
                continue;
            } else if section == "answer" {
                answers.push(line.to_string());
            } else if section == "authority" {
                authority.push(line.to_string());
            }
        }
        let truncated = text.lines().any(|l| {
            l.starts_with(";; flags:") && l.split(';').nth(2).is_some_and(|f| f.contains(" tc"))
        });
        Reply {
            status,
            answers,
            authority,
            truncated,
        }
    }
}

#[test]
fn cluster_dns_answers_services_endpoints_and_forwards_the_rest() {
    let port = free_dns_port();
    let (upstream, upstream_seen) = fake_upstream();
    let s = Server::start_with(
        BIN,
        &[
            "--cluster-dns-port",
            &port.to_string(),
            "--dns-upstream",
            &format!("127.0.0.1:{upstream}"),
            "--service-cidr",
            "10.77.0.0/16",
        ],
    );
    let dig = Dig {
        server: dns_endpoint(&s),
        port,
    };

    // Published: kube-dns at the 10th address of the service CIDR, without a selector,
    // its EndpointSlice on the listening port, and the settings joined agents read.
    let svc = s.get_json(&["-n", "kube-system", "service", "kube-dns"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.77.0.10");
    assert!(svc["spec"].get("selector").is_none());
    assert_eq!(svc["metadata"]["labels"]["k8s-app"], "kube-dns");
    let ports: Vec<_> = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].clone(), p["port"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    let slice = s.get_json(&["-n", "kube-system", "endpointslice", "kube-dns-capstan"]);
    assert_eq!(slice["ports"][0]["port"], port);
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kube-dns"
    );
    let cm = s.get_json(&["-n", "kube-system", "configmap", "cluster-dns"]);
    assert_eq!(cm["data"]["clusterDNS"], "10.77.0.10");
    assert_eq!(cm["data"]["clusterDomain"], "cluster.local");

    // Services that exist from the start.
    let r = dig.ask("kubernetes.default.svc.cluster.local", "A", &[]);
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert_eq!(r.data(), ["10.77.0.1"]);
    let r = dig.ask("kube-dns.kube-system.svc.cluster.local", "A", &["+tcp"]);
    assert_eq!(r.data(), ["10.77.0.10"], "over TCP: {r:?}");
    // Reverse names of cluster addresses (dig -x asks 10.0.77.10.in-addr.arpa PTR).
    let r = dig.ask("10.0.77.10.in-addr.arpa", "PTR", &[]);
    assert_eq!(
        r.data(),
        ["kube-dns.kube-system.svc.cluster.local."],
        "{r:?}"
    );

    // NXDOMAIN with the zone's SOA, as CoreDNS answers.
    let r = dig.ask("nope.default.svc.cluster.local", "A", &[]);
    assert_eq!(r.status, "NXDOMAIN", "{r:?}");
    assert_eq!(r.authority.len(), 1, "{r:?}");
    assert!(
        r.authority[0].contains("SOA") && r.authority[0].contains("ns.dns.cluster.local."),
        "{r:?}"
    );
    // An existing name asked for another type: NODATA (NOERROR, no answer, the SOA).
    let r = dig.ask("kubernetes.default.svc.cluster.local", "AAAA", &[]);
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert!(
        r.answers.is_empty() && r.authority[0].contains("SOA"),
        "{r:?}"
    );

    // A new Service resolves without a restart, at once (the informer's watch event).
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    let created = Instant::now();
    let ip = s
        .ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .trim()
        .to_string();
    let r = eventually(Duration::from_secs(5), "web resolving", || {
        let r = dig.ask("web.default.svc.cluster.local", "A", &[]);
        (r.status == "NOERROR" && !r.answers.is_empty()).then_some(r)
    });
    let took = created.elapsed();
    eprintln!("a new Service resolved {took:?} after it was created (including kubectl get)");
    assert_eq!(r.data(), vec![ip.clone()]);
    // Case does not matter; the name as asked is echoed.
    let r = dig.ask("WEB.Default.SVC.cluster.LOCAL", "A", &[]);
    assert_eq!(r.data(), vec![ip.clone()]);

    // SRV of its named port (kubectl names the port 80-8080).
    let r = dig.ask("_80-8080._tcp.web.default.svc.cluster.local", "SRV", &[]);
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert_eq!(r.answers.len(), 1, "{r:?}");
    assert!(
        r.answers[0]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .ends_with("IN SRV 0 100 80 web.default.svc.cluster.local."),
        "{r:?}"
    );

    // A headless Service with hand-written endpoints: ready ones are its A records; a pod's
    // hostname (StatefulSet pods: hostname + subdomain) names a single endpoint.
    s.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-manual
  labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: test}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [10.42.0.7]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.42.0.8]
  hostname: db-1
  conditions: {ready: true}
- addresses: [10.42.0.9]
  hostname: db-2
  conditions: {ready: false}
"#,
    );
    let r = eventually(Duration::from_secs(5), "the headless Service", || {
        let r = dig.ask("db.default.svc.cluster.local", "A", &[]);
        (r.answers.len() == 2).then_some(r)
    });
    assert_eq!(r.data(), ["10.42.0.7", "10.42.0.8"]);
    let r = dig.ask("db-0.db.default.svc.cluster.local", "A", &[]);
    assert_eq!(r.data(), ["10.42.0.7"]);
    assert_eq!(
        dig.ask("db-2.db.default.svc.cluster.local", "A", &[])
            .status,
        "NXDOMAIN",
        "not ready: not published"
    );
    let r = dig.ask("_pg._tcp.db.default.svc.cluster.local", "SRV", &[]);
    assert_eq!(
        r.data(),
        [
            "db-0.db.default.svc.cluster.local.",
            "db-1.db.default.svc.cluster.local."
        ],
        "{r:?}"
    );

    // ExternalName: a CNAME.
    s.ok(&[
        "create",
        "service",
        "externalname",
        "search",
        "--external-name",
        "search.example.com",
    ]);
    let r = eventually(Duration::from_secs(5), "the ExternalName Service", || {
        let r = dig.ask("search.default.svc.cluster.local", "A", &[]);
        (!r.answers.is_empty()).then_some(r)
    });
    assert!(r.answers[0].contains("CNAME"), "{r:?}");
    assert_eq!(r.data(), ["search.example.com."]);

    // Pod names spell their address.
    let r = dig.ask("10-42-3-4.default.pod.cluster.local", "A", &[]);
    assert_eq!(r.data(), ["10.42.3.4"]);

    // Outside the cluster domain: forwarded to the (fake) host resolver, over UDP and TCP
    // from the client's side.
    let before = upstream_seen.load(Ordering::SeqCst);
    let r = dig.ask("www.example.test", "A", &[]);
    assert_eq!(r.status, "NOERROR", "{r:?}");
    assert_eq!(r.data(), ["192.0.2.99"]);
    assert!(upstream_seen.load(Ordering::SeqCst) > before);

    // Deleted: NXDOMAIN again, without a restart.
    s.ok(&["delete", "service", "web"]);
    eventually(Duration::from_secs(5), "web gone", || {
        (dig.ask("web.default.svc.cluster.local", "A", &[]).status == "NXDOMAIN").then_some(())
    });

    // Counted on the server's /metrics.
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for needle in [
        "dns_requests_total{qtype=\"A\",rcode=\"NXDOMAIN\",proto=\"udp\"}",
        "dns_requests_total{qtype=\"A\",rcode=\"NOERROR\",proto=\"tcp\"}",
        "dns_forwarded_requests_total{result=\"ok\"}",
        "dns_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from /metrics");
    }
}

#[test]
fn a_big_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let port = free_dns_port();
    let s = Server::start_with(BIN, &["--cluster-dns-port", &port.to_string()]);
    let dig = Dig {
        server: dns_endpoint(&s),
        port,
    };
    let endpoints: String = (1..=60)
        .map(|i| format!("- addresses: [10.42.9.{i}]\n  conditions: {{ready: true}}\n"))
        .collect();
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: many}}
spec: {{clusterIP: None}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: many-1
  labels: {{kubernetes.io/service-name: many, endpointslice.kubernetes.io/managed-by: test}}
addressType: IPv4
endpoints:
{endpoints}"#
    ));
    let r = eventually(Duration::from_secs(5), "60 endpoints over TCP", || {
        let r = dig.ask("many.default.svc.cluster.local", "A", &["+tcp"]);
        (r.answers.len() == 60).then_some(r)
    });
    assert!(!r.truncated);
    // Without EDNS a UDP answer holds 512 bytes: 60 A records do not fit.
    let r = dig.ask(
        "many.default.svc.cluster.local",
        "A",
        &["+noedns", "+ignore"],
    );
    assert!(r.truncated, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    // dig itself retries over TCP on TC and gets everything.
    let r = dig.ask("many.default.svc.cluster.local", "A", &["+noedns"]);
    assert_eq!(r.answers.len(), 60);
}

#[test]
fn an_invalid_cluster_domain_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(BIN)
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
        .args(["--https-listen-port", &free_dns_port().to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--cluster-domain", "bad..domain"])
        .output()
        .expect("capstan server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cluster-domain") && err.contains("bad..domain"),
        "{err}"
    );
}
