//! The DaemonSet controller: one daemon pod on every eligible node (node selector, required
//! node affinity, taints with the tolerations upstream adds), pinned to its node by required
//! node affinity on `metadata.name` so the scheduler binds it there; new nodes get a pod,
//! ineligible or removed nodes lose theirs; RollingUpdate (maxUnavailable, maxSurge) or
//! OnDelete updates; ControllerRevision history (`kubectl rollout history|undo`); status
//! through the status subresource; events as upstream's daemonset-controller.

pub mod backoff;
pub mod nodes;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::claim::{claim, owner_still_there};
use crate::deployment::util::{scaled_value, template_hash};
use crate::expectations::Expectations;
use crate::history::{self, History, Synced, REVISION_HASH_LABEL};
use crate::metrics;
use crate::owner::{self, controller_ref, owner_ref};
use crate::pods::{self, slow_start_batches};
use capstan_api::kinds::apps::TEMPLATE_GENERATION_ANNOTATION;
use capstan_api::selector::Selector;
use capstan_runtime::Recorder;
use capstan_runtime::{key_of, Cache, Change, Informer, Queue, ReconcileError, Reconciler};
use plan::{Eligibility, Plan};

const NAME: &str = "daemonset";
const KIND: &str = "DaemonSet";
/// Upstream's BurstReplicas for DaemonSets: at most this many creations per sync.
pub const BURST_REPLICAS: usize = 250;
/// The label daemon pods carry with their DaemonSet's template generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// DaemonSet status fields this controller writes.
const STATUS_FIELDS: &[&str] = &[
    "currentNumberScheduled",
    "numberMisscheduled",
    "desiredNumberScheduled",
    "numberReady",
    "observedGeneration",
    "updatedNumberScheduled",
    "numberAvailable",
    "numberUnavailable",
    "collisionCount",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("claiming {what}: {source}")]
    Claim {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("writing controller revisions: {0}")]
    History(#[source] kube::Error),
    #[error("controller revision name collision; retrying with collision count {0}")]
    Collision(i32),
    #[error("creating daemon pods: {0}")]
    Create(#[source] kube::Error),
    #[error("deleting daemon pod {pod}: {source}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct DaemonSetController {
    client: Client,
    daemonsets: Cache<DaemonSet>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    revisions: Cache<ControllerRevision>,
    expectations: Arc<Expectations>,
    history: History,
    recorder: Recorder,
    failed_backoff: backoff::FailedPodBackoff,
}

/// The controller's errors for a failed revision sync.
fn sync_error(e: history::SyncError) -> Error {
    match e {
        history::SyncError::Claim(source) => Error::Claim {
            what: "controller revisions",
            source,
        },
        history::SyncError::Write(e) => Error::History(e),
    }
}

fn selector(ds: &DaemonSet) -> Selector {
    Selector::from_api(ds.spec.as_ref().map(|s| &s.selector))
}

/// The template's pod spec as daemon pods get it (with the automatic tolerations).
fn daemon_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    nodes::add_daemon_tolerations(&mut spec);
    spec
}

fn template_generation(ds: &DaemonSet) -> Option<String> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .cloned()
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Upstream's `IsPodUpdated`: the pod has the current template generation or revision hash.
fn is_updated(p: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let label = |k: &str| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    (generation.is_some() && label(TEMPLATE_GENERATION_LABEL) == generation)
        || label(REVISION_HASH_LABEL) == Some(hash)
}

/// (maxSurge, maxUnavailable) for `desired` nodes (upstream's `updatedDesiredNodeCounts`):
/// percentages round up; both zero means one unavailable. OnDelete has neither.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let one = IntOrString::Int(1);
    let zero = IntOrString::Int(0);
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&zero);
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&one);
    let s = scaled_value(surge, desired, true).unwrap_or(0).max(0);
    let u = scaled_value(unavailable, desired, true).unwrap_or(0).max(0);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

impl DaemonSetController {
    pub fn new(
        client: Client,
        daemonsets: &mut Informer<DaemonSet>,
        pods: &mut Informer<Pod>,
        nodes: &mut Informer<Node>,
        revisions: &mut Informer<ControllerRevision>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let expectations = Arc::new(Expectations::default());
        let (q, exp) = (queue.clone(), expectations.clone());
        daemonsets.on_change(move |c| {
            let key = key_of(c.latest().as_ref());
            if let Change::Deleted(_) = c {
                exp.forget(&key);
            }
            q.add(key);
        });
        let (q, exp, dss) = (queue.clone(), expectations.clone(), daemonsets.cache());
        pods.on_change(move |c| match c {
            Change::Added(p) => match owner::owner_key(&dss, KIND, &p.metadata) {
                Some(k) => {
                    if p.metadata.deletion_timestamp.is_some() {
                        exp.deletion_observed(&k, &key_of(p.as_ref()));
                    } else {
                        exp.creation_observed(&k);
                    }
                    q.add(k);
                }
                None if controller_ref(&p.metadata).is_none() => {
                    owner::queue_matching(&dss, selector, &q, p)
                }
                None => {}
            },
            Change::Updated { old, new } => {
                let (ok, nk) = (
                    owner::owner_key(&dss, KIND, &old.metadata),
                    owner::owner_key(&dss, KIND, &new.metadata),
                );
                if let Some(k) = &nk {
                    if new.metadata.deletion_timestamp.is_some()
                        && old.metadata.deletion_timestamp.is_none()
                    {
                        exp.deletion_observed(k, &key_of(new.as_ref()));
                    }
                    q.add(k.clone());
                    if let Some(ds) = dss.get(k) {
                        let mrs = min_ready_seconds(&ds);
                        if mrs > 0 && pods::is_ready(new) && !pods::is_ready(old) {
                            q.add_after(k.clone(), Duration::from_secs(mrs as u64 + 1));
                        }
                    }
                }
                if let Some(k) = ok.filter(|k| Some(k) != nk.as_ref()) {
                    q.add(k);
                }
                if controller_ref(&new.metadata).is_none() {
                    owner::queue_matching(&dss, selector, &q, new);
                }
            }
            Change::Deleted(p) => {
                if let Some(k) = owner::owner_key(&dss, KIND, &p.metadata) {
                    exp.deletion_observed(&k, &key_of(p.as_ref()));
                    q.add(k);
                }
            }
        });
        // A node change matters to a DaemonSet only when it changes where its pods belong.
        let (q, dss) = (queue.clone(), daemonsets.cache());
        nodes.on_change(move |c| match c {
            Change::Added(_) | Change::Deleted(_) => {
                for ds in dss.list() {
                    q.add(key_of(ds.as_ref()));
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.labels == new.metadata.labels && old.spec == new.spec {
                    return;
                }
                for ds in dss.list() {
                    let spec = daemon_spec(&ds);
                    if nodes::should_run(&spec, old) != nodes::should_run(&spec, new) {
                        q.add(key_of(ds.as_ref()));
                    }
                }
            }
        });
        let (q, dss) = (queue.clone(), daemonsets.cache());
        revisions.on_change(move |c| {
            for r in c.objects() {
                if let Some(k) = owner::owner_key(&dss, KIND, &r.metadata) {
                    q.add(k);
                }
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), "daemonset-controller"),
            history: History {
                client: client.clone(),
                controller: NAME,
            },
            client,
            daemonsets: daemonsets.cache(),
            pods: pods.cache(),
            nodes: nodes.cache(),
            revisions: revisions.cache(),
            expectations,
            failed_backoff: Default::default(),
        });
        (me, queue)
    }

    fn ds_api(&self, ns: &str) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The current revision's hash, creating or renumbering the revision as needed, with the
    /// claimed revisions (upstream's `constructHistory`).
    async fn construct_history(
        &self,
        ds: &DaemonSet,
        ns: &str,
        sel: &Selector,
    ) -> Result<(String, Vec<ControllerRevision>), Error> {
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let hash = template_hash(&template, collision);
        let data = history::template_patch(&serde_json::to_value(ds)?);
        let owner = history::Owner {
            ns,
            meta: &ds.metadata,
            owner_ref: owner_ref("apps/v1", KIND, &ds.metadata),
            selector: sel,
            still_there: owner_still_there(self.ds_api(ns), &ds.metadata),
        };
        let new_rev = |data, number| {
            let mut rev = history::new_revision(
                format!("{}-{hash}", ds.name_any()),
                &hash,
                ds.metadata.namespace.clone(),
                owner_ref("apps/v1", KIND, &ds.metadata),
                template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
                data,
                number,
            );
            // As upstream, the revision carries the DaemonSet's annotations (kubectl's
            // change-cause among them).
            rev.metadata.annotations = ds.metadata.annotations.clone();
            rev
        };
        let synced = self
            .history
            .sync(
                owner,
                self.revisions.list_ns(ns),
                data,
                collision,
                history::Renumber::BelowMax,
                new_rev,
            )
            .await
            .map_err(sync_error)?;
        match synced {
            Synced::Existing { revs, index } => {
                let hash = revs[index]
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_HASH_LABEL))
                    .cloned()
                    .unwrap_or(hash);
                Ok((hash, revs))
            }
            Synced::Created { revs, .. } => Ok((hash, revs)),
            Synced::Collision(next) => {
                self.write_status_value(ds, json!({"status": {"collisionCount": next}}))
                    .await?;
                Err(Error::Collision(next))
            }
        }
    }

    /// Deletes revisions past revisionHistoryLimit that no pod uses (upstream's
    /// `cleanupHistory`).
    async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        hash: &str,
        revs: &[ControllerRevision],
        daemon_pods: &[Arc<Pod>],
    ) -> Result<(), Error> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        let mut live_hashes: HashSet<&str> = daemon_pods
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
            .map(String::as_str)
            .collect();
        live_hashes.insert(hash);
        let live: HashSet<String> = revs
            .iter()
            .filter(|r| {
                r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(REVISION_HASH_LABEL))
                    .is_some_and(|h| live_hashes.contains(h.as_str()))
            })
            .map(|r| r.name_any())
            .collect();
        for r in history::to_prune(revs, &live, limit) {
            self.history.delete(r).await.map_err(Error::History)?;
        }
        Ok(())
    }

    /// A daemon pod for `node` (upstream's `CreatePodsWithGenerateName` of the template with
    /// the hash and generation labels, tolerations and node affinity).
    fn new_pod(&self, ds: &DaemonSet, hash: &str, node: &str) -> Pod {
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let tm = template.metadata.unwrap_or_default();
        let mut labels = tm.labels.unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.into(), hash.into());
        if let Some(g) = template_generation(ds) {
            labels.insert(TEMPLATE_GENERATION_LABEL.into(), g);
        }
        let mut spec = daemon_spec(ds);
        nodes::pin_to_node(&mut spec, node);
        Pod {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", ds.name_any())),
                namespace: ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: tm.annotations,
                finalizers: tm.finalizers,
                owner_references: Some(vec![owner_ref("apps/v1", KIND, &ds.metadata)]),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// Creates pods on `plan.create_on` (slow start, at most [`BURST_REPLICAS`]) and deletes
    /// `plan.delete` (those in `force` without grace: their node is gone).
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &str,
        hash: &str,
        plan: &Plan,
        force: &HashSet<String>,
    ) -> Result<(), Error> {
        let ns = ds.namespace().unwrap_or_default();
        let api = self.pod_api(&ns);
        let create: Vec<&String> = plan.create_on.iter().take(BURST_REPLICAS).collect();
        let deletes: Vec<String> = plan.delete.iter().map(|p| format!("{ns}/{p}")).collect();
        if !create.is_empty() {
            self.expectations.expect_creations(key, create.len());
        }
        let mut err = None;
        let mut made = 0;
        for batch in slow_start_batches(create.len()) {
            let nodes = &create[made..made + batch];
            made += batch;
            let results = join_all(nodes.iter().map(|n| {
                metrics::global().write(NAME, "create", "pods");
                let pod = self.new_pod(ds, hash, n);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            for r in results {
                match r {
                    Ok(p) => self.recorder.normal(
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        self.recorder
                            .warning(ds, "FailedCreate", format!("Error creating: {e}"));
                        err = Some(Error::Create(e));
                    }
                }
            }
            if err.is_some() {
                for _ in made..create.len() {
                    self.expectations.creation_observed(key);
                }
                break;
            }
        }
        if !deletes.is_empty() {
            self.expectations
                .expect_deletions(key, deletes.iter().cloned());
        }
        let results = join_all(plan.delete.iter().map(|p| {
            metrics::global().write(NAME, "delete", "pods");
            let dp = if force.contains(p) {
                DeleteParams::default().grace_period(0)
            } else {
                DeleteParams::default()
            };
            let api = api.clone();
            async move { (p, api.delete(p, &dp).await) }
        }))
        .await;
        for (p, r) in results {
            match r {
                Ok(_) => self
                    .recorder
                    .normal(ds, "SuccessfulDelete", format!("Deleted pod: {p}")),
                Err(kube::Error::Api(s)) if s.code == 404 => self
                    .expectations
                    .deletion_observed(key, &format!("{ns}/{p}")),
                Err(e) => {
                    self.expectations
                        .deletion_observed(key, &format!("{ns}/{p}"));
                    self.recorder
                        .warning(ds, "FailedDelete", format!("Error deleting: {e}"));
                    err = Some(Error::Delete {
                        pod: p.clone(),
                        source: e,
                    });
                }
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn write_status_value(&self, ds: &DaemonSet, patch: Value) -> Result<(), Error> {
        metrics::global().write(NAME, "patch", "status");
        match self
            .ds_api(&ds.namespace().unwrap_or_default())
            .patch_status(
                &ds.name_any(),
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

    async fn sync(&self, ds: &DaemonSet, key: &str) -> Result<Option<Duration>, Error> {
        let ns = ds.namespace().unwrap_or_default();
        let sel = selector(ds);
        if sel.is_empty() {
            self.recorder.warning(
                ds,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(None);
        }
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (hash, revs) = self.construct_history(ds, &ns, &sel).await?;
        // How long deciding takes (claiming, node eligibility, the plan), for the log.
        let deciding = std::time::Instant::now();
        let daemon_pods = claim(
            &self.pod_api(&ns),
            NAME,
            self.pods.list_ns(&ns),
            &ds.metadata,
            owner_ref("apps/v1", KIND, &ds.metadata),
            &sel,
            owner_still_there(self.ds_api(&ns), &ds.metadata),
        )
        .await
        .map_err(|source| Error::Claim {
            what: "pods",
            source,
        })?;
        // Pods by the node they are for; finished pods already being deleted are done with.
        let mut node_pods: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for p in &daemon_pods {
            if p.metadata.deletion_timestamp.is_some() && pods::is_terminal(p) {
                continue;
            }
            // A pod neither bound nor pinned (an adopted orphan) is left alone, as upstream
            // leaves a pod whose target node it cannot tell.
            if let Some(n) = nodes::target_node(p) {
                node_pods.entry(n).or_default().push(p);
            }
        }
        let spec = daemon_spec(ds);
        let mut eligibility: Vec<(String, Eligibility)> = self
            .nodes
            .list()
            .iter()
            .map(|n| {
                let (should_run, continue_running) = nodes::should_run(&spec, n);
                (
                    n.name_any(),
                    Eligibility {
                        should_run,
                        continue_running,
                    },
                )
            })
            .collect();
        eligibility.sort_by(|a, b| a.0.cmp(&b.0));
        let generation = template_generation(ds);
        let updated = |p: &Pod| is_updated(p, &hash, generation.as_deref());
        let mrs = min_ready_seconds(ds);
        let now = Timestamp::now();
        let mut err = None;
        let mut requeue: Option<Duration> = None;
        if self.expectations.satisfied(key) {
            let desired = eligibility.iter().filter(|(_, e)| e.should_run).count() as i32;
            let (max_surge, max_unavailable) = surge_and_unavailable(ds, desired);
            let surge = max_surge > 0 && is_rolling_update(ds);
            let mut plan = Plan::default();
            let empty = Vec::new();
            let mut retry_failed: Option<Duration> = None;
            for (node, e) in &eligibility {
                let on = node_pods.get(node).unwrap_or(&empty);
                plan::on_node(node, *e, on, &updated, surge, mrs, now, &mut plan);
                let failed = on.iter().filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
                });
                for p in failed {
                    let name = p.name_any();
                    if !e.should_run || !plan.delete.contains(&name) {
                        continue;
                    }
                    match self.failed_backoff.try_take(key, node) {
                        None => self.recorder.warning(
                            ds,
                            "FailedDaemonPod",
                            format!("Found failed daemon pod {ns}/{name} on node {node}, will try to kill it"),
                        ),
                        Some(wait) => {
                            plan.delete.retain(|d| d != &name);
                            retry_failed = Some(retry_failed.map_or(wait, |r| r.min(wait)));
                        }
                    }
                }
            }
            self.failed_backoff.gc();
            if let Some(wait) = retry_failed {
                requeue = Some(wait);
            }
            // Pods for nodes that no longer exist: unbound ones go (upstream's
            // getUnscheduledPodsWithoutNode), and bound ones go at once, as the pod garbage
            // collector would (no kubelet is left to finish a graceful deletion), so the
            // DaemonSet does not depend on when the pod GC gets to them.
            let known: HashSet<&str> = eligibility.iter().map(|(n, _)| n.as_str()).collect();
            let mut force = HashSet::new();
            for (node, on) in &node_pods {
                if known.contains(node.as_str()) {
                    continue;
                }
                for p in on
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    let bound = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| !n.is_empty());
                    if bound {
                        force.insert(p.name_any());
                    }
                    plan.delete.push(p.name_any());
                }
            }
            let acted = !plan.create_on.is_empty() || !plan.delete.is_empty();
            if acted {
                tracing::info!(
                    daemonset = key,
                    nodes = eligibility.len(),
                    create = plan.create_on.len(),
                    delete = plan.delete.len(),
                    decided_ms = deciding.elapsed().as_secs_f64() * 1000.0,
                    "daemonset sync"
                );
            }
            if let Err(e) = self.sync_nodes(ds, key, &hash, &plan, &force).await {
                err = Some(e);
            }
            if !acted && err.is_none() && is_rolling_update(ds) {
                let eligible: BTreeMap<String, Vec<&Pod>> = eligibility
                    .iter()
                    .filter(|(_, e)| e.should_run)
                    .filter_map(|(n, _)| Some((n.clone(), node_pods.get(n)?.clone())))
                    .collect();
                let roll =
                    plan::rolling_update(&eligible, &updated, max_surge, max_unavailable, mrs, now);
                if !roll.create_on.is_empty() || !roll.delete.is_empty() {
                    tracing::info!(
                        daemonset = key,
                        create = roll.create_on.len(),
                        delete = roll.delete.len(),
                        "daemonset rolling update"
                    );
                    if let Err(e) = self
                        .sync_nodes(ds, key, &hash, &roll, &HashSet::new())
                        .await
                    {
                        err = Some(e);
                    }
                }
            }
        }
        self.cleanup_history(ds, &hash, &revs, &daemon_pods).await?;
        let counts = plan::status(&eligibility, &node_pods, &updated, mrs, now);
        let mut status = plan::status_json(&counts);
        if let Some(g) = ds.metadata.generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(c) = ds.status.as_ref().and_then(|s| s.collision_count) {
            status["collisionCount"] = json!(c);
        }
        let current = serde_json::to_value(ds)?;
        let mut have = current.get("status").cloned().unwrap_or(json!({}));
        if let Some(h) = have.as_object_mut() {
            h.retain(|k, _| STATUS_FIELDS.contains(&k.as_str()));
        }
        if have != status {
            self.write_status_value(ds, crate::status::status_patch(&status, STATUS_FIELDS))
                .await?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        let next = daemon_pods
            .iter()
            .filter_map(|p| pods::until_available(p, mrs, now))
            .map(|d| d + Duration::from_millis(100))
            .chain(requeue)
            .min();
        Ok(next)
    }
}

#[async_trait::async_trait]
impl Reconciler for DaemonSetController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(ds) = self.daemonsets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        Ok(self.sync(&ds, key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(v: Value) -> DaemonSet {
        serde_json::from_value(v).expect("ds")
    }

    #[test]
    fn surge_and_unavailable_default_to_one_unavailable_and_round_up() {
        let d = ds(json!({"metadata": {}, "spec": {"selector": {}, "template": {}}}));
        assert_eq!(surge_and_unavailable(&d, 10), (0, 1));
        let d = ds(
            json!({"metadata": {}, "spec": {"selector": {}, "template": {}, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}}}}),
        );
        assert_eq!(surge_and_unavailable(&d, 10), (3, 0));
        let d = ds(
            json!({"metadata": {}, "spec": {"selector": {}, "template": {}, "updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}}),
        );
        assert_eq!(surge_and_unavailable(&d, 10), (0, 1));
    }

    #[test]
    fn pods_are_updated_by_generation_or_hash() {
        let p: Pod = serde_json::from_value(json!({"metadata": {"labels": {"controller-revision-hash": "h1", "pod-template-generation": "2"}}})).expect("pod");
        assert!(is_updated(&p, "h1", Some("3")));
        assert!(is_updated(&p, "h2", Some("2")));
        assert!(!is_updated(&p, "h2", Some("3")));
        assert!(!is_updated(&p, "h2", None));
    }
}
