//! Events about pods, as upstream's kubelet reports them (Pulling, Pulled, Created, Started,
//! Killing, BackOff, Unhealthy, Failed, FailedMount...), so `kubectl describe pod` tells the
//! story. [`Recorder::emit`] never blocks the pod workers: it names the pod (and container, as
//! upstream's fieldPath) and hands the event to the shared `capstan_runtime` recorder, which
//! writes it off the hot path, folding repeats into a count as upstream does.

use capstan_runtime::{EventType, RecorderConfig};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};

/// How many events may wait to be written; past that, new ones are dropped (and counted).
const QUEUE: usize = 512;

/// Sends events for one node, through the shared recorder.
#[derive(Clone)]
pub struct Recorder {
    inner: capstan_runtime::Recorder,
}

impl Recorder {
    /// Starts the writer task for `node`.
    pub fn start(client: kube::Client, node: String) -> Self {
        let mut config = RecorderConfig::new("kubelet");
        config.host = Some(node.clone());
        config.instance = node;
        config.queue = QUEUE;
        Self {
            inner: capstan_runtime::Recorder::start(client, config),
        }
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
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        if !self.inner.record(involved, type_, reason, message) {
            tracing::debug!(reason, "event queue full; event dropped");
        }
    }
}
