//! `Recorder`: core/v1 Events about what controllers did, with upstream's reasons
//! (SuccessfulCreate, ScalingReplicaSet, ...). Recording never blocks a reconcile: events go
//! through a bounded channel to one writer task, which folds repeats of the same event into
//! one Event with a rising `count`, as client-go's event correlator does.

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

    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: impl Into<String>) {
        self.send(object_ref(obj), "Normal", reason, message.into());
    }

    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: impl Into<String>) {
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
    // (uid, type, reason, message) -> (namespace, event name, count)
    let mut seen: HashMap<(String, &'static str, String, String), (String, String, i32)> = HashMap::new();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    while let Some(p) = rx.recv().await {
        let ns = p.involved.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let key = (p.involved.uid.clone().unwrap_or_default(), p.type_, p.reason.clone(), p.message.clone());
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Some((ens, name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            let api: Api<Event> = Api::namespaced(client.clone(), ens);
            if api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
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
            reporting_instance: Some(if host.is_empty() { component.clone() } else { format!("{component}-{host}") }),
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
