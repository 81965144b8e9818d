//! What the scheduler tells the API about its decisions, off the scheduling loop: core/v1
//! Events (`Scheduled`, `FailedScheduling`, repeated ones folded into a count as upstream's
//! event correlator does) and the pod's `PodScheduled=False` condition with reason
//! `Unschedulable`. Requests go through a bounded queue; when it is full the event is dropped
//! (counted), as upstream's event broadcaster drops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::Metrics;

/// The component name events carry (`kubectl describe` shows it under "From").
pub const COMPONENT: &str = "default-scheduler";
/// Requests waiting to be sent; beyond this, events are dropped.
pub const QUEUE_SIZE: usize = 1024;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;
/// Remembered (pod, reason, message) series; older ones start new events.
const CORRELATOR_SIZE: usize = 4096;
/// Upstream's `NoteLengthLimit` for event messages.
const MESSAGE_LIMIT: usize = 1024;

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
    tx: mpsc::Sender<Record>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Starts the recorder's worker on the current runtime.
    pub fn start(client: kube::Client, metrics: Arc<Metrics>) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE_SIZE);
        tokio::spawn(run(client, rx, metrics.clone()));
        Recorder { tx, metrics }
    }

    /// Queues a record; drops it when the queue is full.
    pub fn record(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            self.metrics.event_dropped();
        }
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message.to_string();
    }
    let mut end = MESSAGE_LIMIT - 4;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

type SeriesKey = (String, &'static str, String);

#[derive(Default)]
struct Correlator {
    series: HashMap<SeriesKey, (String, i32)>,
}

/// Events written per second at most, and the burst allowed: upstream's scheduler sends its
/// events through a client limited to 50 queries per second (burst 100) and drops what its
/// broadcaster cannot queue. Condition updates are not limited.
const EVENTS_PER_SECOND: f64 = 50.0;
const EVENT_BURST: f64 = 100.0;

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn run(client: kube::Client, mut rx: mpsc::Receiver<Record>, metrics: Arc<Metrics>) {
    let sem = Arc::new(Semaphore::new(CONCURRENCY));
    let correlator = Arc::new(Mutex::new(Correlator::default()));
    let mut bucket = Bucket::new(EVENTS_PER_SECOND, EVENT_BURST, Instant::now());
    while let Some(mut r) = rx.recv().await {
        if !bucket.take(Instant::now()) {
            metrics.event_dropped();
            match r {
                // Without the event, a failure may still carry a condition to write.
                Record::Failed {
                    condition: Some(c),
                    pod,
                    ..
                } => r = Record::Condition { pod, condition: c },
                _ => continue,
            }
        }
        let Ok(permit) = sem.clone().acquire_owned().await else {
            return;
        };
        let client = client.clone();
        let correlator = correlator.clone();
        tokio::spawn(async move {
            let _permit = permit;
            handle(client, correlator, r).await;
        });
    }
}

async fn handle(client: kube::Client, correlator: Arc<Mutex<Correlator>>, r: Record) {
    match r {
        Record::Failed {
            pod,
            reason,
            message,
            condition,
        } => {
            if let Some(c) = condition {
                if let Err(e) = update_condition(&client, &pod, &c).await {
                    tracing::debug!(pod = %format!("{}/{}", pod.namespace, pod.name), error = %e, "could not update the PodScheduled condition");
                }
            }
            emit(&client, &correlator, &pod, "Warning", reason, &message).await;
        }
        Record::Condition { pod, condition } => {
            if let Err(e) = update_condition(&client, &pod, &condition).await {
                tracing::debug!(pod = %format!("{}/{}", pod.namespace, pod.name), error = %e, "could not update the PodScheduled condition");
            }
        }
        Record::Scheduled { pod, node } => {
            let message = format!(
                "Successfully assigned {}/{} to {}",
                pod.namespace, pod.name, node
            );
            emit(&client, &correlator, &pod, "Normal", "Scheduled", &message).await;
        }
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

/// Creates the event, or bumps the count of the same event recorded before.
async fn emit(
    client: &kube::Client,
    correlator: &Mutex<Correlator>,
    pod: &PodRef,
    type_: &str,
    reason: &'static str,
    message: &str,
) {
    let message = truncate(message);
    let api: Api<Event> = Api::namespaced(client.clone(), &pod.namespace);
    let key: SeriesKey = (pod.uid.clone(), reason, message.clone());
    let now = Timestamp::now();
    let existing = correlator.lock().series.get(&key).cloned();
    if let Some((name, count)) = existing {
        let patch = json!({"count": count + 1, "lastTimestamp": crate::podinfo::format_time(now)});
        if api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .is_ok()
        {
            correlator.lock().series.insert(key, (name, count + 1));
            return;
        }
    }
    let name = format!("{}.{:x}", pod.name, now.as_nanosecond());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => {
            let mut c = correlator.lock();
            if c.series.len() >= CORRELATOR_SIZE {
                c.series.clear();
            }
            c.series.insert(key, (name, 1));
        }
        Err(e) => tracing::debug!(error = %e, reason, "could not record an event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_bucket_allows_a_burst_then_the_rate() {
        use std::time::Duration;
        let t = Instant::now();
        let mut b = Bucket::new(50.0, 100.0, t);
        let burst = (0..200).filter(|_| b.take(t)).count();
        assert_eq!(burst, 100);
        let later = t + Duration::from_millis(100);
        let refilled = (0..200).filter(|_| b.take(later)).count();
        assert_eq!(refilled, 5);
    }

    #[test]
    fn long_messages_are_truncated_as_upstream() {
        let long = "x".repeat(2000);
        let t = truncate(&long);
        assert_eq!(t.len(), MESSAGE_LIMIT);
        assert!(t.ends_with(" ..."));
        assert_eq!(truncate("short"), "short");
    }
}
