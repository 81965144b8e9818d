//! The Node object: [`register`] creates (or adopts) this machine's Node and waits for the
//! server to give it a podCIDR; [`run_status`] posts capacity, allocatable, addresses,
//! nodeInfo and conditions every 10 s (when they changed, and at least every minute), and
//! [`run_lease`] renews the node's Lease in kube-node-lease every 10 s.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Errors talking to the API about the node. All are retried by the loops; [`register`]
/// returns them only when the API refuses the node outright.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating Node {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the agent was stopped before the node was registered")]
    Shutdown,
}

/// Facts about this machine that go into the Node.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub internal_ip: IpAddr,
    pub hostname: String,
    pub kubelet_port: u16,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub kubelet_version: String,
}

/// The kubelet version reported in nodeInfo (the API server's version, as upstream).
pub const KUBELET_VERSION: &str = concat!("v1.32.0+capstan-", env!("CARGO_PKG_VERSION"));

/// Creates the Node if it does not exist, then waits until it has a podCIDR.
pub async fn register(
    client: &kube::Client,
    facts: &NodeFacts,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Node, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = facts.labels.clone();
    // The node name, as k3s's --node-name (the kubelet's hostname override): agents sharing
    // one machine (the multi-node test bed) must not share this label, which nodeSelectors
    // and topology spreading key on.
    labels.insert("kubernetes.io/hostname".into(), facts.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), go_arch().into());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(facts.name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {
                tracing::info!(node = %facts.name, "registered node");
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Re-registering after a restart: keep the object, refresh our labels.
                let patch = json!({"metadata": {"labels": labels}});
                if let Err(e) = api
                    .patch(&facts.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(error = %e, "updating the node's labels failed");
                }
                tracing::info!(node = %facts.name, "node already registered; adopting it");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering the node failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::util::stopped(&mut shutdown) => return Err(Error::Shutdown),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let mut logged = false;
    loop {
        match api.get(&facts.name).await {
            Ok(n) if n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() => return Ok(n),
            Ok(_) if !logged => {
                tracing::info!(node = %facts.name, "waiting for the server to assign a podCIDR");
                logged = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the node failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = crate::util::stopped(&mut shutdown) => return Err(Error::Shutdown),
        }
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// Live readings for the node status.
#[derive(Clone, Debug, Default)]
pub struct Readings {
    pub runtime_version: String,
    pub runtime_ready: bool,
    pub runtime_message: String,
    pub images: Vec<(Vec<String>, u64)>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn meminfo_kib(key: &str) -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn os_image() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Size and free space of the file system holding `path`, from `df` (bytes).
fn disk(path: &Path) -> (u64, u64) {
    let out = std::process::Command::new("df")
        .arg("-P")
        .arg("-k")
        .arg(path)
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let fields: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let n = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (n(1), n(3))
}

fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The status document for the node (a merge patch body).
pub fn status_document(
    facts: &NodeFacts,
    data_dir: &Path,
    r: &Readings,
    conditions: Value,
) -> Value {
    let mem_kib = meminfo_kib("MemTotal");
    let (disk_total, _) = disk(data_dir);
    // Upstream's default hard eviction thresholds come off allocatable.
    let alloc_mem_kib = mem_kib.saturating_sub(100 * 1024);
    let alloc_disk = disk_total - disk_total / 10;
    let capacity = json!({
        "cpu": cpu_count().to_string(),
        "memory": format!("{mem_kib}Ki"),
        "pods": facts.max_pods.to_string(),
        "ephemeral-storage": format!("{}Ki", disk_total / 1024),
        "hugepages-2Mi": "0",
    });
    let allocatable = json!({
        "cpu": cpu_count().to_string(),
        "memory": format!("{alloc_mem_kib}Ki"),
        "pods": facts.max_pods.to_string(),
        "ephemeral-storage": alloc_disk.to_string(),
        "hugepages-2Mi": "0",
    });
    let images: Vec<Value> = r
        .images
        .iter()
        .take(50)
        .map(|(names, size)| json!({"names": names, "sizeBytes": size}))
        .collect();
    json!({
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "addresses": [
                {"type": "InternalIP", "address": facts.internal_ip.to_string()},
                {"type": "Hostname", "address": facts.hostname},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
            "nodeInfo": {
                "machineID": read("/etc/machine-id"),
                "systemUUID": read("/sys/class/dmi/id/product_uuid"),
                "bootID": read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": read("/proc/sys/kernel/osrelease"),
                "osImage": os_image(),
                "containerRuntimeVersion": r.runtime_version,
                "kubeletVersion": facts.kubelet_version,
                "kubeProxyVersion": facts.kubelet_version,
                "operatingSystem": "linux",
                "architecture": go_arch(),
            },
            "images": images,
            "conditions": conditions,
        }
    })
}

/// One node condition as (type, status, reason, message).
type Cond = (&'static str, bool, &'static str, String);

fn conditions(r: &Readings, data_dir: &Path) -> Vec<Cond> {
    let avail_kib = meminfo_kib("MemAvailable");
    let (total, free) = disk(data_dir);
    let mem_pressure = avail_kib > 0 && avail_kib < 100 * 1024;
    let disk_pressure = total > 0 && free < total / 10;
    let pid_max: u64 = read("/proc/sys/kernel/pid_max").parse().unwrap_or(u64::MAX);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0) as u64;
    let pid_pressure = procs > pid_max / 10 * 9;
    vec![
        if mem_pressure {
            (
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available".into(),
            )
        } else {
            (
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".into(),
            )
        },
        if disk_pressure {
            (
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure".into(),
            )
        } else {
            (
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".into(),
            )
        },
        if pid_pressure {
            (
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available".into(),
            )
        } else {
            (
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available".into(),
            )
        },
        if r.runtime_ready {
            (
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status".into(),
            )
        } else {
            (
                "Ready",
                false,
                "KubeletNotReady",
                format!("container runtime network not ready: {}", r.runtime_message),
            )
        },
    ]
}

/// Conditions with heartbeat now and transition times kept from `old` when unchanged.
fn condition_values(now: &str, conds: &[Cond], old: &[Value]) -> Value {
    Value::Array(
        conds
            .iter()
            .map(|(t, status, reason, message)| {
                let status = if *status { "True" } else { "False" };
                let prev = old.iter().find(|c| c["type"] == *t);
                let since = match prev {
                    Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
                    _ => Value::String(now.to_string()),
                };
                json!({"type": t, "status": status, "reason": reason, "message": message,
                       "lastHeartbeatTime": now, "lastTransitionTime": since})
            })
            .collect(),
    )
}

/// Posts the node status every 10 s when it changed (and at least every minute), and at once
/// when `wake` fires (runtime readiness changed).
pub async fn run_status(
    client: kube::Client,
    facts: Arc<NodeFacts>,
    data_dir: std::path::PathBuf,
    mut readings: watch::Receiver<Readings>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(client);
    let mut last_sent: Option<(Value, std::time::Instant)> = None;
    loop {
        let r = readings.borrow_and_update().clone();
        let old = api
            .get_status(&facts.name)
            .await
            .ok()
            .and_then(|n| {
                serde_json::to_value(n.status.and_then(|s| s.conditions).unwrap_or_default()).ok()
            })
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let conds = conditions(&r, &data_dir);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        // Compare without the heartbeat so an unchanged status is not rewritten every 10 s.
        let probe = status_document(&facts, &data_dir, &r, condition_values("", &conds, &old));
        let due = match &last_sent {
            Some((v, at)) => *v != probe || at.elapsed() >= Duration::from_secs(60),
            None => true,
        };
        if due {
            let doc = status_document(&facts, &data_dir, &r, condition_values(&now, &conds, &old));
            match api
                .patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&doc))
                .await
            {
                Ok(_) => last_sent = Some((probe, std::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, "posting the node status failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = readings.changed() => {}
            _ = crate::util::stopped(&mut shutdown) => return,
        }
    }
}

/// Renews the node's Lease every 10 s (duration 40 s, as upstream).
pub async fn run_lease(client: kube::Client, node: Node, mut shutdown: watch::Receiver<bool>) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let now = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some("kube-node-lease".into()),
                owner_references: node.metadata.uid.clone().map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.clone(),
                        uid,
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(now),
                ..Default::default()
            }),
        };
        let res = match api.get_opt(&name).await {
            Ok(Some(mut existing)) => {
                existing.spec = lease.spec.clone();
                api.replace(&name, &PostParams::default(), &existing)
                    .await
                    .map(|_| ())
            }
            Ok(None) => api.create(&PostParams::default(), &lease).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "renewing the node lease failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = crate::util::stopped(&mut shutdown) => return,
        }
    }
}

/// The machine's memory in bytes.
pub fn memory_bytes() -> i64 {
    meminfo_kib("MemTotal") as i64 * 1024
}

/// The machine's CPUs in millicores.
pub fn cpu_millis() -> i64 {
    cpu_count() as i64 * 1000
}
