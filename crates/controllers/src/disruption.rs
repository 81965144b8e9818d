//! The disruption controller (upstream's `disruption` controller): fills each
//! PodDisruptionBudget's status: currentHealthy (ready pods not being deleted and not just
//! disrupted), desiredHealthy and expectedPods (from minAvailable/maxUnavailable, against the
//! selected pods or their controllers' scale), disruptionsAllowed, observedGeneration, the
//! disruptedPods left by evictions (dropped once deleted or after two minutes) and the
//! DisruptionAllowed condition. The arithmetic is `capstan_api::kinds::policy::budget`, which
//! the Eviction API shares.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Map, Value};

use crate::metrics;
use crate::owner::controller_ref;
use crate::pods;
use capstan_api::kinds::policy::budget;
use capstan_api::selector::Selector;
use capstan_runtime::{
    key_of, Cache, Change, Informer, Queue, ReconcileError, Reconciler, Recorder,
};

const CONTROLLER: &str = "disruption";

/// A pod an eviction marked as disrupted is expected to be deleted within this long
/// (upstream's DeletionTimeout); after that it counts again.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("{0}")]
    Scale(String),
}

/// The caches of the controllers whose scale a budget may be measured against.
pub struct Workloads {
    pub replica_sets: Cache<ReplicaSet>,
    pub deployments: Cache<Deployment>,
    pub replication_controllers: Cache<ReplicationController>,
}

impl Workloads {
    /// The caches of these informers, which must run even when their own controllers are
    /// disabled.
    pub fn watch(
        replica_sets: &mut Informer<ReplicaSet>,
        deployments: &mut Informer<Deployment>,
        replication_controllers: &mut Informer<ReplicationController>,
    ) -> Self {
        replica_sets.on_change(|_| {});
        deployments.on_change(|_| {});
        replication_controllers.on_change(|_| {});
        Self {
            replica_sets: replica_sets.cache(),
            deployments: deployments.cache(),
            replication_controllers: replication_controllers.cache(),
        }
    }
}

pub struct DisruptionController {
    client: Client,
    pdbs: Cache<PodDisruptionBudget>,
    pods: Cache<Pod>,
    workloads: Workloads,
    recorder: Recorder,
}

fn selector_of(pdb: &PodDisruptionBudget) -> Selector {
    Selector::from_api(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
}

/// Queues every budget in the pod's namespace that selects it.
fn queue_budgets_for(pdbs: &Cache<PodDisruptionBudget>, q: &Queue, pod: &Pod) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    for pdb in pdbs.list_ns(ns) {
        if selector_of(&pdb).matches(&pod.metadata.labels.as_ref()) {
            q.add(key_of(pdb.as_ref()));
        }
    }
}

fn ts(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Disrupted pods still expected to go, and when to look again (upstream's
/// `buildDisruptedPodMap`); pods overdue get a `NotDeleted` warning from the caller.
pub fn disrupted_pods(
    recorded: &BTreeMap<String, Timestamp>,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Timestamp>, Option<Duration>, Vec<String>) {
    let mut keep = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    let mut overdue = Vec::new();
    for p in pods {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = p.name_any();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let expected = at
            .checked_add(SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default())
            .unwrap_or(*at);
        if expected < now {
            overdue.push(name);
        } else {
            let wait = Duration::try_from(expected.duration_since(now)).unwrap_or_default();
            recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
            keep.insert(name, *at);
        }
    }
    (keep, recheck, overdue)
}

/// Ready pods, not being deleted and not just disrupted (upstream's `countHealthyPods`).
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Timestamp>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| pods::is_ready(p))
        .count() as i32
}

/// The DisruptionAllowed condition after a sync, with upstream's `SetStatusCondition`
/// semantics: the transition time moves only when the status changes.
fn with_condition(
    prior: Option<&Value>,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: Timestamp,
) -> Value {
    let mut conds: Vec<Value> = prior.and_then(Value::as_array).cloned().unwrap_or_default();
    let old = conds.iter().position(|c| c["type"] == "DisruptionAllowed");
    let transition = old
        .and_then(|i| {
            (conds[i]["status"] == status).then(|| conds[i]["lastTransitionTime"].clone())
        })
        .unwrap_or_else(|| json!(ts(now)));
    let c = json!({
        "type": "DisruptionAllowed", "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": transition,
    });
    match old {
        Some(i) => conds[i] = c,
        None => conds.push(c),
    }
    Value::Array(conds)
}

impl DisruptionController {
    pub fn new(
        client: Client,
        pdbs: &mut Informer<PodDisruptionBudget>,
        pods: &mut Informer<Pod>,
        workloads: Workloads,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        pdbs.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let (q, pc) = (queue.clone(), pdbs.cache());
        pods.on_change(move |c| match c {
            Change::Added(p) | Change::Deleted(p) => queue_budgets_for(&pc, &q, p),
            Change::Updated { old, new } => {
                queue_budgets_for(&pc, &q, new);
                if old.metadata.labels != new.metadata.labels {
                    queue_budgets_for(&pc, &q, old);
                }
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), "controllermanager"),
            client,
            pdbs: pdbs.cache(),
            pods: pods.cache(),
            workloads,
        });
        (me, queue)
    }

    /// The scale of the pod's controller, keyed by that controller's uid (upstream's finders:
    /// ReplicaSet, Deployment through its ReplicaSet, ReplicationController, StatefulSet).
    async fn controller_scale(&self, pod: &Pod) -> Result<Option<(String, i32)>, Error> {
        let Some(r) = controller_ref(&pod.metadata) else {
            return Ok(None);
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let w = &self.workloads;
        let found = match r.kind.as_str() {
            "ReplicaSet" => w
                .replica_sets
                .get_in(ns, &r.name)
                .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .and_then(|rs| match controller_ref(&rs.metadata) {
                    Some(d) if d.kind == "Deployment" => w
                        .deployments
                        .get_in(ns, &d.name)
                        .filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str()))
                        .map(|dep| {
                            let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                            (d.uid.clone(), n)
                        }),
                    _ => Some((
                        r.uid.clone(),
                        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )),
                }),
            "ReplicationController" => w
                .replication_controllers
                .get_in(ns, &r.name)
                .filter(|rc| rc.metadata.uid.as_deref() == Some(r.uid.as_str()))
                .map(|rc| {
                    let n = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    (r.uid.clone(), n)
                }),
            "StatefulSet" => {
                // Read through the scale subresource: no StatefulSet cache is needed for the
                // rare budget that covers one.
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
                match api.get_scale(&r.name).await {
                    Ok(s) if s.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                        Some((r.uid.clone(), s.spec.and_then(|s| s.replicas).unwrap_or(0)))
                    }
                    Ok(_) => None,
                    Err(kube::Error::Api(s)) if s.code == 404 => None,
                    Err(e) => {
                        return Err(Error::Scale(format!("reading scale of {}: {e}", r.name)))
                    }
                }
            }
            _ => None,
        };
        match found {
            Some(f) => Ok(Some(f)),
            None => Err(Error::Scale(format!(
                "found no controllers for pod {:?}",
                pod.name_any()
            ))),
        }
    }

    /// Sum of the selected pods' controllers' scale, each controller once, and the pods with
    /// no controller (upstream's `getExpectedScale`).
    async fn expected_scale(&self, pods: &[&Pod]) -> Result<(i32, Vec<String>), Error> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut asked = HashSet::new();
        let mut unmanaged = Vec::new();
        for p in pods {
            let Some(r) = controller_ref(&p.metadata) else {
                unmanaged.push(p.name_any());
                continue;
            };
            if !asked.insert(r.uid.clone()) {
                continue;
            }
            if let Some((uid, n)) = self.controller_scale(p).await? {
                scales.insert(uid, n);
            }
        }
        let total = scales.values().fold(0i32, |a, n| a.saturating_add(*n));
        Ok((total, unmanaged))
    }

    async fn write_status(&self, pdb: &PodDisruptionBudget, status: Value) -> Result<(), Error> {
        let ns = pdb.metadata.namespace.clone().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        metrics::global().write(CONTROLLER, "patch", "status");
        let patch = json!({ "status": status });
        match api
            .patch_status(
                &pdb.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::Status(e)),
        }
    }

    /// Computes the budget's status; `Err` is a sync failure (the fail-safe status follows).
    async fn compute(
        &self,
        pdb: &PodDisruptionBudget,
        current: &Value,
        now: Timestamp,
    ) -> Result<(Value, Option<Duration>), Error> {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        let sel = selector_of(pdb);
        let all = self.pods.list_ns(ns);
        let selected: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| sel.matches(&p.metadata.labels.as_ref()))
            .collect();
        if selected.is_empty() {
            self.recorder
                .normal(pdb, "NoPods", "No matching pods found");
        }
        let spec = pdb.spec.clone().unwrap_or_default();
        let (scale, unmanaged) = if budget::needs_scale(&spec) {
            self.expected_scale(&selected).await?
        } else {
            (0, Vec::new())
        };
        if !unmanaged.is_empty() {
            self.recorder.warning(
                pdb,
                "UnmanagedPods",
                format!(
                    "Pods selected by this PodDisruptionBudget (selector: {sel}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                ),
            );
        }
        let (expected, desired) = budget::expected_and_desired(&spec, selected.len() as i32, scale)
            .map_err(Error::Scale)?;
        let recorded: BTreeMap<String, Timestamp> = pdb
            .status
            .as_ref()
            .and_then(|s| s.disrupted_pods.as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.0)).collect())
            .unwrap_or_default();
        let (disrupted, recheck, overdue) = disrupted_pods(&recorded, &selected, now);
        for name in overdue {
            if let Some(p) = selected.iter().find(|p| p.name_any() == name) {
                self.recorder.warning(
                    *p,
                    "NotDeleted",
                    format!(
                        "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                        ns,
                        pdb.name_any()
                    ),
                );
            }
        }
        let healthy = count_healthy(&selected, &disrupted);
        let allowed = budget::disruptions_allowed(healthy, desired, expected);
        let generation = pdb.metadata.generation.unwrap_or(0);
        let (cs, reason) = if allowed > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        // Removed entries are nulled: a merge patch merges maps key by key.
        let mut dp: Map<String, Value> = recorded
            .keys()
            .filter(|k| !disrupted.contains_key(*k))
            .map(|k| (k.clone(), Value::Null))
            .collect();
        dp.extend(disrupted.iter().map(|(k, v)| (k.clone(), json!(ts(*v)))));
        let status = json!({
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "observedGeneration": generation,
            "disruptedPods": if dp.is_empty() { Value::Null } else { Value::Object(dp) },
            "conditions": with_condition(current.get("conditions"), cs, reason, "", generation, now),
        });
        Ok((status, recheck))
    }
}

/// Whether the computed status differs from the stored one (nulls are absences).
fn differs(current: &Value, new: &Value) -> bool {
    let Some(fields) = new.as_object() else {
        return true;
    };
    fields.iter().any(|(k, v)| {
        let have = current.get(k).unwrap_or(&Value::Null);
        match (k.as_str(), v) {
            ("disruptedPods", Value::Object(m)) => m
                .iter()
                .any(|(p, t)| have.get(p).unwrap_or(&Value::Null) != t),
            _ => have != v,
        }
    })
}

#[async_trait::async_trait]
impl Reconciler for DisruptionController {
    fn name(&self) -> &'static str {
        CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(pdb) = self.pdbs.get(key) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let current = serde_json::to_value(pdb.status.clone().unwrap_or_default())?;
        match self.compute(&pdb, &current, now).await {
            Ok((status, recheck)) => {
                if differs(&current, &status) {
                    if current["disruptionsAllowed"] != status["disruptionsAllowed"] {
                        tracing::info!(
                            pdb = %key,
                            disruptions_allowed = %status["disruptionsAllowed"],
                            current_healthy = %status["currentHealthy"],
                            desired_healthy = %status["desiredHealthy"],
                            expected_pods = %status["expectedPods"],
                            "disruption budget changed"
                        );
                    }
                    self.write_status(&pdb, status).await?;
                }
                Ok(recheck)
            }
            Err(e) => {
                // Fail safe: no disruptions while the budget cannot be computed.
                tracing::warn!(pdb = %key, error = %e, "disruption budget cannot be computed; allowing none");
                let generation = current["observedGeneration"].as_i64().unwrap_or(0);
                let status = json!({
                    "disruptionsAllowed": 0,
                    "conditions": with_condition(current.get("conditions"), "False", "SyncFailed", &e.to_string(), generation, now),
                });
                self.recorder.warning(
                    pdb.as_ref(),
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {e}"),
                );
                if differs(&current, &status) {
                    self.write_status(&pdb, status).await?;
                }
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "deletionTimestamp": deleting.then_some("2024-01-01T00:00:00Z")},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_just_disrupted() {
        let (a, b, c, d) = (
            pod("a", true, false),
            pod("b", true, true),
            pod("c", false, false),
            pod("d", true, false),
        );
        let pods = [&a, &b, &c, &d];
        let recorded: BTreeMap<String, Timestamp> =
            [("d".to_string(), t("2024-01-01T00:00:00Z"))].into();
        let (kept, recheck, overdue) = disrupted_pods(&recorded, &pods, t("2024-01-01T00:01:00Z"));
        assert_eq!(kept.len(), 1);
        assert_eq!(recheck, Some(Duration::from_secs(60)));
        assert!(overdue.is_empty());
        assert_eq!(count_healthy(&pods, &kept), 1);
        // Two minutes on, d was not deleted: it counts again, with a warning.
        let (kept, recheck, overdue) = disrupted_pods(&recorded, &pods, t("2024-01-01T00:02:01Z"));
        assert!(kept.is_empty() && recheck.is_none());
        assert_eq!(overdue, vec!["d".to_string()]);
        assert_eq!(count_healthy(&pods, &kept), 2);
    }

    #[test]
    fn the_condition_moves_its_transition_time_only_on_change() {
        let now = t("2024-01-01T00:00:00Z");
        let c = with_condition(None, "True", "SufficientPods", "", 1, now);
        assert_eq!(c[0]["reason"], "SufficientPods");
        let later = t("2024-01-01T01:00:00Z");
        let same = with_condition(Some(&c), "True", "SufficientPods", "", 2, later);
        assert_eq!(same[0]["lastTransitionTime"], "2024-01-01T00:00:00Z");
        assert_eq!(same[0]["observedGeneration"], 2);
        let flipped = with_condition(Some(&c), "False", "InsufficientPods", "", 2, later);
        assert_eq!(flipped[0]["lastTransitionTime"], "2024-01-01T01:00:00Z");
        assert_eq!(flipped.as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let cur = json!({"currentHealthy": 3, "disruptionsAllowed": 1});
        assert!(!differs(
            &cur,
            &json!({"currentHealthy": 3, "disruptedPods": null})
        ));
        assert!(differs(&cur, &json!({"currentHealthy": 2})));
    }
}
