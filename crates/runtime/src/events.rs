//! The event recorder every in-process component uses: core/v1 Events with upstream's fields,
//! written off the caller's path as client-go's event broadcaster does.
//!
//! Recording never blocks: events go through a bounded queue ([`RecorderConfig::queue`]) and
//! are dropped (counted) when it is full. A writer task then applies, in order:
//! - client-go's spam filter: per involved object a burst of [`SPAM_BURST`] events, then one
//!   per [`SPAM_REFILL`];
//! - the component's own client rate limit where it has one (the scheduler's 50/s, burst 100);
//! - client-go's correlator: an event equal to one recorded before (same object, field path,
//!   type, reason and message) bumps that Event's `count` and `lastTimestamp` instead of
//!   creating another one.
//!
//! Messages are cut to upstream's 1,024-byte note limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// client-go's spam filter: 25 events per object at once, then one every five minutes.
pub const SPAM_BURST: f64 = 25.0;
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Distinct objects and events remembered; past this the memory starts over.
const REMEMBERED: usize = 4096;
/// Upstream's `NoteLengthLimit` for event messages.
pub const MESSAGE_LIMIT: usize = 1024;

/// Who records, and how much it may write.
#[derive(Clone, Debug)]
pub struct RecorderConfig {
    /// `source.component` and `reportingComponent` (`kubectl describe` shows it under "From").
    pub component: String,
    /// `source.host` (the kubelet sets its node name).
    pub host: Option<String>,
    /// `reportingInstance`.
    pub instance: String,
    /// Events waiting to be written; beyond this they are dropped.
    pub queue: usize,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Events written per second at most and the burst (the component's client limit).
    pub rate_limit: Option<(f64, f64)>,
    /// Counts events dropped (queue full, spam filter, rate limit); the owner may register
    /// it in its metrics.
    pub dropped: Counter,
}

impl RecorderConfig {
    pub fn new(component: &str) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        Self {
            component: component.to_string(),
            host: None,
            instance: if host.is_empty() {
                component.to_string()
            } else {
                format!("{component}-{host}")
            },
            queue: 1024,
            concurrency: 1,
            rate_limit: None,
            dropped: Counter::default(),
        }
    }
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Pending {
    involved: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Records events for one component. Cheap to clone; the writer ends when every clone is gone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
    dropped: Counter,
}

/// A reference to `obj` for `involvedObject`.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// Starts the writer task on the current runtime.
    pub fn start(client: Client, config: RecorderConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let dropped = config.dropped.clone();
        tokio::spawn(write_events(client, config, rx));
        Self { tx, dropped }
    }

    /// A recorder for `component` with client-go's defaults.
    pub fn new(client: Client, component: &str) -> Self {
        Self::start(client, RecorderConfig::new(component))
    }

    pub fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(object_ref(obj), EventType::Normal, reason, message);
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(object_ref(obj), EventType::Warning, reason, message);
    }

    /// Queues an event about `involved`; false (and counted as dropped) when the queue is full.
    pub fn record(
        &self,
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) -> bool {
        let queued = self
            .tx
            .try_send(Pending {
                involved,
                type_,
                reason: reason.to_string(),
                message: message.into(),
            })
            .is_ok();
        if !queued {
            self.dropped.inc();
        }
        queued
    }

    /// Events dropped so far: queue full, spam filter or rate limit.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    pub fn take(&mut self, now: Instant) -> bool {
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

/// client-go's spam filter: a token bucket per involved object.
#[derive(Default)]
pub struct SpamFilter {
    buckets: HashMap<String, Bucket>,
}

impl SpamFilter {
    /// True when an event about `object` may be written now.
    pub fn allow(&mut self, object: &str) -> bool {
        let now = Instant::now();
        if self.buckets.len() >= REMEMBERED && !self.buckets.contains_key(object) {
            self.buckets.clear();
        }
        self.buckets
            .entry(object.to_string())
            .or_insert_with(|| Bucket::new(1.0 / SPAM_REFILL.as_secs_f64(), SPAM_BURST, now))
            .take(now)
    }
}

/// Cuts a message to [`MESSAGE_LIMIT`] bytes as upstream does (`...` marks the cut).
pub fn truncate(message: &str) -> String {
    if message.len() <= MESSAGE_LIMIT {
        return message.to_string();
    }
    let mut end = MESSAGE_LIMIT - 4;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

/// (involved uid or name, field path, type, reason, message): what makes two events the same.
type EventKey = (String, String, EventType, String, String);
/// (namespace, Event name, count) of the Event written for a key.
type Recorded = (String, String, i32);

fn object_key(o: &ObjectReference) -> String {
    match o.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!(
            "{}/{}/{}",
            o.kind.as_deref().unwrap_or(""),
            o.namespace.as_deref().unwrap_or(""),
            o.name.as_deref().unwrap_or("")
        ),
    }
}

async fn write_events(client: Client, config: RecorderConfig, mut rx: mpsc::Receiver<Pending>) {
    let config = Arc::new(config);
    let seen: Arc<Mutex<HashMap<EventKey, Recorded>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut spam = SpamFilter::default();
    let mut limit = config
        .rate_limit
        .map(|(rate, burst)| Bucket::new(rate, burst, Instant::now()));
    while let Some(p) = rx.recv().await {
        let object = object_key(&p.involved);
        let limited = limit.as_mut().is_some_and(|b| !b.take(Instant::now()));
        if limited || !spam.allow(&object) {
            config.dropped.inc();
            continue;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (client, config, seen) = (client.clone(), config.clone(), seen.clone());
        tokio::spawn(async move {
            let _permit = permit;
            write_one(&client, &config, &seen, object, p).await;
        });
    }
}

/// Bumps the count of the same event recorded before, or creates a new Event.
async fn write_one(
    client: &Client,
    config: &RecorderConfig,
    seen: &Mutex<HashMap<EventKey, Recorded>>,
    object: String,
    p: Pending,
) {
    let message = truncate(&p.message);
    let ns = p
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Timestamp::now();
    let key: EventKey = (
        object,
        p.involved.field_path.clone().unwrap_or_default(),
        p.type_,
        p.reason.clone(),
        message.clone(),
    );
    let existing = seen.lock().get(&key).cloned();
    if let Some((ens, name, count)) = existing {
        let patch = serde_json::json!({"count": count + 1, "lastTimestamp": Time(now)});
        let api: Api<Event> = Api::namespaced(client.clone(), &ens);
        if api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .is_ok()
        {
            seen.lock().insert(key, (ens, name, count + 1));
            return;
        }
    }
    let obj_name = p.involved.name.clone().unwrap_or_default();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(format!("{obj_name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: p.involved,
        reason: Some(p.reason),
        message: Some(message),
        type_: Some(p.type_.as_str().into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(config.component.clone()),
            host: config.host.clone(),
        }),
        reporting_component: Some(config.component.clone()),
        reporting_instance: Some(config.instance.clone()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    match api.create(&PostParams::default(), &ev).await {
        Ok(created) => {
            let mut seen = seen.lock();
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(key, (ns, created.name_any(), 1));
        }
        Err(e) => tracing::debug!(error = %e, "could not record an event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_spam_filter_lets_a_burst_through_then_one_per_refill() {
        let mut f = SpamFilter::default();
        assert_eq!((0..40).filter(|_| f.allow("rs")).count(), 25);
        assert!(f.allow("other"), "buckets are per object");
        tokio::time::advance(SPAM_REFILL).await;
        assert!(f.allow("rs"));
        assert!(!f.allow("rs"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_bucket_allows_a_burst_then_the_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(50.0, 100.0, t);
        assert_eq!((0..200).filter(|_| b.take(t)).count(), 100);
        let later = t + Duration::from_millis(100);
        assert_eq!((0..200).filter(|_| b.take(later)).count(), 5);
    }

    #[test]
    fn long_messages_are_truncated_as_upstream() {
        let long = "x".repeat(2000);
        let t = truncate(&long);
        assert_eq!(t.len(), MESSAGE_LIMIT);
        assert!(t.ends_with(" ..."));
        assert_eq!(truncate("short"), "short");
        let wide = "é".repeat(600);
        assert!(truncate(&wide).len() <= MESSAGE_LIMIT);
    }

    #[test]
    fn objects_without_a_uid_are_told_apart_by_kind_namespace_and_name() {
        let r = ObjectReference {
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..Default::default()
        };
        assert_eq!(object_key(&r), "Node//n1");
        let with_uid = ObjectReference {
            uid: Some("u".into()),
            ..r
        };
        assert_eq!(object_key(&with_uid), "u");
    }
}
