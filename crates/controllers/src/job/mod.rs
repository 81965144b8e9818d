//! The Job controller: runs each Job's pods to completion as upstream's job controller does.
//! [`sync::plan`] decides (pure: counting finished pods through `uncountedTerminatedPods`,
//! back-off, podFailurePolicy, successPolicy, suspension, deadlines, conditions); this module
//! watches Jobs and pods, carries the plan out against the API (status first, then tracking
//! finalizers, deletions, creations, the final status) and records events.

pub mod backoff;
pub mod indexes;
pub mod policy;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::expectations::Expectations;
use crate::metrics;
use crate::owner::{controller_ref, owner_ref};
use crate::pods::slow_start_batches;
use crate::status::status_patch;
use capstan_runtime::{
    key_of, split_key, Cache, Change, Informer, Queue, ReconcileError, Reconciler, Recorder,
};
use indexes::{COMPLETION_INDEX, COMPLETION_INDEX_ENV, INDEX_FAILURE_COUNT};
use sync::{Input, NewPod, Plan, PodRef, TRACKING_FINALIZER};

const CONTROLLER: &str = "job";
const COMPONENT: &str = "job-controller";
/// Jobs whose spec.managedBy names another controller are left to it.
const MANAGED_BY_US: &str = "kubernetes.io/job-controller";
/// Pod events within this period cause one sync (upstream's syncJobBatchPeriod): a pod that
/// starts and finishes at once costs one status write, not two.
pub const POD_EVENT_BATCH: Duration = Duration::from_secs(1);

/// Queues keys at most once per [`POD_EVENT_BATCH`].
#[derive(Clone, Default)]
struct Batcher {
    pending: Arc<Mutex<HashSet<String>>>,
}

impl Batcher {
    fn add(&self, q: &Queue, key: String) {
        if !self.pending.lock().insert(key.clone()) {
            return;
        }
        let (q, pending) = (q.clone(), self.pending.clone());
        tokio::spawn(async move {
            tokio::time::sleep(POD_EVENT_BATCH).await;
            pending.lock().remove(&key);
            q.add(key);
        });
    }
}

/// Job status fields, all written by this controller.
pub const JOB_FIELDS: &[&str] = &[
    "conditions",
    "startTime",
    "completionTime",
    "active",
    "succeeded",
    "failed",
    "terminating",
    "ready",
    "completedIndexes",
    "failedIndexes",
    "uncountedTerminatedPods",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing status of job {job}: {source}")]
    Status {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the tracking finalizer of pod {pod}: {source}")]
    Finalizer {
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
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

pub struct JobController {
    client: Client,
    jobs: Cache<Job>,
    pods: Cache<Pod>,
    expectations: Arc<Expectations>,
    /// Per Job key, pod uids whose tracking finalizer we removed and the cache does not show
    /// removed yet (upstream's finalizer expectations): such a pod is never counted twice.
    removing: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    /// Per Job key, the resourceVersion our last status write produced: a cached Job older
    /// than that is not synced (its counts would be stale) until the cache catches up.
    written: Mutex<HashMap<String, i64>>,
    recorder: Recorder,
}

/// The key of the Job a pod's controller reference names (whether or not it still exists).
fn job_key_of(pod: &Pod) -> Option<String> {
    let r = controller_ref(&pod.metadata)?;
    (r.kind == "Job" && r.api_version.starts_with("batch/")).then(|| {
        format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            r.name
        )
    })
}

fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

impl JobController {
    /// Wires the controller to its informers; returns it with its queue.
    pub fn new(
        client: Client,
        jobs: &mut Informer<Job>,
        pods: &mut Informer<Pod>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let expectations = Arc::new(Expectations::default());
        let removing: Arc<Mutex<HashMap<String, HashSet<String>>>> = Arc::default();
        let (q, exp, rm) = (queue.clone(), expectations.clone(), removing.clone());
        jobs.on_change(move |c| {
            let key = key_of(c.latest().as_ref());
            if let Change::Deleted(_) = c {
                exp.forget(&key);
                rm.lock().remove(&key);
            }
            q.add(key);
        });
        let (q, exp, rm) = (queue.clone(), expectations.clone(), removing.clone());
        let batch = Batcher::default();
        let observe_finalizer = move |k: &str, p: &Pod, gone: bool| {
            if gone || !has_tracking_finalizer(p) {
                if let Some(set) = rm.lock().get_mut(k) {
                    set.remove(p.metadata.uid.as_deref().unwrap_or(""));
                }
            }
        };
        pods.on_change(move |c| {
            // A pod orphaned from its Job (`--cascade=orphan`) is its old Job's to let go of.
            let key = match c {
                Change::Updated { old, new } => job_key_of(new).or_else(|| job_key_of(old)),
                _ => job_key_of(c.latest()),
            };
            let Some(k) = key else {
                return;
            };
            match c {
                Change::Added(p) => {
                    if p.metadata.deletion_timestamp.is_some() {
                        exp.deletion_observed(&k, &key_of(p.as_ref()));
                    } else {
                        exp.creation_observed(&k);
                    }
                    observe_finalizer(&k, p, false);
                }
                Change::Updated { old, new } => {
                    if new.metadata.deletion_timestamp.is_some()
                        && old.metadata.deletion_timestamp.is_none()
                    {
                        exp.deletion_observed(&k, &key_of(new.as_ref()));
                    }
                    observe_finalizer(&k, new, false);
                }
                Change::Deleted(p) => {
                    exp.deletion_observed(&k, &key_of(p.as_ref()));
                    observe_finalizer(&k, p, true);
                }
            }
            batch.add(&q, k);
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            jobs: jobs.cache(),
            pods: pods.cache(),
            expectations,
            removing,
            written: Mutex::default(),
        });
        (me, queue)
    }

    fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Removes the tracking finalizer; a pod already gone is fine.
    async fn remove_finalizer(&self, key: &str, ns: &str, pod: &PodRef) -> Result<(), Error> {
        self.removing
            .lock()
            .entry(key.to_string())
            .or_default()
            .insert(pod.uid.clone());
        let patch =
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
        metrics::global().write(CONTROLLER, "patch", "pods");
        match self
            .pod_api(ns)
            .patch(
                &pod.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                if let Some(set) = self.removing.lock().get_mut(key) {
                    set.remove(&pod.uid);
                }
                Err(Error::Finalizer {
                    pod: pod.name.clone(),
                    source: e,
                })
            }
        }
    }

    /// Writes the status, conditional on `rv` (the version it was computed from); returns
    /// the new resourceVersion.
    async fn write_status(
        &self,
        job: &Job,
        key: &str,
        status: &JobStatus,
        rv: Option<String>,
    ) -> Result<Option<String>, Error> {
        let mut value = serde_json::to_value(status)?;
        // A merge patch only clears list fields it names.
        if let Some(u) = value.get_mut("uncountedTerminatedPods") {
            for f in ["succeeded", "failed"] {
                if u.get(f).is_none() {
                    u[f] = Value::Null;
                }
            }
        }
        let mut patch = status_patch(&value, JOB_FIELDS);
        patch["metadata"] = json!({ "resourceVersion": rv });
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        metrics::global().write(CONTROLLER, "patch", "status");
        match api
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(j) => {
                let new_rv = j.metadata.resource_version;
                if let Some(v) = new_rv.as_deref().and_then(|v| v.parse().ok()) {
                    self.written.lock().insert(key.to_string(), v);
                }
                Ok(new_rv)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(Error::Status {
                job: job.name_any(),
                source: e,
            }),
        }
    }

    /// Whether the cached Job predates our last status write.
    fn cache_is_behind(&self, key: &str, job: &Job) -> bool {
        let cached: Option<i64> = job
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok());
        match (self.written.lock().get(key), cached) {
            (Some(w), Some(c)) => c < *w,
            _ => false,
        }
    }

    async fn delete_pods(&self, job: &Job, key: &str, victims: &[PodRef]) -> Result<(), Error> {
        if victims.is_empty() {
            return Ok(());
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        self.expectations
            .expect_deletions(key, victims.iter().map(|p| format!("{ns}/{}", p.name)));
        let api = self.pod_api(&ns);
        let results = join_all(victims.iter().map(|p| {
            metrics::global().write(CONTROLLER, "delete", "pods");
            let api = api.clone();
            async move { (p, api.delete(&p.name, &DeleteParams::background()).await) }
        }))
        .await;
        let mut failed = None;
        for (p, r) in results {
            match r {
                Ok(_) => self.recorder.normal(
                    job,
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", p.name),
                ),
                Err(kube::Error::Api(s)) if s.code == 404 => self
                    .expectations
                    .deletion_observed(key, &format!("{ns}/{}", p.name)),
                Err(e) => {
                    self.expectations
                        .deletion_observed(key, &format!("{ns}/{}", p.name));
                    self.recorder
                        .warning(job, "FailedDelete", format!("Error deleting: {e}"));
                    failed = Some(Error::Delete {
                        pod: p.name.clone(),
                        source: e,
                    });
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn create_pods(&self, job: &Job, key: &str, wanted: &[NewPod]) -> Result<(), Error> {
        if wanted.is_empty() {
            return Ok(());
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        self.expectations.expect_creations(key, wanted.len());
        let api = self.pod_api(&ns);
        let pp = PostParams::default();
        let mut rest = wanted;
        for batch in slow_start_batches(wanted.len()) {
            let (now, later) = rest.split_at(batch);
            rest = later;
            let results = join_all(now.iter().map(|np| {
                metrics::global().write(CONTROLLER, "create", "pods");
                let pod = new_pod(job, np);
                let api = api.clone();
                let pp = pp.clone();
                async move { api.create(&pp, &pod).await }
            }))
            .await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(p) => self.recorder.normal(
                        job,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        self.recorder
                            .warning(job, "FailedCreate", format!("Error creating: {e}"));
                        failed = Some(e);
                    }
                }
            }
            if let Some(e) = failed {
                // The rest will never be created, so never observed.
                for _ in 0..rest.len() {
                    self.expectations.creation_observed(key);
                }
                return Err(Error::Create(e));
            }
        }
        Ok(())
    }

    /// One pass over the namespace's pods: those the Job (uid `job_uid`) controls, and
    /// orphans still holding the tracking finalizer because their Job of this name is gone
    /// or was replaced, or they were orphaned (they are let go of, so their deletion can
    /// complete).
    fn pods_of(&self, key: &str, job_uid: Option<&str>) -> (Vec<Arc<Pod>>, Vec<PodRef>) {
        let (ns, name) = split_key(key);
        let mut owned = Vec::new();
        let mut orphans = Vec::new();
        for p in self.pods.list_ns(ns.unwrap_or("default")) {
            let Some(r) = controller_ref(&p.metadata) else {
                // Orphaned: no Job counts it any more.
                if has_tracking_finalizer(&p) {
                    orphans.push(PodRef {
                        name: p.name_any(),
                        uid: p.metadata.uid.clone().unwrap_or_default(),
                    });
                }
                continue;
            };
            if Some(r.uid.as_str()) == job_uid {
                owned.push(p);
            } else if r.kind == "Job" && r.name == name && has_tracking_finalizer(&p) {
                orphans.push(PodRef {
                    name: p.name_any(),
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                });
            }
        }
        (owned, orphans)
    }

    async fn release(&self, key: &str, orphans: &[PodRef]) -> Result<(), Error> {
        let (ns, _) = split_key(key);
        for r in orphans {
            self.remove_finalizer(key, ns.unwrap_or("default"), r)
                .await?;
        }
        Ok(())
    }

    async fn carry_out(&self, job: &Job, key: &str, plan: Plan) -> Result<(), Error> {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let mut rv = job.metadata.resource_version.clone();
        if let Some(interim) = &plan.interim_status {
            rv = self.write_status(job, key, interim, rv).await?;
        }
        let removed = join_all(
            plan.remove_finalizers
                .iter()
                .map(|p| self.remove_finalizer(key, &ns, p)),
        )
        .await;
        if let Some(e) = removed.into_iter().find_map(Result::err) {
            // The status keeps the pods uncounted; the next sync finishes the job.
            return Err(e);
        }
        let deleted = self.delete_pods(job, key, &plan.delete).await;
        let created = self.create_pods(job, key, &plan.create).await;
        let current = serde_json::to_value(job.status.clone().unwrap_or_default())?;
        if serde_json::to_value(&plan.status)? != current {
            self.write_status(job, key, &plan.status, rv).await?;
        }
        if let Some((failed, reason)) = &plan.finished {
            let mode = job.spec.as_ref().and_then(|s| s.completion_mode.clone());
            metrics::global()
                .jobs_finished
                .get_or_create(&metrics::JobFinishedLabels {
                    completion_mode: mode.unwrap_or_else(|| "NonIndexed".into()),
                    result: if *failed { "failed" } else { "succeeded" }.into(),
                    reason: reason.clone(),
                })
                .inc();
        }
        for e in &plan.events {
            if e.warning {
                self.recorder.warning(job, e.reason, e.message.clone());
            } else {
                self.recorder.normal(job, e.reason, e.message.clone());
            }
            tracing::info!(job = %key, reason = e.reason, message = %e.message, "job event");
        }
        deleted?;
        created
    }
}

/// A pod for `job` (upstream's GetPodFromTemplate plus the Job's additions): owned by the
/// Job, carrying the tracking finalizer, and for Indexed Jobs the completion index as
/// annotation, label, `JOB_COMPLETION_INDEX` and hostname `<job>-<index>`.
pub fn new_pod(job: &Job, np: &NewPod) -> Pod {
    let name = job.name_any();
    let t = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let tm = t.metadata.unwrap_or_default();
    let mut labels = tm.labels.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    let mut finalizers = tm.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.into());
    let mut spec = t.spec.unwrap_or_default();
    let mut generate_name = format!("{name}-");
    if let Some(i) = np.index {
        generate_name = format!("{name}-{i}-");
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(f) = np.failure_count {
            annotations.insert(INDEX_FAILURE_COUNT.into(), f.to_string());
        }
        if spec.hostname.as_deref().unwrap_or("").is_empty() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner_ref("batch/v1", "Job", &job.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[async_trait::async_trait]
impl Reconciler for JobController {
    fn name(&self) -> &'static str {
        CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(job) = self.jobs.get(key) else {
            self.expectations.forget(key);
            self.written.lock().remove(key);
            let (_, orphans) = self.pods_of(key, None);
            self.release(key, &orphans).await?;
            return Ok(None);
        };
        let managed_by = job.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != MANAGED_BY_US) {
            return Ok(None);
        }
        if self.cache_is_behind(key, &job) {
            // The update event requeues the key; the delay is a safety net.
            return Ok(Some(Duration::from_secs(1)));
        }
        let (owned, orphans) = self.pods_of(key, job.metadata.uid.as_deref());
        self.release(key, &orphans).await?;
        let refs: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
        let removing = self.removing.lock().get(key).cloned().unwrap_or_default();
        let plan = sync::plan(&Input {
            job: &job,
            pods: &refs,
            now: Timestamp::now(),
            removing: &removing,
            may_manage: self.expectations.satisfied(key),
        });
        let requeue = plan.requeue;
        self.carry_out(&job, key, plan).await?;
        Ok(requeue.map(|d| d + Duration::from_millis(100)))
    }
}
