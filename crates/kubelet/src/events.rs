//! Events about pods, as upstream's kubelet reports them (Pulling, Pulled, Created, Started,
//! Killing, BackOff, Unhealthy, Failed, FailedMount...), so `kubectl describe pod` tells the
//! story. [`Recorder::emit`] never blocks the pod workers: events go through a bounded queue
//! to one task that writes them, folding repeats into a count as upstream does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc;

/// How many events may wait to be written; past that, new ones are dropped (and counted).
const QUEUE: usize = 512;
/// Repeats of the same event within this window update its count instead of adding one.
const FOLD_WINDOW: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
struct Pending {
    ns: String,
    involved: ObjectReference,
    warning: bool,
    reason: String,
    message: String,
}

/// Sends events for one node.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the writer task for `node`.
    pub fn start(client: kube::Client, node: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(client, node, rx));
        Self { tx }
    }

    /// Queues an event about `pod` (and its container `container`, when given).
    pub fn emit(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            field_path: container.map(|c| {
                let init = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.init_containers.as_ref())
                    .is_some_and(|ics| ics.iter().any(|x| x.name == c));
                if init {
                    format!("spec.initContainers{{{c}}}")
                } else {
                    format!("spec.containers{{{c}}}")
                }
            }),
            ..Default::default()
        };
        let p = Pending {
            ns: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            involved,
            warning,
            reason: reason.to_string(),
            message,
        };
        if self.tx.try_send(p).is_err() {
            tracing::debug!(reason, "event queue full; event dropped");
        }
    }
}

/// (namespace, pod uid, fieldPath, reason, message): what makes two events the same.
type EventKey = (String, String, String, String, String);

async fn write_events(client: kube::Client, node: String, mut rx: mpsc::Receiver<Pending>) {
    // (namespace, uid, fieldPath, reason, message) -> (event name, count, first seen)
    let mut seen: HashMap<EventKey, (String, i32, Instant)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let api: Api<Event> = Api::namespaced(client.clone(), &p.ns);
        let key = (
            p.ns.clone(),
            p.involved.uid.clone().unwrap_or_default(),
            p.involved.field_path.clone().unwrap_or_default(),
            p.reason.clone(),
            p.message.clone(),
        );
        let now = jiff::Timestamp::now();
        if let Some((name, count, first)) = seen.get_mut(&key) {
            if first.elapsed() < FOLD_WINDOW {
                *count += 1;
                let patch = json!({"count": *count, "lastTimestamp": crate::util::rfc3339(now)});
                if api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    continue;
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            p.involved.name.clone().unwrap_or_default(),
            now.as_nanosecond() as u64
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(p.ns.clone()),
                ..Default::default()
            },
            involved_object: p.involved.clone(),
            reason: Some(p.reason.clone()),
            message: Some(p.message.clone()),
            type_: Some(if p.warning { "Warning" } else { "Normal" }.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.clone()),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                seen.insert(key, (name, 1, Instant::now()));
            }
            Err(e) => tracing::debug!(error = %e, "writing an event failed"),
        }
        if seen.len() > 4096 {
            seen.retain(|_, (_, _, first)| first.elapsed() < FOLD_WINDOW);
        }
    }
}
