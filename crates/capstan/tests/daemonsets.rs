//! DaemonSets on simulated nodes with the real kubectl: one pod per eligible node (a new node
//! gets one, a tainted node does not until the DaemonSet tolerates the taint, a NoExecute
//! taint or a removed node loses it), and a rolling update that never has more than
//! maxUnavailable nodes without a ready daemon pod (checked on every pod watch event), with
//! `kubectl rollout status|history|undo`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_testkit::{eventually, kube_client, Server};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(60);

/// A server with `n` simulated nodes, once all of them are Ready.
fn cluster(n: usize) -> Server {
    let count = n.to_string();
    let s = Server::start_with(BIN, &["--simulate-nodes", count.as_str()]);
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

/// `capstan agent --simulate` joined to `s`, killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(s: &Server, extra: &[&str]) -> Agent {
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token"))
        .expect("join token")
        .trim()
        .to_string();
    let log = std::fs::File::create(s.dir.path().join("agent.log")).expect("agent log");
    let child = Command::new(BIN)
        .args(["agent", "--server", &s.url(), "--token", &token])
        .arg("--data-dir")
        .arg(s.dir.path().join("agent"))
        .args(extra)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting capstan agent");
    Agent(child)
}

/// Running, non-terminating pods of the DaemonSet by node.
fn daemon_pods(s: &Server, selector: &str) -> BTreeMap<String, Value> {
    s.get_json(&["pods", "-l", selector])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| Some((p["spec"]["nodeName"].as_str()?.to_string(), p.clone())))
        .collect()
}

/// Waits until exactly `nodes` run a pod of the DaemonSet (Running), and returns them.
fn wait_pods_on(s: &Server, selector: &str, nodes: &[&str]) -> BTreeMap<String, Value> {
    let want: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
    eventually(WAIT, &format!("daemon pods on exactly {want:?}"), || {
        let pods = daemon_pods(s, selector);
        let on: BTreeSet<String> = pods.keys().cloned().collect();
        let all_running = pods.values().all(|p| p["status"]["phase"] == "Running");
        let total = s.get_json(&["pods", "-l", selector])["items"]
            .as_array()
            .map_or(0, Vec::len);
        (on == want && all_running && total == want.len()).then_some(pods)
    })
}

fn ds_status(s: &Server, name: &str, field: &str) -> i64 {
    s.get_json(&["ds", name])["status"][field]
        .as_i64()
        .unwrap_or(0)
}

const AGENT_DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: agent, image: "example.test/agent:1"}
"#;

#[test]
fn daemon_pods_follow_nodes_taints_and_tolerations() {
    let s = cluster(4);
    s.ok(&["taint", "node", "sim-0003", "dedicated=db:NoSchedule"]);
    s.ok_stdin(&["apply", "-f", "-"], AGENT_DS);
    let pods = wait_pods_on(&s, "app=agent", &["sim-0000", "sim-0001", "sim-0002"]);
    // Pinned by node affinity on metadata.name, bound by the scheduler, with upstream's
    // automatic tolerations and the revision label.
    let p = &pods["sim-0001"];
    assert_eq!(
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0],
        serde_json::json!({"key": "metadata.name", "operator": "In", "values": ["sim-0001"]}),
        "{p}"
    );
    let tolerated: BTreeSet<String> = p["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["key"].as_str().map(str::to_string))
        .collect();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
    ] {
        assert!(tolerated.contains(key), "{key} not in {tolerated:?}");
    }
    assert!(
        p["metadata"]["labels"]["controller-revision-hash"].is_string(),
        "{p}"
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    eventually(WAIT, "status: 3 desired, 3 available", || {
        (ds_status(&s, "agent", "desiredNumberScheduled") == 3
            && ds_status(&s, "agent", "numberAvailable") == 3
            && ds_status(&s, "agent", "updatedNumberScheduled") == 3)
            .then_some(())
    });
    let table = s.ok(&["get", "ds", "agent"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "{table}"
    );

    // A new node gets its pod.
    let _agent = agent(&s, &["--simulate", "1", "--simulate-name-prefix", "extra-"]);
    wait_pods_on(
        &s,
        "app=agent",
        &["sim-0000", "sim-0001", "sim-0002", "extra-0000"],
    );

    // Tolerating the taint puts a pod on the tainted node too.
    s.ok(&[
        "patch",
        "ds",
        "agent",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"dedicated","operator":"Equal","value":"db","effect":"NoSchedule"}]}}}}"#,
    ]);
    wait_pods_on(
        &s,
        "app=agent",
        &["sim-0000", "sim-0001", "sim-0002", "sim-0003", "extra-0000"],
    );

    // A NoExecute taint the pods do not tolerate takes the node's pod away.
    s.ok(&["taint", "node", "sim-0000", "evict=now:NoExecute"]);
    wait_pods_on(
        &s,
        "app=agent",
        &["sim-0001", "sim-0002", "sim-0003", "extra-0000"],
    );

    // A failed daemon pod is replaced.
    let failed = daemon_pods(&s, "app=agent")["sim-0001"]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    s.ok(&[
        "patch",
        "pod",
        &failed,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    eventually(WAIT, "the failed pod replaced", || {
        let pods = wait_pods_on(
            &s,
            "app=agent",
            &["sim-0001", "sim-0002", "sim-0003", "extra-0000"],
        );
        (pods["sim-0001"]["metadata"]["name"] != failed.as_str()).then_some(())
    });

    // A removed node loses its pod.
    s.ok(&["delete", "node", "extra-0000"]);
    wait_pods_on(&s, "app=agent", &["sim-0001", "sim-0002", "sim-0003"]);
    eventually(WAIT, "status: 3 desired", || {
        (ds_status(&s, "agent", "desiredNumberScheduled") == 3
            && ds_status(&s, "agent", "numberMisscheduled") == 0
            && ds_status(&s, "agent", "numberReady") == 3)
            .then_some(())
    });
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=agent",
    ]);
    assert!(
        events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"),
        "{events}"
    );
}

/// Watches the DaemonSet's pods and records the most nodes ever without a ready,
/// non-terminating pod at once (of `nodes`), once armed.
struct Unavailability {
    _rt: tokio::runtime::Runtime,
    armed: Arc<AtomicBool>,
    worst: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Unavailability {
    fn watch(s: &Server, labels: &str, nodes: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(kube_client(s.kubeconfig()));
        let armed = Arc::new(AtomicBool::new(false));
        let worst = Arc::new(AtomicUsize::new(0));
        let log: Arc<Mutex<Vec<String>>> = Default::default();
        let (a, w, l, labels) = (
            armed.clone(),
            worst.clone(),
            log.clone(),
            labels.to_string(),
        );
        rt.spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            // pod name -> (node, ready and not terminating)
            let mut pods: BTreeMap<String, (String, bool)> = BTreeMap::new();
            let stream = watcher(api, watcher::Config::default().labels(&labels));
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => {
                        let ready = p.metadata.deletion_timestamp.is_none()
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                        let node = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default();
                        pods.insert(p.metadata.name.clone().unwrap_or_default(), (node, ready));
                    }
                    Ok(Event::Delete(p)) => {
                        pods.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                let up: BTreeSet<&String> =
                    pods.values().filter(|(_, r)| *r).map(|(n, _)| n).collect();
                let down = nodes.saturating_sub(up.len());
                if a.load(Ordering::SeqCst) {
                    w.fetch_max(down, Ordering::SeqCst);
                }
                l.lock()
                    .expect("lock")
                    .push(format!("{down} down: {pods:?}"));
            }
        });
        Unavailability {
            _rt: rt,
            armed,
            worst,
            log,
        }
    }
}

const ROLL_DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: roll}
spec:
  selector: {matchLabels: {app: roll}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata: {labels: {app: roll}}
    spec:
      containers:
      - {name: c, image: "example.test/roll:1"}
"#;

fn images(s: &Server) -> BTreeSet<String> {
    daemon_pods(s, "app=roll")
        .values()
        .filter_map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn rolling_update_keeps_max_unavailable_and_rollout_history_and_undo_work() {
    let s = cluster(4);
    let nodes = ["sim-0000", "sim-0001", "sim-0002", "sim-0003"];
    s.ok_stdin(&["apply", "-f", "-"], ROLL_DS);
    s.ok(&["rollout", "status", "ds/roll", "--timeout=60s"]);
    let first = wait_pods_on(&s, "app=roll", &nodes);
    let watch = Unavailability::watch(&s, "app=roll", nodes.len());
    // Armed once the watch has seen every pod ready.
    eventually(WAIT, "the watch to see the pods", || {
        let l = watch.log.lock().expect("lock");
        l.last().filter(|e| e.starts_with("0 down")).map(|_| ())
    });
    watch.armed.store(true, Ordering::SeqCst);
    s.ok(&["set", "image", "ds/roll", "c=example.test/roll:2"]);
    let out = s.ok(&["rollout", "status", "ds/roll", "--timeout=90s"]);
    assert!(
        out.contains("daemon set \"roll\" successfully rolled out"),
        "{out}"
    );
    let second = wait_pods_on(&s, "app=roll", &nodes);
    assert_eq!(
        images(&s),
        BTreeSet::from(["example.test/roll:2".to_string()])
    );
    for n in nodes {
        assert_ne!(
            first[n]["metadata"]["name"], second[n]["metadata"]["name"],
            "{n} kept its pod"
        );
    }
    let worst = watch.worst.load(Ordering::SeqCst);
    let log = watch.log.lock().expect("lock").clone();
    assert_eq!(
        worst, 1,
        "at most (and, replacing pods, at least) one node without a ready pod: {log:#?}"
    );

    // History: two revisions; revision 1 shows the first image.
    let history = s.ok(&["rollout", "history", "ds/roll"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let one = s.ok(&["rollout", "history", "ds/roll", "--revision=1"]);
    assert!(one.contains("example.test/roll:1"), "{one}");
    let revs = s.get_json(&["controllerrevisions", "-l", "app=roll"]);
    assert_eq!(revs["items"].as_array().map_or(0, Vec::len), 2, "{revs}");
    assert!(
        revs["items"][0]["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("roll-")),
        "{revs}"
    );

    // Undo goes back to the first template, which becomes revision 3.
    let out = s.ok(&["rollout", "undo", "ds/roll"]);
    assert!(out.contains("rolled back"), "{out}");
    s.ok(&["rollout", "status", "ds/roll", "--timeout=90s"]);
    eventually(WAIT, "pods back on the first image", || {
        (images(&s) == BTreeSet::from(["example.test/roll:1".to_string()])
            && daemon_pods(&s, "app=roll").len() == 4)
            .then_some(())
    });
    let history = s.ok(&["rollout", "history", "ds/roll"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");
    assert_eq!(watch.worst.load(Ordering::SeqCst), 1);
}

#[test]
fn a_surge_update_starts_each_new_pod_before_its_old_one_goes() {
    let s = cluster(3);
    let nodes = ["sim-0000", "sim-0001", "sim-0002"];
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ROLL_DS.replace(
            "rollingUpdate: {maxUnavailable: 1}",
            "rollingUpdate: {maxUnavailable: 0, maxSurge: 1}",
        ),
    );
    s.ok(&["rollout", "status", "ds/roll", "--timeout=60s"]);
    let first = wait_pods_on(&s, "app=roll", &nodes);
    let watch = Unavailability::watch(&s, "app=roll", nodes.len());
    eventually(WAIT, "the watch to see the pods", || {
        let l = watch.log.lock().expect("lock");
        l.last().filter(|e| e.starts_with("0 down")).map(|_| ())
    });
    watch.armed.store(true, Ordering::SeqCst);
    s.ok(&["set", "image", "ds/roll", "c=example.test/roll:2"]);
    s.ok(&["rollout", "status", "ds/roll", "--timeout=90s"]);
    let second = wait_pods_on(&s, "app=roll", &nodes);
    assert_eq!(
        images(&s),
        BTreeSet::from(["example.test/roll:2".to_string()])
    );
    for n in nodes {
        assert_ne!(
            first[n]["metadata"]["name"], second[n]["metadata"]["name"],
            "{n} kept its pod"
        );
    }
    let log = watch.log.lock().expect("lock").clone();
    assert_eq!(
        watch.worst.load(Ordering::SeqCst),
        0,
        "a node was without a ready pod: {log:#?}"
    );
    // Two pods on one node at some moment: the surge happened.
    assert!(
        log.iter().any(|l| {
            let on: Vec<&str> = nodes
                .iter()
                .copied()
                .filter(|n| l.matches(&format!("\"{n}\"")).count() >= 2)
                .collect();
            !on.is_empty()
        }),
        "no node ever had two pods: {log:#?}"
    );

    // Orphaned and adopted again: the same DaemonSet takes the pods back instead of making
    // new ones, and its revision with them.
    s.ok(&["delete", "ds", "roll", "--cascade=orphan"]);
    eventually(WAIT, "the pods orphaned", || {
        daemon_pods(&s, "app=roll")
            .values()
            .all(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|refs| refs.is_empty())
            })
            .then_some(())
    });
    s.ok_stdin(
        &["apply", "-f", "-"],
        &ROLL_DS
            .replace(
                "rollingUpdate: {maxUnavailable: 1}",
                "rollingUpdate: {maxUnavailable: 0, maxSurge: 1}",
            )
            .replace("roll:1", "roll:2"),
    );
    eventually(WAIT, "the pods adopted", || {
        let pods = daemon_pods(&s, "app=roll");
        (pods.len() == 3
            && pods
                .values()
                .all(|p| p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"))
        .then_some(pods)
    });
    let adopted = wait_pods_on(&s, "app=roll", &nodes);
    for n in nodes {
        assert_eq!(
            second[n]["metadata"]["name"], adopted[n]["metadata"]["name"],
            "{n}: a new pod"
        );
    }
    let revs = s.get_json(&["controllerrevisions", "-l", "app=roll"]);
    let owned = revs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet")
        .count();
    assert!(owned >= 1, "{revs}");
}
