//! The ephemeral volume controller (upstream's `ephemeral-volume`): a pod volume
//! `ephemeral: {volumeClaimTemplate}` gets its PersistentVolumeClaim `<pod>-<volume>`, made
//! from the template and owned by the pod, so the claim binds like any other and the garbage
//! collector deletes it with the pod. A claim of that name the pod does not own is never
//! taken over: the pod waits (and the controller says why in its log and retries).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::metrics;
use crate::owner::{controller_ref, owner_ref};
use capstan_runtime::{key_of, Cache, Change, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "ephemeral-volume";

pub struct EphemeralVolumeController {
    client: Client,
    pods: Cache<Pod>,
    claims: Cache<PersistentVolumeClaim>,
}

fn has_ephemeral(p: &Pod) -> bool {
    p.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.ephemeral.is_some())
}

/// The claim `template` makes for volume `volume` of `pod`.
pub fn claim_for(
    pod: &Pod,
    volume: &str,
    template: &k8s_openapi::api::core::v1::PersistentVolumeClaimTemplate,
) -> PersistentVolumeClaim {
    let meta = template.metadata.clone().unwrap_or_default();
    PersistentVolumeClaim {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("{}-{volume}", pod.name_any())),
            namespace: pod.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: Some(vec![owner_ref("v1", "Pod", &pod.metadata)]),
            ..Default::default()
        },
        spec: Some(template.spec.clone()),
        status: None,
    }
}

impl EphemeralVolumeController {
    pub fn new(
        client: Client,
        pods: &mut Informer<Pod>,
        claims: &mut Informer<PersistentVolumeClaim>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        pods.on_change(move |c| {
            let p = c.latest();
            if has_ephemeral(p) {
                q.add(key_of(p.as_ref()));
            }
        });
        let q = queue.clone();
        // A pod's claim deleted while the pod lives: make it again.
        claims.on_change(move |c| {
            if let Change::Deleted(claim) = c {
                if let (Some(r), Some(ns)) = (
                    controller_ref(&claim.metadata),
                    claim.metadata.namespace.as_deref(),
                ) {
                    if r.kind == "Pod" {
                        q.add(format!("{ns}/{}", r.name));
                    }
                }
            }
        });
        let me = Arc::new(Self {
            client,
            pods: pods.cache(),
            claims: claims.cache(),
        });
        (me, queue)
    }
}

#[async_trait::async_trait]
impl Reconciler for EphemeralVolumeController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(None);
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let Some(template) = v
                .ephemeral
                .as_ref()
                .and_then(|e| e.volume_claim_template.as_ref())
            else {
                continue;
            };
            let name = format!("{}-{}", pod.name_any(), v.name);
            if let Some(existing) = self.claims.get_in(&ns, &name) {
                if controller_ref(&existing.metadata).is_none_or(|r| r.uid != uid) {
                    return Err(ReconcileError::from(format!(
                        "PVC {ns}/{name} was not created for pod {key} (pod is not owner)"
                    )));
                }
                continue;
            }
            metrics::global().write(NAME, "create", "persistentvolumeclaims");
            match Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns)
                .create(&PostParams::default(), &claim_for(&pod, &v.name, template))
                .await
            {
                Ok(_) => {
                    tracing::info!(pod = key, claim = %name, "created the claim of an ephemeral volume")
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    return Err(ReconcileError::from(format!(
                        "creating claim {ns}/{name} for pod {key}: {e}"
                    )))
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_claim_is_named_after_the_pod_and_volume_and_owned_by_the_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [], "volumes": [{"name": "cache", "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]}}))
        .expect("pod");
        let template = pod
            .spec
            .as_ref()
            .expect("spec")
            .volumes
            .as_ref()
            .expect("volumes")[0]
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.clone())
            .expect("template");
        let c = claim_for(&pod, "cache", &template);
        assert_eq!(c.metadata.name.as_deref(), Some("web-cache"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            c.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("a"))
                .map(String::as_str),
            Some("b")
        );
        let owner = controller_ref(&c.metadata).expect("owner");
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Pod", "u1"));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
}
