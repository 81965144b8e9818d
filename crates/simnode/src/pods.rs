//! Running pods on paper: one cluster-wide pod watch (not one per node), filtered to pods bound
//! to our nodes. A new pod gets an address and a Running, Ready status (a Job's pod then
//! exits 0: phase Succeeded, see `objects::runs_to_completion`); a pod being deleted
//! "stops" for a moment and is then removed with gracePeriodSeconds=0, as a kubelet finishes a
//! graceful deletion.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};

use crate::objects;
use crate::state::{Phase, SimPod, State};

/// Attempts at writing a pod's Running status before leaving it to the next event.
const START_ATTEMPTS: u32 = 5;

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// What to do about a pod event.
enum Action {
    None,
    Start { node_ip: Ipv4Addr, pod_ip: Ipv4Addr },
    Stop { uid: String },
}

/// Decides on one pod event; updates the state (addresses, phases).
fn decide(state: &mut State, pod: &Pod) -> Action {
    let k = key(pod);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| state.by_name.get(n).copied());
    let Some(node) = node else {
        // Not (or no longer) on one of our nodes.
        state.remove_pod(&k);
        return Action::None;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some(existing) = state.pods.get_mut(&k) {
        existing.seen = true;
        if existing.uid != uid {
            // A new pod under an old name.
            state.remove_pod(&k);
        }
    }
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if let Some(existing) = state.pods.get_mut(&k) {
        if pod.metadata.deletion_timestamp.is_some() && existing.phase != Phase::Stopping {
            existing.phase = Phase::Stopping;
            return Action::Stop { uid };
        }
        if existing.phase == Phase::Starting && objects::looks_running(pod) {
            existing.phase = Phase::Running;
        }
        return Action::None;
    }
    // First sight of this pod.
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let sim_node = &mut state.nodes[node];
    if objects::looks_running(pod) || matches!(phase, "Succeeded" | "Failed") {
        // Already running (we wrote it before a restart) or finished: keep its address.
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let ip = ip.filter(|ip| !host_network && sim_node.ips.mark(*ip));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        state.pods.insert(
            k,
            SimPod {
                node,
                uid: uid.clone(),
                ip,
                phase: if terminating {
                    Phase::Stopping
                } else {
                    Phase::Running
                },
                seen: true,
            },
        );
        return if terminating {
            Action::Stop { uid }
        } else {
            Action::None
        };
    }
    if pod.metadata.deletion_timestamp.is_some() {
        state.pods.insert(
            k,
            SimPod {
                node,
                uid: uid.clone(),
                ip: None,
                phase: Phase::Stopping,
                seen: true,
            },
        );
        return Action::Stop { uid };
    }
    let node_ip = sim_node.ip();
    let pod_ip = if host_network {
        Some(node_ip)
    } else {
        sim_node.ips.allocate()
    };
    let Some(pod_ip) = pod_ip else {
        tracing::warn!(pod = %k, node = %sim_node.name, "simulated node has no pod address left");
        return Action::None;
    };
    let ip = (!host_network).then_some(pod_ip);
    state.pods.insert(
        k,
        SimPod {
            node,
            uid,
            ip,
            phase: Phase::Starting,
            seen: true,
        },
    );
    Action::Start { node_ip, pod_ip }
}

async fn start_pod(client: kube::Client, pod: Pod, node_ip: Ipv4Addr, pod_ip: Ipv4Addr) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let started = objects::time(Timestamp::now());
    for attempt in 1..=START_ATTEMPTS {
        let patch = objects::running_status(&pod, node_ip, pod_ip, &started);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) if objects::runs_to_completion(&pod) => {
                return complete_pod(&api, &pod, &started).await;
            }
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, attempt, "writing a simulated pod's status failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    tracing::warn!(pod = %format!("{ns}/{name}"), "gave up writing a simulated pod's Running status");
}

/// A Job's pod "exits" 0 right after it ran (see [`objects::runs_to_completion`]).
async fn complete_pod(api: &Api<Pod>, pod: &Pod, started: &str) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    for attempt in 1..=START_ATTEMPTS {
        let patch = objects::succeeded_status(pod, started, &objects::time(Timestamp::now()));
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 404 => return,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, attempt, "writing a simulated pod's Succeeded status failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    tracing::warn!(pod = %name, "gave up writing a simulated pod's Succeeded status");
}

async fn stop_pod(client: kube::Client, ns: String, name: String, uid: String, delay: Duration) {
    tokio::time::sleep(delay).await;
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "removing a stopped simulated pod failed")
        }
    }
}

/// Watches all pods and acts for the ones on our nodes, until shutdown.
pub async fn run(
    client: kube::Client,
    state: Arc<Mutex<State>>,
    stop_delay: Duration,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = shutdown.changed() => return,
        };
        let Some(item) = item else { return };
        let pod = match item {
            Ok(Event::Init) => {
                for p in state.lock().pods.values_mut() {
                    p.seen = false;
                }
                continue;
            }
            Ok(Event::InitDone) => {
                let mut s = state.lock();
                let gone: Vec<String> = s
                    .pods
                    .iter()
                    .filter(|(_, p)| !p.seen)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    s.remove_pod(&k);
                }
                continue;
            }
            Ok(Event::Delete(pod)) => {
                state.lock().remove_pod(&key(&pod));
                continue;
            }
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
            Err(e) => {
                tracing::warn!(error = %e, "simulated nodes: pod watch failed; retrying");
                continue;
            }
        };
        let action = decide(&mut state.lock(), &pod);
        match action {
            Action::None => {}
            Action::Start { node_ip, pod_ip } => {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    start_pod(client, pod, node_ip, pod_ip).await;
                });
            }
            Action::Stop { uid } => {
                let ns = pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let name = pod.metadata.name.clone().unwrap_or_default();
                tokio::spawn(stop_pod(client.clone(), ns, name, uid, stop_delay));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SimNode;
    use capstan_api::net::Cidr;
    use serde_json::json;

    fn state() -> State {
        let cidr = Cidr::parse("10.64.0.0/24").expect("cidr");
        State::new(vec![SimNode::new(
            "sim-0000".into(),
            "u".into(),
            cidr,
            "t".into(),
        )])
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn pods_on_our_nodes_start_with_an_address_others_are_ignored() {
        let mut s = state();
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "d", "uid": "1"}, "spec": {"nodeName": "sim-0000", "containers": []}}),
        );
        assert!(
            matches!(decide(&mut s, &p), Action::Start { pod_ip, .. } if pod_ip == Ipv4Addr::new(10, 64, 0, 2))
        );
        // The same pod again (our own status write coming back) does nothing.
        assert!(matches!(decide(&mut s, &p), Action::None));
        let other = pod(
            json!({"metadata": {"name": "b", "namespace": "d", "uid": "2"}, "spec": {"nodeName": "real", "containers": []}}),
        );
        assert!(matches!(decide(&mut s, &other), Action::None));
        let pending = pod(
            json!({"metadata": {"name": "c", "namespace": "d", "uid": "3"}, "spec": {"containers": []}}),
        );
        assert!(matches!(decide(&mut s, &pending), Action::None));
        assert_eq!(s.pods.len(), 1);
    }

    #[test]
    fn a_deleted_pod_stops_once_and_frees_its_address_when_gone() {
        let mut s = state();
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "d", "uid": "1"}, "spec": {"nodeName": "sim-0000", "containers": []}}),
        );
        decide(&mut s, &p);
        let mut deleting = p.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        assert!(matches!(decide(&mut s, &deleting), Action::Stop { .. }));
        assert!(matches!(decide(&mut s, &deleting), Action::None));
        s.remove_pod("d/a");
        assert!(s.pods.is_empty());
        let again = pod(
            json!({"metadata": {"name": "b", "namespace": "d", "uid": "4"}, "spec": {"nodeName": "sim-0000", "containers": []}}),
        );
        assert!(
            matches!(decide(&mut s, &again), Action::Start { pod_ip, .. } if pod_ip == Ipv4Addr::new(10, 64, 0, 3))
        );
    }

    #[test]
    fn running_pods_from_before_a_restart_keep_their_address() {
        let mut s = state();
        let p = pod(
            json!({"metadata": {"name": "a", "namespace": "d", "uid": "1"}, "spec": {"nodeName": "sim-0000", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.64.0.9", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "image": "i", "imageID": ""}]}}),
        );
        assert!(matches!(decide(&mut s, &p), Action::None));
        assert_eq!(
            s.pods.get("d/a").and_then(|p| p.ip),
            Some(Ipv4Addr::new(10, 64, 0, 9))
        );
        assert!(
            !s.nodes[0].ips.mark(Ipv4Addr::new(10, 64, 0, 9)),
            "the address is taken"
        );
    }
}
