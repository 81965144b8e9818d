//! The service account controller: every namespace that is not terminating has a
//! ServiceAccount named `default` (pods get it through the API's defaulting of
//! `spec.serviceAccountName`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::metrics;
use capstan_runtime::{Cache, Change, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "serviceaccount";
pub const DEFAULT: &str = "default";

pub struct ServiceAccountController {
    client: Client,
    namespaces: Cache<Namespace>,
    accounts: Cache<ServiceAccount>,
}

impl ServiceAccountController {
    pub fn new(
        client: Client,
        namespaces: &mut Informer<Namespace>,
        accounts: &mut Informer<ServiceAccount>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        namespaces.on_change(move |c| q.add(c.latest().name_any()));
        let q = queue.clone();
        accounts.on_change(move |c| {
            if let Change::Deleted(sa) = c {
                if sa.name_any() == DEFAULT {
                    q.add(sa.namespace().unwrap_or_default());
                }
            }
        });
        let me = Arc::new(Self {
            client,
            namespaces: namespaces.cache(),
            accounts: accounts.cache(),
        });
        (me, queue)
    }
}

#[async_trait::async_trait]
impl Reconciler for ServiceAccountController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, ns: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(n) = self.namespaces.get(ns) else {
            return Ok(None);
        };
        let terminating = n.metadata.deletion_timestamp.is_some()
            || n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating || self.accounts.get_in(ns, DEFAULT).is_some() {
            return Ok(None);
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        metrics::global().write(NAME, "create", "serviceaccounts");
        match Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &sa)
            .await
        {
            Ok(_) => tracing::info!(namespace = ns, "created the default service account"),
            // Already there (the cache was behind) or the namespace is going away.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => {}
            Err(e) => return Err(Box::new(e)),
        }
        Ok(None)
    }
}
