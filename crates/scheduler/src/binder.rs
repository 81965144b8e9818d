//! Binding: POST a Binding to pods/{name}/binding, as upstream's DefaultBinder. Many bindings
//! are in flight at once (up to [`Binder::concurrency`]); each result goes back to the
//! scheduling loop, which confirms or forgets the assumed pod.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

/// Why a binding did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BindError {
    /// The pod is already bound, or being deleted: nothing to retry.
    #[error("{0}")]
    Conflict(String),
    /// The pod is gone.
    #[error("{0}")]
    NotFound(String),
    /// Anything else (retried after backoff).
    #[error("{0}")]
    Failed(String),
}

/// Sends bindings from the runtime the API client lives on.
#[derive(Clone)]
pub struct Binder {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
}

impl Binder {
    pub fn new(client: kube::Client, runtime: tokio::runtime::Handle, concurrency: usize) -> Self {
        Self {
            client,
            runtime,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Binds `namespace/name` to `node` in the background and sends `done(result)` to `to`.
    /// `claims` (namespace, name) wait for this pod's node: they are marked with it first
    /// (volume binding's PreBind).
    #[allow(clippy::too_many_arguments)]
    pub fn bind<T: Send + 'static>(
        &self,
        claims: Vec<(String, String)>,
        namespace: String,
        name: String,
        uid: String,
        node: String,
        to: mpsc::Sender<T>,
        done: impl FnOnce(Result<(), BindError>) -> T + Send + 'static,
    ) {
        let client = self.client.clone();
        let permits = self.permits.clone();
        self.runtime.spawn(async move {
            let result = match permits.acquire_owned().await {
                Ok(_permit) => match select_node(&client, &claims, &node).await {
                    Ok(()) => bind(client, &namespace, &name, &uid, &node).await,
                    Err(e) => Err(e),
                },
                Err(_) => Err(BindError::Failed("the binder is shutting down".into())),
            };
            // The scheduling loop always drains its inputs, so this completes.
            let _ = to.send(done(result)).await;
        });
    }
}

/// How long a pod's binding waits for its claims to be bound (upstream's bindTimeoutSeconds).
const VOLUME_BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Marks each claim with the node its first consumer goes to (the PV controller then binds a
/// volume the node can reach, or the provisioner makes one there) and, as upstream's PreBind,
/// waits until every claim is bound, so the pod reaches its node with volumes to mount.
async fn select_node(
    client: &kube::Client,
    claims: &[(String, String)],
    node: &str,
) -> Result<(), BindError> {
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let patch = json!({"metadata": {"annotations": {capstan_api::volume::SELECTED_NODE_ANNOTATION: node}}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(claim = %format!("{ns}/{name}"), node, "scheduler: selected the node of the claim's first consumer")
            }
            Err(e) => {
                return Err(BindError::Failed(format!(
                    "marking claim {ns}/{name} with the selected node: {e}"
                )))
            }
        }
    }
    for (ns, name) in claims {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let bound = |c: Option<&PersistentVolumeClaim>| {
            c.and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        };
        match tokio::time::timeout(VOLUME_BIND_TIMEOUT, await_condition(api, name, bound)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(BindError::Failed(format!(
                    "waiting for claim {ns}/{name} to be bound: {e}"
                )))
            }
            Err(_) => {
                return Err(BindError::Failed(format!(
                "binding volumes: claim {ns}/{name} was not bound within {VOLUME_BIND_TIMEOUT:?}"
            )))
            }
        }
    }
    Ok(())
}

async fn bind(
    client: kube::Client,
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
) -> Result<(), BindError> {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    match api
        .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(BindError::Conflict(s.message.clone())),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(BindError::NotFound(s.message.clone())),
        Err(e) => Err(BindError::Failed(e.to_string())),
    }
}
