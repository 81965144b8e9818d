//! The API objects a simulated node writes, built without I/O: its Node (spec, labels,
//! capacity, nodeInfo, addresses, conditions), its Lease, and the status of a pod it "runs"
//! (Running and Ready, with a pod IP, container statuses and conditions), as a kubelet would
//! report them.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::config::Config;

/// The version simulated kubelets report.
pub const KUBELET_VERSION: &str = "v1.32.0";
pub const CONTAINER_RUNTIME_VERSION: &str = "sim://0.1.0";
pub const OS_IMAGE: &str = "capstan simulated node";
pub const KERNEL_VERSION: &str = "6.1.0-simulated";
/// Every simulated node carries this label.
pub const SIMULATED_LABEL: &str = "capstan.io/simulated";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// RFC 3339 with second precision (metav1.Time).
pub fn time(t: k8s_openapi::jiff::Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_default()
}

/// RFC 3339 with microseconds (metav1.MicroTime).
pub fn micro_time(t: k8s_openapi::jiff::Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S.%6fZ", t).unwrap_or_default()
}

fn hex_id(parts: &[&str], len: usize) -> String {
    let mut out = String::new();
    let mut round = 0u64;
    while out.len() < len {
        let mut h = DefaultHasher::new();
        round.hash(&mut h);
        parts.hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
        round += 1;
    }
    out.truncate(len);
    out
}

/// The conditions a healthy kubelet reports; `since` is when the node became Ready.
pub fn node_conditions(since: &str, heartbeat: &str) -> Value {
    let c = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": heartbeat, "lastTransitionTime": since})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

/// A node's status: capacity (= allocatable), addresses, nodeInfo and conditions.
pub fn node_status(
    cfg: &Config,
    name: &str,
    node_ip: Ipv4Addr,
    since: &str,
    heartbeat: &str,
) -> Value {
    json!({
        "capacity": cfg.capacity,
        "allocatable": cfg.capacity,
        "conditions": node_conditions(since, heartbeat),
        "addresses": [
            {"type": "InternalIP", "address": node_ip.to_string()},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": hex_id(&[name, "machine"], 32),
            "systemUUID": hex_id(&[name, "uuid"], 32),
            "bootID": hex_id(&[name, "boot"], 32),
            "kernelVersion": KERNEL_VERSION,
            "osImage": OS_IMAGE,
            "containerRuntimeVersion": CONTAINER_RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// The Node object simulated node `index` registers with.
pub fn node(
    cfg: &Config,
    index: usize,
    name: &str,
    pod_cidr: &str,
    node_ip: Ipv4Addr,
    now: &str,
) -> Value {
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        (SIMULATED_LABEL, "true"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    for (k, v) in cfg.labels_for(index) {
        labels.insert(k, json!(v));
    }
    let mut spec = json!({"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]});
    if !cfg.taints.is_empty() {
        spec["taints"] = json!(cfg.taints);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": node_status(cfg, name, node_ip, now, now),
    })
}

/// A node's Lease, owned by the Node so that it goes when the node does.
pub fn lease(name: &str, node_uid: &str, duration_secs: u64, renew: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": name, "leaseDurationSeconds": duration_secs, "renewTime": renew},
    })
}

/// The status a kubelet reports once all of a pod's containers run: phase Running, every
/// condition True, the pod IP (the node's IP with hostNetwork), containers running, started
/// and ready, init containers completed (sidecars running). Merge-patched onto the pod.
pub fn running_status(pod: &Pod, node_ip: Ipv4Addr, pod_ip: Ipv4Addr, now: &str) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let status = pod.status.as_ref();
    let start_time = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| time(t.0))
        .unwrap_or_else(|| now.to_string());
    let scheduled_since = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| time(t.0))
        .unwrap_or_else(|| now.to_string());
    let container = |name: &str, image: &str| -> (String, String) {
        (
            format!("sim://{}", hex_id(&[uid, name], 64)),
            format!("sim://sha256:{}", hex_id(&[image], 64)),
        )
    };
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let (id, image_id) = container(&c.name, &image);
            json!({"name": c.name, "image": image, "imageID": image_id, "containerID": id,
                   "ready": true, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}, "lastState": {}})
        })
        .collect();
    let init: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let (id, image_id) = container(&c.name, &image);
            if c.restart_policy.as_deref() == Some("Always") {
                json!({"name": c.name, "image": image, "imageID": image_id, "containerID": id,
                       "ready": true, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": now}}, "lastState": {}})
            } else {
                json!({"name": c.name, "image": image, "imageID": image_id, "containerID": id,
                       "ready": true, "started": false, "restartCount": 0,
                       "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": id}},
                       "lastState": {}})
            }
        })
        .collect();
    let cond = |type_: &str, since: &str| json!({"type": type_, "status": "True", "lastProbeTime": null, "lastTransitionTime": since});
    let ip = if spec.host_network == Some(true) {
        node_ip
    } else {
        pod_ip
    };
    let mut out = json!({
        "phase": "Running",
        "conditions": [
            cond("PodReadyToStartContainers", now),
            cond("Initialized", now),
            cond("Ready", now),
            cond("ContainersReady", now),
            cond("PodScheduled", &scheduled_since),
        ],
        "hostIP": node_ip.to_string(),
        "hostIPs": [{"ip": node_ip.to_string()}],
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "startTime": start_time,
        "containerStatuses": containers,
    });
    if !init.is_empty() {
        out["initContainerStatuses"] = json!(init);
    }
    json!({"status": out})
}

/// Whether a simulated pod "exits" once running: a Job's pods (controller reference to a
/// batch Job) that are not restarted (restartPolicy Never or OnFailure), as kwok's default
/// pod-complete stage. Their containers exit 0, so the pod Succeeds.
pub fn runs_to_completion(pod: &Pod) -> bool {
    let job_owned = pod.metadata.owner_references.iter().flatten().any(|r| {
        r.controller == Some(true) && r.kind == "Job" && r.api_version.starts_with("batch/")
    });
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    job_owned && matches!(policy, Some("Never" | "OnFailure"))
}

/// The status patch of a pod whose containers all exited 0 at `now` (phase Succeeded), as a
/// kubelet reports it; `started` is when they started.
pub fn succeeded_status(pod: &Pod, started: &str, now: &str) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let id = format!("sim://{}", hex_id(&[uid, &c.name], 64));
            json!({"name": c.name, "image": image,
                   "imageID": format!("sim://sha256:{}", hex_id(&[&image], 64)), "containerID": id,
                   "ready": false, "started": false, "restartCount": 0,
                   "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now, "containerID": id}},
                   "lastState": {}})
        })
        .collect();
    let cond = |type_: &str, status: &str, reason: Option<&str>| json!({"type": type_, "status": status, "reason": reason, "lastProbeTime": null, "lastTransitionTime": now});
    json!({"status": {
        "phase": "Succeeded",
        "conditions": [
            cond("PodReadyToStartContainers", "False", None),
            cond("Initialized", "True", Some("PodCompleted")),
            cond("Ready", "False", Some("PodCompleted")),
            cond("ContainersReady", "False", Some("PodCompleted")),
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": started}),
        ],
        "containerStatuses": containers,
    }})
}

/// Whether the pod already shows what [`running_status`] would write (after a restart).
pub fn looks_running(pod: &Pod) -> bool {
    let Some(s) = pod.status.as_ref() else {
        return false;
    };
    s.phase.as_deref() == Some("Running")
        && s.pod_ip.is_some()
        && s.container_statuses
            .as_ref()
            .is_some_and(|c| c.iter().all(|c| c.ready))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_job_pods_that_are_not_restarted_run_to_completion() {
        let pod = |kind: &str, policy: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "uid": "u", "ownerReferences": [
                    {"apiVersion": if kind == "Job" { "batch/v1" } else { "apps/v1" }, "kind": kind,
                     "name": "o", "uid": "o", "controller": true}]},
                "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "i"}]},
            }))
            .expect("pod")
        };
        assert!(runs_to_completion(&pod("Job", "Never")));
        assert!(runs_to_completion(&pod("Job", "OnFailure")));
        assert!(!runs_to_completion(&pod("Job", "Always")));
        assert!(!runs_to_completion(&pod("ReplicaSet", "Never")));
        let s = succeeded_status(&pod("Job", "Never"), "t0", "t1");
        assert_eq!(s["status"]["phase"], "Succeeded");
        let c = &s["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (c["exitCode"].as_i64(), c["finishedAt"].as_str()),
            (Some(0), Some("t1"))
        );
    }

    fn cfg() -> Config {
        let mut c = Config {
            count: 3,
            ..Default::default()
        };
        c.set_labels(&["zone=z{index%2}".into()]).expect("labels");
        c.set_taints(&["dedicated=sim:NoSchedule".into()])
            .expect("taints");
        c
    }

    #[test]
    fn a_node_carries_labels_taints_capacity_and_a_ready_condition() {
        let c = cfg();
        let n = node(
            &c,
            1,
            "sim-0001",
            "10.64.1.0/24",
            Ipv4Addr::new(10, 64, 1, 1),
            "2025-01-01T00:00:00Z",
        );
        assert_eq!(n["metadata"]["labels"]["zone"], "z1");
        assert_eq!(
            n["metadata"]["labels"]["kubernetes.io/hostname"],
            "sim-0001"
        );
        assert_eq!(n["spec"]["taints"][0]["key"], "dedicated");
        assert_eq!(n["spec"]["podCIDR"], "10.64.1.0/24");
        assert_eq!(n["status"]["capacity"]["pods"], "110");
        assert_eq!(n["status"]["allocatable"]["cpu"], "32");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(n["status"]["addresses"][0]["address"], "10.64.1.1");
        let ready = n["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        assert_eq!(ready.map(|r| r["status"].clone()), Some(json!("True")));
        // It parses as a Node.
        let _: k8s_openapi::api::core::v1::Node = serde_json::from_value(n).expect("node");
    }

    #[test]
    fn a_running_pod_has_an_ip_ready_containers_and_all_conditions() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"nodeName": "sim-0001", "initContainers": [{"name": "init", "image": "busybox"}], "containers": [{"name": "web", "image": "nginx"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        }))
        .expect("pod");
        let s = running_status(
            &pod,
            Ipv4Addr::new(10, 64, 1, 1),
            Ipv4Addr::new(10, 64, 1, 7),
            "2025-01-01T00:00:05Z",
        );
        let st = &s["status"];
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["podIP"], "10.64.1.7");
        assert_eq!(st["hostIP"], "10.64.1.1");
        assert_eq!(st["containerStatuses"][0]["ready"], true);
        assert!(st["containerStatuses"][0]["containerID"]
            .as_str()
            .is_some_and(|s| s.starts_with("sim://")));
        assert_eq!(
            st["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        let types: Vec<&str> = st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            types,
            vec![
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(
            st["conditions"][4]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
        let mut merged: Pod = pod.clone();
        merged.status = serde_json::from_value(st.clone()).expect("status");
        assert!(looks_running(&merged));
    }

    #[test]
    fn host_network_pods_take_the_node_ip() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i"}]}})).expect("pod");
        let s = running_status(
            &pod,
            Ipv4Addr::new(10, 64, 1, 1),
            Ipv4Addr::new(10, 64, 1, 9),
            "2025-01-01T00:00:05Z",
        );
        assert_eq!(s["status"]["podIP"], "10.64.1.1");
    }

    #[test]
    fn leases_are_owned_by_their_node() {
        let l = lease("sim-0000", "uid-1", 40, "2025-01-01T00:00:00.000000Z");
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
        let _: k8s_openapi::api::coordination::v1::Lease =
            serde_json::from_value(l).expect("lease");
    }
}
