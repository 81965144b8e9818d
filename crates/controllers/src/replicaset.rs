//! The ReplicaSet controller (and, through the same code, the ReplicationController
//! controller): keeps `spec.replicas` active pods matching the template, adopting and
//! releasing pods by selector and controller reference, creating in slow-start batches and
//! deleting the least useful pods first, with expectations so a slow cache never makes it act
//! twice; then writes status (replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas after minReadySeconds, observedGeneration).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::expectations::Expectations;
use crate::metrics;
use crate::owner::{controller_ref, owner_ref};
use crate::pods::{self, deletion_order, slow_start_batches};
use capstan_api::selector::Selector;
use capstan_runtime::Recorder;
use capstan_runtime::{
    key_of, split_key, Cache, Change, Informer, Queue, ReconcileError, Reconciler,
};

/// At most this many pods are created or deleted in one sync (upstream's BurstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// Errors of one sync; all retryable (the key is requeued with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("adopting or releasing pod {pod}: {source}")]
    Claim {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating pods: {0}")]
    Create(#[source] kube::Error),
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

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Controller name (metrics, flags).
    const CONTROLLER: &'static str;
    /// Event source component, as upstream names it.
    const COMPONENT: &'static str;
    fn selector(&self) -> Selector;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
}

impl ReplicaOwner for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    fn selector(&self) -> Selector {
        Selector::from_api(self.spec.as_ref().map(|s| &s.selector))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
}

impl ReplicaOwner for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    const COMPONENT: &'static str = "replication-controller";
    fn selector(&self) -> Selector {
        Selector::from_map(self.spec.as_ref().and_then(|s| s.selector.as_ref()))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
}

pub struct ReplicaController<O: ReplicaOwner> {
    client: Client,
    owners: Cache<O>,
    pods: Cache<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

/// Owner key of a pod's controller reference, if it points at a kind-`O` owner we know.
fn owner_key_of<O: ReplicaOwner>(owners: &Cache<O>, pod: &Pod) -> Option<String> {
    let r = controller_ref(&pod.metadata)?;
    if r.kind != O::kind(&()) {
        return None;
    }
    let ns = pod.metadata.namespace.as_deref()?;
    let o = owners.get_in(ns, &r.name)?;
    (o.meta().uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(o.as_ref()))
}

/// Queues every owner in the pod's namespace whose selector matches it (adoption).
fn queue_matching_owners<O: ReplicaOwner>(owners: &Cache<O>, q: &Queue, pod: &Pod) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    for o in owners.list_ns(ns) {
        if o.selector().matches(&pod.metadata.labels.as_ref()) {
            q.add(key_of(o.as_ref()));
        }
    }
}

impl<O: ReplicaOwner> ReplicaController<O> {
    /// Wires the controller to its informers; returns it with its queue.
    pub fn new(
        client: Client,
        owners: &mut Informer<O>,
        pods: &mut Informer<Pod>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let expectations = Arc::new(Expectations::default());
        let q = queue.clone();
        let exp = expectations.clone();
        owners.on_change(move |c| {
            let key = key_of(c.latest().as_ref());
            if let Change::Deleted(_) = c {
                exp.forget(&key);
            }
            q.add(key);
        });
        let (q, exp, oc) = (queue.clone(), expectations.clone(), owners.cache());
        pods.on_change(move |c| match c {
            Change::Added(p) => match owner_key_of(&oc, p) {
                Some(k) => {
                    if p.metadata.deletion_timestamp.is_some() {
                        exp.deletion_observed(&k, &key_of(p.as_ref()));
                    } else {
                        exp.creation_observed(&k);
                    }
                    q.add(k);
                }
                None if controller_ref(&p.metadata).is_none() => queue_matching_owners(&oc, &q, p),
                None => {}
            },
            Change::Updated { old, new } => {
                let (ok, nk) = (owner_key_of(&oc, old), owner_key_of(&oc, new));
                if let Some(k) = &nk {
                    if new.metadata.deletion_timestamp.is_some()
                        && old.metadata.deletion_timestamp.is_none()
                    {
                        exp.deletion_observed(k, &key_of(new.as_ref()));
                    }
                    q.add(k.clone());
                    // Ready pods become available after minReadySeconds: look again then.
                    if let Some(o) = oc.get(k) {
                        let mrs = o.min_ready_seconds();
                        if mrs > 0 && pods::is_ready(new) && !pods::is_ready(old) {
                            q.add_after(k.clone(), Duration::from_secs(mrs as u64 + 1));
                        }
                    }
                }
                if ok.is_some() && ok != nk {
                    q.add(ok.unwrap_or_default());
                }
                if controller_ref(&new.metadata).is_none()
                    && (old.metadata.labels != new.metadata.labels
                        || controller_ref(&old.metadata).is_some())
                {
                    queue_matching_owners(&oc, &q, new);
                }
            }
            Change::Deleted(p) => {
                if let Some(k) = owner_key_of(&oc, p) {
                    exp.deletion_observed(&k, &key_of(p.as_ref()));
                    q.add(k);
                }
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), O::COMPONENT),
            client,
            owners: owners.cache(),
            pods: pods.cache(),
            expectations,
        });
        (me, queue)
    }

    fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Adopts matching orphans and releases owned pods that no longer match (upstream's
    /// PodControllerRefManager); returns the pods this owner controls.
    async fn claim_pods(
        &self,
        owner: &O,
        sel: &Selector,
        ns: &str,
    ) -> Result<Vec<Arc<Pod>>, Error> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for pod in self.pods.list_ns(ns) {
            let matches = sel.matches(&pod.metadata.labels.as_ref());
            match controller_ref(&pod.metadata) {
                Some(r) if r.uid == uid => {
                    if matches {
                        owned.push(pod);
                    } else if !deleting {
                        let refs = pod
                            .owner_references()
                            .iter()
                            .filter(|r| r.uid != uid)
                            .cloned()
                            .collect();
                        self.patch_owner_refs(&pod, refs).await?;
                    }
                }
                Some(_) => {}
                None => {
                    if deleting || pod.metadata.deletion_timestamp.is_some() || !matches {
                        continue;
                    }
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_owner(owner).await);
                    }
                    if can_adopt != Some(true) {
                        continue;
                    }
                    let mut refs = pod.owner_references().to_vec();
                    refs.push(owner_ref(&O::api_version(&()), &O::kind(&()), owner.meta()));
                    if self.patch_owner_refs(&pod, refs).await? {
                        owned.push(pod);
                    }
                }
            }
        }
        Ok(owned)
    }

    /// Adoption needs a fresh read: the owner must still exist and not be going away.
    async fn recheck_owner(&self, owner: &O) -> bool {
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let api: Api<O> = Api::namespaced(self.client.clone(), &ns);
        match api.get_opt(&owner.name_any()).await {
            Ok(Some(fresh)) => {
                fresh.meta().uid == owner.meta().uid && fresh.meta().deletion_timestamp.is_none()
            }
            _ => false,
        }
    }

    /// Writes a pod's owner references, conditional on the version we saw. False when the
    /// pod is gone.
    async fn patch_owner_refs(&self, pod: &Pod, refs: Vec<OwnerReference>) -> Result<bool, Error> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": pod.metadata.resource_version, "uid": pod.metadata.uid}});
        metrics::global().write(O::CONTROLLER, "patch", "pods");
        match self
            .pod_api(&ns)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(Error::Claim {
                pod: pod.name_any(),
                source: e,
            }),
        }
    }

    /// Creates or deletes pods to reach `spec.replicas`.
    async fn manage(&self, owner: &O, key: &str, active: &[Arc<Pod>]) -> Result<(), Error> {
        let want = owner.replicas().max(0) as usize;
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        if active.len() < want {
            let n = (want - active.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, n);
            let pod = new_pod::<O>(owner);
            let api = self.pod_api(&ns);
            let pp = PostParams::default();
            let mut made = 0;
            for batch in slow_start_batches(n) {
                let results = join_all((0..batch).map(|_| {
                    metrics::global().write(O::CONTROLLER, "create", "pods");
                    api.create(&pp, &pod)
                }))
                .await;
                made += batch;
                let mut failed = None;
                for r in results {
                    match r {
                        Ok(p) => self.recorder.normal(
                            owner,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        ),
                        Err(e) => {
                            // It will never be observed.
                            self.expectations.creation_observed(key);
                            self.recorder.warning(
                                owner,
                                "FailedCreate",
                                format!("Error creating: {e}"),
                            );
                            failed = Some(e);
                        }
                    }
                }
                if let Some(e) = failed {
                    for _ in made..n {
                        self.expectations.creation_observed(key);
                    }
                    return Err(Error::Create(e));
                }
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST_REPLICAS);
            let mut order: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
            deletion_order(&mut order);
            let victims: Vec<&Pod> = order.into_iter().take(n).collect();
            self.expectations
                .expect_deletions(key, victims.iter().map(|p| key_of(*p)));
            let api = self.pod_api(&ns);
            let results = join_all(victims.iter().map(|p| {
                metrics::global().write(O::CONTROLLER, "delete", "pods");
                let api = api.clone();
                async move { (p, api.delete(&p.name_any(), &DeleteParams::default()).await) }
            }))
            .await;
            let mut failed = None;
            for (p, r) in results {
                match r {
                    Ok(_) => self.recorder.normal(
                        owner,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", p.name_any()),
                    ),
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        self.expectations.deletion_observed(key, &key_of(*p))
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, &key_of(*p));
                        self.recorder.warning(
                            owner,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                        failed = Some(Error::Delete {
                            pod: p.name_any(),
                            source: e,
                        });
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn write_status(&self, owner: &O, status: Value) -> Result<(), Error> {
        let ns = owner.meta().namespace.clone().unwrap_or_default();
        let api: Api<O> = Api::namespaced(self.client.clone(), &ns);
        metrics::global().write(O::CONTROLLER, "patch", "status");
        let patch = crate::status::status_patch(&status, crate::status::REPLICA_FIELDS);
        match api
            .patch_status(
                &owner.name_any(),
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
}

/// A pod from the owner's template (upstream's GetPodFromTemplate).
pub fn new_pod<O: ReplicaOwner>(owner: &O) -> Pod {
    let t = owner.template().cloned().unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name_any())),
            namespace: owner.meta().namespace.clone(),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref(
                &O::api_version(&()),
                &O::kind(&()),
                owner.meta(),
            )]),
            ..Default::default()
        },
        spec: t.spec,
        status: None,
    }
}

/// The status upstream's calculateStatus gives for these active pods (zero counts omitted,
/// as the API's `omitempty` would).
pub fn calculate_status(
    active: &[&Pod],
    template_labels: Option<&BTreeMap<String, String>>,
    min_ready_seconds: i32,
    generation: Option<i64>,
    prior_conditions: Option<&Value>,
    failure: Option<(&str, String)>,
    now: Timestamp,
) -> Value {
    let labels_match = |p: &Pod| {
        let empty = BTreeMap::new();
        let have = p.metadata.labels.as_ref().unwrap_or(&empty);
        template_labels
            .unwrap_or(&empty)
            .iter()
            .all(|(k, v)| have.get(k) == Some(v))
    };
    let fully = active.iter().filter(|p| labels_match(p)).count();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods::is_available(p, min_ready_seconds, now))
        .count();
    let mut s = json!({"replicas": active.len()});
    for (k, v) in [
        ("fullyLabeledReplicas", fully),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if v > 0 {
            s[k] = json!(v);
        }
    }
    if let Some(g) = generation {
        s["observedGeneration"] = json!(g);
    }
    let mut conds: Vec<Value> = prior_conditions
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "ReplicaFailure")
        .collect();
    if let Some((reason, message)) = failure {
        let prior = prior_conditions
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|c| c["type"] == "ReplicaFailure").cloned());
        let at = prior
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()));
        conds.push(json!({"type": "ReplicaFailure", "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}));
    }
    if !conds.is_empty() {
        s["conditions"] = json!(conds);
    }
    s
}

#[async_trait::async_trait]
impl<O: ReplicaOwner> Reconciler for ReplicaController<O> {
    fn name(&self) -> &'static str {
        O::CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(owner) = self.owners.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let (ns, _) = split_key(key);
        let ns = ns.unwrap_or("default");
        let needs_sync = self.expectations.satisfied(key);
        let sel = owner.selector();
        let owned = self.claim_pods(&owner, &sel, ns).await?;
        let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| pods::is_active(p)).collect();
        let mut failure = None;
        let mut err = None;
        if needs_sync && owner.meta().deletion_timestamp.is_none() {
            if let Err(e) = self.manage(&owner, key, &active).await {
                let reason = if matches!(e, Error::Delete { .. }) {
                    "FailedDelete"
                } else {
                    "FailedCreate"
                };
                failure = Some((reason, e.to_string()));
                err = Some(e);
            }
        }
        let now = Timestamp::now();
        let mrs = owner.min_ready_seconds();
        let refs: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
        let current = serde_json::to_value(owner.as_ref())?;
        let status = calculate_status(
            &refs,
            owner
                .template()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref()),
            mrs,
            owner.meta().generation,
            current["status"].get("conditions"),
            failure,
            now,
        );
        let current_status = current.get("status").cloned().unwrap_or(json!({}));
        if current_status != status {
            self.write_status(&owner, status).await?;
        }
        if let Some(e) = err {
            return Err(e.into());
        }
        // Pods ready but not yet available: look again when the first becomes available.
        let next = refs
            .iter()
            .filter_map(|p| pods::until_available(p, mrs, now))
            .min();
        Ok(next.map(|d| d + Duration::from_millis(100)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let tl: BTreeMap<String, String> = [
            ("app".to_string(), "a".to_string()),
            ("tier".into(), "web".into()),
        ]
        .into();
        let p = |labels: Value, ready_at: Option<&str>| -> Pod {
            let conds = ready_at
                .map(|t| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]))
                .unwrap_or(json!([]));
            serde_json::from_value(
                json!({"metadata": {"labels": labels}, "status": {"conditions": conds}}),
            )
            .expect("pod")
        };
        let a = p(
            json!({"app": "a", "tier": "web"}),
            Some("2024-01-01T00:00:00Z"),
        );
        let b = p(json!({"app": "a"}), Some("2024-01-01T00:00:09Z"));
        let c = p(json!({"app": "a", "tier": "web"}), None);
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().expect("ts");
        let s = calculate_status(&[&a, &b, &c], Some(&tl), 5, Some(3), None, None, now);
        assert_eq!(
            s,
            json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 1, "observedGeneration": 3})
        );
        let empty = calculate_status(&[], Some(&tl), 0, Some(1), None, None, now);
        assert_eq!(empty, json!({"replicas": 0, "observedGeneration": 1}));
    }

    #[test]
    fn a_failed_create_sets_the_replica_failure_condition_and_success_clears_it() {
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().expect("ts");
        let s = calculate_status(
            &[],
            None,
            0,
            None,
            None,
            Some(("FailedCreate", "quota".into())),
            now,
        );
        assert_eq!(s["conditions"][0]["type"], "ReplicaFailure");
        let cleared = calculate_status(&[], None, 0, None, s.get("conditions"), None, now);
        assert!(cleared.get("conditions").is_none());
    }

    #[test]
    fn pods_from_the_template_are_owned_and_named_after_the_owner() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .expect("rs");
        let p = new_pod(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        let r = &p.metadata.owner_references.as_ref().expect("refs")[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.uid.as_str(),
                r.controller,
                r.block_owner_deletion
            ),
            ("ReplicaSet", "u1", Some(true), Some(true))
        );
        assert_eq!(
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("a")
        );
    }
}
