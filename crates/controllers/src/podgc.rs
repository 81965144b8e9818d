//! Pod garbage collection (upstream's podgc controller), every 20 s over the shared caches:
//! terminated pods (Succeeded/Failed) beyond `--terminated-pod-gc-threshold`, evicted first
//! then oldest first; pods bound to a Node that no longer exists, once the Node has been
//! missing for the 40 s quarantine and a fresh read confirms it is gone; terminating pods that
//! were never scheduled; and terminating pods on a not-ready Node tainted
//! `node.kubernetes.io/out-of-service`. Pods not yet terminal are first marked Failed (orphans
//! with the DisruptionTarget condition), then deleted with no grace period. The selection is
//! pure (`select`); the controller runs it as one key on the shared work queue, requeued
//! every period.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::metrics;
use capstan_runtime::{Cache, Informer, Queue, ReconcileError, Reconciler};

const CONTROLLER: &str = "podgc";
/// The one key this controller's queue carries.
const KEY: &str = "podgc";

/// How often the collector looks (upstream's gcCheckPeriod).
pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a Node must be missing before its pods are orphans (upstream's quarantineTime).
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// Upstream's default `--terminated-pod-gc-threshold`.
pub const DEFAULT_TERMINATED_POD_THRESHOLD: usize = 12500;

const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Upstream's `isPodTerminated`: any phase but Pending, Running and Unknown.
pub fn is_terminated(p: &Pod) -> bool {
    !matches!(phase(p), "Pending" | "Running" | "Unknown")
}

fn is_evicted(p: &Pod) -> bool {
    phase(p) == "Failed" && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted pods first, then oldest first, then by name (upstream's
/// `byEvictionAndCreationTimestamp`).
fn gc_order(a: &&Pod, b: &&Pod) -> std::cmp::Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn out_of_service(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

/// What one collection deletes, before the quarantine check of missing Nodes.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// Terminated pods beyond the threshold, in deletion order.
    pub terminated: Vec<&'a Pod>,
    /// Terminating pods on not-ready out-of-service Nodes.
    pub out_of_service: Vec<&'a Pod>,
    /// Terminating pods never bound to a Node.
    pub unscheduled_terminating: Vec<&'a Pod>,
    /// Nodes pods are bound to that the cache does not have.
    pub missing_nodes: BTreeSet<String>,
}

/// Picks what to collect from the cached pods and Nodes; `threshold` 0 keeps every
/// terminated pod.
pub fn select<'a>(
    pods: &[&'a Pod],
    nodes: &HashMap<String, Arc<Node>>,
    threshold: usize,
) -> Selection<'a> {
    let mut s = Selection::default();
    if threshold > 0 {
        let mut done: Vec<&Pod> = pods.iter().copied().filter(|p| is_terminated(p)).collect();
        if done.len() > threshold {
            done.sort_by(gc_order);
            done.truncate(done.len() - threshold);
            s.terminated = done;
        }
    }
    for p in pods {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let terminating = p.metadata.deletion_timestamp.is_some();
        if node.is_empty() {
            if terminating {
                s.unscheduled_terminating.push(p);
            }
            continue;
        }
        match nodes.get(node) {
            None => {
                s.missing_nodes.insert(node.to_string());
            }
            Some(n) if terminating && !node_ready(n) && out_of_service(n) => {
                s.out_of_service.push(p)
            }
            Some(_) => {}
        }
    }
    s.out_of_service.sort_by(gc_order);
    s
}

/// Nodes seen missing, and since when.
#[derive(Default)]
pub struct Quarantine {
    since: HashMap<String, Instant>,
}

impl Quarantine {
    /// Records this round's missing Nodes (forgetting those back) and returns those missing
    /// for at least [`QUARANTINE`].
    pub fn update(&mut self, missing: &BTreeSet<String>, now: Instant) -> Vec<String> {
        self.since.retain(|n, _| missing.contains(n));
        for n in missing {
            self.since.entry(n.clone()).or_insert(now);
        }
        self.since
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= QUARANTINE)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn forget(&mut self, node: &str) {
        self.since.remove(node);
    }
}

pub struct PodGc {
    client: Client,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    threshold: usize,
    quarantine: Mutex<Quarantine>,
}

/// Why a pod is collected (logs, metrics).
#[derive(Clone, Copy, Debug)]
enum Reason {
    Terminated,
    OutOfService,
    Orphaned,
    UnscheduledTerminating,
}

impl Reason {
    /// Upstream's metric label.
    fn label(self) -> metrics::PodGcLabels {
        let reason = match self {
            Reason::Terminated => "terminated",
            Reason::OutOfService => "out-of-service",
            Reason::Orphaned => "orphaned",
            Reason::UnscheduledTerminating => "unscheduled",
        };
        metrics::PodGcLabels {
            reason: reason.into(),
        }
    }
}

impl PodGc {
    pub fn new(
        client: Client,
        pods: &mut Informer<Pod>,
        nodes: &mut Informer<Node>,
        threshold: usize,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        queue.add(KEY);
        // The informers must run for the caches; the collector itself reacts to no change.
        pods.on_change(|_| {});
        nodes.on_change(|_| {});
        let me = Arc::new(Self {
            client,
            pods: pods.cache(),
            nodes: nodes.cache(),
            threshold,
            quarantine: Mutex::new(Quarantine::default()),
        });
        (me, queue)
    }

    /// Marks a pod that is not terminal Failed (with `condition`), then deletes it with no
    /// grace period (upstream's `markFailedAndDeletePodWithCondition`).
    async fn collect(&self, pod: &Pod, reason: Reason, condition: Option<Value>) {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let name = pod.name_any();
        let m = metrics::global();
        if !matches!(phase(pod), "Succeeded" | "Failed") {
            let mut status = json!({"phase": "Failed"});
            if let Some(c) = condition {
                let mut conds: Vec<Value> = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .map(|c| {
                        c.iter()
                            .filter_map(|c| serde_json::to_value(c).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                conds.retain(|x| x["type"] != c["type"]);
                conds.push(c);
                status["conditions"] = json!(conds);
            }
            metrics::global().write(CONTROLLER, "patch", "status");
            let patch = json!({ "status": status });
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                    m.pod_gc_errors.get_or_create(&reason.label()).inc();
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod GC: marking the pod Failed failed");
                }
                return;
            }
        }
        metrics::global().write(CONTROLLER, "delete", "pods");
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                m.pod_gc_deleted.get_or_create(&reason.label()).inc();
                tracing::info!(pod = %format!("{ns}/{name}"), reason = ?reason, "pod GC deleted pod");
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                m.pod_gc_errors.get_or_create(&reason.label()).inc();
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod GC: deleting failed");
            }
        }
    }

    /// Whether the API says the Node is gone (a fresh read, not the cache).
    async fn node_gone(&self, name: &str) -> bool {
        let api: Api<Node> = Api::all(self.client.clone());
        matches!(api.get_opt(name).await, Ok(None))
    }

    async fn gc(&self) {
        let pods = self.pods.list();
        let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let nodes: HashMap<String, Arc<Node>> = self
            .nodes
            .list()
            .into_iter()
            .map(|n| (n.name_any(), n))
            .collect();
        let sel = select(&refs, &nodes, self.threshold);
        if !sel.terminated.is_empty() {
            tracing::info!(
                pods = sel.terminated.len(),
                threshold = self.threshold,
                "garbage collecting terminated pods"
            );
        }
        let disruption = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"});
        let mut work = Vec::new();
        work.extend(
            sel.terminated
                .iter()
                .map(|p| (*p, Reason::Terminated, None)),
        );
        work.extend(
            sel.out_of_service
                .iter()
                .map(|p| (*p, Reason::OutOfService, None)),
        );
        let due = self
            .quarantine
            .lock()
            .update(&sel.missing_nodes, Instant::now());
        for node in due {
            if !self.node_gone(&node).await {
                continue;
            }
            self.quarantine.lock().forget(&node);
            tracing::info!(node = %node, "pod GC: node no longer exists; deleting its pods");
            work.extend(
                refs.iter()
                    .filter(|p| {
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                    })
                    .map(|p| (*p, Reason::Orphaned, Some(disruption.clone()))),
            );
        }
        work.extend(
            sel.unscheduled_terminating
                .iter()
                .map(|p| (*p, Reason::UnscheduledTerminating, None)),
        );
        join_all(work.into_iter().map(|(p, r, c)| self.collect(p, r, c))).await;
    }
}

#[async_trait::async_trait]
impl Reconciler for PodGc {
    fn name(&self) -> &'static str {
        CONTROLLER
    }

    async fn reconcile(&self, _key: &str) -> Result<Option<Duration>, ReconcileError> {
        self.gc().await;
        Ok(Some(GC_CHECK_PERIOD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, created: &str, node: &str, deleting: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created, "deletionTimestamp": deleting.then_some(created)},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "reason": if name.starts_with("evicted") { Some("Evicted") } else { None }},
        }))
        .expect("pod")
    }

    fn node(name: &str, ready: bool, out_of_service: bool) -> (String, Arc<Node>) {
        let taints = if out_of_service {
            json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}])
        } else {
            json!([])
        };
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("node");
        (name.to_string(), Arc::new(n))
    }

    fn names(ps: &[&Pod]) -> Vec<String> {
        ps.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_evicted_then_oldest_first() {
        let pods = [
            pod("new", "Succeeded", "2024-01-03T00:00:00Z", "n1", false),
            pod("old", "Failed", "2024-01-01T00:00:00Z", "n1", false),
            pod("evicted", "Failed", "2024-01-04T00:00:00Z", "n1", false),
            pod("mid", "Succeeded", "2024-01-02T00:00:00Z", "n1", false),
            pod("running", "Running", "2023-01-01T00:00:00Z", "n1", false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let nodes: HashMap<_, _> = [node("n1", true, false)].into();
        assert_eq!(
            names(&select(&refs, &nodes, 2).terminated),
            vec!["evicted", "old"]
        );
        assert!(select(&refs, &nodes, 4).terminated.is_empty());
        assert!(
            select(&refs, &nodes, 0).terminated.is_empty(),
            "0 turns it off"
        );
    }

    #[test]
    fn orphans_terminating_and_unscheduled_pods_are_found() {
        let pods = [
            pod("orphan", "Running", "2024-01-01T00:00:00Z", "gone", false),
            pod("stuck", "Running", "2024-01-01T00:00:00Z", "oos", true),
            pod("fine", "Running", "2024-01-01T00:00:00Z", "oos", false),
            pod("ready-node", "Running", "2024-01-01T00:00:00Z", "ok", true),
            pod("never-bound", "Pending", "2024-01-01T00:00:00Z", "", true),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let nodes: HashMap<_, _> = [node("oos", false, true), node("ok", true, true)].into();
        let s = select(&refs, &nodes, 100);
        assert_eq!(
            s.missing_nodes.into_iter().collect::<Vec<_>>(),
            vec!["gone"]
        );
        assert_eq!(names(&s.out_of_service), vec!["stuck"]);
        assert_eq!(names(&s.unscheduled_terminating), vec!["never-bound"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_node_is_quarantined_before_its_pods_go() {
        let mut q = Quarantine::default();
        let missing: BTreeSet<String> = ["gone".to_string()].into();
        let t0 = Instant::now();
        assert!(q.update(&missing, t0).is_empty());
        assert!(q.update(&missing, t0 + Duration::from_secs(20)).is_empty());
        assert_eq!(
            q.update(&missing, t0 + QUARANTINE),
            vec!["gone".to_string()]
        );
        // A Node that comes back starts over.
        assert!(q.update(&BTreeSet::new(), t0 + QUARANTINE).is_empty());
        assert!(q.update(&missing, t0 + QUARANTINE * 2).is_empty());
    }
}
