//! The TTL-after-finished controller, as upstream's `ttlafterfinished`: a finished Job
//! (Complete or Failed) with `spec.ttlSecondsAfterFinished` is deleted, with its pods in the
//! foreground, that many seconds after it finished.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::{Api, Client, ResourceExt};

use crate::job::sync::{is_finished, true_condition};
use crate::metrics;
use capstan_runtime::{key_of, Cache, Informer, Queue, ReconcileError, Reconciler};

const CONTROLLER: &str = "ttl-after-finished";

/// When the Job finished: completionTime, else its Complete or Failed condition's time.
pub fn finish_time(status: &JobStatus) -> Option<Timestamp> {
    if !is_finished(status) {
        return None;
    }
    status.completion_time.as_ref().map(|t| t.0).or_else(|| {
        ["Complete", "Failed"]
            .iter()
            .find_map(|t| true_condition(status, t)?.last_transition_time.as_ref())
            .map(|t| t.0)
    })
}

/// How long until `job` expires: `Some(ZERO)` when it is due, `None` when it never will
/// (not finished, no TTL, already being deleted).
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job.status.as_ref()?)?;
    let expires = finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .ok()?;
    let left = expires.duration_since(now);
    Some(if left <= SignedDuration::ZERO {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    })
}

pub struct TtlAfterFinishedController {
    client: Client,
    jobs: Cache<Job>,
}

impl TtlAfterFinishedController {
    pub fn new(client: Client, jobs: &mut Informer<Job>) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        jobs.on_change(move |c| {
            let j = c.latest();
            let has_ttl = j
                .spec
                .as_ref()
                .is_some_and(|s| s.ttl_seconds_after_finished.is_some());
            if has_ttl && j.status.as_ref().is_some_and(is_finished) {
                q.add(key_of(j.as_ref()));
            }
        });
        (
            Arc::new(Self {
                client,
                jobs: jobs.cache(),
            }),
            queue,
        )
    }
}

#[async_trait::async_trait]
impl Reconciler for TtlAfterFinishedController {
    fn name(&self) -> &'static str {
        CONTROLLER
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(job) = self.jobs.get(key) else {
            return Ok(None);
        };
        match time_left(&job, Timestamp::now()) {
            None => return Ok(None),
            Some(d) if !d.is_zero() => return Ok(Some(d + Duration::from_millis(100))),
            Some(_) => {}
        }
        // The cache may be behind (the TTL changed, the Job was recreated): check a fresh copy.
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let Some(fresh) = api.get_opt(&job.name_any()).await? else {
            return Ok(None);
        };
        match time_left(&fresh, Timestamp::now()) {
            None => return Ok(None),
            Some(d) if !d.is_zero() => return Ok(Some(d + Duration::from_millis(100))),
            Some(_) => {}
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        metrics::global().write(CONTROLLER, "delete", "jobs");
        match api.delete(&fresh.name_any(), &dp).await {
            Ok(_) => {
                tracing::info!(job = %key, "deleted job whose ttlSecondsAfterFinished expired");
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
            "status": status,
        }))
        .expect("job")
    }

    #[test]
    fn a_finished_job_expires_ttl_seconds_after_it_finished() {
        let now: Timestamp = "2024-01-01T00:00:05Z".parse().expect("ts");
        let complete = json!({"completionTime": "2024-01-01T00:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(
            time_left(&job(Some(10), complete.clone()), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            time_left(&job(Some(0), complete.clone()), now),
            Some(Duration::ZERO)
        );
        assert_eq!(time_left(&job(None, complete), now), None);
        let failed = json!({"conditions": [{"type": "Failed", "status": "True",
            "lastTransitionTime": "2024-01-01T00:00:01Z"}]});
        assert_eq!(time_left(&job(Some(3), failed), now), Some(Duration::ZERO));
        let running = json!({"startTime": "2024-01-01T00:00:00Z"});
        assert_eq!(time_left(&job(Some(0), running), now), None);
    }
}
