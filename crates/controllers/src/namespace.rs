//! The namespace controller: a namespace being deleted (Terminating, spec.finalizers
//! ["kubernetes"]) has everything in it deleted, type by type; once nothing is left it calls
//! `namespaces/{name}/finalize` without the `kubernetes` finalizer, and the API server removes
//! the namespace (upstream's namespaced_resources_deleter).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::verbs;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::discovery::Resources;
use crate::metrics;
use capstan_runtime::{Cache, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "namespace";
/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
/// Content still going away (graceful pod deletion, finalizers): look again after this.
pub const RECHECK: Duration = Duration::from_secs(2);
/// Discovery is cached this long between namespaces.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

/// Errors of one pass; all retryable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Discovery(#[from] crate::discovery::Error),
    #[error("deleting {resource} in namespace {namespace}: {source}")]
    DeleteContent {
        resource: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("finalizing namespace {0}: {1}")]
    Finalize(String, #[source] kube::Error),
}

pub struct NamespaceController {
    client: Client,
    namespaces: Cache<Namespace>,
    discovery: Mutex<Option<(Instant, Resources)>>,
}

impl NamespaceController {
    pub fn new(client: Client, namespaces: &mut Informer<Namespace>) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        namespaces.on_change(move |c| {
            let ns = c.latest();
            if ns.metadata.deletion_timestamp.is_some() {
                q.add(ns.name_any());
            }
        });
        let me = Arc::new(Self {
            client,
            namespaces: namespaces.cache(),
            discovery: Mutex::new(None),
        });
        (me, queue)
    }

    async fn resources(&self) -> Result<Resources, Error> {
        if let Some((at, r)) = self.discovery.lock().as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(r.clone());
            }
        }
        let r = Resources::discover(&self.client).await?;
        *self.discovery.lock() = Some((Instant::now(), r.clone()));
        Ok(r)
    }

    /// Deletes every namespaced object; returns how many types still have objects.
    async fn delete_content(&self, ns: &str) -> Result<usize, Error> {
        let resources = self.resources().await?;
        let mut remaining = 0;
        for r in resources
            .all
            .iter()
            .filter(|r| r.namespaced() && r.supports(verbs::LIST) && r.supports(verbs::DELETE))
        {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &r.ar);
            let err = |e| Error::DeleteContent {
                resource: r.ar.plural.clone(),
                namespace: ns.into(),
                source: e,
            };
            let items = match api.list(&ListParams::default()).await {
                Ok(l) => l.items,
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => continue,
                Err(e) => return Err(err(e)),
            };
            if items.is_empty() {
                continue;
            }
            remaining += 1;
            if items
                .iter()
                .all(|o| o.metadata.deletion_timestamp.is_some())
            {
                // Already going (graceful deletion or finalizers): just wait.
                continue;
            }
            let dp = DeleteParams::background();
            if r.supports(verbs::DELETE_COLLECTION) {
                metrics::global().write(NAME, "deletecollection", &r.ar.plural);
                match api.delete_collection(&dp, &ListParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(err(e)),
                }
            } else {
                for o in items
                    .iter()
                    .filter(|o| o.metadata.deletion_timestamp.is_none())
                {
                    metrics::global().write(NAME, "delete", &r.ar.plural);
                    match api.delete(&o.name_any(), &dp).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(err(e)),
                    }
                }
            }
        }
        Ok(remaining)
    }
}

#[async_trait::async_trait]
impl Reconciler for NamespaceController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(ns) = self.namespaces.get(key) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(None);
        }
        let remaining = self.delete_content(key).await?;
        if remaining > 0 {
            tracing::debug!(
                namespace = key,
                resource_types = remaining,
                "namespace content still going away"
            );
            return Ok(Some(RECHECK));
        }
        let mut done = (*ns).clone();
        if let Some(s) = done.spec.as_mut() {
            s.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        metrics::global().write(NAME, "update", "namespaces/finalize");
        match api
            .replace_subresource("finalize", key, &PostParams::default(), &done)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Box::new(Error::Finalize(key.into(), e))),
        }
        tracing::info!(namespace = key, "namespace emptied; finalized");
        Ok(None)
    }
}
