//! The StatefulSet controller: pods with stable names `<set>-<ordinal>` (from
//! `ordinals.start`), hostname and subdomain, one PersistentVolumeClaim per
//! volumeClaimTemplate and pod; OrderedReady (one at a time, each waiting for the one
//! before to be running and available) or Parallel pod management; scale down from the
//! highest ordinal; failed pods recreated under the same name; RollingUpdate (partition,
//! maxUnavailable) or OnDelete updates over ControllerRevisions (`kubectl rollout
//! history|undo`); the claim retention policy through owner references; status through the
//! status subresource; events as upstream's statefulset-controller.

pub mod identity;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::claim::{claim, owner_still_there};
use crate::deployment::util::scaled_value;
use crate::history::{self, History, Synced};
use crate::metrics;
use crate::owner::{self, controller_ref, owner_ref};
use crate::pods;
use capstan_api::selector::Selector;
use capstan_runtime::Recorder;
use capstan_runtime::{key_of, Cache, Change, Informer, Queue, ReconcileError, Reconciler};
use plan::{Action, Rev, Strategy};

const NAME: &str = "statefulset";
const KIND: &str = "StatefulSet";

/// StatefulSet status fields this controller writes (conditions are left alone).
const STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "currentReplicas",
    "updatedReplicas",
    "currentRevision",
    "updateRevision",
    "collisionCount",
    "availableReplicas",
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
    #[error("creating claim {claim} for pod {pod}: {source}")]
    CreateClaim {
        claim: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("claim {0} is being deleted; waiting before creating its pod")]
    ClaimTerminating(String),
    #[error("updating the owners of claim {claim}: {source}")]
    ClaimOwners {
        claim: String,
        #[source]
        source: kube::Error,
    },
    #[error("restoring the identity labels of pod {pod}: {source}")]
    Identity {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating pod {pod}: {source}")]
    Create {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {pod}: {source}")]
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

pub struct StatefulSetController {
    client: Client,
    sets: Cache<StatefulSet>,
    pods: Cache<Pod>,
    revisions: Cache<ControllerRevision>,
    claims: Cache<PersistentVolumeClaim>,
    history: History,
    recorder: Recorder,
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

fn selector(set: &StatefulSet) -> Selector {
    Selector::from_api(set.spec.as_ref().map(|s| &s.selector))
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The update strategy with partition and maxUnavailable resolved against the replicas.
pub fn strategy(set: &StatefulSet) -> Strategy {
    let s = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if s.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return Strategy::OnDelete;
    }
    let ru = s.and_then(|s| s.rolling_update.as_ref());
    let partition = ru.and_then(|r| r.partition).unwrap_or(0).max(0);
    let max_unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .and_then(|v| scaled_value(v, identity::replicas(set), true))
        .unwrap_or(1)
        .max(1);
    Strategy::RollingUpdate {
        partition,
        max_unavailable,
    }
}

fn parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

impl StatefulSetController {
    pub fn new(
        client: Client,
        sets: &mut Informer<StatefulSet>,
        pods: &mut Informer<Pod>,
        revisions: &mut Informer<ControllerRevision>,
        claims: &mut Informer<PersistentVolumeClaim>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        sets.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let (q, ss) = (queue.clone(), sets.cache());
        pods.on_change(move |c| {
            for p in c.objects() {
                match owner::owner_key(&ss, KIND, &p.metadata) {
                    Some(k) => {
                        // Ready pods become available after minReadySeconds: look again then.
                        if let Change::Updated { old, new } = c {
                            let mrs = ss.get(&k).map(|s| min_ready_seconds(&s)).unwrap_or(0);
                            if mrs > 0 && pods::is_ready(new) && !pods::is_ready(old) {
                                q.add_after(k.clone(), Duration::from_secs(mrs as u64 + 1));
                            }
                        }
                        q.add(k)
                    }
                    None if controller_ref(&p.metadata).is_none() => {
                        owner::queue_matching(&ss, selector, &q, p)
                    }
                    None => {}
                }
            }
        });
        let (q, ss) = (queue.clone(), sets.cache());
        revisions.on_change(move |c| {
            for r in c.objects() {
                if let Some(k) = owner::owner_key(&ss, KIND, &r.metadata) {
                    q.add(k);
                }
            }
        });
        // A claim that finished deleting lets its pod be created again.
        let (q, ss) = (queue.clone(), sets.cache());
        claims.on_change(move |c| {
            if let Change::Deleted(pvc) = c {
                let ns = pvc.metadata.namespace.as_deref().unwrap_or("");
                let name = pvc.name_any();
                for s in ss.list_ns(ns) {
                    if name.contains(&format!("-{}-", s.name_any())) {
                        q.add(key_of(s.as_ref()));
                    }
                }
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), "statefulset-controller"),
            history: History {
                client: client.clone(),
                controller: NAME,
            },
            client,
            sets: sets.cache(),
            pods: pods.cache(),
            revisions: revisions.cache(),
            claims: claims.cache(),
        });
        (me, queue)
    }

    fn set_api(&self, ns: &str) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn claim_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// (current revision, update revision, all owned revisions), creating or renumbering the
    /// update revision as needed (upstream's `getStatefulSetRevisions`).
    async fn revisions(
        &self,
        set: &StatefulSet,
        ns: &str,
        sel: &Selector,
    ) -> Result<
        (
            ControllerRevision,
            ControllerRevision,
            Vec<ControllerRevision>,
        ),
        Error,
    > {
        let collision = set.status.as_ref().and_then(|s| s.collision_count);
        let data = history::template_patch(&serde_json::to_value(set)?);
        let owner = history::Owner {
            ns,
            meta: &set.metadata,
            owner_ref: owner_ref("apps/v1", KIND, &set.metadata),
            selector: sel,
            still_there: owner_still_there(self.set_api(ns), &set.metadata),
        };
        let new_rev = |data, number| {
            let hash = history::hash_data(&data, collision);
            let template_labels = set
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref());
            history::new_revision(
                history::revision_name(&set.name_any(), &hash),
                &hash,
                set.metadata.namespace.clone(),
                owner_ref("apps/v1", KIND, &set.metadata),
                template_labels,
                data,
                number,
            )
        };
        let synced = self
            .history
            .sync(
                owner,
                self.revisions.list_ns(ns),
                data,
                collision,
                history::Renumber::UnlessLast,
                new_rev,
            )
            .await
            .map_err(sync_error)?;
        let (update, revs) = match synced {
            Synced::Existing { mut revs, index } => {
                let update = revs[index].clone();
                // A renumbered revision moves to the end (a no-op otherwise: it was last).
                history::sort_revisions(&mut revs);
                (update, revs)
            }
            Synced::Created { revs, index } => (revs[index].clone(), revs),
            Synced::Collision(n) => {
                self.patch_status(set, json!({"status": {"collisionCount": n}}))
                    .await?;
                return Err(Error::Collision(n));
            }
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_default();
        let current = revs
            .iter()
            .find(|r| r.name_any() == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, revs))
    }

    /// Creates the pod's missing claims (upstream's `createPersistentVolumeClaims`).
    async fn create_claims(
        &self,
        set: &StatefulSet,
        ordinal: i32,
        wait_for_terminating: bool,
    ) -> Result<(), Error> {
        let ns = set.namespace().unwrap_or_default();
        let pod = identity::pod_name(&set.name_any(), ordinal);
        for mut c in identity::claims(set, ordinal) {
            let cname = c.name_any();
            if let Some(existing) = self.claims.get_in(&ns, &cname) {
                if existing.metadata.deletion_timestamp.is_some() && wait_for_terminating {
                    return Err(Error::ClaimTerminating(cname));
                }
                continue;
            }
            if identity::retention(set).0 {
                c.metadata.owner_references = identity::claim_owner_refs(&c, set, None, false);
            }
            metrics::global().write(NAME, "create", "persistentvolumeclaims");
            match self.claim_api(&ns).create(&PostParams::default(), &c).await {
                Ok(_) => self.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod} in StatefulSet {} success",
                        set.name_any()
                    ),
                ),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(source) => {
                    self.recorder.warning(
                        set,
                        "FailedCreate",
                        format!("create Claim {cname} for Pod {pod} in StatefulSet {} failed error: {source}", set.name_any()),
                    );
                    return Err(Error::CreateClaim {
                        claim: cname,
                        pod,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Brings each existing claim's owner references in line with the retention policy.
    async fn sync_claim_owners(
        &self,
        set: &StatefulSet,
        members: &BTreeMap<i32, &Pod>,
    ) -> Result<(), Error> {
        let (when_deleted, when_scaled) = identity::retention(set);
        let ns = set.namespace().unwrap_or_default();
        let start = identity::start_ordinal(set);
        let end = start + identity::replicas(set);
        for (ord, pod) in members {
            let condemned = *ord < start || *ord >= end;
            for c in identity::claims(set, *ord) {
                let Some(have) = self.claims.get_in(&ns, &c.name_any()) else {
                    continue;
                };
                // Claims under the default Retain/Retain policy that no rule ever owned are
                // left as they are.
                if !when_deleted && !when_scaled && have.metadata.owner_references.is_none() {
                    continue;
                }
                if let Some(refs) = identity::claim_owner_refs(&have, set, Some(pod), condemned) {
                    metrics::global().write(NAME, "patch", "persistentvolumeclaims");
                    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": have.metadata.resource_version}});
                    match self
                        .claim_api(&ns)
                        .patch(
                            &have.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(source) => {
                            return Err(Error::ClaimOwners {
                                claim: have.name_any(),
                                source,
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Restores a live pod's identity labels and its missing claims (upstream's
    /// `identityMatches`/`storageMatches` and `UpdateStatefulPod`).
    async fn restore_identity(
        &self,
        set: &StatefulSet,
        members: &BTreeMap<i32, &Pod>,
    ) -> Result<(), Error> {
        let start = identity::start_ordinal(set);
        let end = start + identity::replicas(set);
        for (ord, pod) in members.range(start..end) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let missing = identity::missing_identity_labels(pod, *ord);
            if !missing.is_empty() {
                metrics::global().write(NAME, "patch", "pods");
                let patch = json!({"metadata": {"labels": missing}});
                match self
                    .pod_api(&set.namespace().unwrap_or_default())
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Identity {
                            pod: pod.name_any(),
                            source,
                        })
                    }
                }
            }
            // A claim deleted under a running pod stays until the pod goes (protection
            // finalizer); only absent ones are made again.
            self.create_claims(set, *ord, false).await?;
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        set: &StatefulSet,
        template: &PodTemplateSpec,
        ordinal: i32,
        revision: &str,
    ) -> Result<(), Error> {
        self.create_claims(set, ordinal, true).await?;
        let pod = identity::new_pod(set, template, ordinal, revision);
        let name = pod.name_any();
        metrics::global().write(NAME, "create", "pods");
        match self
            .pod_api(&set.namespace().unwrap_or_default())
            .create(&PostParams::default(), &pod)
            .await
        {
            Ok(_) => {
                self.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} successful",
                        set.name_any()
                    ),
                );
                Ok(())
            }
            // Our cache is behind: the pod is there.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(source) => {
                self.recorder.warning(
                    set,
                    "FailedCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} failed error: {source}",
                        set.name_any()
                    ),
                );
                Err(Error::Create { pod: name, source })
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let name = pod.name_any();
        let dp = DeleteParams::default().preconditions(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        });
        metrics::global().write(NAME, "delete", "pods");
        match self
            .pod_api(&set.namespace().unwrap_or_default())
            .delete(&name, &dp)
            .await
        {
            Ok(_) => {
                self.recorder.normal(
                    set,
                    "SuccessfulDelete",
                    format!(
                        "delete Pod {name} in StatefulSet {} successful",
                        set.name_any()
                    ),
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => {
                self.recorder.warning(
                    set,
                    "FailedDelete",
                    format!(
                        "delete Pod {name} in StatefulSet {} failed error: {source}",
                        set.name_any()
                    ),
                );
                Err(Error::Delete { pod: name, source })
            }
        }
    }

    async fn patch_status(&self, set: &StatefulSet, patch: Value) -> Result<(), Error> {
        metrics::global().write(NAME, "patch", "status");
        match self
            .set_api(&set.namespace().unwrap_or_default())
            .patch_status(
                &set.name_any(),
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

    async fn sync(&self, set: &StatefulSet, key: &str) -> Result<Option<Duration>, Error> {
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = set.namespace().unwrap_or_default();
        let set_name = set.name_any();
        let sel = selector(set);
        if sel.is_empty() {
            self.recorder.warning(
                set,
                "SelectingAll",
                "This statefulset is selecting all pods. A non-empty selector is required.",
            );
            return Ok(None);
        }
        let (current, update, revs) = self.revisions(set, &ns, &sel).await?;
        let owned = claim(
            &self.pod_api(&ns),
            NAME,
            self.pods.list_ns(&ns),
            &set.metadata,
            owner_ref("apps/v1", KIND, &set.metadata),
            &sel,
            owner_still_there(self.set_api(&ns), &set.metadata),
        )
        .await
        .map_err(|source| Error::Claim {
            what: "pods",
            source,
        })?;
        let members: BTreeMap<i32, &Pod> = owned
            .iter()
            .filter_map(|p| Some((identity::ordinal_of(&set_name, &p.name_any())?, p.as_ref())))
            .collect();
        let set_template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let current_template = identity::template_of_revision(history::data_of(&current))
            .unwrap_or_else(|| set_template.clone());
        let (current_name, update_name) = (current.name_any(), update.name_any());
        let mrs = min_ready_seconds(set);
        let now = Timestamp::now();
        let input = plan::Input {
            start: identity::start_ordinal(set),
            replicas: identity::replicas(set),
            pods: members.clone(),
            parallel: parallel(set),
            strategy: strategy(set),
            update_revision: &update_name,
            min_ready_seconds: mrs,
            now,
        };
        let actions = plan::plan(&input);
        // Claims change owners before their pods go (whenScaled: Delete).
        self.sync_claim_owners(set, &members).await?;
        self.restore_identity(set, &members).await?;
        let mut err = None;
        if !actions.is_empty() {
            tracing::info!(statefulset = key, actions = ?actions, "statefulset sync");
        }
        let by_name: BTreeMap<String, &Pod> =
            members.values().map(|p| (p.name_any(), *p)).collect();
        let (current_template, set_template) = (&current_template, &set_template);
        let (current_name_ref, update_name_ref, by_name_ref) =
            (&current_name, &update_name, &by_name);
        let (ns_ref, set_name_ref) = (&ns, &set_name);
        let results = join_all(actions.iter().map(|a| async move {
            match a {
                Action::Create(ord, Rev::Current) => {
                    self.create_pod(set, current_template, *ord, current_name_ref).await
                }
                Action::Create(ord, Rev::Update) => {
                    self.create_pod(set, set_template, *ord, update_name_ref).await
                }
                Action::Recreate(name) | Action::ScaleDown(name) | Action::Update(name) => {
                    let Some(p) = by_name_ref.get(name) else {
                        return Ok(());
                    };
                    if let Action::Recreate(_) = a {
                        self.recorder.warning(
                            set,
                            "RecreatingFailedPod",
                            format!("StatefulSet {ns_ref}/{set_name_ref} is recreating failed Pod {name}"),
                        );
                    }
                    self.delete_pod(set, p).await
                }
            }
        }))
        .await;
        for r in results {
            if let Err(e) = r {
                err = Some(e);
            }
        }
        // History: keep the revisions in use and the newest others up to the limit.
        let mut live: HashSet<String> = [current_name.clone(), update_name.clone()].into();
        live.extend(
            members
                .values()
                .filter_map(|p| plan::revision_of(p).map(str::to_string)),
        );
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        for r in history::to_prune(&revs, &live, limit) {
            self.history.delete(r).await.map_err(Error::History)?;
        }
        // Status.
        let refs: Vec<&Pod> = members.values().copied().collect();
        let c = plan::counts(&refs, &current_name, &update_name, mrs, now);
        let (mut current_rev, mut current_replicas) = (current_name.clone(), c.current);
        if matches!(input.strategy, Strategy::RollingUpdate { .. })
            && c.updated == c.replicas
            && c.ready == c.replicas
        {
            current_rev = update_name.clone();
            current_replicas = c.updated;
        }
        let mut status = json!({
            "replicas": c.replicas,
            "availableReplicas": c.available,
            "currentRevision": current_rev,
            "updateRevision": update_name,
        });
        for (k, v) in [
            ("readyReplicas", c.ready),
            ("currentReplicas", current_replicas),
            ("updatedReplicas", c.updated),
        ] {
            if v != 0 {
                status[k] = json!(v);
            }
        }
        if let Some(g) = set.metadata.generation {
            status["observedGeneration"] = json!(g);
        }
        if let Some(n) = set.status.as_ref().and_then(|s| s.collision_count) {
            status["collisionCount"] = json!(n);
        }
        let mut have = serde_json::to_value(set)?
            .get("status")
            .cloned()
            .unwrap_or(json!({}));
        if let Some(h) = have.as_object_mut() {
            h.retain(|k, _| STATUS_FIELDS.contains(&k.as_str()));
        }
        if have != status {
            self.patch_status(set, crate::status::status_patch(&status, STATUS_FIELDS))
                .await?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        let next = refs
            .iter()
            .filter_map(|p| pods::until_available(p, mrs, now))
            .min();
        Ok(next.map(|d| d + Duration::from_millis(100)))
    }
}

#[async_trait::async_trait]
impl Reconciler for StatefulSetController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(set) = self.sets.get(key) else {
            return Ok(None);
        };
        Ok(self.sync(&set, key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_resolve_partition_and_max_unavailable() {
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {}, "spec": {"replicas": 10, "selector": {}, "template": {}, "serviceName": "",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 3, "maxUnavailable": "25%"}}}})).expect("sts");
        assert_eq!(
            strategy(&s),
            Strategy::RollingUpdate {
                partition: 3,
                max_unavailable: 3
            }
        );
        let s: StatefulSet = serde_json::from_value(json!({"metadata": {}, "spec": {"selector": {}, "template": {}, "serviceName": "", "updateStrategy": {"type": "OnDelete"}}})).expect("sts");
        assert_eq!(strategy(&s), Strategy::OnDelete);
    }
}
