//! The Deployment controller: owns ReplicaSets (adopting and releasing by selector), makes the
//! ReplicaSet for the current template (named by its pod-template-hash, with revision
//! annotations), rolls over with RollingUpdate (maxSurge/maxUnavailable) or Recreate, scales
//! proportionally mid-rollout, honours `paused`, prunes history past revisionHistoryLimit and
//! keeps status with the Progressing (progressDeadlineSeconds) and Available conditions.
//! Rollback is a template change (`kubectl rollout undo` patches the template back), which
//! makes the matching old ReplicaSet the new one again with the next revision.

pub mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::metrics;
use crate::owner::{controller_ref, owner_ref};
use crate::pods;
use capstan_api::selector::Selector;
use capstan_runtime::Recorder;
use capstan_runtime::{
    key_of, split_key, Cache, Change, Informer, Queue, ReconcileError, Reconciler,
};
use util::*;

const NAME: &str = "deployment";

/// Errors of one sync; all retryable (the key is requeued with backoff; conflicts mean the
/// cache was behind and the next sync sees fresher state).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("adopting or releasing replica set {rs}: {source}")]
    Claim {
        rs: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating replica set {rs}: {source}")]
    CreateReplicaSet {
        rs: String,
        #[source]
        source: kube::Error,
    },
    #[error("replica set {0} exists with another template; retrying with a new collision count")]
    HashCollision(String),
    #[error("updating replica set {rs}: {source}")]
    UpdateReplicaSet {
        rs: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the deployment: {0}")]
    UpdateDeployment(#[source] kube::Error),
}

type Result<T, E = Error> = std::result::Result<T, E>;

pub struct DeploymentController {
    client: Client,
    deployments: Cache<Deployment>,
    replicasets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    recorder: Recorder,
}

/// The deployment key a ReplicaSet's controller reference points at, if we know it.
fn owner_key(ds: &Cache<Deployment>, rs: &ReplicaSet) -> Option<String> {
    let r = controller_ref(&rs.metadata)?;
    if r.kind != "Deployment" {
        return None;
    }
    let d = ds.get_in(rs.metadata.namespace.as_deref()?, &r.name)?;
    (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(d.as_ref()))
}

fn queue_for_rs(ds: &Cache<Deployment>, q: &Queue, rs: &ReplicaSet) {
    match owner_key(ds, rs) {
        Some(k) => q.add(k),
        None if controller_ref(&rs.metadata).is_none() => {
            for d in ds.list_ns(rs.metadata.namespace.as_deref().unwrap_or("")) {
                let sel = Selector::from_api(d.spec.as_ref().map(|s| &s.selector));
                if sel.matches(&rs.metadata.labels.as_ref()) {
                    q.add(key_of(d.as_ref()));
                }
            }
        }
        None => {}
    }
}

impl DeploymentController {
    pub fn new(
        client: Client,
        deployments: &mut Informer<Deployment>,
        replicasets: &mut Informer<ReplicaSet>,
        pods: &mut Informer<Pod>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        deployments.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let (q, ds) = (queue.clone(), deployments.cache());
        replicasets.on_change(move |c| {
            for rs in c.objects() {
                queue_for_rs(&ds, &q, rs);
            }
        });
        // Recreate waits for old pods to be gone: their deletion moves it on.
        let (q, ds, rss) = (queue.clone(), deployments.cache(), replicasets.cache());
        pods.on_change(move |c| {
            if let Change::Deleted(p) = c {
                let Some(r) = controller_ref(&p.metadata) else {
                    return;
                };
                let Some(rs) = rss.get_in(p.metadata.namespace.as_deref().unwrap_or(""), &r.name)
                else {
                    return;
                };
                if let Some(k) = owner_key(&ds, &rs) {
                    if ds.get(&k).is_some_and(|d| is_recreate(&d)) {
                        q.add(k);
                    }
                }
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), "deployment-controller"),
            client,
            deployments: deployments.cache(),
            replicasets: replicasets.cache(),
            pods: pods.cache(),
        });
        (me, queue)
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn d_api(&self, ns: &str) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The ReplicaSets this deployment controls, adopting and releasing as needed.
    async fn claim_replica_sets(&self, d: &Deployment, sel: &Selector) -> Result<Vec<ReplicaSet>> {
        let ns = d.namespace().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut can_adopt = None;
        for rs in self.replicasets.list_ns(&ns) {
            let matches = sel.matches(&rs.metadata.labels.as_ref());
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push((*rs).clone());
                    } else if !deleting {
                        let refs = rs
                            .owner_references()
                            .iter()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        self.patch_owner_refs(&rs, refs).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if deleting || rs.metadata.deletion_timestamp.is_some() || !matches {
                        continue;
                    }
                    if can_adopt.is_none() {
                        let fresh = self.d_api(&ns).get_opt(&d.name_any()).await.ok().flatten();
                        can_adopt = Some(fresh.is_some_and(|f| {
                            f.metadata.uid == d.metadata.uid
                                && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if can_adopt == Some(true) {
                        let mut refs = rs.owner_references().to_vec();
                        refs.push(owner_ref("apps/v1", "Deployment", &d.metadata));
                        if let Some(adopted) = self.patch_owner_refs(&rs, refs).await? {
                            owned.push(adopted);
                        }
                    }
                }
            }
        }
        Ok(owned)
    }

    async fn patch_owner_refs(
        &self,
        rs: &ReplicaSet,
        refs: Vec<OwnerReference>,
    ) -> Result<Option<ReplicaSet>> {
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version, "uid": rs.metadata.uid}});
        metrics::global().write(NAME, "patch", "replicasets");
        match self
            .rs_api(&rs.namespace().unwrap_or_default())
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(Error::Claim {
                rs: rs.name_any(),
                source: e,
            }),
        }
    }

    async fn replace_rs(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        metrics::global().write(NAME, "update", "replicasets");
        self.rs_api(&rs.namespace().unwrap_or_default())
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await
            .map_err(|e| Error::UpdateReplicaSet {
                rs: rs.name_any(),
                source: e,
            })
    }

    /// Resizes a ReplicaSet (and its replicas annotations), with the ScalingReplicaSet event.
    async fn scale_rs(&self, d: &Deployment, rs: &ReplicaSet, size: i32) -> Result<ReplicaSet> {
        let cur = rs_replicas(rs);
        let mut copy = rs.clone();
        let ann = set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        if cur == size && !ann {
            return Ok(rs.clone());
        }
        copy.spec.get_or_insert_with(Default::default).replicas = Some(size);
        let out = self.replace_rs(&copy).await?;
        if cur != size {
            let op = if cur < size { "up" } else { "down" };
            tracing::info!(deployment = %d.name_any(), replicaset = %rs.name_any(), from = cur, to = size, "scaled {op}");
            self.recorder.normal(
                d,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {cur} to {size}",
                    rs.name_any()
                ),
            );
        }
        Ok(out)
    }

    /// Sets the deployment's revision annotation through the status subresource, as upstream
    /// does: an annotation change on the main resource would bump the generation.
    async fn set_deployment_revision(&self, d: &mut Deployment, rev: &str) -> Result<()> {
        if d.annotations().get(REVISION).map(String::as_str) == Some(rev) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
        let api = self.d_api(&d.namespace().unwrap_or_default());
        metrics::global().write(NAME, "patch", "deployments/status");
        let mut out = api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(Error::UpdateDeployment)?;
        if out.annotations().get(REVISION).map(String::as_str) != Some(rev) {
            // A server whose status writes keep metadata as stored: patch the object itself
            // (which moves its generation, as upstream's strategy does for annotations).
            metrics::global().write(NAME, "patch", "deployments");
            out = api
                .patch(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(Error::UpdateDeployment)?;
        }
        d.metadata = out.metadata;
        Ok(())
    }

    async fn write_status(&self, d: &mut Deployment, status: DeploymentStatus) -> Result<()> {
        let v = serde_json::to_value(&status).unwrap_or_default();
        let patch = crate::status::status_patch(&v, crate::status::DEPLOYMENT_FIELDS);
        metrics::global().write(NAME, "patch", "deployments/status");
        let out = self
            .d_api(&d.namespace().unwrap_or_default())
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(Error::UpdateDeployment)?;
        *d = out;
        Ok(())
    }

    /// The new ReplicaSet (created when `create` and missing) and the old ones, with revision
    /// annotations brought up to date (upstream's getAllReplicaSetsAndSyncRevision).
    async fn new_and_old(
        &self,
        d: &mut Deployment,
        mut rss: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let new_idx = find_new_rs(d, &rss);
        let existing = new_idx.map(|i| rss.remove(i));
        let mut old = rss;
        sort_by_creation(&mut old);
        let new_rev = (old.iter().map(revision).max().unwrap_or(0) + 1).to_string();
        let now = Timestamp::now();
        if let Some(rs) = existing {
            let mut copy = rs.clone();
            let mut changed = set_new_rs_annotations(d, &mut copy, &new_rev, true);
            let mrs = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds != mrs {
                spec.min_ready_seconds = mrs;
                changed = true;
            }
            let rs = if changed {
                self.replace_rs(&copy).await?
            } else {
                rs
            };
            let rev = rs.annotations().get(REVISION).cloned().unwrap_or_default();
            self.set_deployment_revision(d, &rev).await?;
            if progress_deadline(d).is_some() {
                let st = d.status.get_or_insert_with(Default::default);
                if condition(st, "Progressing").is_none() {
                    set_condition(
                        st,
                        new_condition(
                            "Progressing",
                            "True",
                            FOUND_NEW_RS_REASON,
                            format!("Found new replica set {:?}", rs.name_any()),
                            now,
                        ),
                    );
                }
            }
            return Ok((Some(rs), old));
        }
        if !create {
            return Ok((None, old));
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let all_old: i32 = old.iter().map(rs_replicas).sum();
        let size = if is_recreate(d) {
            replicas(d)
        } else {
            new_rs_new_replicas(replicas(d), max_surge(d), all_old, 0)
        };
        let name = format!("{}-{hash}", d.name_any());
        let ns = d.namespace().unwrap_or_default();
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(size),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(d, &mut rs, &new_rev, false);
        metrics::global().write(NAME, "create", "replicasets");
        let (rs, already) = match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours from an earlier sync the cache has not shown yet, or a hash collision.
                let found =
                    self.rs_api(&ns)
                        .get(&name)
                        .await
                        .map_err(|e| Error::CreateReplicaSet {
                            rs: name.clone(),
                            source: e,
                        })?;
                let ours = controller_ref(&found.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if ours && equal_ignore_hash(&rs_template(&found), &spec.template) {
                    (found, true)
                } else {
                    let mut st = d.status.clone().unwrap_or_default();
                    st.collision_count = Some(collisions.unwrap_or(0) + 1);
                    self.write_status(d, st).await?;
                    return Err(Error::HashCollision(name));
                }
            }
            Err(e) => {
                self.recorder.warning(
                    d,
                    "FailedCreate",
                    format!("Failed to create new replica set {name:?}: {e}"),
                );
                if progress_deadline(d).is_some() {
                    let mut st = d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut st,
                        new_condition(
                            "Progressing",
                            "False",
                            "ReplicaSetCreateError",
                            format!("Failed to create new replica set {name:?}: {e}"),
                            now,
                        ),
                    );
                    let _ = self.write_status(d, st).await;
                }
                return Err(Error::CreateReplicaSet {
                    rs: name,
                    source: e,
                });
            }
        };
        if !already {
            tracing::info!(deployment = %d.name_any(), replicaset = %name, replicas = size, "created new replica set");
            if size > 0 {
                self.recorder.normal(
                    d,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {size}"),
                );
            }
        }
        self.set_deployment_revision(d, &new_rev).await?;
        if !already && progress_deadline(d).is_some() {
            let st = d.status.get_or_insert_with(Default::default);
            set_condition(
                st,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_REASON,
                    format!("Created new replica set {name:?}"),
                    now,
                ),
            );
        }
        Ok((Some(rs), old))
    }

    /// Scaling without a template change: proportional across active ReplicaSets
    /// (upstream's `scale`).
    async fn scale(
        &self,
        d: &Deployment,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<()> {
        let desired = replicas(d);
        let mut all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
        let active: Vec<&ReplicaSet> = all.iter().copied().filter(|r| rs_replicas(r) > 0).collect();
        let target = match active.len() {
            0 => new.or_else(|| {
                all.sort_by_key(|r| {
                    std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().map(|t| t.0))
                });
                all.first().copied()
            }),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(rs) = target {
            if rs_replicas(rs) != desired {
                self.scale_rs(d, rs, desired).await?;
            }
            return Ok(());
        }
        let saturated = new.is_some_and(|n| {
            rs_replicas(n) == desired
                && n.annotations()
                    .get(DESIRED_REPLICAS)
                    .and_then(|v| v.parse().ok())
                    == Some(desired)
                && rs_status(n).2 == desired
        });
        if saturated {
            for rs in old.iter().filter(|r| rs_replicas(r) > 0) {
                self.scale_rs(d, rs, 0).await?;
            }
            return Ok(());
        }
        if !is_recreate(d) {
            let owned: Vec<ReplicaSet> = active.iter().map(|r| (*r).clone()).collect();
            let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let sizes = proportional_sizes(&owned, desired, max_surge(d), status_replicas);
            for (rs, size) in owned.iter().zip(sizes) {
                self.scale_rs(d, rs, size).await?;
            }
        }
        Ok(())
    }

    /// Deletes old, empty ReplicaSets past revisionHistoryLimit, lowest revisions first.
    async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<()> {
        let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut alive: Vec<&ReplicaSet> = old
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - limit as i64;
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            revision(a).cmp(&revision(b)).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            })
        });
        for rs in alive.into_iter().take(diff as usize) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status(rs).0 != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            metrics::global().write(NAME, "delete", "replicasets");
            match self
                .rs_api(&rs.namespace().unwrap_or_default())
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    return Err(Error::UpdateReplicaSet {
                        rs: rs.name_any(),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Status from the ReplicaSets, written when it changed (upstream's syncDeploymentStatus).
    async fn sync_status(
        &self,
        d: &mut Deployment,
        stored: &Option<DeploymentStatus>,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Option<Duration>> {
        let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
        let s = calculate_status(d, &all, new, Timestamp::now());
        if stored.as_ref() != Some(&s) {
            self.write_status(d, s).await?;
        }
        Ok(None)
    }

    /// Status with the Progressing condition (upstream's syncRolloutStatus); asks to look again
    /// when the progress deadline would pass.
    async fn sync_rollout_status(
        &self,
        d: &mut Deployment,
        stored: &Option<DeploymentStatus>,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Option<Duration>> {
        let now = Timestamp::now();
        let all: Vec<&ReplicaSet> = new.into_iter().chain(old.iter()).collect();
        let mut s = calculate_status(d, &all, new, now);
        let deadline = progress_deadline(d);
        if deadline.is_none() {
            remove_condition(&mut s, "Progressing");
        }
        let cur = condition(&s, "Progressing").cloned();
        let complete_before = s.replicas == s.updated_replicas
            && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE_REASON);
        let what = match new {
            Some(rs) => format!("ReplicaSet {:?}", rs.name_any()),
            None => format!("Deployment {:?}", d.name_any()),
        };
        if deadline.is_some() && !complete_before {
            if is_complete(d, &s) {
                set_condition(
                    &mut s,
                    new_condition(
                        "Progressing",
                        "True",
                        NEW_RS_AVAILABLE_REASON,
                        format!("{what} has successfully progressed."),
                        now,
                    ),
                );
            } else if is_progressing(d, &s) {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    RS_UPDATED_REASON,
                    format!("{what} is progressing."),
                    now,
                );
                if let Some(cur) = &cur {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                }
                remove_condition(&mut s, "Progressing");
                s.conditions.get_or_insert_with(Vec::new).push(c);
            } else if is_timed_out(d, &s, now) {
                set_condition(
                    &mut s,
                    new_condition(
                        "Progressing",
                        "False",
                        TIMED_OUT_REASON,
                        format!("{what} has timed out progressing."),
                        now,
                    ),
                );
                self.recorder.warning(
                    d,
                    TIMED_OUT_REASON,
                    format!("{what} has timed out progressing."),
                );
            }
        }
        let failure = all.iter().find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut s,
                new_condition(
                    "ReplicaFailure",
                    "True",
                    f.reason.as_deref().unwrap_or(""),
                    f.message.unwrap_or_default(),
                    now,
                ),
            ),
            None => remove_condition(&mut s, "ReplicaFailure"),
        }
        if stored.as_ref() != Some(&s) {
            self.write_status(d, s.clone()).await?;
        }
        // A rollout that stops moving times out: come back when the deadline passes.
        let Some(secs) = deadline else {
            return Ok(None);
        };
        if is_complete(d, &s) {
            return Ok(None);
        }
        let c = condition(&s, "Progressing");
        if c.and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT_REASON) {
            return Ok(None);
        }
        let Some(at) = c
            .and_then(|c| c.last_update_time.as_ref())
            .and_then(|t| t.0.checked_add(SignedDuration::from_secs(secs as i64)).ok())
        else {
            return Ok(None);
        };
        let left = at.duration_since(now);
        Ok(Some(if left > SignedDuration::ZERO {
            left.unsigned_abs() + Duration::from_secs(1)
        } else {
            Duration::from_secs(1)
        }))
    }

    /// Paused and resumed show in the Progressing condition (upstream's checkPausedConditions).
    fn paused_condition(d: &mut Deployment) {
        if progress_deadline(d).is_none() {
            return;
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let st = d.status.get_or_insert_with(Default::default);
        let reason = condition(st, "Progressing").and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT_REASON) {
            return;
        }
        let now = Timestamp::now();
        let was_paused = reason.as_deref() == Some(PAUSED_REASON);
        if paused && !was_paused {
            set_condition(
                st,
                new_condition(
                    "Progressing",
                    "Unknown",
                    PAUSED_REASON,
                    "Deployment is paused".into(),
                    now,
                ),
            );
        } else if !paused && was_paused {
            set_condition(
                st,
                new_condition(
                    "Progressing",
                    "Unknown",
                    RESUMED_REASON,
                    "Deployment is resumed".into(),
                    now,
                ),
            );
        }
    }

    async fn rolling(
        &self,
        d: &mut Deployment,
        stored: &Option<DeploymentStatus>,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new, old) = self.new_and_old(d, rss, true).await?;
        let desired = replicas(d);
        let mut new = new;
        if let Some(n) = &new {
            let cur = rs_replicas(n);
            if cur != desired {
                let all: i32 = old.iter().map(rs_replicas).sum::<i32>() + cur;
                let target = if cur > desired {
                    desired
                } else {
                    new_rs_new_replicas(desired, max_surge(d), all, cur)
                };
                if target != cur {
                    let scaled = self.scale_rs(d, n, target).await?;
                    new = Some(scaled);
                    return self
                        .sync_rollout_status(d, stored, new.as_ref(), &old)
                        .await;
                }
            }
        }
        let new_counts = new
            .as_ref()
            .map_or((0, 0), |n| (rs_replicas(n), rs_status(n).2));
        let counts: Vec<(i32, i32)> = old
            .iter()
            .map(|r| (rs_replicas(r), rs_status(r).2))
            .collect();
        let sizes = scale_down_old(&counts, new_counts, desired, max_unavailable(d));
        let mut old = old;
        let mut scaled_down = false;
        for (rs, size) in old.iter_mut().zip(sizes) {
            if size != rs_replicas(rs) {
                *rs = self.scale_rs(d, rs, size).await?;
                scaled_down = true;
            }
        }
        if !scaled_down && is_complete(d, d.status.as_ref().unwrap_or(&Default::default())) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, stored, new.as_ref(), &old)
            .await
    }

    async fn recreate(
        &self,
        d: &mut Deployment,
        stored: &Option<DeploymentStatus>,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new, mut old) = self.new_and_old(d, rss.clone(), false).await?;
        let mut scaled = false;
        for rs in old.iter_mut() {
            if rs_replicas(rs) > 0 {
                *rs = self.scale_rs(d, rs, 0).await?;
                scaled = true;
            }
        }
        if scaled {
            return self
                .sync_rollout_status(d, stored, new.as_ref(), &old)
                .await;
        }
        // Old pods must be gone before new ones start.
        let uids: Vec<String> = old.iter().filter_map(|r| r.metadata.uid.clone()).collect();
        let running = self
            .pods
            .list_ns(&d.namespace().unwrap_or_default())
            .iter()
            .any(|p| {
                controller_ref(&p.metadata).is_some_and(|r| uids.contains(&r.uid))
                    && !pods::is_terminal(p)
            });
        if running {
            return self
                .sync_rollout_status(d, stored, new.as_ref(), &old)
                .await;
        }
        let (new, old) = if new.is_none() {
            self.new_and_old(d, rss, true).await?
        } else {
            (new, old)
        };
        let new = match new {
            Some(n) if rs_replicas(&n) != replicas(d) => {
                Some(self.scale_rs(d, &n, replicas(d)).await?)
            }
            other => other,
        };
        if is_complete(d, d.status.as_ref().unwrap_or(&Default::default())) {
            self.cleanup(d, &old).await?;
        }
        self.sync_rollout_status(d, stored, new.as_ref(), &old)
            .await
    }

    /// Scale-only sync for paused deployments and size changes (upstream's `sync`).
    async fn sync(
        &self,
        d: &mut Deployment,
        stored: &Option<DeploymentStatus>,
        rss: Vec<ReplicaSet>,
    ) -> Result<Option<Duration>> {
        let (new, old) = self.new_and_old(d, rss, false).await?;
        self.scale(d, new.as_ref(), &old).await?;
        // Sizes changed: status follows from the ReplicaSets' next updates.
        let fresh: Vec<ReplicaSet> = new
            .iter()
            .chain(old.iter())
            .map(|r| {
                self.replicasets
                    .get(&key_of(r))
                    .map(|c| (*c).clone())
                    .unwrap_or_else(|| r.clone())
            })
            .collect();
        let new_fresh = new.as_ref().and_then(|n| {
            fresh
                .iter()
                .find(|r| r.metadata.uid == n.metadata.uid)
                .cloned()
        });
        let old_fresh: Vec<ReplicaSet> = fresh
            .iter()
            .filter(|r| {
                new.as_ref()
                    .is_none_or(|n| r.metadata.uid != n.metadata.uid)
            })
            .cloned()
            .collect();
        if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(d, &old_fresh).await?;
        }
        self.sync_status(d, stored, new_fresh.as_ref(), &old_fresh)
            .await
    }
}

/// A size change of the deployment that the active ReplicaSets' desired-replicas annotation
/// has not caught up with.
fn is_scaling_event(d: &Deployment, rss: &[ReplicaSet]) -> bool {
    rss.iter().filter(|r| rs_replicas(r) > 0).any(|r| {
        r.annotations()
            .get(DESIRED_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .is_some_and(|v| v != replicas(d))
    })
}

#[async_trait::async_trait]
impl Reconciler for DeploymentController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(cached) = self.deployments.get(key) else {
            return Ok(None);
        };
        let mut d = (*cached).clone();
        let stored = d.status.clone();
        let (_ns, _) = split_key(key);
        let sel = Selector::from_api(d.spec.as_ref().map(|s| &s.selector));
        if sel.is_empty() {
            self.recorder.warning(
                &d,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            let mut st = stored.clone().unwrap_or_default();
            st.observed_generation = d.metadata.generation;
            if stored.as_ref() != Some(&st) {
                self.write_status(&mut d, st).await?;
            }
            return Ok(None);
        }
        let rss = self.claim_replica_sets(&d, &sel).await?;
        if d.metadata.deletion_timestamp.is_some() {
            let (new, old) = self.new_and_old(&mut d, rss, false).await?;
            return Ok(self
                .sync_status(&mut d, &stored, new.as_ref(), &old)
                .await?);
        }
        Self::paused_condition(&mut d);
        if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            return Ok(self.sync(&mut d, &stored, rss).await?);
        }
        if is_scaling_event(&d, &rss) {
            return Ok(self.sync(&mut d, &stored, rss).await?);
        }
        let next = if is_recreate(&d) {
            self.recreate(&mut d, &stored, rss).await?
        } else {
            self.rolling(&mut d, &stored, rss).await?
        };
        Ok(next)
    }
}
