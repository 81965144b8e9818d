//! What the scheduler tells the API about its decisions, off the scheduling loop: core/v1
//! Events (`Scheduled`, `FailedScheduling`) through the shared `capstan_runtime` recorder
//! (correlated, spam-filtered, limited to the scheduler client's 50/s), and the pod's
//! `PodScheduled=False` condition with reason `Unschedulable` through a queue of its own.
//! What does not fit a queue is dropped (counted), as upstream's event broadcaster drops.

use std::sync::Arc;

use capstan_runtime::{EventType, RecorderConfig};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::Metrics;

/// The component name events carry (`kubectl describe` shows it under "From").
pub const COMPONENT: &str = "default-scheduler";
/// Requests waiting to be sent; beyond this, events are dropped.
pub const QUEUE_SIZE: usize = 1024;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// The pod an event or condition is about.
#[derive(Clone, Debug)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug)]
pub enum Record {
    /// A Warning FailedScheduling event; with `condition`, also PodScheduled=False.
    Failed {
        pod: PodRef,
        reason: &'static str,
        message: String,
        condition: Option<ConditionUpdate>,
    },
    /// A Normal Scheduled event.
    Scheduled { pod: PodRef, node: String },
    /// Only the PodScheduled=False condition (its event was dropped).
    Condition {
        pod: PodRef,
        condition: ConditionUpdate,
    },
}

/// The PodScheduled condition to write, and the time of the last transition to keep.
#[derive(Debug, Clone)]
pub struct ConditionUpdate {
    pub reason: &'static str,
    pub message: String,
    /// Kept when the condition was already False (upstream keeps the transition time).
    pub last_transition_time: Option<String>,
    /// The pod version the decision saw: the write is conditional on it, so that a late
    /// write cannot mark a pod unschedulable after it was bound.
    pub resource_version: String,
}

/// The sending side, used by the scheduling loop.
#[derive(Clone)]
pub struct Recorder {
    events: capstan_runtime::Recorder,
    conditions: mpsc::Sender<(PodRef, ConditionUpdate)>,
    metrics: Arc<Metrics>,
}

/// Events written per second at most, and the burst allowed: upstream's scheduler sends its
/// events through a client limited to 50 queries per second (burst 100) and drops what its
/// broadcaster cannot queue. Condition updates are not limited.
const EVENTS_PER_SECOND: f64 = 50.0;
const EVENT_BURST: f64 = 100.0;

impl Recorder {
    /// Starts the recorder's workers on the current runtime.
    pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> Recorder {
        let mut config = RecorderConfig::new(COMPONENT);
        config.queue = QUEUE_SIZE;
        config.concurrency = CONCURRENCY;
        config.rate_limit = Some((EVENTS_PER_SECOND, EVENT_BURST));
        config.dropped = metrics.events_dropped_counter();
        let events = capstan_runtime::Recorder::start(client.clone(), config);
        let (conditions, rx) = mpsc::channel(QUEUE_SIZE);
        tokio::spawn(write_conditions(client, rx));
        Recorder {
            events,
            conditions,
            metrics,
        }
    }

    /// Queues a record; what does not fit its queue is dropped (and counted).
    pub fn record(&self, r: Record) {
        match r {
            Record::Failed {
                pod,
                reason,
                message,
                condition,
            } => {
                // The condition goes first and on its own queue: a dropped event must not
                // lose it.
                if let Some(c) = condition {
                    self.condition(pod.clone(), c);
                }
                self.events
                    .record(pod.object_ref(), EventType::Warning, reason, message);
            }
            Record::Scheduled { pod, node } => {
                let message = format!(
                    "Successfully assigned {}/{} to {}",
                    pod.namespace, pod.name, node
                );
                self.events
                    .record(pod.object_ref(), EventType::Normal, "Scheduled", message);
            }
            Record::Condition { pod, condition } => self.condition(pod, condition),
        }
    }

    fn condition(&self, pod: PodRef, c: ConditionUpdate) {
        if self.conditions.try_send((pod, c)).is_err() {
            self.metrics.event_dropped();
        }
    }
}

impl PodRef {
    fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

async fn write_conditions(client: kube::Client, mut rx: mpsc::Receiver<(PodRef, ConditionUpdate)>) {
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some((pod, c)) = rx.recv().await {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = update_condition(&client, &pod, &c).await {
                tracing::debug!(pod = %format!("{}/{}", pod.namespace, pod.name), error = %e, "could not update the PodScheduled condition");
            }
        });
    }
}

async fn update_condition(
    client: &kube::Client,
    pod: &PodRef,
    c: &ConditionUpdate,
) -> kube::Result<()> {
    let now = crate::podinfo::format_time(Timestamp::now());
    let transition = c
        .last_transition_time
        .clone()
        .unwrap_or_else(|| now.clone());
    let mut patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": c.reason,
        "message": c.message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}});
    if !c.resource_version.is_empty() {
        patch["metadata"] = json!({"resourceVersion": c.resource_version});
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    match api
        .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
    {
        // The pod changed since the decision (bound, updated or gone): the next attempt, if
        // any, reports again.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}
