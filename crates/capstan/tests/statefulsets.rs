//! StatefulSets on simulated nodes with the real kubectl: OrderedReady start-up in ordinal
//! order (each pod created only once the one before is Ready, checked on the pod watch),
//! stable names and identity, a deleted pod recreated under its name, scale-down from the
//! highest ordinal, Parallel management, a partitioned rolling update with `kubectl rollout
//! status|history|undo`, and PersistentVolumeClaims from volumeClaimTemplates (kept on
//! scale-down by default, deleted with their pod under whenScaled: Delete).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::collections::BTreeSet;
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

/// The life of the pods matching a selector as the watch saw it, in order:
/// `created web-0`, `ready web-0`, `terminating web-2`, `deleted web-2`.
struct PodLog {
    _rt: tokio::runtime::Runtime,
    log: Arc<Mutex<Vec<String>>>,
}

impl PodLog {
    fn watch(s: &Server, labels: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(kube_client(s.kubeconfig()));
        let log: Arc<Mutex<Vec<String>>> = Default::default();
        let (l, labels) = (log.clone(), labels.to_string());
        rt.spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, "default");
            // name -> (uid, ready, terminating)
            let mut seen: std::collections::BTreeMap<String, (String, bool, bool)> =
                Default::default();
            let stream = watcher(api, watcher::Config::default().labels(&labels));
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let mut out = Vec::new();
                match ev {
                    Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let uid = p.metadata.uid.clone().unwrap_or_default();
                        let ready = p
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            });
                        let terminating = p.metadata.deletion_timestamp.is_some();
                        let prev = seen.get(&name).cloned();
                        if prev.as_ref().is_none_or(|(u, _, _)| *u != uid) {
                            out.push(format!("created {name}"));
                        }
                        let (was_ready, was_term) = match &prev {
                            Some((u, r, t)) if *u == uid => (*r, *t),
                            _ => (false, false),
                        };
                        if ready && !was_ready {
                            out.push(format!("ready {name}"));
                        }
                        if terminating && !was_term {
                            out.push(format!("terminating {name}"));
                        }
                        seen.insert(name, (uid, ready, terminating));
                    }
                    Ok(Event::Delete(p)) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        seen.remove(&name);
                        out.push(format!("deleted {name}"));
                    }
                    _ => {}
                }
                l.lock().expect("lock").extend(out);
            }
        });
        PodLog { _rt: rt, log }
    }

    fn entries(&self) -> Vec<String> {
        self.log.lock().expect("lock").clone()
    }

    fn position(&self, entry: &str) -> Option<usize> {
        self.entries().iter().position(|e| e == entry)
    }
}

fn pods(s: &Server, selector: &str) -> Vec<Value> {
    s.get_json(&["pods", "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(s: &Server, selector: &str) -> BTreeSet<String> {
    pods(s, selector)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Waits until the set's pods are exactly `want`, all Running and Ready.
fn wait_ready_pods(s: &Server, selector: &str, want: &[&str]) -> Vec<Value> {
    eventually(WAIT, &format!("pods {want:?} ready"), || {
        let all = pods(s, selector);
        let ok = all.len() == want.len()
            && names(s, selector) == set(want)
            && all.iter().all(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            });
        ok.then_some(all)
    })
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: nginx, image: "example.test/nginx:1"}
"#;

#[test]
fn ordered_pods_start_in_order_keep_their_names_and_scale_down_in_reverse() {
    let s = cluster(2);
    let log = PodLog::watch(&s, "app=web");
    s.ok_stdin(&["apply", "-f", "-"], WEB);
    let all = wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);
    eventually(WAIT, "the watch to see web-2 ready", || {
        log.position("ready web-2")
    });
    // Each pod was created only after the one before it was Ready.
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = log.position(&format!("ready {before}")).expect("ready");
        let created = log.position(&format!("created {after}")).expect("created");
        assert!(
            ready < created,
            "{after} created before {before} was Ready: {:?}",
            log.entries()
        );
    }
    let web1 = all
        .iter()
        .find(|p| p["metadata"]["name"] == "web-1")
        .expect("web-1");
    assert_eq!(web1["spec"]["hostname"], "web-1");
    assert_eq!(web1["spec"]["subdomain"], "nginx");
    assert_eq!(
        web1["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        web1["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    assert_eq!(
        web1["metadata"]["ownerReferences"][0]["kind"],
        "StatefulSet"
    );
    let sts = s.get_json(&["sts", "web"]);
    let st = &sts["status"];
    assert_eq!(
        (
            st["replicas"].as_i64(),
            st["readyReplicas"].as_i64(),
            st["availableReplicas"].as_i64()
        ),
        (Some(3), Some(3), Some(3)),
        "{st}"
    );
    assert_eq!(st["currentRevision"], st["updateRevision"], "{st}");
    assert_eq!(
        st["observedGeneration"], sts["metadata"]["generation"],
        "{st}"
    );
    assert_eq!(
        web1["metadata"]["labels"]["controller-revision-hash"],
        st["updateRevision"]
    );
    let table = s.ok(&["get", "sts", "web"]);
    assert!(
        table.starts_with("NAME") && table.contains("3/3"),
        "{table}"
    );

    // A deleted pod comes back under its name.
    let uid = web1["metadata"]["uid"].as_str().expect("uid").to_string();
    s.ok(&["delete", "pod", "web-1"]);
    eventually(WAIT, "web-1 to come back", || {
        let p = s.get_json(&["pod", "web-1"]);
        (p["metadata"]["uid"].as_str().is_some_and(|u| u != uid)
            && p["status"]["phase"] == "Running")
            .then_some(())
    });
    wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);

    // A pod's identity label is put back.
    s.ok(&[
        "label",
        "pod",
        "web-0",
        "statefulset.kubernetes.io/pod-name-",
    ]);
    eventually(WAIT, "web-0's pod-name label back", || {
        (s.get_json(&["pod", "web-0"])["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"]
            == "web-0")
            .then_some(())
    });

    // Scale down: web-2 goes first, web-1 only once web-2 is gone.
    s.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_ready_pods(&s, "app=web", &["web-0"]);
    eventually(WAIT, "the watch to see web-1 deleted", || {
        log.position("deleted web-1")
    });
    let gone2 = log.position("deleted web-2").expect("web-2 deleted");
    let entries = log.entries();
    let term1 = entries
        .iter()
        .rposition(|e| e == "terminating web-1")
        .expect("web-1 terminated");
    assert!(
        gone2 < term1,
        "web-1 was deleted before web-2 was gone: {entries:?}"
    );
    eventually(WAIT, "status to show one replica", || {
        let st = s.get_json(&["sts", "web"])["status"].clone();
        (st["replicas"] == 1 && st["readyReplicas"] == 1).then_some(())
    });
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("create Pod web-2 in StatefulSet web successful"),
        "{events}"
    );
    assert!(
        events.contains("delete Pod web-2 in StatefulSet web successful"),
        "{events}"
    );
}

const PARALLEL: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: par}
spec:
  serviceName: par
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: par}}
  template:
    metadata: {labels: {app: par}}
    spec:
      nodeSelector: {nowhere: "true"}
      containers:
      - {name: c, image: "example.test/par:1"}
"#;

#[test]
fn parallel_creates_all_at_once_and_a_partitioned_update_rolls_back() {
    let s = cluster(2);
    // Parallel: all three pods exist although none can be scheduled, let alone Ready.
    s.ok_stdin(&["apply", "-f", "-"], PARALLEL);
    eventually(WAIT, "three unschedulable pods", || {
        (names(&s, "app=par") == set(&["par-0", "par-1", "par-2"])).then_some(())
    });
    // OrderedReady with the same template stops at the first.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &PARALLEL
            .replace("name: par}", "name: ord}")
            .replace("app: par}", "app: ord}")
            .replace("  podManagementPolicy: Parallel\n", ""),
    );
    eventually(WAIT, "ord-0 pending", || {
        (names(&s, "app=ord") == set(&["ord-0"])).then_some(())
    });

    let part = PARALLEL
        .replace("name: par}", "name: web}")
        .replace("app: par}", "app: web}")
        .replace("      nodeSelector: {nowhere: \"true\"}\n", "")
        .replace(
            "  podManagementPolicy: Parallel\n",
            "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 2}}\n",
        );
    s.ok_stdin(&["apply", "-f", "-"], &part);
    wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);
    // The ord set never got past its first pod.
    assert_eq!(names(&s, "app=ord"), set(&["ord-0"]));
    let image_of = |name: &str| {
        s.get_json(&["pod", name])["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    s.ok(&["set", "image", "sts/web", "c=example.test/par:2"]);
    let out = s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    eventually(WAIT, "web-2 updated and ready", || {
        (image_of("web-2") == "example.test/par:2").then_some(())
    });
    wait_ready_pods(&s, "app=web", &["web-0", "web-1", "web-2"]);
    assert_eq!(image_of("web-0"), "example.test/par:1");
    assert_eq!(image_of("web-1"), "example.test/par:1");
    let st = s.get_json(&["sts", "web"])["status"].clone();
    assert_ne!(st["currentRevision"], st["updateRevision"], "{st}");
    assert_eq!(st["updatedReplicas"], 1, "{st}");

    // Partition 0: everything moves to the new revision.
    s.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let out = s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    for p in ["web-0", "web-1", "web-2"] {
        assert_eq!(image_of(p), "example.test/par:2");
    }
    let history = s.ok(&["rollout", "history", "sts/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo: back to the first image on every pod.
    s.ok(&["rollout", "undo", "sts/web"]);
    s.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    eventually(WAIT, "all pods back on the first image", || {
        ["web-0", "web-1", "web-2"]
            .iter()
            .all(|p| image_of(p) == "example.test/par:1")
            .then_some(())
    });
    let st = s.get_json(&["sts", "web"])["status"].clone();
    assert_eq!(st["currentRevision"], st["updateRevision"], "{st}");
    let history = s.ok(&["rollout", "history", "sts/web"]);
    assert!(history.lines().any(|l| l.starts_with('3')), "{history}");
}

const CLAIMS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: c
        image: "example.test/db:1"
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data, labels: {tier: storage}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

fn claim_names(s: &Server, selector: &str) -> BTreeSet<String> {
    s.get_json(&["pvc", "-l", selector])["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn claims_are_made_per_pod_and_kept_or_deleted_on_scale_down_as_the_policy_says() {
    let s = cluster(1);
    s.ok_stdin(&["apply", "-f", "-"], CLAIMS);
    eventually(WAIT, "three claims", || {
        (claim_names(&s, "app=db") == set(&["data-db-0", "data-db-1", "data-db-2"])).then_some(())
    });
    let c = s.get_json(&["pvc", "data-db-1"]);
    assert_eq!(c["metadata"]["labels"]["app"], "db", "{c}");
    assert_eq!(c["metadata"]["labels"]["tier"], "storage", "{c}");
    assert!(
        c["metadata"]["ownerReferences"].is_null(),
        "Retain keeps claims unowned: {c}"
    );
    assert_eq!(c["spec"]["resources"]["requests"]["storage"], "1Gi");
    eventually(WAIT, "three pods", || {
        (names(&s, "app=db") == set(&["db-0", "db-1", "db-2"])).then_some(())
    });
    let p = s.get_json(&["pod", "db-1"]);
    let vols = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    assert!(
        vols.iter()
            .any(|v| v["name"] == "data" && v["persistentVolumeClaim"]["claimName"] == "data-db-1"),
        "{p}"
    );
    // Default retention: scale-down keeps the claims.
    s.ok(&["scale", "sts", "db", "--replicas=1"]);
    eventually(WAIT, "one pod", || {
        (names(&s, "app=db") == set(&["db-0"])).then_some(())
    });
    assert_eq!(
        claim_names(&s, "app=db"),
        set(&["data-db-0", "data-db-1", "data-db-2"])
    );

    // whenScaled: Delete hands the claims of removed pods to them, so they go together;
    // whenDeleted: Delete makes the set own every claim.
    s.ok(&["patch", "sts", "db", "-p", r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete","whenDeleted":"Delete"}}}"#]);
    s.ok(&["scale", "sts", "db", "--replicas=3"]);
    eventually(WAIT, "three pods again", || {
        (names(&s, "app=db") == set(&["db-0", "db-1", "db-2"])).then_some(())
    });
    eventually(WAIT, "the set to own the claims", || {
        let c = s.get_json(&["pvc", "data-db-2"]);
        (c["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet").then_some(())
    });
    s.ok(&["scale", "sts", "db", "--replicas=2"]);
    eventually(WAIT, "db-2 and its claim gone", || {
        (names(&s, "app=db") == set(&["db-0", "db-1"])
            && claim_names(&s, "app=db") == set(&["data-db-0", "data-db-1"]))
        .then_some(())
    });
}

/// The issue's end-to-end case on real containerd: a StatefulSet of 3 with a claim template;
/// every pod writes to its own claim; web-1, deleted, comes back under its name and finds its
/// predecessor's data; scaling to 1 removes web-2 before web-1 and keeps every claim.
/// Each start appends a line to the claim and prints what was there, so the second
/// incarnation's log shows the first one's line.
#[test]
fn a_recreated_pod_finds_the_data_its_predecessor_wrote_to_its_claim() {
    use capstan_testkit::agent::BUSYBOX;
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {BUSYBOX}
        command: [sh, -c, 'cat /data/log 2>/dev/null; echo "started $(hostname) $(cat /proc/sys/kernel/random/uuid)" >> /data/log; sleep 3600']
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    ));
    let wait = Duration::from_secs(180);
    let running_uid = |name: &str| {
        let p = s.get_json(&["pod", name]);
        (p["status"]["phase"] == "Running")
            .then(|| p["metadata"]["uid"].as_str().unwrap_or("").to_string())
    };
    let first_line = |ord: usize| {
        let claim = format!("data-web-{ord}");
        assert_eq!(s.jsonpath(&["pvc", &claim], "{.status.phase}"), "Bound");
        // The claim's volume is a directory on this host (local-path).
        let pv = s.jsonpath(&["pvc", &claim], "{.spec.volumeName}");
        let dir = s.jsonpath(&["pv", &pv], "{.spec.hostPath.path}");
        eventually(wait, "the first start's line", || {
            let text = std::fs::read_to_string(std::path::Path::new(&dir).join("log")).ok()?;
            text.lines()
                .next()
                .filter(|l| l.starts_with(&format!("started web-{ord} ")))
                .map(str::to_string)
        })
    };
    let mut uids = Vec::new();
    let mut lines = Vec::new();
    for ord in 0..3 {
        let name = format!("web-{ord}");
        uids.push(eventually(wait, "pod running", || running_uid(&name)));
        lines.push(first_line(ord));
    }
    // Three claims, three different directories, each with its own pod's line.
    assert_eq!(
        lines.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );

    s.ok(&["delete", "pod", "web-1"]);
    eventually(wait, "web-1 back", || {
        running_uid("web-1").filter(|uid| uid != &uids[1])
    });
    eventually(wait, "the new web-1 to print the old line", || {
        s.ok(&["logs", "web-1"]).contains(&lines[1]).then_some(())
    });

    s.ok(&["scale", "sts/web", "--replicas=1"]);
    // Scale-down goes from the highest ordinal: web-1 stays until web-2 is gone.
    eventually(wait, "web-2 gone", || {
        let names = s.ok(&["get", "pods", "-o", "name"]);
        if names.contains("pod/web-2") {
            assert!(
                names.contains("pod/web-1"),
                "web-1 went before web-2: {names}"
            );
            return None;
        }
        Some(())
    });
    eventually(wait, "web-1 gone", || {
        (!s.ok(&["get", "pods", "-o", "name"]).contains("pod/web-1")).then_some(())
    });
    // The default retention policy keeps the claims of the removed pods.
    for ord in 0..3 {
        assert_eq!(
            s.jsonpath(&["pvc", &format!("data-web-{ord}")], "{.status.phase}"),
            "Bound"
        );
    }
}
