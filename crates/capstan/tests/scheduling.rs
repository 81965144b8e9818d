//! The scheduler and simulated nodes with the real kubectl: one test per filter plugin
//! (resources, nodeSelector, node affinity, pod anti-affinity, taints, topology spread, host
//! ports), cordon and uncordon, a pending pod scheduled when a fitting node joins (through
//! `capstan agent --simulate`), and `kubectl get nodes` on simulated nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capstan_testkit::{eventually, Server};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(30);

/// A server with `n` simulated nodes (and extra flags), once all of them are Ready.
fn cluster(n: usize, extra: &[&str]) -> Server {
    let count = n.to_string();
    let mut args = vec!["--simulate-nodes", count.as_str()];
    args.extend_from_slice(extra);
    let s = Server::start_with(BIN, &args);
    eventually(WAIT, "simulated nodes to be Ready", || {
        let nodes = s.get_json(&["nodes"]);
        let ready = nodes["items"]
            .as_array()?
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        (ready == n).then_some(())
    });
    s
}

fn pod_json(s: &Server, name: &str) -> Value {
    s.get_json(&["pod", name])
}

/// Waits until the pod is bound and returns its node.
fn node_of(s: &Server, name: &str) -> String {
    eventually(WAIT, &format!("pod {name} to be scheduled"), || {
        pod_json(s, name)["spec"]["nodeName"]
            .as_str()
            .map(str::to_string)
    })
}

/// Waits until the pod runs (the simulated node started it) and returns its node.
fn running_on(s: &Server, name: &str) -> String {
    eventually(WAIT, &format!("pod {name} to run"), || {
        let p = pod_json(s, name);
        (p["status"]["phase"] == "Running")
            .then(|| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
    })
}

/// Waits for the pod's PodScheduled=False message and returns it.
fn unschedulable_message(s: &Server, name: &str) -> String {
    eventually(
        WAIT,
        &format!("pod {name} to be reported unschedulable"),
        || {
            let p = pod_json(s, name);
            assert!(
                p["spec"]["nodeName"].is_null(),
                "pod {name} was scheduled: {p}"
            );
            p["status"]["conditions"].as_array()?.iter().find_map(|c| {
                (c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable")
                    .then(|| c["message"].as_str().unwrap_or("").to_string())
            })
        },
    )
}

fn apply(s: &Server, yaml: &str) {
    s.ok_stdin(&["apply", "-f", "-"], yaml);
}

fn pods_with(s: &Server, selector: &str) -> Vec<Value> {
    s.get_json(&["pods", "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_pod_too_big_for_every_node_stays_pending_and_describe_shows_why() {
    let s = cluster(3, &["--simulate-capacity", "cpu=4"]);
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: nginx
    resources: {requests: {cpu: "8"}}
"#,
    );
    let msg = unschedulable_message(&s, "big");
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    let describe = eventually(WAIT, "the FailedScheduling event", || {
        let d = s.ok(&["describe", "pod", "big"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        describe.contains("0/3 nodes are available: 3 Insufficient cpu."),
        "{describe}"
    );
    assert!(describe.contains("default-scheduler"), "{describe}");
    assert!(describe.contains("PodScheduled   False"), "{describe}");
    let out = s.ok(&["get", "pod", "big", "--no-headers"]);
    assert!(out.contains("Pending"), "{out}");

    // A pod that fits runs, with a Scheduled event.
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: small}
spec:
  containers:
  - name: c
    image: nginx
    resources: {requests: {cpu: "3"}}
"#,
    );
    let node = running_on(&s, "small");
    let describe = eventually(WAIT, "the Scheduled event", || {
        let d = s.ok(&["describe", "pod", "small"]);
        d.contains("Scheduled").then_some(d)
    });
    assert!(
        describe.contains(&format!("Successfully assigned default/small to {node}")),
        "{describe}"
    );

    // The scheduler's metrics are part of the server's.
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for m in [
        "scheduler_schedule_attempts_total{result=\"scheduled\"}",
        "scheduler_schedule_attempts_total{result=\"unschedulable\"}",
        "scheduler_pending_pods{queue=\"unschedulable\"}",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics:\n{metrics}");
    }
}

#[test]
fn node_selector_and_required_and_preferred_node_affinity_pick_nodes() {
    let s = cluster(3, &["--simulate-labels", "zone=zone-{index%3},disk=ssd"]);
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: selected}
spec:
  nodeSelector: {zone: zone-1}
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {zone: zone-9}
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: affine}
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: zone, operator: In, values: [zone-0, zone-2]}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        preference:
          matchExpressions:
          - {key: zone, operator: In, values: [zone-2]}
  containers: [{name: c, image: nginx}]
"#,
    );
    assert_eq!(running_on(&s, "selected"), "sim-0001");
    assert_eq!(running_on(&s, "affine"), "sim-0002");
    let msg = unschedulable_message(&s, "nowhere");
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{msg}"
    );
    assert!(
        msg.ends_with("3 Preemption is not helpful for scheduling.."),
        "{msg}"
    );

    // Required terms that no node satisfies keep the pod pending; repeated runs of the
    // preferred choice are stable.
    for i in 0..3 {
        apply(
            &s,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: pref-{i}}}
spec:
  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions:
          - {{key: zone, operator: In, values: [zone-0]}}
  containers: [{{name: c, image: nginx}}]
"#
            ),
        );
    }
    for i in 0..3 {
        assert_eq!(node_of(&s, &format!("pref-{i}")), "sim-0000");
    }
}

#[test]
fn anti_affinity_spreads_three_replicas_over_three_nodes_and_leaves_a_fourth_pending() {
    let s = cluster(3, &[]);
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: web}}
            topologyKey: kubernetes.io/hostname
      containers: [{name: c, image: nginx}]
"#,
    );
    let (nodes, pending) = eventually(
        WAIT,
        "3 replicas running and 1 reported unschedulable",
        || {
            let pods = pods_with(&s, "app=web");
            if pods.len() != 4 {
                return None;
            }
            let mut nodes: Vec<String> = pods
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
                .collect();
            nodes.sort();
            let pending: Vec<&Value> = pods
                .iter()
                .filter(|p| p["spec"]["nodeName"].is_null())
                .collect();
            let reported = pending.first().and_then(|p| {
                p["status"]["conditions"].as_array()?.iter().find_map(|c| {
                    (c["type"] == "PodScheduled" && c["status"] == "False")
                        .then(|| c["message"].as_str().unwrap_or("").to_string())
                })
            });
            (nodes.len() == 3 && pending.len() == 1).then_some(())?;
            Some((nodes, reported?))
        },
    );
    assert_eq!(nodes, vec!["sim-0000", "sim-0001", "sim-0002"]);
    assert_eq!(
        pending,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
    let out = s.ok(&["get", "pods", "-l", "app=web", "--no-headers"]);
    assert_eq!(
        out.lines().filter(|l| l.contains("Running")).count(),
        3,
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains("Pending")).count(),
        1,
        "{out}"
    );
}

#[test]
fn taints_keep_out_pods_that_do_not_tolerate_them() {
    let s = cluster(3, &[]);
    s.ok(&["taint", "nodes", "sim-0000", "dedicated=gpu:NoSchedule"]);
    s.ok(&["taint", "nodes", "sim-0001", "dedicated=gpu:NoSchedule"]);
    s.ok(&["taint", "nodes", "sim-0002", "spot=true:PreferNoSchedule"]);
    // Only the PreferNoSchedule node is left for a pod tolerating nothing; twice to be sure
    // it is the filter and not chance.
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: plain-1}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain-2}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  nodeSelector: {kubernetes.io/hostname: sim-0000}
  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]
  containers: [{name: c, image: nginx}]
"#,
    );
    assert_eq!(running_on(&s, "plain-1"), "sim-0002");
    assert_eq!(running_on(&s, "plain-2"), "sim-0002");
    assert_eq!(running_on(&s, "tolerant"), "sim-0000");

    s.ok(&["taint", "nodes", "sim-0002", "dedicated=gpu:NoExecute"]);
    apply(
        &s,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: locked-out}\nspec: {containers: [{name: c, image: nginx}]}\n",
    );
    let msg = unschedulable_message(&s, "locked-out");
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: gpu}."
        ),
        "{msg}"
    );
    // Removing the taint lets it in (the node update requeues it).
    s.ok(&["taint", "nodes", "sim-0001", "dedicated-"]);
    assert_eq!(node_of(&s, "locked-out"), "sim-0001");
}

#[test]
fn topology_spread_keeps_zones_within_max_skew() {
    let s = cluster(
        4,
        &[
            "--simulate-labels",
            "topology.kubernetes.io/zone=zone-{index%2}",
        ],
    );
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: topology.kubernetes.io/zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {matchLabels: {app: spread}}
      containers: [{name: c, image: nginx}]
"#,
    );
    let per_zone = eventually(WAIT, "6 replicas scheduled", || {
        let pods = pods_with(&s, "app=spread");
        let nodes: Vec<String> = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        (nodes.len() == 6).then(|| {
            let zone0 = nodes
                .iter()
                .filter(|n| matches!(n.as_str(), "sim-0000" | "sim-0002"))
                .count();
            (zone0, 6 - zone0)
        })
    });
    assert_eq!(per_zone, (3, 3));

    // Pods limited to one zone by a node selector, counting both zones (nodeAffinityPolicy
    // Ignore): the second would make the skew 2, so it stays pending.
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: skewed, labels: {app: spread}}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-0}
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    nodeAffinityPolicy: Ignore
    labelSelector: {matchLabels: {app: spread}}
  containers: [{name: c, image: nginx}]
"#,
    );
    assert_eq!(pod_json(&s, "skewed")["metadata"]["name"], "skewed");
    let first = node_of(&s, "skewed");
    assert!(first == "sim-0000" || first == "sim-0002", "{first}");
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: too-skewed, labels: {app: spread}}
spec:
  nodeSelector: {topology.kubernetes.io/zone: zone-0}
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    nodeAffinityPolicy: Ignore
    labelSelector: {matchLabels: {app: spread}}
  containers: [{name: c, image: nginx}]
"#,
    );
    let msg = unschedulable_message(&s, "too-skewed");
    assert!(
        msg.starts_with("0/4 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 2 node(s) didn't match pod topology spread constraints."),
        "{msg}"
    );
}

#[test]
fn host_ports_do_not_share_a_node() {
    let s = cluster(3, &[]);
    for i in 0..4 {
        apply(
            &s,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: hp-{i}}}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    ports: [{{containerPort: 80, hostPort: 8080}}]\n"
            ),
        );
    }
    let (mut nodes, pending) = eventually(WAIT, "3 host-port pods placed", || {
        let mut nodes = Vec::new();
        let mut pending = Vec::new();
        for i in 0..4 {
            let p = pod_json(&s, &format!("hp-{i}"));
            match p["spec"]["nodeName"].as_str() {
                Some(n) => nodes.push(n.to_string()),
                None => pending.push(format!("hp-{i}")),
            }
        }
        (nodes.len() == 3).then_some((nodes, pending))
    });
    nodes.sort();
    assert_eq!(nodes, vec!["sim-0000", "sim-0001", "sim-0002"]);
    let msg = unschedulable_message(&s, &pending[0]);
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."),
        "{msg}"
    );
}

#[test]
fn cordon_keeps_new_pods_off_and_uncordon_lets_them_in() {
    let s = cluster(3, &[]);
    for n in ["sim-0000", "sim-0001", "sim-0002"] {
        s.ok(&["cordon", n]);
    }
    let out = s.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("Ready,SchedulingDisabled"))
            .count(),
        3,
        "{out}"
    );
    apply(&s, "apiVersion: v1\nkind: Pod\nmetadata: {name: waiting}\nspec: {containers: [{name: c, image: nginx}]}\n");
    let msg = unschedulable_message(&s, "waiting");
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) were unschedulable."),
        "{msg}"
    );
    s.ok(&["uncordon", "sim-0001"]);
    assert_eq!(running_on(&s, "waiting"), "sim-0001");
}

/// The pinned join token (`K10<sha256 of the CA>::server:<secret>`) agents take.
fn token(s: &Server) -> String {
    std::fs::read_to_string(s.data_dir().join("server/node-token"))
        .expect("join token")
        .trim()
        .to_string()
}

/// `capstan agent --simulate` joined to `s`, killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(s: &Server, extra: &[&str]) -> Agent {
    let log = std::fs::File::create(s.dir.path().join("agent.log")).expect("agent log");
    let child = Command::new(BIN)
        .args(["agent", "--server", &s.url(), "--token", &token(s)])
        .arg("--data-dir")
        .arg(s.dir.path().join("agent"))
        .args(extra)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting capstan agent");
    Agent(child)
}

#[test]
fn a_pending_pod_is_scheduled_as_soon_as_a_fitting_node_joins() {
    let s = cluster(2, &["--simulate-capacity", "memory=1Gi"]);
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  containers:
  - name: c
    image: nginx
    resources: {requests: {memory: 8Gi}}
"#,
    );
    let msg = unschedulable_message(&s, "hungry");
    assert!(
        msg.starts_with("0/2 nodes are available: 2 Insufficient memory."),
        "{msg}"
    );
    let _agent = agent(
        &s,
        &[
            "--simulate",
            "1",
            "--simulate-name-prefix",
            "big-",
            "--simulate-capacity",
            "memory=64Gi",
            "--simulate-labels",
            "size=big",
        ],
    );
    assert_eq!(running_on(&s, "hungry"), "big-0000");
    let p = pod_json(&s, "hungry");
    assert!(
        p["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty()),
        "{p}"
    );
}

#[test]
fn get_nodes_shows_simulated_nodes_ready_with_upstream_columns_and_their_pods_run() {
    let s = cluster(3, &["--simulate-labels", "node-role.kubernetes.io/worker="]);
    let out = s.ok(&["get", "nodes"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    for (i, line) in out.lines().skip(1).enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], format!("sim-000{i}"));
        assert_eq!(cols[1], "Ready", "{out}");
        assert_eq!(cols[2], "worker", "{out}");
        assert_eq!(cols[4], "v1.32.0", "{out}");
    }
    let wide = s.ok(&["get", "nodes", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        vec![
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    assert!(
        wide.contains("10.64.0.1") && wide.contains("sim://"),
        "{wide}"
    );
    let leases = s.get_json(&["leases", "-n", "kube-node-lease"]);
    eventually(WAIT, "a Lease per node", || {
        let n = s.get_json(&["leases", "-n", "kube-node-lease"])["items"]
            .as_array()
            .map(Vec::len);
        (n == Some(3)).then_some(())
    });
    let _ = leases;

    // Pods run with an IP, ready containers and all conditions; deleting one finishes.
    apply(
        &s,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: demo}
spec:
  replicas: 3
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
"#,
    );
    let pods = eventually(WAIT, "3 demo pods running", || {
        let pods = pods_with(&s, "app=demo");
        (pods.len() == 3 && pods.iter().all(|p| p["status"]["phase"] == "Running")).then_some(pods)
    });
    let mut nodes: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        3,
        "default spreading puts a Deployment's replicas on different nodes"
    );
    let p = &pods[0];
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|s| s.starts_with("sim://")),
        "{p}"
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{p}");
    for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        let ok = p["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == t && c["status"] == "True"));
        assert!(ok, "condition {t} in {p}");
    }
    let ips: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str())
        .collect();
    assert_eq!(ips.len(), 3);
    let out = s.ok(&["get", "pods", "-l", "app=demo", "--no-headers"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("1/1") && l.contains("Running"))
            .count(),
        3,
        "{out}"
    );
    let name = p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    s.ok(&["delete", "pod", &name, "--timeout=20s"]);
    let left = s.kubectl(&["get", "pod", &name]);
    assert!(
        !left.status.success(),
        "the pod is gone once its simulated node finished it"
    );
}
