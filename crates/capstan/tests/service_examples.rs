//! The user's four example manifests, verbatim, with the nginx image pulled through a docker.io
//! mirror on loopback: the Deployment's pods answer through the example Ingress (every replica
//! over many requests), through the Service's ClusterIP and a NodePort from the host; and pods
//! find Services by name through the cluster DNS.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use capstan_testkit::agent::{BUSYBOX, HTTPD};
use capstan_testkit::registry::Registry;
use capstan_testkit::{eventually, examples_dir, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// One HTTP/1.1 GET with a Host header; the status code and body, or None when nothing answered.
fn get(addr: &str, host: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Requests each example pod's nginx logged (its access log goes to stdout).
fn requests_per_pod(s: &Server, pods: &[String]) -> Vec<usize> {
    pods.iter()
        .map(|p| s.ok(&["logs", p]).matches("\"GET / HTTP/1.1\" 200").count())
        .collect()
}

#[test]
fn the_four_examples_work_verbatim_through_ingress_cluster_ip_and_node_port() {
    let mirror = Registry::docker_io_mirror_with_nginx();
    let s = Server::start_with_agent(BIN, &["--private-registry", &mirror.registries_arg()]);
    let agent = s.agent.clone().expect("agent");
    for f in ["deployment.yaml", "service.yaml", "ingress.yaml"] {
        s.ok(&["apply", "-f", &examples_dir().join(f).to_string_lossy()]);
    }
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=180s",
    ]);
    let pods: Vec<String> = s
        .jsonpath(&["pods", "-l", "app=my-app"], "{.items[*].metadata.name}")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");

    // Through the Ingress: every replica answers over many requests; another host gets 404.
    let ingress = format!("127.0.0.1:{}", agent.ingress_http_port);
    eventually(
        Duration::from_secs(30),
        "the Ingress to route myapp.example.com",
        || {
            get(&ingress, "myapp.example.com")
                .filter(|(c, _)| *c == 200)
                .map(|_| ())
        },
    );
    for _ in 0..60 {
        let (code, body) = get(&ingress, "myapp.example.com").expect("the ingress answers");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("Welcome to nginx!"), "{body}");
    }
    let seen = requests_per_pod(&s, &pods);
    assert!(
        seen.iter().all(|n| *n > 0),
        "requests per pod through the Ingress: {seen:?}"
    );
    let (code, _) = get(&ingress, "other.example.com").expect("the ingress answers");
    assert_eq!(code, 404);
    let class = s.jsonpath(&["ingress", "my-ingress"], "{.spec.ingressClassName}");
    assert_eq!(
        class, "capstan",
        "the default IngressClass is filled in as upstream does"
    );
    eventually(
        Duration::from_secs(20),
        "the Ingress status address",
        || {
            let ip = s.jsonpath(
                &["ingress", "my-ingress"],
                "{.status.loadBalancer.ingress[0].ip}",
            );
            (!ip.is_empty()).then_some(())
        },
    );

    // Through the ClusterIP from the host: every replica again.
    let cluster_ip = s.jsonpath(&["service", "my-service"], "{.spec.clusterIP}");
    let before = requests_per_pod(&s, &pods);
    let vip = format!("{cluster_ip}:80");
    eventually(Duration::from_secs(30), "the ClusterIP to answer", || {
        get(&vip, "x").filter(|(c, _)| *c == 200).map(|_| ())
    });
    for _ in 0..60 {
        let (code, body) = get(&vip, "my-service").expect("the ClusterIP answers");
        assert_eq!(code, 200, "{body}");
    }
    let after = requests_per_pod(&s, &pods);
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "requests per pod through the ClusterIP: before {before:?}, after {after:?}"
    );

    // A NodePort on the node's address.
    s.ok(&[
        "expose",
        "deployment",
        "my-deployment",
        "--name=my-nodeport",
        "--type=NodePort",
        "--port=80",
    ]);
    let port = s.jsonpath(&["service", "my-nodeport"], "{.spec.ports[0].nodePort}");
    let node_ip = s.jsonpath(
        &["node", &agent.node_name],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    let np = format!("{node_ip}:{port}");
    let (code, body) = eventually(Duration::from_secs(30), "the NodePort to answer", || {
        get(&np, "x")
    });
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Welcome to nginx!"), "{body}");
}

#[test]
fn pods_find_services_by_name_through_the_cluster_dns() {
    let (upstream, _) = capstan_testkit::dns::fake_upstream();
    let s = Server::start_with_agent(BIN, &["--dns-upstream", &format!("127.0.0.1:{upstream}")]);
    s.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - {{name: httpd, image: "{HTTPD}", ports: [{{name: http, containerPort: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: outside}}
spec:
  type: ExternalName
  externalName: www.example.test
"#
    ));
    s.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let pod_ips: Vec<String> = s
        .jsonpath(&["pods", "-l", "app=web"], "{.items[*].status.podIP}")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pod_ips.len(), 2);
    let cluster_ip = s.jsonpath(&["service", "web"], "{.spec.clusterIP}");

    // Each check prints a marker line, so that the logs say which one failed. Short names are
    // shown by wget: busybox's nslookup walks the whole search path for the AAAA question
    // after a NODATA answer and exits 1 on the last NXDOMAIN, against CoreDNS as against us.
    let script = [
        "nslookup web.default.svc.cluster.local && echo CHECK-fqdn",
        "wget -q -O- http://web/ && echo && echo CHECK-short-name-wget",
        "nslookup web-headless.default.svc.cluster.local. && echo CHECK-headless",
        "nslookup -type=SRV _http._tcp.web.default.svc.cluster.local && echo CHECK-srv",
        "nslookup outside.default.svc.cluster.local. && echo CHECK-externalname",
        "nslookup forwarded.example.test && echo CHECK-forwarded",
    ]
    .join("; ");
    s.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: "{BUSYBOX}"
    command: [sh, -c, '{script}']
"#
    ));
    let logs = eventually(Duration::from_secs(90), "the client pod to finish", || {
        let phase = s.jsonpath(&["pod", "client"], "{.status.phase}");
        (phase == "Succeeded" || phase == "Failed").then(|| s.ok(&["logs", "client"]))
    });
    for check in [
        "fqdn",
        "short-name-wget",
        "headless",
        "srv",
        "externalname",
        "forwarded",
    ] {
        assert!(
            logs.contains(&format!("CHECK-{check}")),
            "{check} failed:\n{logs}"
        );
    }
    assert!(logs.contains(&cluster_ip), "{logs}");
    for ip in &pod_ips {
        assert!(
            logs.contains(ip.as_str()),
            "the headless answer lacks {ip}:\n{logs}"
        );
    }
    assert!(logs.contains("hello from web-"), "{logs}");
    assert!(
        logs.contains("192.0.2.99"),
        "the forwarded answer is missing:\n{logs}"
    );
}

#[test]
fn a_pod_failing_readiness_gets_no_traffic_through_the_service_or_the_ingress() {
    let s = Server::start_with_agent(BIN, &[]);
    let agent = s.agent.clone().expect("agent");
    let pod = |name: &str, probe: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: rd}}}}\nspec:\n  \
             terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: \"{HTTPD}\"\n    \
             readinessProbe: {{exec: {{command: [\"{probe}\"]}}, periodSeconds: 1}}\n---\n"
        )
    };
    s.apply(&format!(
        "{}{}apiVersion: v1\nkind: Service\nmetadata: {{name: rd}}\nspec:\n  selector: {{app: rd}}\n  \
         ports: [{{port: 80}}]\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: rd}}\nspec:\n  rules:\n  \
         - host: rd.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        \
         backend: {{service: {{name: rd, port: {{number: 80}}}}}}\n",
        pod("ready", "true"),
        pod("unready", "false"),
    ));
    s.wait_pod_field(
        "ready",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
        Duration::from_secs(60),
    );
    s.wait_pod_field(
        "unready",
        "{.status.phase}",
        "Running",
        Duration::from_secs(60),
    );
    let vip = format!("{}:80", s.jsonpath(&["service", "rd"], "{.spec.clusterIP}"));
    let ingress = format!("127.0.0.1:{}", agent.ingress_http_port);
    for (addr, host) in [(vip.as_str(), "rd"), (ingress.as_str(), "rd.example.com")] {
        eventually(
            Duration::from_secs(30),
            &format!("{addr} to answer"),
            || get(addr, host).filter(|(c, _)| *c == 200).map(|_| ()),
        );
        for _ in 0..40 {
            let (code, body) = get(addr, host).expect("an answer");
            assert_eq!(code, 200, "{body}");
            assert_eq!(body.trim(), "hello from ready", "through {addr}");
        }
    }
}
