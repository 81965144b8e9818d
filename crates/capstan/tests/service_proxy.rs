//! The service proxy on real containers and the real nft: ClusterIP and NodePort spread over
//! every pod, pods reaching a Service and themselves through it (hairpin), ClientIP affinity,
//! an endpoint-less Service refusing at once, a scale-down under load losing no request,
//! a deleted Service leaving nothing in the table, and the table's life cycle (clean stop,
//! `--cleanup`, adoption after a crash).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_testkit::agent::{BUSYBOX, HTTPD};
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

fn table(s: &Server) -> String {
    s.agent.as_ref().expect("agent").proxy_table.clone()
}

/// `nft -j list table ip <table>`, or None when there is no such table.
fn nft_table(name: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "ip", name])
        .output()
        .expect("nft");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GET / over HTTP/1.0; the body when the answer is 200, else the error.
fn get(addr: &str) -> Result<String, std::io::Error> {
    let addr: SocketAddr = addr.parse().expect("address");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.") || !out.lines().next().unwrap_or("").contains(" 200") {
        return Err(std::io::Error::other(format!("bad answer: {out:?}")));
    }
    Ok(out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string())
}

fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      terminationGracePeriodSeconds: 10\n      containers:\n      - name: web\n        image: {HTTPD}\n        lifecycle:\n          preStop:\n            exec: {{command: [sleep, '3']}}\n"
    )
}

fn service(name: &str, app: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {app}}}\n  ports:\n  - port: 80\n    targetPort: 80\n{extra_spec}"
    )
}

fn cluster_ip(s: &Server, svc: &str) -> String {
    s.jsonpath(&["service", svc], "{.spec.clusterIP}")
}

/// Waits until the Service has `n` ready endpoints.
fn wait_ready_endpoints(s: &Server, svc: &str, n: usize) {
    eventually(
        Duration::from_secs(90),
        &format!("{n} ready endpoints of {svc}"),
        || {
            let ready = s.jsonpath(
                &[
                    "endpointslices",
                    "-l",
                    &format!("kubernetes.io/service-name={svc}"),
                ],
                "{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            );
            (ready.split_whitespace().count() == n).then_some(())
        },
    );
}

fn node_ip(s: &Server) -> String {
    s.jsonpath(
        &["node", &s.node_name()],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    )
}

/// A pod that runs `script` once; its logs once it finished.
fn run_client_pod(s: &Server, name: &str, labels: &str, script: &str) -> String {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, {script:?}]\n"
    );
    s.apply(&manifest);
    eventually(
        Duration::from_secs(90),
        &format!("pod {name} to finish"),
        || {
            let phase = s.jsonpath(&["pod", name], "{.status.phase}");
            (phase == "Succeeded" || phase == "Failed").then_some(())
        },
    );
    s.ok(&["logs", name])
}

#[test]
fn cluster_ip_and_node_port_reach_every_pod_from_the_host_and_from_pods() {
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&deployment("web", 3));
    s.apply(&service("web", "web", "  type: NodePort\n"));
    s.apply(&service(
        "sticky",
        "web",
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}\n",
    ));
    wait_ready_endpoints(&s, "web", 3);
    let ip = cluster_ip(&s, "web");
    let range = s.agent.as_ref().unwrap().service_cidr.clone();
    let prefix: String = range.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "{ip} is in this cluster's {range}"
    );

    // From the host: the ClusterIP spreads over all three pods.
    let target = format!("{ip}:80");
    eventually(Duration::from_secs(30), "the ClusterIP to answer", || {
        get(&target).ok()
    });
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        let body = get(&target).expect("every request through the ClusterIP answers");
        seen.insert(body);
    }
    let pods: BTreeSet<String> = s
        .jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}")
        .split_whitespace()
        .map(|p| format!("hello from {p}"))
        .collect();
    assert_eq!(seen, pods, "60 requests reach each of the 3 pods");

    // The NodePort answers on the node's address.
    let node_port = s.jsonpath(&["service", "web"], "{.spec.ports[0].nodePort}");
    let np = format!("{}:{node_port}", node_ip(&s));
    let body = eventually(Duration::from_secs(30), "the NodePort to answer", || {
        get(&np).ok()
    });
    assert!(body.starts_with("hello from web-"), "{body}");

    // A LoadBalancer gets the node's address as its ingress and answers there. Its port is
    // the last of this cluster's NodePort range: test clusters share the host's address.
    let range = s.agent.as_ref().unwrap().node_port_range.clone();
    let lb_port = range.split('-').nth(1).unwrap().to_string();
    s.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: lb\nspec:\n  type: LoadBalancer\n  selector: {{app: web}}\n  ports:\n  - port: {lb_port}\n    targetPort: 80\n"
    ));
    let node_addr = node_ip(&s);
    eventually(Duration::from_secs(30), "the load-balancer ingress", || {
        (s.jsonpath(&["service", "lb"], "{.status.loadBalancer.ingress[0].ip}") == node_addr)
            .then_some(())
    });
    let lb = format!("{node_addr}:{lb_port}");
    let body = eventually(
        Duration::from_secs(30),
        "the LoadBalancer to answer",
        || get(&lb).ok(),
    );
    assert!(body.starts_with("hello from web-"), "{body}");

    // ClientIP affinity: one client, one pod.
    wait_ready_endpoints(&s, "sticky", 3);
    let sticky = format!("{}:80", cluster_ip(&s, "sticky"));
    eventually(
        Duration::from_secs(30),
        "the sticky Service to answer",
        || get(&sticky).ok(),
    );
    let picked: BTreeSet<String> = (0..20)
        .map(|_| get(&sticky).expect("sticky answers"))
        .collect();
    assert_eq!(
        picked.len(),
        1,
        "ClientIP affinity sends one client to one pod: {picked:?}"
    );

    // From a pod, by ClusterIP (busybox wget -T crashes: `timeout` bounds each try).
    let logs = run_client_pod(
        &s,
        "client",
        "app: client",
        &format!("for i in $(seq 1 30); do timeout 5 wget -q -O- http://{ip}/ && exit 0; sleep 1; done; exit 1"),
    );
    assert!(logs.contains("hello from web-"), "{logs}");

    // Hairpin: a pod reaching itself through its own Service.
    s.apply(&service("self", "self", ""));
    let self_ip = cluster_ip(&s, "self");
    let logs = run_client_pod(
        &s,
        "self",
        "app: self",
        &format!(
            "mkdir -p /www && echo hello from myself > /www/index.html && httpd -p 80 -h /www && \
             for i in $(seq 1 60); do timeout 5 wget -q -O- http://{self_ip}/ && exit 0; sleep 1; done; exit 1"
        ),
    );
    assert!(logs.contains("hello from myself"), "hairpin: {logs}");

    // Deleting the Service removes every rule of it.
    let t = table(&s);
    assert!(nft_table(&t).unwrap_or_default().contains("default/web/"));
    s.ok(&["delete", "service", "web"]);
    eventually(Duration::from_secs(20), "the Service's rules to go", || {
        let listing = nft_table(&t).expect("the table stays");
        (!listing.contains("default/web/") && !listing.contains(&format!("\"{ip}\""))).then_some(())
    });
    assert!(nft_table(&t)
        .unwrap_or_default()
        .contains("default/sticky/"));
}

#[test]
fn no_endpoints_refuse_at_once_scale_down_loses_nothing_and_the_table_lives_with_the_agent() {
    // Listening on every address, so that the `kubernetes` Service's endpoint (the host's
    // address) reaches the API server.
    let mut s = Server::start_with_agent(BIN, &["--bind-address", "0.0.0.0"]);
    let t = table(&s);

    // The `kubernetes` Service reaches the API server (its EndpointSlice is the server's own).
    let api = format!("{}:443", s.agent.as_ref().unwrap().service_ip(1));
    eventually(
        Duration::from_secs(30),
        "the kubernetes Service to connect",
        || TcpStream::connect_timeout(&api.parse().unwrap(), Duration::from_secs(2)).ok(),
    );

    // A Service without endpoints refuses connections at once (RST), it does not hang.
    s.apply(&service("nobody", "nobody", ""));
    let nobody_ip = cluster_ip(&s, "nobody");
    let empty = format!("{nobody_ip}:80");
    eventually(
        Duration::from_secs(30),
        "the empty Service to be programmed",
        || {
            nft_table(&t)
                .filter(|l| l.contains(&format!("\"{nobody_ip}\"")))
                .map(|_| ())
        },
    );
    let started = Instant::now();
    let err = get(&empty).expect_err("nothing answers");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused in {:?}",
        started.elapsed()
    );

    // Scale-down under a loop of requests: terminating pods leave the Service first.
    s.apply(&deployment("web", 3));
    s.apply(&service("web", "web", ""));
    wait_ready_endpoints(&s, "web", 3);
    let target = format!("{}:80", cluster_ip(&s, "web"));
    eventually(Duration::from_secs(30), "the ClusterIP to answer", || {
        get(&target).ok()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(parking_lot_free::Errors::default());
    let looper = {
        let (stop, ok, failed, errors, target) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            errors.clone(),
            target.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match get(&target) {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        errors.push(e.to_string());
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
    };
    s.ok(&["scale", "deployment", "web", "--replicas=1"]);
    eventually(Duration::from_secs(90), "2 pods to be gone", || {
        let names = s.jsonpath(&["pods", "-l", "app=web"], "{.items[*].metadata.name}");
        (names.split_whitespace().count() == 1).then_some(())
    });
    let before = ok.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(10),
        "more requests after the scale-down",
        || (ok.load(Ordering::SeqCst) > before + 20).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    looper.join().unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "{} requests answered; failures: {:?}",
        ok.load(Ordering::SeqCst),
        errors.take()
    );

    // A crash leaves the table (and the Service keeps working); a restart adopts it.
    s.kill9();
    assert!(nft_table(&t).is_some(), "a crash leaves the table");
    get(&target).expect("Services keep working while the agent is down");
    s.start_again();
    s.wait_node_ready();
    eventually(
        Duration::from_secs(30),
        "the adopted table to serve",
        || get(&target).ok(),
    );
    assert!(s.log().contains("service proxy synced"), "{}", s.log());

    // A clean stop removes the table; --cleanup removes one a crash left.
    s.stop();
    assert!(nft_table(&t).is_none(), "SIGTERM removes the table");
    s.start_again();
    s.wait_node_ready();
    eventually(Duration::from_secs(30), "the table to be back", || {
        nft_table(&t)
    });
    s.kill9();
    let bridge = s
        .agent
        .as_ref()
        .map(|a| a.bridge.clone())
        .unwrap_or_default();
    let masquerade = capstan_testkit::agent::masquerade_table(&bridge);
    assert!(
        nft_table(&masquerade).is_some(),
        "the pods' masquerade table"
    );
    let out = Command::new(BIN)
        .args([
            "agent",
            "--cleanup",
            "--proxy-table",
            &t,
            "--cni-bridge",
            &bridge,
        ])
        .output()
        .expect("capstan agent --cleanup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(nft_table(&t).is_none(), "--cleanup removes the table");
    assert!(
        nft_table(&masquerade).is_none(),
        "--cleanup removes the masquerade table"
    );
}

/// A tiny shared error list (std only).
mod parking_lot_free {
    #[derive(Default)]
    pub struct Errors(std::sync::Mutex<Vec<String>>);

    impl Errors {
        pub fn push(&self, e: String) {
            if let Ok(mut v) = self.0.lock() {
                if v.len() < 10 {
                    v.push(e);
                }
            }
        }

        pub fn take(&self) -> Vec<String> {
            self.0
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default()
        }
    }
}

/// Answers every datagram on `addr` with `reply`, from a thread that lives as long as the test.
fn udp_echo(ip: &str, reply: &'static [u8]) -> u16 {
    let sock = std::net::UdpSocket::bind(format!("{ip}:0")).expect("bind udp");
    let port = sock.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(reply, from);
        }
    });
    port
}

/// The `kube-dns` shape: a selector-less Service whose EndpointSlice (written by hand, as the
/// cluster DNS does) points UDP and TCP port 53 at other ports of the node's address; when the
/// UDP endpoint moves, the conntrack entry of a client that keeps its socket goes with it.
#[test]
fn a_selectorless_service_reaches_its_hand_written_endpoints_and_stale_udp_flows_are_cleared() {
    let s = Server::start_with_agent(BIN, &[]);
    let t = table(&s);
    let node_addr = node_ip(&s);
    let first = udp_echo(&node_addr, b"first");
    let second = udp_echo(&node_addr, b"second");
    let tcp = std::net::TcpListener::bind(format!("{node_addr}:0")).expect("bind tcp");
    let tcp_port = tcp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in tcp.incoming().flatten() {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\ntcp answer\n");
        }
    });
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n",
    );
    let slice = |udp_port: u16| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: dns-manual\n  labels: {{kubernetes.io/service-name: dns}}\naddressType: IPv4\nendpoints:\n- addresses: [{node_addr}]\n  conditions: {{ready: true}}\nports:\n- {{name: dns, port: {udp_port}, protocol: UDP}}\n- {{name: dns-tcp, port: {tcp_port}, protocol: TCP}}\n"
        )
    };
    s.apply(&slice(first));
    let ip = cluster_ip(&s, "dns");

    let tcp_body = eventually(Duration::from_secs(30), "TCP 53 to answer", || {
        get(&format!("{ip}:53")).ok()
    });
    assert_eq!(tcp_body, "tcp answer");

    let client = std::net::UdpSocket::bind("0.0.0.0:0").expect("client socket");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let ask = || {
        client.send_to(b"q", format!("{ip}:53")).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let answer = eventually(Duration::from_secs(30), "UDP 53 to answer", ask);
    assert_eq!(answer, "first");

    // The endpoint moves; the same client socket (same conntrack tuple) must follow it.
    s.apply(&slice(second));
    eventually(
        Duration::from_secs(30),
        "the moved endpoint to be programmed",
        || {
            nft_table(&t)
                .filter(|l| l.contains(&format!("\"port\": {second}")))
                .map(|_| ())
        },
    );
    eventually(
        Duration::from_secs(30),
        "the client to reach the moved endpoint",
        || (ask().as_deref() == Some("second")).then_some(()),
    );
    assert!(
        s.log().contains("deleted conntrack entries of UDP flows"),
        "{}",
        s.log()
    );

    // internalTrafficPolicy Local: here first (it answers), then the endpoint moves to
    // another node and only the policy can make the ClusterIP refuse.
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: local\nspec:\n  internalTrafficPolicy: Local\n  ports:\n  - {name: http, port: 80, protocol: TCP}\n",
    );
    let local_slice = |node: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: local-manual\n  labels: {{kubernetes.io/service-name: local}}\naddressType: IPv4\nendpoints:\n- addresses: [{node_addr}]\n  nodeName: {node}\n  conditions: {{ready: true}}\nports:\n- {{name: http, port: {tcp_port}, protocol: TCP}}\n"
        )
    };
    s.apply(&local_slice(&s.node_name()));
    let local = format!("{}:80", cluster_ip(&s, "local"));
    let body = eventually(
        Duration::from_secs(30),
        "the local endpoint to answer",
        || get(&local).ok(),
    );
    assert_eq!(body, "tcp answer");
    s.apply(&local_slice("another-node"));
    eventually(
        Duration::from_secs(30),
        "the remote-only Service to refuse",
        || {
            get(&local)
                .err()
                .filter(|e| e.kind() == ErrorKind::ConnectionRefused)
        },
    );

    // A table deleted behind the proxy's back is programmed again (an idle proxy checks
    // every 30 s; any change makes the next sync adopt the table).
    let out = Command::new("nft")
        .args(["delete", "table", "ip", &t])
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually(
        Duration::from_secs(60),
        "the table to be programmed again",
        || {
            nft_table(&t)
                .filter(|l| l.contains("default/dns/"))
                .map(|_| ())
        },
    );
    let answer = eventually(Duration::from_secs(10), "UDP 53 to answer again", ask);
    assert_eq!(answer, "second");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The idle RSS (KiB) of a server with its node agent and 100 Services of 3 endpoints each,
/// started with `off` and then without it; both idle 10 s after the Services are programmed
/// (or would be).
fn idle_rss_without_and_with(off: &[&str]) -> [(bool, u64); 2] {
    [off, &[]].map(|extra| {
        let s = Server::start_with_agent(BIN, extra);
        let mut yaml = String::new();
        for i in 0..100 {
            yaml.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  ports: [{{port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{i}\n  labels: {{kubernetes.io/service-name: s{i}}}\naddressType: IPv4\nendpoints:\n- addresses: [10.1.{i}.1]\n- addresses: [10.1.{i}.2]\n- addresses: [10.1.{i}.3]\nports: [{{port: 80}}]\n"
            ));
        }
        s.apply(&yaml);
        if extra.is_empty() {
            eventually(Duration::from_secs(60), "100 Services programmed", || {
                nft_table(&table(&s))
                    .filter(|l| l.contains("default/s99/"))
                    .map(|_| ())
            });
        }
        // Idle: let start-up garbage settle the same way for both.
        std::thread::sleep(Duration::from_secs(10));
        let pid = s.pid().expect("running");
        (extra.is_empty(), rss_kib(pid))
    })
}

/// The idle memory the proxy adds to the server process (its informers' caches and the
/// programmed state): with the proxy against `--disable-proxy`.
#[test]
#[ignore = "benchmark: cargo nextest run -p capstan --test service_proxy --run-ignored only proxy_idle_memory --no-capture"]
fn proxy_idle_memory() {
    let figures = idle_rss_without_and_with(&["--disable-proxy"]);
    println!("server RSS, idle with 100 Services / 300 endpoints: {figures:?} (with proxy = true)");
}

/// The idle memory the service proxy, cluster DNS and ingress add together: all three off
/// against all three on.
#[test]
#[ignore = "benchmark: cargo nextest run -p capstan --test service_proxy --run-ignored only service_networking_idle_memory --no-capture"]
fn service_networking_idle_memory() {
    let figures = idle_rss_without_and_with(&[
        "--disable-proxy",
        "--cluster-dns-port",
        "0",
        "--ingress-http-port",
        "0",
        "--ingress-https-port",
        "0",
    ]);
    println!("server RSS (KiB), idle with 100 Services / 300 endpoints: {figures:?} (proxy, DNS and ingress on = true)");
}
