//! The built-in ingress with real containers and the real kubectl: the user's example
//! Deployment, Service and Ingress verbatim (the test image for nginx) reach every pod by
//! host; other hosts get 404; the Ingress gets the node's address in its status; TLS from a
//! Secret by SNI over HTTP/2, reloaded when the Secret changes; a missing Service or Secret
//! gives a Warning Event and 503 or the default certificate; h2c and wildcard hosts; the
//! agent's /metrics; scaling down under a loop of requests fails none. (WebSocket upgrades are tested in-process in crates/ingress/tests:
//! the busybox images have no WebSocket server.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_testkit::agent::HTTPD;
use capstan_testkit::{eventually, examples_dir, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// One HTTP/1.1 request to the ingress on 127.0.0.1:`port`: the status code and body.
fn get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {out:?}"))?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Ok((code, body))
}

fn example(name: &str) -> String {
    std::fs::read_to_string(examples_dir().join(name)).expect("example")
}

/// A self-signed certificate and key (PEM) for `host`, written to `dir` as `<tag>.crt/.key`.
fn certificate(dir: &Path, tag: &str, host: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("cert");
    let crt = dir.join(format!("{tag}.crt"));
    let key = dir.join(format!("{tag}.key"));
    std::fs::write(&crt, c.cert.pem()).expect("write");
    std::fs::write(&key, c.signing_key.serialize_pem()).expect("write");
    (
        crt.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

/// HTTPS through the ingress with curl, trusting only `ca`: Ok(body, HTTP version) or the
/// curl error.
fn curl_https(port: u16, host: &str, ca: &str) -> Result<(String, String), String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--max-time",
            "15",
            "--cacert",
            ca,
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap_or_default();
    Ok((body.to_string(), version.to_string()))
}

/// The Warning Events about Ingress `name`, as `reason: message`.
fn warnings(s: &Server, name: &str) -> Vec<String> {
    let v = s.get_json(&["events"]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["involvedObject"]["kind"] == "Ingress"
                && e["involvedObject"]["name"] == name
                && e["type"] == "Warning"
        })
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn ingress_yaml(name: &str, host: &str, service: &str, tls_secret: Option<&str>) -> String {
    let tls = tls_secret
        .map(|s| format!("  tls:\n  - hosts: [\"{host}\"]\n    secretName: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\nspec:\n{tls}  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: {service}\n            port:\n              number: 80\n"
    )
}

#[test]
fn the_example_ingress_serves_every_pod_by_host_with_tls_errors_and_scale_down() {
    let s = Server::start_with_agent(BIN, &[]);
    let opts = s.agent.clone().expect("agent");
    let (http, https) = (opts.ingress_http_port, opts.ingress_https_port);

    // The server made the default class; the example Ingress names none.
    assert_eq!(
        s.ok(&[
            "get",
            "ingressclass",
            "capstan",
            "-o",
            "jsonpath={.spec.controller}"
        ]),
        "capstan.io/ingress"
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &example("deployment.yaml").replace("image: nginx", &format!("image: {HTTPD}")),
    );
    s.ok_stdin(&["apply", "-f", "-"], &example("service.yaml"));
    s.ok_stdin(&["apply", "-f", "-"], &example("ingress.yaml"));

    // Every one of the 3 pods answers through the ingress.
    let mut seen = BTreeSet::new();
    eventually(
        Duration::from_secs(120),
        "all 3 pods answering through the ingress",
        || {
            if let Ok((200, body)) = get(http, "myapp.example.com", "/") {
                assert!(body.starts_with("hello from my-deployment-"), "{body}");
                seen.insert(body.trim().to_string());
            }
            (seen.len() == 3).then_some(())
        },
    );
    // ... and keeps doing so: round robin over many requests.
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let (code, body) = get(http, "myapp.example.com", "/").expect("request");
        assert_eq!(code, 200, "{body}");
        *counts.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|n| *n >= 5), "unbalanced: {counts:?}");

    let (code, body) = get(http, "other.example.com", "/").expect("request");
    assert_eq!(code, 404, "{body}");

    // HTTP/2 with prior knowledge (h2c) on the plain port.
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "15"])
        .args(["-H", "Host: myapp.example.com", "-w", "\n%{http_version}"])
        .arg(format!("http://127.0.0.1:{http}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("hello from") && text.ends_with("\n2"),
        "{out:?}"
    );

    // A wildcard host matches one label.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ingress_yaml("wild", "*.wild.example.com", "my-service", None),
    );
    eventually(Duration::from_secs(30), "the wildcard rule", || {
        matches!(get(http, "a.wild.example.com", "/"), Ok((200, _))).then_some(())
    });
    let (code, _) = get(http, "a.b.wild.example.com", "/").expect("request");
    assert_eq!(code, 404);

    // The node's address in the Ingress status.
    eventually(
        Duration::from_secs(30),
        "the Ingress status address",
        || {
            let ip = s.ok(&[
                "get",
                "ingress",
                "my-ingress",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ]);
            (!ip.trim().is_empty()).then_some(())
        },
    );

    // A missing Service: 503 and a Warning Event.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ingress_yaml("broken", "broken.example.com", "nope", None),
    );
    eventually(Duration::from_secs(30), "503 for a missing Service", || {
        matches!(get(http, "broken.example.com", "/"), Ok((503, _))).then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "a Warning Event on the Ingress",
        || {
            warnings(&s, "broken")
                .iter()
                .any(|w| w == "ServiceNotFound: service \"default/nope\" not found")
                .then_some(())
        },
    );

    // TLS from a Secret by SNI, HTTP/2 by ALPN.
    let dir = tempfile::tempdir().expect("tmp");
    let (crt, key) = certificate(dir.path(), "first", "secure.example.com");
    s.ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        "--cert",
        &crt,
        "--key",
        &key,
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ingress_yaml(
            "secure",
            "secure.example.com",
            "my-service",
            Some("secure-tls"),
        ),
    );
    let (body, version) = eventually(
        Duration::from_secs(30),
        "HTTPS with the Secret's certificate",
        || curl_https(https, "secure.example.com", &crt).ok(),
    );
    assert!(body.starts_with("hello from my-deployment-"), "{body}");
    assert_eq!(version, "2");
    // Another name gets the default certificate, which the Secret's CA does not sign.
    let err = curl_https(https, "myapp.example.com", &crt).expect_err("default certificate");
    assert!(err.contains("certificate"), "{err}");

    // A new certificate in the Secret is served without a restart.
    let (crt2, key2) = certificate(dir.path(), "second", "secure.example.com");
    let secret = s.ok(&[
        "create",
        "secret",
        "tls",
        "secure-tls",
        "--cert",
        &crt2,
        "--key",
        &key2,
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    s.ok_stdin(&["apply", "-f", "-"], &secret);
    eventually(Duration::from_secs(30), "the renewed certificate", || {
        curl_https(https, "secure.example.com", &crt2).ok()
    });

    // A missing Secret: a Warning Event and the default certificate.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ingress_yaml(
            "unsigned",
            "unsigned.example.com",
            "my-service",
            Some("absent"),
        ),
    );
    eventually(
        Duration::from_secs(30),
        "a Warning Event for the missing Secret",
        || {
            warnings(&s, "unsigned")
                .iter()
                .any(|w| w.starts_with("BadTLSSecret: secret \"default/absent\" not found"))
                .then_some(())
        },
    );
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "15", "--resolve"])
        .arg(format!("unsigned.example.com:{https}:127.0.0.1"))
        .arg(format!("https://unsigned.example.com:{https}/"))
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("hello from"),
        "{out:?}"
    );

    // The agent's /metrics (kubelet port, client certificates from the cluster CA).
    let client = capstan_apiserver::node_certs::NodeIssuer::load(&s.data_dir().join("server/tls"))
        .expect("cluster CA")
        .apiserver_kubelet_client()
        .expect("client certificate");
    let cert = capstan_testkit::write_file(dir.path(), "client.crt", &client.cert_pem);
    let key = capstan_testkit::write_file(dir.path(), "client.key", &client.key_pem);
    let out = Command::new("curl")
        .args(["-sSk", "--max-time", "15", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(format!("https://127.0.0.1:{}/metrics", opts.kubelet_port))
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    for want in [
        "capstan_ingress_requests_total{code=\"200\"}",
        "capstan_ingress_requests_total{code=\"404\"}",
        "capstan_ingress_requests_total{code=\"503\"}",
        "capstan_ingress_upstream_seconds_bucket",
        "capstan_kubelet_running_pods",
    ] {
        assert!(
            metrics.contains(want),
            "{want} missing from /metrics:\n{metrics}"
        );
    }
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");

    // Scaling down under a loop of requests: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let looper = {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match get(http, "myapp.example.com", "/") {
                    Ok((200, _)) => {}
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let before = sent.load(Ordering::Relaxed);
    s.ok(&["scale", "deployment", "my-deployment", "--replicas=1"]);
    eventually(Duration::from_secs(120), "one pod left", || {
        let names = s.ok(&[
            "get",
            "pods",
            "-l",
            "app=my-app",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        (names.split_whitespace().count() == 1).then_some(())
    });
    let during = sent.load(Ordering::Relaxed) - before;
    // Requests go on after the pods are gone, all to the one left.
    let after = sent.load(Ordering::Relaxed) + 50;
    eventually(Duration::from_secs(60), "50 more requests", || {
        (sent.load(Ordering::Relaxed) >= after).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    looper.join().expect("request loop");
    let failures = failures.lock().unwrap();
    eprintln!(
        "scale-down: {during} requests while 2 of 3 pods went, {} in all",
        sent.load(Ordering::Relaxed)
    );
    assert!(during > 0, "no request was sent while the pods went");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while scaling down: {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    let mut left = BTreeSet::new();
    for _ in 0..10 {
        let (code, body) = get(http, "myapp.example.com", "/").expect("request");
        assert_eq!(code, 200);
        left.insert(body);
    }
    assert_eq!(left.len(), 1, "requests still reach gone pods: {left:?}");
}
