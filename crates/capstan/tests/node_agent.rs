//! The node agent on real containerd, driven with the real kubectl: pods run with pod IPs
//! that answer HTTP, restarts and CrashLoopBackOff, deletion within the grace period, env and
//! volumes from ConfigMaps and Secrets, memory limits, probes, logs and agent restarts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use capstan_testkit::agent::{BUSYBOX, HTTPD};
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

fn agent() -> Server {
    Server::start_with_agent(BIN, &[])
}

/// GET / from the host; the body, if it answered 200.
fn http_get(ip: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("{ip}:80").parse().ok()?, Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.lines().next().unwrap_or_default();
    status
        .contains(" 200")
        .then(|| out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn jsonpath(s: &Server, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jp]);
    String::from_utf8_lossy(&s.kubectl(&args).stdout).into_owned()
}

fn pod(name: &str, node: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 5\n{body}")
}

fn wait_phase(s: &Server, name: &str, phase: &str, secs: u64) {
    eventually(
        Duration::from_secs(secs),
        &format!(
            "pod {name} {phase}: {}",
            s.log().lines().rev().take(5).collect::<Vec<_>>().join("\n")
        ),
        || (jsonpath(s, &["pod", name], "{.status.phase}") == phase).then_some(()),
    );
}

#[test]
fn deployment_pods_run_and_answer_http_from_the_host_and_from_each_other() {
    let s = agent();
    let node = s.node_name();
    // The example Deployment with the test image; nodeName keeps it independent of the scheduler.
    let example = std::fs::read_to_string(capstan_testkit::examples_dir().join("deployment.yaml"))
        .expect("example");
    let manifest = example
        .replace("image: nginx", &format!("image: {HTTPD}"))
        .replace("    spec:\n      containers:", &format!("    spec:\n      nodeName: {node}\n      terminationGracePeriodSeconds: 5\n      containers:"));
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let ips = eventually(Duration::from_secs(60), "3 Running pods with IPs", || {
        let phases = jsonpath(
            &s,
            &["pods", "-l", "app=my-app"],
            "{.items[*].status.phase}",
        );
        let ips = jsonpath(
            &s,
            &["pods", "-l", "app=my-app"],
            "{.items[*].status.podIP}",
        );
        let ips: Vec<String> = ips.split_whitespace().map(str::to_string).collect();
        (phases == "Running Running Running" && ips.len() == 3).then_some(ips)
    });
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(wide.matches("Running").count(), 3, "{wide}");
    for ip in &ips {
        let body = eventually(
            Duration::from_secs(10),
            "an HTTP answer from the host",
            || http_get(ip),
        );
        assert!(body.starts_with("hello from my-deployment-"), "{body}");
    }
    // From another pod: busybox wget to every replica.
    let script = ips
        .iter()
        .map(|ip| format!("wget -q -O- http://{ip}/ || exit 1;"))
        .collect::<String>();
    s.apply(&pod("client", &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, '{script}']\n")));
    wait_phase(&s, "client", "Succeeded", 60);

    // Deleting a pod stops it within its grace period and frees its IP.
    let victim = jsonpath(
        &s,
        &["pods", "-l", "app=my-app"],
        "{.items[0].metadata.name}",
    );
    let victim_ip = jsonpath(&s, &["pod", &victim], "{.status.podIP}");
    let started = Instant::now();
    s.ok(&["delete", "pod", &victim, "--wait=true"]);
    assert!(
        started.elapsed() < Duration::from_secs(5 + 5),
        "deletion took {:?}",
        started.elapsed()
    );
    let ipam = s.data_dir().join("agent/cni/ipam/capstan").join(&victim_ip);
    assert!(!ipam.exists(), "the IP {victim_ip} is still reserved");
    assert!(
        http_get(&victim_ip).is_none(),
        "the deleted pod still answers"
    );
    s.ok(&["delete", "deployment", "my-deployment"]);
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn killed_and_crashing_containers_restart_with_growing_back_off() {
    let s = agent();
    let node = s.node_name();
    s.apply(&pod(
        "web",
        &node,
        &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
    ));
    s.apply(&pod("crash", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo boom; exit 3']\n")));
    wait_phase(&s, "web", "Running", 60);

    // Kill the container's main process from the host, as an OOM killer or a crash would.
    let cid = jsonpath(
        &s,
        &["pod", "web"],
        "{.status.containerStatuses[0].containerID}",
    );
    let cid = cid.trim_start_matches("containerd://");
    let root = s.data_dir().join("agent/containerd/state/runc-root/k8s.io");
    let state = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["state", cid])
        .output()
        .expect("runc state");
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("runc state JSON");
    let pid = state["pid"].as_i64().expect("pid");
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    s.wait_pod_field(
        "web",
        "{.status.containerStatuses[0].restartCount}",
        "1",
        Duration::from_secs(20),
    );
    s.wait_pod_field("web", "{.status.phase}", "Running", Duration::from_secs(20));
    let last = jsonpath(
        &s,
        &["pod", "web"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(last, "137");

    // The crashing container: restarted at once, then after 10 s, then 20 s.
    eventually(
        Duration::from_secs(30),
        "CrashLoopBackOff in kubectl get pods",
        || {
            s.ok(&["get", "pod", "crash"])
                .contains("CrashLoopBackOff")
                .then_some(())
        },
    );
    let msg = |s: &Server| {
        jsonpath(
            s,
            &["pod", "crash"],
            "{.status.containerStatuses[0].state.waiting.message}",
        )
    };
    eventually(Duration::from_secs(30), "a 10s back-off", || {
        msg(&s).starts_with("back-off 10s").then_some(())
    });
    eventually(Duration::from_secs(40), "a 20s back-off", || {
        msg(&s).starts_with("back-off 20s").then_some(())
    });
    let st = s.get_json(&["pod", "crash"]);
    let cs = &st["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 2, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs}");
    assert_eq!(st["status"]["phase"], "Running");
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn restart_policies_exit_codes_and_init_containers_follow_upstream() {
    let s = agent();
    let node = s.node_name();
    s.apply(&pod("done", &node, &format!("  restartPolicy: Never\n  initContainers:\n  - name: i1\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo one > /work/x']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  - name: i2\n    image: {BUSYBOX}\n    command: [sh, -c, 'test -f /work/x && echo two >> /work/x']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'grep -q one /work/x && grep -q two /work/x && test $(wc -l < /work/x) -eq 2']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  volumes:\n  - name: w\n    emptyDir: {{}}\n")));
    s.apply(&pod("fails", &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'exit 7']\n")));
    s.apply(&pod("onfailure", &node, &format!("  restartPolicy: OnFailure\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'test -f /tmp/ran && exit 0; touch /tmp/ran; exit 1']\n    volumeMounts: [{{name: t, mountPath: /tmp}}]\n  volumes:\n  - name: t\n    emptyDir: {{medium: Memory}}\n")));
    wait_phase(&s, "done", "Succeeded", 60);
    wait_phase(&s, "fails", "Failed", 60);
    wait_phase(&s, "onfailure", "Succeeded", 60);
    let done = s.get_json(&["pod", "done"]);
    assert_eq!(
        done["status"]["initContainerStatuses"][1]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(
        done["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let ready = done["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("PodCompleted"))
    );
    let fails = s.get_json(&["pod", "fails"]);
    assert_eq!(
        fails["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        7
    );
    assert_eq!(
        fails["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Error"
    );
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "onfailure"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "1"
    );
    let table = s.ok(&["get", "pods"]);
    assert!(
        table.contains("Completed") && table.contains("Error"),
        "{table}"
    );
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}
