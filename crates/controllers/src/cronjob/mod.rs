//! The CronJob controller (upstream's cronjob_controllerv2): starts a Job from the CronJob's
//! jobTemplate at each scheduled time, keeps status.active, lastScheduleTime and
//! lastSuccessfulTime, applies concurrencyPolicy, startingDeadlineSeconds and suspend, and
//! deletes finished Jobs beyond the history limits. Each CronJob is requeued for its next
//! scheduled time (no polling). The decisions are the pure [`plan::plan`] on an injected
//! [`Clock`]; this module reads the caches and carries plans out.

pub mod plan;
pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::metrics;
use crate::owner::controller_ref;
use capstan_runtime::events::object_ref;
use capstan_runtime::{
    key_of, split_key, Cache, Change, Informer, Queue, ReconcileError, Reconciler, Recorder,
};
use plan::{Deletion, Plan};

const CONTROLLER: &str = "cronjob";

/// The time, injected so tests can run schedules without waiting.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Errors of one sync; all retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading job {job}: {source}")]
    GetJob {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting job {job}: {source}")]
    Delete {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating job {job}: {source}")]
    Create {
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
}

pub struct CronJobController {
    client: Client,
    cron_jobs: Cache<CronJob>,
    jobs: Cache<Job>,
    recorder: Recorder,
    clock: Clock,
}

/// The CronJob key a Job's controller reference points at.
fn owner_key(job: &Job) -> Option<String> {
    let r = controller_ref(&job.metadata)?;
    (r.kind == "CronJob" && r.api_version.starts_with("batch/")).then(|| {
        format!(
            "{}/{}",
            job.metadata.namespace.as_deref().unwrap_or(""),
            r.name
        )
    })
}

impl CronJobController {
    /// Wires the controller to its informers; returns it with its queue.
    pub fn new(
        client: Client,
        cron_jobs: &mut Informer<CronJob>,
        jobs: &mut Informer<Job>,
        clock: Clock,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        cron_jobs.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let q = queue.clone();
        jobs.on_change(move |c| {
            let (old, new) = match c {
                Change::Added(j) | Change::Deleted(j) => (None, j),
                Change::Updated { old, new } => (Some(old), new),
            };
            if let Some(k) = owner_key(new) {
                q.add(k);
            }
            if let Some(k) = old.and_then(|o| owner_key(o)) {
                q.add(k);
            }
        });
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), "cronjob-controller"),
            client,
            cron_jobs: cron_jobs.cache(),
            jobs: jobs.cache(),
            clock,
        });
        (me, queue)
    }

    fn job_api(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Jobs whose controller reference is this CronJob.
    fn owned_jobs(&self, cj: &CronJob, ns: &str) -> Vec<Arc<Job>> {
        let uid = cj.metadata.uid.as_deref().unwrap_or("");
        self.jobs
            .list_ns(ns)
            .into_iter()
            .filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect()
    }

    /// Active Jobs missing from the cache that the API confirms gone (a slow watch must not
    /// make an active Job look missing).
    async fn confirmed_gone(
        &self,
        status: Option<&CronJobStatus>,
        jobs: &[Arc<Job>],
        ns: &str,
    ) -> Result<HashSet<String>, Error> {
        let known: HashSet<&str> = jobs
            .iter()
            .filter_map(|j| j.metadata.uid.as_deref())
            .collect();
        let mut gone = HashSet::new();
        for r in status.and_then(|s| s.active.as_ref()).into_iter().flatten() {
            let (Some(uid), Some(name)) = (r.uid.as_deref(), r.name.as_deref()) else {
                continue;
            };
            if known.contains(uid) {
                continue;
            }
            match self
                .job_api(r.namespace.as_deref().unwrap_or(ns))
                .get_opt(name)
                .await
            {
                Ok(Some(j)) if j.metadata.uid.as_deref() == Some(uid) => {}
                Ok(_) => {
                    gone.insert(uid.to_string());
                }
                Err(e) => {
                    return Err(Error::GetJob {
                        job: name.to_string(),
                        source: e,
                    })
                }
            }
        }
        Ok(gone)
    }

    /// A Job running that the cached status does not list may be one we just started and the
    /// cache has not caught up with: read the CronJob afresh before calling it unexpected.
    async fn fresh_if_needed(&self, cj: Arc<CronJob>, jobs: &[Arc<Job>]) -> Arc<CronJob> {
        let status = cj.status.clone().unwrap_or_default();
        let listed = |uid: &str| {
            status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid.as_deref() == Some(uid))
        };
        let surprise = jobs.iter().any(|j| {
            plan::finished(j).is_none() && !listed(j.metadata.uid.as_deref().unwrap_or(""))
        });
        if !surprise {
            return cj;
        }
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
        match api.get_opt(&cj.name_any()).await {
            Ok(Some(fresh)) if fresh.metadata.uid == cj.metadata.uid => Arc::new(fresh),
            _ => cj,
        }
    }

    /// Deletes one Job (background propagation, as upstream); records the outcome.
    async fn delete_job(&self, cj: &CronJob, ns: &str, d: &Deletion) -> Result<(), Error> {
        metrics::global().write(CONTROLLER, "delete", "jobs");
        let dp = DeleteParams::background();
        match self.job_api(ns).delete(&d.name, &dp).await {
            Ok(_) => {
                self.recorder
                    .normal(cj, "SuccessfulDelete", format!("Deleted job {}", d.name));
                tracing::info!(cronjob = %key_of(cj), job = %d.name, replaced = d.replaced, "deleted job");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.recorder
                    .warning(cj, "FailedDelete", format!("Deleted job: {e}"));
                Err(Error::Delete {
                    job: d.name.clone(),
                    source: e,
                })
            }
        }
    }

    /// Creates the planned Job; returns it (or the one already there, when it is ours: a
    /// previous sync created it but its status write was lost). `None` when a Job of that
    /// name belongs to someone else.
    async fn create_job(&self, cj: &CronJob, ns: &str, job: &Job) -> Result<Option<Job>, Error> {
        let api = self.job_api(ns);
        metrics::global().write(CONTROLLER, "create", "jobs");
        match api.create(&PostParams::default(), job).await {
            Ok(j) => {
                self.recorder.normal(
                    cj,
                    "SuccessfulCreate",
                    format!("Created job {}", j.name_any()),
                );
                tracing::info!(cronjob = %key_of(cj), job = %j.name_any(), "created job");
                Ok(Some(j))
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                let name = job.name_any();
                let existing = api.get(&name).await.map_err(|e| Error::GetJob {
                    job: name.clone(),
                    source: e,
                })?;
                let ours = controller_ref(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                Ok(ours.then_some(existing))
            }
            Err(e) => {
                self.recorder
                    .warning(cj, "FailedCreate", format!("Error creating job: {e}"));
                Err(Error::Create {
                    job: job.name_any(),
                    source: e,
                })
            }
        }
    }

    async fn write_status(&self, cj: &CronJob, status: &CronJobStatus) -> Result<(), Error> {
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
        let value = serde_json::to_value(status).unwrap_or_default();
        let patch = crate::status::status_patch(&value, crate::status::CRON_JOB_FIELDS);
        metrics::global().write(CONTROLLER, "patch", "status");
        match api
            .patch_status(
                &cj.name_any(),
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

    /// Carries out a plan: deletions, then the new Job, then one status write.
    async fn execute(&self, cj: &CronJob, ns: &str, plan: Plan) -> Result<(), Error> {
        for n in &plan.notes {
            if n.warning {
                self.recorder.warning(cj, n.reason, n.message.clone());
            } else {
                self.recorder.normal(cj, n.reason, n.message.clone());
            }
        }
        let mut status = plan.status;
        let mut failed = None;
        for d in &plan.delete {
            if let Err(e) = self.delete_job(cj, ns, d).await {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            // The written status would claim deletions that did not happen: retry the whole
            // sync instead.
            return Err(e);
        }
        if let Some(start) = plan.start {
            if let Some(job) = self.create_job(cj, ns, &start.job).await? {
                let uid = job.metadata.uid.clone();
                let active = status.active.get_or_insert_with(Vec::new);
                if !active.iter().any(|r| r.uid == uid) {
                    active.push(object_ref(&job));
                }
                status.last_schedule_time = Some(Time(start.scheduled));
            }
        }
        if status.active.as_ref().is_some_and(Vec::is_empty) {
            status.active = None;
        }
        if cj.status.clone().unwrap_or_default() != status {
            self.write_status(cj, &status).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Reconciler for CronJobController {
    fn name(&self) -> &'static str {
        CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(cj) = self.cron_jobs.get(key) else {
            return Ok(None);
        };
        let ns = split_key(key).0.unwrap_or("default").to_string();
        let jobs = self.owned_jobs(&cj, &ns);
        let cj = self.fresh_if_needed(cj, &jobs).await;
        let gone = self.confirmed_gone(cj.status.as_ref(), &jobs, &ns).await?;
        let refs: Vec<&Job> = jobs.iter().map(|j| j.as_ref()).collect();
        let plan = plan::plan(&cj, &refs, &gone, (self.clock)());
        let requeue = plan.requeue;
        self.execute(&cj, &ns, plan).await?;
        Ok(requeue)
    }
}
