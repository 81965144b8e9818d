//! `Recorder`: core/v1 Events about what controllers did, with upstream's reasons
//! (SuccessfulCreate, ScalingReplicaSet, ...). Recording never blocks a reconcile: events go
//! through a bounded channel to one writer task, which folds repeats of the same event into
//! one Event with a rising `count` and, per object, lets a burst of [`SPAM_BURST`] events
//! through and then one per [`SPAM_REFILL`], as client-go's event correlator and spam filter
//! do (so scaling to 1,000 pods does not cost 1,000 Event writes).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

/// Events waiting to be written; beyond this they are dropped (as client-go drops them).
pub const EVENT_QUEUE: usize = 1024;
/// Distinct events remembered for aggregation.
const REMEMBERED: usize = 4096;
/// client-go's spam filter: 25 events per object at once, then one every five minutes.
pub const SPAM_BURST: f64 = 25.0;
pub const SPAM_REFILL: std::time::Duration = std::time::Duration::from_secs(300);

/// A token bucket per involved object.
#[derive(Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, tokio::time::Instant)>,
}

impl SpamFilter {
    /// True when an event about `uid` may be written now.
    pub fn allow(&mut self, uid: &str) -> bool {
        let now = tokio::time::Instant::now();
        if self.buckets.len() >= REMEMBERED {
            self.buckets.clear();
        }
        let (tokens, at) = self
            .buckets
            .entry(uid.to_string())
            .or_insert((SPAM_BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / SPAM_REFILL.as_secs_f64())
            .min(SPAM_BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// (involved uid, type, reason, message): what makes two events the same.
type EventKey = (String, &'static str, String, String);
/// (namespace, event name, count) of the Event written for a key.
type Recorded = (String, String, i32);

struct Pending {
    involved: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

/// Records events for one component (e.g. `deployment-controller`).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
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
    /// Starts the writer task for `component`; it ends when every `Recorder` is dropped.
    pub fn new(client: Client, component: &str) -> Self {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(write_events(client, component.to_string(), rx));
        Self { tx }
    }

    pub fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.send(object_ref(obj), "Normal", reason, message.into());
    }

    pub fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.send(object_ref(obj), "Warning", reason, message.into());
    }

    fn send(&self, involved: ObjectReference, type_: &'static str, reason: &str, message: String) {
        let _ = self.tx.try_send(Pending {
            involved,
            type_,
            reason: reason.into(),
            message,
        });
    }
}

async fn write_events(client: Client, component: String, mut rx: mpsc::Receiver<Pending>) {
    let mut seen: HashMap<EventKey, Recorded> = HashMap::new();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let mut spam = SpamFilter::default();
    while let Some(p) = rx.recv().await {
        if !spam.allow(p.involved.uid.as_deref().unwrap_or("")) {
            continue;
        }
        let ns = p
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let key = (
            p.involved.uid.clone().unwrap_or_default(),
            p.type_,
            p.reason.clone(),
            p.message.clone(),
        );
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Some((ens, name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            let api: Api<Event> = Api::namespaced(client.clone(), ens);
            if api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                continue;
            }
        }
        let obj_name = p.involved.name.clone().unwrap_or_default();
        let name = format!("{obj_name}.{:x}", now.as_nanosecond());
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: p.involved,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(component.clone()),
                host: None,
            }),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(if host.is_empty() {
                component.clone()
            } else {
                format!("{component}-{host}")
            }),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(created) => {
                if seen.len() >= REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, (ns, created.name_any(), 1));
            }
            Err(e) => tracing::debug!(error = %e, "could not record an event"),
        }
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
}
