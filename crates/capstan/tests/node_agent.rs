//! The node agent on real containerd, driven with the real kubectl: pods run with pod IPs
//! that answer HTTP, restarts and CrashLoopBackOff, deletion within the grace period, env and
//! volumes from ConfigMaps and Secrets, memory limits, probes, logs and agent restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use capstan_testkit::agent::{BUSYBOX, HTTPD};
use capstan_testkit::registry::Registry;
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

fn pod(name: &str, node: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 5\n{body}")
}

fn wait_phase(s: &Server, name: &str, phase: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if s.jsonpath(&["pod", name], "{.status.phase}") == phase {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let pods =
        String::from_utf8_lossy(&s.kubectl(&["get", "pods", "-o", "wide"]).stdout).into_owned();
    let text = s.log();
    let log: Vec<&str> = text.lines().rev().take(15).collect();
    panic!(
        "pod {name} not {phase} after {secs}s\n{pods}\nserver log (newest first):\n{}",
        log.join("\n")
    );
}

#[test]
fn deployment_pods_run_and_answer_http_from_the_host_and_from_each_other() {
    let s = agent();
    let node = s.node_name();
    // The example Deployment with the test image; the scheduler places it on the one node.
    let example = std::fs::read_to_string(capstan_testkit::examples_dir().join("deployment.yaml"))
        .expect("example");
    let manifest = example.replace("image: nginx", &format!("image: {HTTPD}"));
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let ips = eventually(Duration::from_secs(60), "3 Running pods with IPs", || {
        let phases = s.jsonpath(&["pods", "-l", "app=my-app"], "{.items[*].status.phase}");
        let ips = s.jsonpath(&["pods", "-l", "app=my-app"], "{.items[*].status.podIP}");
        let ips: Vec<String> = ips.split_whitespace().map(str::to_string).collect();
        (phases == "Running Running Running" && ips.len() == 3).then_some(ips)
    });
    let nodes = s.jsonpath(&["pods", "-l", "app=my-app"], "{.items[*].spec.nodeName}");
    assert_eq!(nodes, format!("{node} {node} {node}"));
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
    let victim = s.jsonpath(&["pods", "-l", "app=my-app"], "{.items[0].metadata.name}");
    let victim_ip = s.jsonpath(&["pod", &victim], "{.status.podIP}");
    let started = Instant::now();
    s.ok(&["delete", "pod", &victim, "--wait=true"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
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
    let cid = s.jsonpath(
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
    let last = s.jsonpath(
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
        s.jsonpath(
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
    let described = s.ok(&["describe", "pod", "crash"]);
    for want in [
        "Started container c",
        "Back-off restarting failed container c in pod crash_default(",
    ] {
        assert!(described.contains(want), "{want:?} not in:\n{described}");
    }
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn restart_policies_exit_codes_and_init_containers_follow_upstream() {
    let s = agent();
    let node = s.node_name();
    s.apply(&pod("done", &node, &format!("  restartPolicy: Never\n  initContainers:\n  - name: i1\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo one > /work/x']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  - name: i2\n    image: {BUSYBOX}\n    command: [sh, -c, 'test -f /work/x && echo two >> /work/x']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'grep -q one /work/x && grep -q two /work/x && test $(wc -l < /work/x) -eq 2']\n    volumeMounts: [{{name: w, mountPath: /work}}]\n  volumes:\n  - name: w\n    emptyDir: {{}}\n")));
    s.apply(&pod("fails", &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo oops > /dev/termination-log; exit 7']\n")));
    s.apply(&pod("fallback", &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    terminationMessagePolicy: FallbackToLogsOnError\n    command: [sh, -c, 'echo from-the-log; exit 2']\n")));
    s.apply(&pod("onfailure", &node, &format!("  restartPolicy: OnFailure\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'test -f /tmp/ran && exit 0; touch /tmp/ran; exit 1']\n    volumeMounts: [{{name: t, mountPath: /tmp}}]\n  volumes:\n  - name: t\n    emptyDir: {{medium: Memory}}\n")));
    wait_phase(&s, "done", "Succeeded", 60);
    wait_phase(&s, "fails", "Failed", 60);
    wait_phase(&s, "fallback", "Failed", 60);
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
        fails["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
        "oops\n"
    );
    let fallback = s.get_json(&["pod", "fallback"]);
    assert_eq!(
        fallback["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
        "from-the-log\n"
    );
    assert_eq!(
        s.jsonpath(
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

#[test]
fn config_maps_and_secrets_appear_as_env_and_files_and_memory_limits_hold() {
    let s = agent();
    let node = s.node_name();
    s.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello",
        "--from-literal=color=blue",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=password=s3cret",
    ]);
    // The container checks its own env and files, then waits for the ConfigMap update to
    // reach the mounted file; it succeeds only if all of that holds.
    let kubernetes_ip = s
        .agent
        .as_ref()
        .map(|a| a.service_ip(1))
        .unwrap_or_default();
    // The cluster DNS: the 10th address of the test cluster's service range.
    let dns_ip = s
        .agent
        .as_ref()
        .map(|a| a.service_ip(10))
        .unwrap_or_default();
    let check = "test \"$KUBERNETES_SERVICE_HOST\" = KUBERNETES_IP && test \"$KUBERNETES_SERVICE_PORT\" = 443 && test \"$GREETING\" = hello && test \"$CFG_color\" = blue && test \"$PASSWORD\" = s3cret \
        && test \"$POD_NAME\" = env && test \"$MEM_MI\" = 64 \
        && test \"$(cat /etc/cfg/greeting)\" = hello && test \"$(cat /etc/sec/password)\" = s3cret \
        && test \"$(cat /etc/one)\" = blue && test \"$(cat /etc/info/labels)\" = 'app=\"env\"' \
        && test \"$(cat /etc/proj/g)\" = hello && test \"$(cat /etc/proj/password)\" = s3cret && test \"$(cat /etc/proj/name)\" = env \
        && test -d /scratch && test -w /scratch && grep -q ' /etc/sec tmpfs ' /proc/mounts \
        && grep -q env /etc/hosts && grep -q 'nameserver DNS_IP' /etc/resolv.conf \
        && ! touch /etc/cfg/x 2>/dev/null \
        && for i in $(seq 1 60); do test \"$(cat /etc/cfg/greeting)\" = updated && exit 0; sleep 1; done; exit 1"
        .replace("KUBERNETES_IP", &kubernetes_ip)
        .replace("DNS_IP", &dns_ip);
    let scratch = s.dir.path().join("scratch-created-by-the-agent");
    let scratch = scratch.display();
    let body = format!(
        "  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, {check:?}]\n    resources:\n      limits: {{memory: 64Mi}}\n    env:\n    - name: GREETING\n      valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}\n    - name: PASSWORD\n      valueFrom: {{secretKeyRef: {{name: sec, key: password}}}}\n    - name: POD_NAME\n      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n    - name: MEM_MI\n      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}\n    envFrom:\n    - configMapRef: {{name: cfg}}\n      prefix: CFG_\n    volumeMounts:\n    - {{name: cfg, mountPath: /etc/cfg, readOnly: true}}\n    - {{name: sec, mountPath: /etc/sec}}\n    - {{name: cfg, mountPath: /etc/one, subPath: color}}\n    - {{name: info, mountPath: /etc/info}}\n    - {{name: proj, mountPath: /etc/proj}}\n    - {{name: scratch, mountPath: /scratch}}\n  volumes:\n  - name: cfg\n    configMap: {{name: cfg}}\n  - name: sec\n    secret: {{secretName: sec}}\n  - name: info\n    downwardAPI:\n      items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]\n  - name: proj\n    projected:\n      sources:\n      - configMap: {{name: cfg, items: [{{key: greeting, path: g}}]}}\n      - secret: {{name: sec}}\n      - downwardAPI: {{items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}\n  - name: scratch\n    hostPath: {{path: {scratch}, type: DirectoryOrCreate}}\n"
    );
    let manifest = pod("env", &node, &body).replace(
        "metadata:\n  name: env\n",
        "metadata:\n  name: env\n  labels: {app: env}\n",
    );
    s.apply(&manifest);
    s.wait_pod_field("env", "{.status.phase}", "Running", Duration::from_secs(60));
    s.ok(&[
        "patch",
        "configmap",
        "cfg",
        "-p",
        r#"{"data":{"greeting":"updated"}}"#,
    ]);
    wait_phase(&s, "env", "Succeeded", 60);

    // A missing key is a CreateContainerConfigError, as upstream.
    s.apply(&pod("missing", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n    env:\n    - name: X\n      valueFrom: {{configMapKeyRef: {{name: cfg, key: nope}}}}\n")));
    eventually(
        Duration::from_secs(30),
        "CreateContainerConfigError",
        || {
            s.ok(&["get", "pod", "missing"])
                .contains("CreateContainerConfigError")
                .then_some(())
        },
    );

    // Allocating past the memory limit is OOMKilled.
    s.apply(&pod("hog", &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'dd if=/dev/zero of=/dev/null bs=128M count=1']\n    resources:\n      limits: {{memory: 32Mi}}\n")));
    wait_phase(&s, "hog", "Failed", 60);
    let t = s.get_json(&["pod", "hog"]);
    assert_eq!(
        t["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "OOMKilled",
        "{}",
        t["status"]
    );
    assert_eq!(
        t["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn probes_restart_unhealthy_containers_and_gate_readiness() {
    let s = agent();
    let node = s.node_name();
    // Liveness: healthy for ~2 s, then the file is gone and the exec probe fails.
    s.apply(&pod("live", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 3600']\n    livenessProbe:\n      exec: {{command: [cat, /tmp/ok]}}\n      periodSeconds: 1\n      failureThreshold: 2\n")));
    // Readiness over HTTP and TCP: one passes, one points at a closed port.
    s.apply(&pod("ready", &node, &format!("  containers:\n  - name: web\n    image: {HTTPD}\n    ports: [{{name: http, containerPort: 80}}]\n    readinessProbe:\n      httpGet: {{path: /, port: http}}\n      periodSeconds: 1\n    startupProbe:\n      tcpSocket: {{port: 80}}\n      periodSeconds: 1\n")));
    s.apply(&pod("unready", &node, &format!("  containers:\n  - name: web\n    image: {HTTPD}\n    readinessProbe:\n      tcpSocket: {{port: 81}}\n      periodSeconds: 1\n")));
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
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.jsonpath(
            &["pod", "unready"],
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "False"
    );
    assert_eq!(
        s.jsonpath(&["pod", "unready"], "{.status.containerStatuses[0].ready}"),
        "false"
    );
    let table = s.ok(&["get", "pod", "unready"]);
    assert!(table.contains("0/1"), "{table}");
    s.wait_pod_field(
        "live",
        "{.status.containerStatuses[0].restartCount}",
        "1",
        Duration::from_secs(30),
    );
    assert_eq!(
        s.jsonpath(
            &["pod", "live"],
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "137"
    );
    let described = s.ok(&["describe", "pod", "live"]);
    assert!(described.contains("Liveness probe failed"), "{described}");
    assert!(
        described.contains("Container c failed liveness probe, will be restarted"),
        "{described}"
    );
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn kubectl_logs_streams_tails_and_shows_the_previous_crash() {
    // A small rotation size, so that a chatty container's log rotates during the test.
    let s = Server::start_with_agent(BIN, &["--container-log-max-size", "64Ki"]);
    let node = s.node_name();
    s.apply(&pod("flood", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'i=0; while [ $i -lt 2000 ]; do echo flood-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; while true; do echo tick; sleep 0.5; done']\n")));
    s.apply(&pod("talk", &node, &format!("  containers:\n  - name: talk\n    image: {BUSYBOX}\n    command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done']\n")));
    s.apply(&pod("crash", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo run $(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1']\n")));
    s.wait_pod_field(
        "talk",
        "{.status.phase}",
        "Running",
        Duration::from_secs(60),
    );
    let out = eventually(Duration::from_secs(10), "some log lines", || {
        let o = s.kubectl(&["logs", "talk"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success() && text.contains("line 3")).then_some(text)
    });
    assert!(out.starts_with("line 0\nline 1\n"), "{out}");
    let tail = s.ok(&["logs", "talk", "--tail=2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    let ts = s.ok(&["logs", "talk", "-c", "talk", "--timestamps", "--tail=1"]);
    let (stamp, rest) = ts.trim_end().split_once(' ').expect("timestamped line");
    assert!(
        stamp.len() > 20
            && stamp.as_bytes()[10] == b'T'
            && stamp.ends_with('Z')
            && rest.starts_with("line "),
        "{ts}"
    );
    assert!(s.ok(&["logs", "talk", "--since=1h"]).contains("line 0"));
    assert_eq!(s.ok(&["logs", "talk", "--limit-bytes=7"]), "line 0\n");

    // -f keeps streaming new lines.
    let mut child = std::process::Command::new("kubectl")
        .args(["logs", "-f", "talk", "--tail=1"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBECACHEDIR", s.dir.path().join("kubecache"))
        .env("HOME", s.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 5 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.len() >= 5, "follow delivered only {seen:?}");
    let n = |l: &str| l.trim_start_matches("line ").parse::<u64>().unwrap_or(0);
    assert!(n(&seen[4]) > n(&seen[0]), "{seen:?}");

    // --previous shows the last crashed instance's output.
    s.wait_pod_field(
        "crash",
        "{.status.containerStatuses[0].restartCount}",
        "1",
        Duration::from_secs(30),
    );
    let prev = eventually(Duration::from_secs(10), "the previous log", || {
        let o = s.kubectl(&["logs", "crash", "--previous"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert!(prev.starts_with("run "), "{prev}");
    let cur = s.ok(&["logs", "crash"]);
    assert_ne!(prev, cur);
    let err = s.fails(&["logs", "talk", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod talk"),
        "{err}"
    );

    // The flood's log was rotated; kubectl logs still shows all of it, the rotated part first.
    let logs_dir = s.data_dir().join("agent/logs");
    eventually(Duration::from_secs(30), "the flood's log to rotate", || {
        let dir = std::fs::read_dir(&logs_dir).ok()?.flatten().find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("default_flood_")
        })?;
        let rotated = std::fs::read_dir(dir.path().join("c"))
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("0.log."));
        rotated.then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let all = s.ok(&["logs", "flood"]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("flood-")).count(),
        2000
    );
    assert!(
        all.starts_with("flood-0-") && all.trim_end().ends_with("tick"),
        "{}",
        &all[all.len().saturating_sub(200)..]
    );
    let tail = s.ok(&["logs", "flood", "--tail=2001"]);
    assert!(
        tail.starts_with("flood-"),
        "a tail reaching back into the rotated file"
    );
    assert_eq!(s.ok(&["logs", "flood", "--tail=1"]), "tick\n");

    // deploy/NAME picks one of the Deployment's pods.
    let dep = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: chatty\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: chatty}}\n  template:\n    metadata:\n      labels: {{app: chatty}}\n    spec:\n      nodeName: {node}\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: {BUSYBOX}\n        command: [sh, -c, 'echo from-deployment; sleep 3600']\n");
    s.apply(&dep);
    eventually(Duration::from_secs(60), "logs of deploy/chatty", || {
        let o = s.kubectl(&["logs", "deploy/chatty"]);
        String::from_utf8_lossy(&o.stdout)
            .contains("from-deployment")
            .then_some(())
    });
    s.ok(&["delete", "deployment", "chatty"]);
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

/// Containers the agent's runc knows (sandboxes included).
fn runc_ids(s: &Server) -> Vec<String> {
    let root = s.data_dir().join("agent/containerd/state/runc-root/k8s.io");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn restarts_of_the_agent_and_of_containerd_keep_pods_running() {
    let mut s = agent();
    let node = s.node_name();
    for name in ["a", "b", "gone"] {
        s.apply(&pod(
            name,
            &node,
            &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
        ));
    }
    for name in ["a", "b", "gone"] {
        s.wait_pod_field(name, "{.status.phase}", "Running", Duration::from_secs(60));
    }
    let ids = |s: &Server| {
        s.jsonpath(
            &["pods"],
            "{.items[*].status.containerStatuses[0].containerID}",
        )
    };
    let counts = |s: &Server| {
        s.jsonpath(
            &["pods"],
            "{.items[*].status.containerStatuses[0].restartCount}",
        )
    };
    let before_ids = ids(&s);
    let before_runc = runc_ids(&s);
    assert_eq!(
        before_runc.len(),
        6,
        "3 sandboxes and 3 containers: {before_runc:?}"
    );

    // Restart the whole server, agent included: the containers are adopted, not restarted.
    s.restart();
    s.wait_node_ready();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ids(&s), before_ids);
    assert_eq!(counts(&s), "0 0 0");
    assert_eq!(
        runc_ids(&s),
        before_runc,
        "no duplicates, nothing restarted"
    );
    let ip = s.jsonpath(&["pod", "a"], "{.status.podIP}");
    eventually(
        Duration::from_secs(10),
        "pod a answering after the restart",
        || http_get(&ip),
    );

    // containerd dies: the agent starts it again and carries on.
    let needle = s
        .data_dir()
        .join("agent/containerd/config.toml")
        .to_string_lossy()
        .into_owned();
    let pid = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .find(|p| {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.starts_with("containerd\0") && cmd.contains(&needle)
        })
        .map(|p| p.file_name().to_string_lossy().into_owned())
        .expect("the agent's containerd");
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("kill");
    s.apply(&pod(
        "after",
        &node,
        &format!("  containers:\n  - name: web\n    image: {HTTPD}\n"),
    ));
    s.wait_pod_field(
        "after",
        "{.status.phase}",
        "Running",
        Duration::from_secs(60),
    );
    assert_eq!(counts(&s), "0 0 0 0");
    assert_eq!(s.jsonpath(&["pod", "a"], "{.status.podIP}"), ip);
    eventually(
        Duration::from_secs(10),
        "pod a answering after the containerd restart",
        || http_get(&ip),
    );

    // A pod deleted while the agent was away is cleaned up when it comes back.
    let gone_ip = s.jsonpath(&["pod", "gone"], "{.status.podIP}");
    let opts = s.agent.take();
    s.restart();
    s.ok(&["delete", "pod", "gone", "--force", "--grace-period=0"]);
    s.agent = opts;
    s.restart();
    s.wait_node_ready();
    eventually(
        Duration::from_secs(30),
        "the deleted pod's containers to go",
        || (runc_ids(&s).len() == 6).then_some(()),
    );
    let ipam = s.data_dir().join("agent/cni/ipam/capstan").join(&gone_ip);
    eventually(
        Duration::from_secs(10),
        "the deleted pod's IP to be released",
        || (!ipam.exists()).then_some(()),
    );
    assert_eq!(counts(&s), "0 0 0");
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn an_agent_joins_with_the_pinned_token_and_serves_its_pods_and_logs() {
    let s = Server::start_with(BIN, &["--cluster-cidr", "10.41.0.0/16"]);
    let token =
        std::fs::read_to_string(s.data_dir().join("server/node-token")).expect("node-token");
    assert!(token.starts_with("K10"), "{token}");
    // A wrong CA hash is refused before anything is sent.
    let bad = format!("K10{}::server:x", "0".repeat(64));
    let out = std::process::Command::new(BIN)
        .args([
            "agent",
            "--server",
            &s.url(),
            "--token",
            &bad,
            "--node-name",
            "evil",
            "--data-dir",
        ])
        .arg(s.dir.path().join("evil"))
        .output()
        .expect("capstan agent");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not match the hash"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let a = capstan_testkit::agent::JoinedAgent::start(BIN, &s, token.trim());
    let node = a.opts.node_name.clone();
    eventually(
        Duration::from_secs(60),
        "the joined node to be Ready",
        || {
            (s.jsonpath(
                &["node", &node],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True")
                .then_some(())
        },
    );
    assert!(
        std::fs::read_to_string(s.data_dir().join(format!("server/cred/nodes/{node}.token")))
            .is_ok(),
        "{}",
        a.log()
    );
    s.apply(&pod("hello", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo hello from the joined node; sleep 3600']\n")));
    wait_phase(&s, "hello", "Running", 60);
    let logs = eventually(Duration::from_secs(10), "logs from the joined node", || {
        let o = s.kubectl(&["logs", "hello"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    });
    assert_eq!(logs, "hello from the joined node\n");
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn images_follow_the_pull_policy_and_can_be_imported() {
    let s = agent();
    let node = s.node_name();
    // Not present and no registry reachable: ErrImagePull, then ImagePullBackOff.
    s.apply(&pod(
        "nopull",
        &node,
        "  containers:\n  - name: c\n    image: capstan.test/missing:1.0\n",
    ));
    eventually(Duration::from_secs(60), "ImagePullBackOff", || {
        let r = s.jsonpath(
            &["pod", "nopull"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        (r == "ImagePullBackOff").then_some(())
    });
    // imagePullPolicy Never with the image absent, until it is imported.
    s.apply(&pod("never", &node, "  containers:\n  - name: c\n    image: capstan.test/extra:1.0\n    imagePullPolicy: Never\n"));
    eventually(Duration::from_secs(30), "ErrImageNeverPull", || {
        s.ok(&["get", "pod", "never"])
            .contains("ErrImageNeverPull")
            .then_some(())
    });
    let tarball = capstan_testkit::agent::test_images().join("extra.tar");
    let out = std::process::Command::new(BIN)
        .args(["images", "import"])
        .arg(&tarball)
        .arg("--data-dir")
        .arg(s.data_dir())
        .output()
        .expect("capstan images import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_pod_field(
        "never",
        "{.status.phase}",
        "Running",
        Duration::from_secs(30),
    );
    let images = s.jsonpath(&["node", &node], "{.status.images[*].names}");
    assert!(images.contains("capstan.test/busybox:1.0"), "{images}");
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

/// A free port below the kernel's ephemeral range (32768-60999), which is where every test
/// server's port comes from: a hostPort's DNAT rule covers 127.0.0.1 too, so a hostPort equal
/// to a concurrently started test server's port would swallow that server's connections.
fn port_below_ephemeral_range() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    (0..1000u32)
        .map(|i| 20000 + ((seed.wrapping_add(i.wrapping_mul(7919))) % 12000) as u16)
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port in 20000-31999")
}

#[test]
fn security_context_host_network_host_ports_and_lifecycle_hooks() {
    let s = agent();
    let node = s.node_name();
    let never = |name: &str, extra: &str, cmd: &str| {
        pod(name, &node, &format!("  restartPolicy: Never\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, {cmd:?}]\n{extra}"))
    };
    s.apply(&never(
        "ids",
        "    securityContext: {runAsUser: 1000, runAsGroup: 3000, readOnlyRootFilesystem: true}\n",
        "test $(id -u) = 1000 && test $(id -g) = 3000 && ! touch /x 2>/dev/null",
    ));
    s.apply(&never(
        "priv",
        "    securityContext: {privileged: true}\n",
        // Changing a link needs NET_ADMIN, mounting needs SYS_ADMIN: privileged has both.
        "ip link set lo mtu 1400 && mount -t tmpfs none /tmp",
    ));
    s.apply(&never(
        "capadd",
        "    securityContext: {capabilities: {add: [NET_ADMIN]}}\n",
        "ip link set lo mtu 1400 && ! mount -t tmpfs none /tmp",
    ));
    s.apply(&never("plain", "", "ip link set lo mtu 1400"));
    // postStart runs before the container counts as started; preStop before it is stopped.
    let hostdir = s.dir.path().join("hooks");
    std::fs::create_dir_all(&hostdir).expect("hostdir");
    s.apply(&pod("hooks", &node, &format!("  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'for i in $(seq 1 50); do test -f /tmp/started && break; sleep 0.1; done; cp /tmp/started /host/seen; trap \"exit 0\" TERM; sleep 3600 & wait']\n    lifecycle:\n      postStart: {{exec: {{command: [sh, -c, 'echo yes > /tmp/started']}}}}\n      preStop: {{exec: {{command: [sh, -c, 'echo bye > /host/prestop']}}}}\n    volumeMounts: [{{name: h, mountPath: /host}}]\n  volumes:\n  - name: h\n    hostPath: {{path: {}, type: Directory}}\n", hostdir.display())));
    let hport = port_below_ephemeral_range();
    let nport = port_below_ephemeral_range();
    s.apply(&pod("hostport", &node, &format!("  containers:\n  - name: web\n    image: {HTTPD}\n    ports: [{{containerPort: 80, hostPort: {hport}}}]\n")));
    s.apply(&pod("hostnet", &node, &format!("  hostNetwork: true\n  containers:\n  - name: web\n    image: {HTTPD}\n    env: [{{name: PORT, value: '{nport}'}}]\n")));
    wait_phase(&s, "ids", "Succeeded", 60);
    wait_phase(&s, "priv", "Succeeded", 60);
    wait_phase(&s, "capadd", "Succeeded", 60);
    wait_phase(&s, "plain", "Failed", 60);
    wait_phase(&s, "hostport", "Running", 60);
    wait_phase(&s, "hostnet", "Running", 60);
    let node_ip = s.jsonpath(
        &["node", &node],
        "{.status.addresses[?(@.type==\"InternalIP\")].address}",
    );
    assert_eq!(s.jsonpath(&["pod", "hostnet"], "{.status.podIP}"), node_ip);
    let get = |addr: String| -> Option<String> {
        let mut c = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        c.read_to_string(&mut out).ok()?;
        out.contains(" 200 ").then_some(out)
    };
    eventually(
        Duration::from_secs(10),
        "hostPort answering on the node IP",
        || get(format!("{node_ip}:{hport}")),
    );
    let out = eventually(
        Duration::from_secs(10),
        "the hostNetwork pod answering",
        || get(format!("127.0.0.1:{nport}")),
    );
    assert!(out.contains("hello from"), "{out}");
    wait_phase(&s, "hooks", "Running", 60);
    eventually(
        Duration::from_secs(10),
        "the postStart hook's file seen by the container",
        || (std::fs::read_to_string(hostdir.join("seen")).ok()? == "yes\n").then_some(()),
    );
    s.ok(&["delete", "pod", "hooks", "--wait=true"]);
    assert_eq!(
        std::fs::read_to_string(hostdir.join("prestop")).expect("the preStop hook ran"),
        "bye\n"
    );
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}

#[test]
fn the_example_pod_runs_nginx_pulled_through_a_registry_mirror() {
    // The examples name `nginx` (docker.io/library/nginx:latest, pull policy Always): the pull
    // really happens, from a registry on loopback that registries.yaml makes docker.io's mirror.
    let mirror = Registry::docker_io_mirror_with_nginx();
    let s = Server::start_with_agent(BIN, &["--private-registry", &mirror.registries_arg()]);
    let node = s.node_name();
    // The example as it is; its node is the only one here (nodeName spares the scheduler).
    let example = std::fs::read_to_string(capstan_testkit::examples_dir().join("pod.yaml"))
        .expect("examples/pod.yaml");
    s.ok_stdin(&["apply", "-f", "-"], &example);
    let scheduled = eventually(
        Duration::from_secs(20),
        "the example pod to be placed",
        || {
            let n = s.jsonpath(&["pod", "my-pod"], "{.spec.nodeName}");
            (!n.is_empty()).then_some(n)
        },
    );
    assert_eq!(scheduled, node);
    wait_phase(&s, "my-pod", "Running", 60);
    assert_eq!(
        s.jsonpath(&["pod", "my-pod"], "{.spec.containers[0].imagePullPolicy}"),
        "Always"
    );
    let ip = s.jsonpath(&["pod", "my-pod"], "{.status.podIP}");
    let page = eventually(Duration::from_secs(10), "nginx answering", || http_get(&ip));
    assert!(page.contains("Welcome to nginx!"), "{page}");
    let logs = s.ok(&["logs", "my-pod"]);
    assert!(logs.contains("GET / HTTP/1.0"), "{logs}");
    s.ok(&["delete", "pod", "my-pod", "--wait=true"]);
}

#[test]
fn image_pull_secrets_authenticate_pulls_from_a_private_registry() {
    let reg = Registry::start_with_auth(Some(("alice", "s3cret")));
    let image = format!("127.0.0.1:{}/private/extra:1.0", reg.port);
    reg.push_as(
        &capstan_testkit::agent::test_images().join("extra.tar"),
        "private/extra:1.0",
        Some("alice:s3cret"),
    );
    let cfg_dir = tempfile::tempdir().expect("tmp");
    let registries = cfg_dir.path().join("registries.yaml");
    // Plain HTTP for the loopback registry; the credentials come from the pods' secrets.
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  \"127.0.0.1:{0}\":\n    endpoint: [\"http://127.0.0.1:{0}\"]\n",
            reg.port
        ),
    )
    .expect("registries.yaml");
    let s = Server::start_with_agent(BIN, &["--private-registry", &registries.to_string_lossy()]);
    let node = s.node_name();
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server=127.0.0.1:{}", reg.port),
        "--docker-username=alice",
        "--docker-password=s3cret",
    ]);
    s.apply(&pod(
        "anonymous",
        &node,
        &format!("  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Always\n"),
    ));
    s.apply(&pod("authorized", &node, &format!("  imagePullSecrets: [{{name: regcred}}]\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Always\n")));
    wait_phase(&s, "authorized", "Running", 60);
    eventually(
        Duration::from_secs(30),
        "the pod without credentials to fail its pull",
        || {
            let r = s.jsonpath(
                &["pod", "anonymous"],
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(())
        },
    );
    let msg = s.jsonpath(
        &["pod", "anonymous"],
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        msg.contains("401")
            || msg.to_lowercase().contains("unauthorized")
            || msg.contains("Back-off"),
        "{msg}"
    );
    s.ok(&["delete", "pods", "--all", "--wait=true"]);
}
