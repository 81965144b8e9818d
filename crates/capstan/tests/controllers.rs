//! The controllers against a real server, driven by the real kubectl: Deployments (scale,
//! replace, rolling update with the availability invariant checked on every watch event,
//! rollout status/history/undo/pause/resume/restart, describe events), garbage collection
//! (background, orphan, foreground), namespace deletion, the default ServiceAccount, and
//! Endpoints/EndpointSlices following pod readiness.
//!
//! There are no nodes in these tests: a helper plays the kubelet's part by writing pods'
//! status (Running, an IP, Ready) through the status subresource.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_testkit::{eventually, examples_dir, kube_client, write_file, Server};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(60);

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Plays the kubelet: every pod in `ns` matching `labels` that is not ready (and not in
/// `hold`) becomes Running with an IP and Ready after `delay`.
struct Kubelet {
    rt: tokio::runtime::Runtime,
    hold: Arc<Mutex<BTreeSet<String>>>,
    client: kube::Client,
    ns: String,
}

impl Kubelet {
    fn start(s: &Server, ns: &str, labels: &str, delay: Duration) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(kube_client(s.kubeconfig()));
        let hold: Arc<Mutex<BTreeSet<String>>> = Default::default();
        let (c, h, ns2, labels) = (
            client.clone(),
            hold.clone(),
            ns.to_string(),
            labels.to_string(),
        );
        rt.spawn(async move {
            let api: Api<Pod> = Api::namespaced(c, &ns2);
            let next_ip = AtomicU32::new(2);
            let stream = watcher(api.clone(), watcher::Config::default().labels(&labels));
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let (Ok(Event::Apply(p)) | Ok(Event::InitApply(p))) = ev else {
                    continue;
                };
                let name = p.metadata.name.clone().unwrap_or_default();
                if is_ready(&p)
                    || p.metadata.deletion_timestamp.is_some()
                    || h.lock().expect("lock").contains(&name)
                {
                    continue;
                }
                let n = next_ip.fetch_add(1, Ordering::SeqCst);
                let ip = format!("10.42.{}.{}", n / 250, n % 250 + 2);
                let api = api.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = set_ready(&api, &name, Some(&ip), true).await;
                });
            }
        });
        Kubelet {
            rt,
            hold,
            client,
            ns: ns.into(),
        }
    }

    /// Marks a pod ready or not (and keeps the helper from making it ready again).
    fn set(&self, pod: &str, ready: bool) {
        self.hold.lock().expect("lock").insert(pod.into());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns);
        self.rt
            .block_on(set_ready(&api, pod, None, ready))
            .expect("status write");
    }
}

async fn set_ready(
    api: &Api<Pod>,
    name: &str,
    ip: Option<&str>,
    ready: bool,
) -> Result<(), kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let status = if ready { "True" } else { "False" };
    let mut st = json!({
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": status, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
        ],
    });
    if let Some(ip) = ip {
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{"ip": ip}]);
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": st})),
    )
    .await
    .map(|_| ())
}

/// Watches pods matching `labels` and records every moment when fewer than `min` are ready
/// (once armed).
struct Availability {
    _rt: tokio::runtime::Runtime,
    armed: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Availability {
    fn watch(s: &Server, ns: &str, labels: &str, min: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(kube_client(s.kubeconfig()));
        let armed = Arc::new(AtomicBool::new(false));
        let violations: Arc<Mutex<Vec<String>>> = Default::default();
        let (a, v, ns, labels) = (
            armed.clone(),
            violations.clone(),
            ns.to_string(),
            labels.to_string(),
        );
        rt.spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let mut ready: BTreeMap<String, bool> = BTreeMap::new();
            let stream = watcher(api, watcher::Config::default().labels(&labels));
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => {
                        let up = is_ready(&p) && p.metadata.deletion_timestamp.is_none();
                        ready.insert(p.metadata.name.clone().unwrap_or_default(), up);
                    }
                    Ok(Event::Delete(p)) => {
                        ready.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                    _ => continue,
                }
                let n = ready.values().filter(|r| **r).count();
                if a.load(Ordering::SeqCst) && n < min {
                    v.lock()
                        .expect("lock")
                        .push(format!("{n} ready of {} pods", ready.len()));
                }
            }
        });
        Availability {
            _rt: rt,
            armed,
            violations,
        }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn assert_held(&self) {
        let v = self.violations.lock().expect("lock");
        assert!(
            v.is_empty(),
            "availability dropped below the minimum: {v:?}"
        );
    }
}

fn pods(s: &Server, ns: &str, selector: &str) -> Vec<Value> {
    s.get_json(&["pods", "-n", ns, "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

fn wait_pods(s: &Server, ns: &str, selector: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, &format!("{n} pods {selector} in {ns}"), || {
        let p: Vec<Value> = pods(s, ns, selector)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        (p.len() == n).then_some(p)
    })
}

fn replicasets(s: &Server, ns: &str, selector: &str) -> Vec<Value> {
    s.get_json(&["replicasets", "-n", ns, "-l", selector])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ex(f: &str) -> String {
    examples_dir().join(f).to_string_lossy().into_owned()
}

#[test]
fn a_deployment_keeps_its_pods_scales_and_rolls_out_within_max_unavailable() {
    let s = Server::start(BIN);
    s.ok(&["apply", "-f", &ex("deployment.yaml")]);
    let first = wait_pods(&s, "default", "app=my-app", 3);
    let rss = replicasets(&s, "default", "app=my-app");
    assert_eq!(rss.len(), 1, "one ReplicaSet: {rss:?}");
    let rs = &rss[0];
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_eq!(rs["metadata"]["name"], format!("my-deployment-{hash}"));
    for p in &first {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["name"],
            rs["metadata"]["name"]
        );
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        assert_eq!(p["spec"]["serviceAccountName"], "default");
    }

    // A deleted pod is replaced.
    let victim = first[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    s.ok(&["delete", "pod", &victim]);
    let after = wait_pods(&s, "default", "app=my-app", 3);
    assert!(!names(&after).contains(&victim), "{victim} came back");

    // Scale up and down.
    s.ok(&["scale", "deployment/my-deployment", "--replicas=5"]);
    wait_pods(&s, "default", "app=my-app", 5);
    s.ok(&["scale", "deployment/my-deployment", "--replicas=1"]);
    wait_pods(&s, "default", "app=my-app", 1);
    s.ok(&["scale", "deployment/my-deployment", "--replicas=4"]);
    wait_pods(&s, "default", "app=my-app", 4);

    // Readiness from here on; 4 replicas, maxUnavailable 25% = 1: at least 3 ready always.
    let _kubelet = Kubelet::start(&s, "default", "app=my-app", Duration::from_millis(300));
    let avail = Availability::watch(&s, "default", "app=my-app", 3);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=60s",
    ]);
    eventually(WAIT, "4 ready pods", || {
        let p = pods(&s, "default", "app=my-app");
        (p.iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count()
            == 4)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    avail.arm();

    // A new image: a new ReplicaSet, rolled out within maxUnavailable.
    s.ok(&[
        "set",
        "image",
        "deployment/my-deployment",
        "my-container=nginx:1.27",
    ]);
    let out = s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=90s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(replicasets(&s, "default", "app=my-app").len(), 2);
    let history = s.ok(&["rollout", "history", "deployment/my-deployment"]);
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let d = s.get_json(&["deployment", "my-deployment"]);
    assert_eq!(d["status"]["updatedReplicas"], 4);
    assert_eq!(d["status"]["availableReplicas"], 4);
    let conds = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True"),
        "{conds:?}"
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "NewReplicaSetAvailable"),
        "{conds:?}"
    );

    // Undo: back to revision 1's template (which becomes revision 3).
    s.ok(&["rollout", "undo", "deployment/my-deployment"]);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=90s",
    ]);
    let d = s.get_json(&["deployment", "my-deployment"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let live = pods(&s, "default", "app=my-app");
    assert!(
        live.iter()
            .all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()),
        "pods run revision 1's template again"
    );

    // Pause holds template changes; resume rolls them out.
    s.ok(&["rollout", "pause", "deployment/my-deployment"]);
    s.ok(&[
        "set",
        "image",
        "deployment/my-deployment",
        "my-container=nginx:1.26",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replicasets(&s, "default", "app=my-app").len(),
        2,
        "no new ReplicaSet while paused"
    );
    let d = s.get_json(&["deployment", "my-deployment"]);
    assert!(
        d["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "DeploymentPaused")),
        "{d}"
    );
    s.ok(&["rollout", "resume", "deployment/my-deployment"]);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=90s",
    ]);
    assert_eq!(replicasets(&s, "default", "app=my-app").len(), 3);

    // Restart replaces every pod.
    let before = names(&pods(&s, "default", "app=my-app"));
    s.ok(&["rollout", "restart", "deployment/my-deployment"]);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=90s",
    ]);
    let after = eventually(WAIT, "old pods gone after restart", || {
        let now = names(&pods(&s, "default", "app=my-app"));
        (now.len() == 4 && now.is_disjoint(&before)).then_some(now)
    });
    assert_eq!(after.len(), 4);
    avail.assert_held();

    // describe shows what the controller did.
    let described = s.ok(&["describe", "deployment", "my-deployment"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(
        described.contains("Scaled up replica set my-deployment-"),
        "{described}"
    );
    let rs_events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulCreate",
        "-o",
        "name",
    ]);
    assert!(
        !rs_events.trim().is_empty(),
        "the ReplicaSet controller records SuccessfulCreate"
    );
}

const SMALL: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  replicas: 2
  selector:
    matchLabels:
      app: NAME
  template:
    metadata:
      labels:
        app: NAME
    spec:
      containers:
      - name: c
        image: nginx
";

fn small(s: &Server, name: &str) -> (String, Vec<Value>) {
    let f = write_file(
        s.dir.path(),
        &format!("{name}.yaml"),
        &SMALL.replace("NAME", name),
    );
    s.ok(&["apply", "-f", f.to_str().expect("path")]);
    let sel = format!("app={name}");
    let p = wait_pods(s, "default", &sel, 2);
    let rs = eventually(WAIT, "the replica set", || {
        replicasets(s, "default", &sel).into_iter().next()
    });
    (rs["metadata"]["name"].as_str().expect("rs").to_string(), p)
}

#[test]
fn deleting_a_deployment_cascades_in_the_background_orphans_or_in_the_foreground() {
    let s = Server::start(BIN);

    let (rs, _) = small(&s, "bg");
    s.ok(&["delete", "deployment", "bg"]);
    eventually(WAIT, "background: replica set and pods gone", || {
        (replicasets(&s, "default", "app=bg").is_empty()
            && pods(&s, "default", "app=bg").is_empty())
        .then_some(())
    });
    let _ = rs;

    let (rs, p) = small(&s, "orphan");
    s.ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    s.fails(&["get", "deployment", "orphan"]);
    std::thread::sleep(Duration::from_secs(1));
    let left = s.get_json(&["replicaset", &rs]);
    assert!(
        left["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "ownerReference removed: {left}"
    );
    assert_eq!(
        names(&pods(&s, "default", "app=orphan")),
        names(&p),
        "pods stay"
    );

    let (rs, _) = small(&s, "fg");
    // kubectl waits for the deployment itself to go; with Foreground that is after its
    // dependents went.
    s.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        replicasets(&s, "default", "app=fg").is_empty(),
        "replica set {rs} went first"
    );
    assert!(pods(&s, "default", "app=fg").is_empty(), "pods went first");
}

#[test]
fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let s = Server::start(BIN);
    s.ok(&["create", "namespace", "doomed"]);
    eventually(WAIT, "the default service account", || {
        s.kubectl(&["get", "serviceaccount", "default", "-n", "doomed"])
            .status
            .success()
            .then_some(())
    });
    s.ok(&["apply", "-n", "doomed", "-f", &ex("deployment.yaml")]);
    s.ok(&["apply", "-n", "doomed", "-f", &ex("service.yaml")]);
    s.ok(&[
        "create",
        "configmap",
        "cm",
        "-n",
        "doomed",
        "--from-literal=a=b",
    ]);
    wait_pods(&s, "doomed", "app=my-app", 3);
    s.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let err = s.fails(&["get", "namespace", "doomed"]);
    assert!(err.contains("NotFound"), "{err}");
    let all = s.ok(&[
        "get",
        "pods,replicasets,deployments,services,configmaps,endpoints,endpointslices",
        "-n",
        "doomed",
        "-o",
        "name",
    ]);
    assert!(all.trim().is_empty(), "left behind: {all}");
}

#[test]
fn endpoints_and_slices_list_exactly_the_ready_pods_and_follow_readiness() {
    let s = Server::start(BIN);
    s.ok(&["apply", "-f", &ex("deployment.yaml")]);
    s.ok(&["apply", "-f", &ex("service.yaml")]);
    wait_pods(&s, "default", "app=my-app", 3);
    let kubelet = Kubelet::start(&s, "default", "app=my-app", Duration::ZERO);
    let ready_ips = |s: &Server| -> BTreeSet<String> {
        pods(s, "default", "app=my-app")
            .iter()
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect()
    };
    let endpoint_ips = |s: &Server, field: &str| -> BTreeSet<String> {
        let ep = s.get_json(&["endpoints", "my-service"]);
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|ss| ss[field].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    };
    let slice_ips = |s: &Server, ready: bool| -> BTreeSet<String> {
        let l = s.get_json(&[
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=my-service",
        ]);
        l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == ready)
            .filter_map(|e| e["addresses"][0].as_str().map(str::to_string))
            .collect()
    };
    let all3 = eventually(WAIT, "three ready pods in the endpoints", || {
        let r = ready_ips(&s);
        (r.len() == 3 && endpoint_ips(&s, "addresses") == r && slice_ips(&s, true) == r)
            .then_some(r)
    });
    let ep = s.get_json(&["endpoints", "my-service"]);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 80);
    let slices = s.get_json(&[
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=my-service",
    ]);
    assert_eq!(slices["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        slices["items"][0]["metadata"]["ownerReferences"][0]["kind"],
        "Service"
    );
    assert_eq!(slices["items"][0]["addressType"], "IPv4");

    // One pod stops being ready: it moves to notReadyAddresses / ready=false.
    let p = pods(&s, "default", "app=my-app");
    let (name, ip) = (
        p[0]["metadata"]["name"].as_str().expect("name").to_string(),
        p[0]["status"]["podIP"].as_str().expect("ip").to_string(),
    );
    kubelet.set(&name, false);
    eventually(WAIT, "the unready pod leaves the ready addresses", || {
        let mut ready = all3.clone();
        ready.remove(&ip);
        (endpoint_ips(&s, "addresses") == ready
            && endpoint_ips(&s, "notReadyAddresses") == BTreeSet::from([ip.clone()])
            && slice_ips(&s, true) == ready
            && slice_ips(&s, false) == BTreeSet::from([ip.clone()]))
        .then_some(())
    });
    kubelet.set(&name, true);
    eventually(WAIT, "ready again", || {
        (endpoint_ips(&s, "addresses") == all3 && slice_ips(&s, true) == all3).then_some(())
    });

    // The Service goes: its Endpoints and slices go too.
    s.ok(&["delete", "service", "my-service"]);
    eventually(WAIT, "endpoints and slices gone", || {
        let left = s.ok(&[
            "get",
            "endpoints,endpointslices",
            "-l",
            "kubernetes.io/service-name=my-service",
            "-o",
            "name",
        ]);
        (left.trim().is_empty()
            && !s
                .kubectl(&["get", "endpoints", "my-service"])
                .status
                .success())
        .then_some(())
    });
}

#[test]
fn a_replication_controller_keeps_its_pods_and_adopts_orphans() {
    let s = Server::start(BIN);
    let rc = "apiVersion: v1
kind: ReplicationController
metadata:
  name: rc
spec:
  replicas: 2
  selector:
    app: rc
  template:
    metadata:
      labels:
        app: rc
    spec:
      containers:
      - name: c
        image: nginx
";
    let orphan = "apiVersion: v1
kind: Pod
metadata:
  name: stray
  labels:
    app: rc
spec:
  containers:
  - name: c
    image: nginx
";
    s.ok_stdin(&["apply", "-f", "-"], orphan);
    s.ok_stdin(&["apply", "-f", "-"], rc);
    let p = wait_pods(&s, "default", "app=rc", 2);
    assert!(
        names(&p).contains("stray"),
        "the matching orphan was adopted: {p:?}"
    );
    let stray = s.get_json(&["pod", "stray"]);
    assert_eq!(
        stray["metadata"]["ownerReferences"][0]["kind"],
        "ReplicationController"
    );
    let rcj = eventually(WAIT, "status", || {
        let r = s.get_json(&["rc", "rc"]);
        (r["status"]["replicas"] == 2 && r["status"]["observedGeneration"] == 1).then_some(r)
    });
    assert_eq!(rcj["status"]["fullyLabeledReplicas"], 2);
    // Relabelled, the pod is released and replaced.
    s.ok(&["label", "pod", "stray", "app=other", "--overwrite"]);
    wait_pods(&s, "default", "app=rc", 2);
    let released = eventually(WAIT, "released", || {
        let p = s.get_json(&["pod", "stray"]);
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty())
            .then_some(p)
    });
    assert_eq!(released["metadata"]["labels"]["app"], "other");
}

#[test]
fn the_controller_manager_holds_a_lease_and_can_be_disabled() {
    let s = Server::start(BIN);
    let lease = eventually(WAIT, "the lease", || {
        let out = s.kubectl(&[
            "get",
            "lease",
            "capstan-controller-manager",
            "-n",
            "kube-system",
            "-o",
            "json",
        ]);
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).expect("json"))
    });
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{lease}"
    );
    // The controllers' metrics are part of the server's /metrics.
    let m = eventually(WAIT, "controller metrics", || {
        let m = s.ok(&["get", "--raw", "/metrics"]);
        m.contains("controller_reconciles_total{controller=\"serviceaccount\"}")
            .then_some(m)
    });
    assert!(m.contains("controller_manager_leader 1"), "{m}");
    drop(s);
    let s = Server::start_with(BIN, &["--disable-controllers", "deployment"]);
    s.ok(&["apply", "-f", &ex("deployment.yaml")]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        replicasets(&s, "default", "app=my-app").is_empty(),
        "the deployment controller is off"
    );
    // Others still run.
    eventually(WAIT, "the default service account", || {
        s.kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
            .then_some(())
    });
}

#[test]
fn with_simulated_nodes_deployments_roll_out_and_endpoints_follow() {
    let s = Server::start_with(BIN, &["--simulate-nodes", "2"]);
    s.ok(&["apply", "-f", &ex("deployment.yaml")]);
    s.ok(&["apply", "-f", &ex("service.yaml")]);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=60s",
    ]);
    let ready = eventually(WAIT, "three addresses", || {
        let ep = s.get_json(&["endpoints", "my-service"]);
        let n = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (n == 3).then_some(ep)
    });
    assert!(
        ready["subsets"][0]["addresses"][0]["nodeName"]
            .as_str()
            .is_some_and(|n| n.starts_with("sim-")),
        "{ready}"
    );
    s.ok(&[
        "set",
        "image",
        "deployment/my-deployment",
        "my-container=nginx:1.27",
    ]);
    s.ok(&[
        "rollout",
        "status",
        "deployment/my-deployment",
        "--timeout=90s",
    ]);
    let live = eventually(WAIT, "only new pods", || {
        let p: Vec<Value> = pods(&s, "default", "app=my-app");
        let images: BTreeSet<String> = p
            .iter()
            .filter_map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        (p.len() == 3 && images == BTreeSet::from(["nginx:1.27".to_string()])).then_some(p)
    });
    eventually(WAIT, "endpoints list the new pods", || {
        let ep = s.get_json(&["endpoints", "my-service"]);
        let ips: BTreeSet<String> = ep["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        let want: BTreeSet<String> = live
            .iter()
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        (ips == want && ep["subsets"][0]["notReadyAddresses"].is_null()).then_some(())
    });
    s.ok(&["delete", "deployment", "my-deployment", "--timeout=60s"]);
    eventually(WAIT, "pods finished terminating", || {
        pods(&s, "default", "app=my-app").is_empty().then_some(())
    });
}

#[test]
fn recreate_replaces_all_pods_and_a_stuck_rollout_exceeds_its_progress_deadline() {
    let s = Server::start(BIN);
    // Recreate: old pods go before new ones come.
    let recreate = SMALL.replace("NAME", "rec").replace(
        "  replicas: 2\n",
        "  replicas: 2\n  strategy:\n    type: Recreate\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &recreate);
    let _kubelet = Kubelet::start(&s, "default", "app=rec", Duration::from_millis(100));
    s.ok(&["rollout", "status", "deployment/rec", "--timeout=60s"]);
    let old = names(&pods(&s, "default", "app=rec"));
    s.ok(&["set", "image", "deployment/rec", "c=nginx:1.27"]);
    s.ok(&["rollout", "status", "deployment/rec", "--timeout=60s"]);
    let now = wait_pods(&s, "default", "app=rec", 2);
    assert!(names(&now).is_disjoint(&old));
    let rss = replicasets(&s, "default", "app=rec");
    assert_eq!(rss.len(), 2);
    assert!(
        rss.iter().any(|r| r["spec"]["replicas"] == 0),
        "the old ReplicaSet is scaled to zero: {rss:?}"
    );

    // Pods that never become ready: Progressing turns False with ProgressDeadlineExceeded.
    let stuck = SMALL.replace("NAME", "stuck").replace(
        "  replicas: 2\n",
        "  replicas: 2\n  progressDeadlineSeconds: 2\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &stuck);
    let d = eventually(WAIT, "the progress deadline", || {
        let d = s.get_json(&["deployment", "stuck"]);
        d["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "Progressing"
                        && c["status"] == "False"
                        && c["reason"] == "ProgressDeadlineExceeded"
                })
            })
            .then_some(d)
    });
    assert!(
        d["status"]["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "False")),
        "{d}"
    );
    let err = s.fails(&["rollout", "status", "deployment/stuck", "--timeout=10s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}
