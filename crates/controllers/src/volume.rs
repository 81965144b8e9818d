//! The PersistentVolume controller (upstream's persistentvolume-binder, with the
//! pvc-protection and pv-protection controllers folded in): binds claims to volumes
//! (`capstan_api::volume::best_match`), keeps both phases (claims Pending/Bound/Lost,
//! volumes Available/Bound/Released/Failed), hands claims of a class with a provisioner to
//! that provisioner (the annotation external provisioners watch, and an ExternalProvisioning
//! event), reclaims released volumes (Retain keeps them Released; Delete of a provisioned
//! volume is left to its provisioner, which for `rancher.io/local-path` is the node agent of
//! the volume's node), records expansions of local-path volumes, and removes the protection
//! finalizers once no pod uses a claim and no claim a volume.
//!
//! One queue holds both kinds of keys: `claim:<ns>/<name>` and `volume:<name>`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::metrics;
use capstan_api::volume::{self as vol, NodeRef};
use capstan_runtime::{key_of, Cache, Informer, Queue, ReconcileError, Reconciler, Recorder};

const NAME: &str = "persistentvolume-binder";
/// Upstream's event source for this controller.
const COMPONENT: &str = "persistentvolume-controller";
/// Unbound claims and volumes are looked at again this often (upstream's resync period).
const RESYNC: Duration = Duration::from_secs(15);
/// The provisioner the node agents run.
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";

const CLAIM: &str = "claim:";
const VOLUME: &str = "volume:";

pub struct VolumeController {
    client: Client,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    recorder: Recorder,
}

/// The claims a pod's volumes name, as queue keys.
fn pod_claim_keys(p: &Pod) -> Vec<String> {
    let ns = p.metadata.namespace.as_deref().unwrap_or("");
    vol::pod_claims(p)
        .into_iter()
        .map(|c| format!("{CLAIM}{ns}/{}", c.claim))
        .collect()
}

fn uses_claim(p: &Pod, claim: &str) -> bool {
    vol::pod_claims(p).iter().any(|c| c.claim == claim)
}

fn claim_ref_key(v: &PersistentVolume) -> Option<String> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{CLAIM}{}/{}",
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or("")
    ))
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
) -> bool {
    meta.annotations.as_ref().is_some_and(|a| a.contains_key(k))
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

/// Whether a pod that has not finished uses the claim (pvc-protection's rule).
fn claim_in_use(pods: &[Arc<Pod>], claim: &str) -> bool {
    pods.iter().any(|p| {
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        !finished && uses_claim(p, claim)
    })
}

/// The default StorageClass: the newest of those marked default (the name breaks ties), as
/// the API server's DefaultStorageClass admission picks it.
fn default_class(classes: &[Arc<StorageClass>]) -> Option<String> {
    let marked = |c: &StorageClass| {
        [
            vol::DEFAULT_CLASS_ANNOTATION,
            vol::BETA_DEFAULT_CLASS_ANNOTATION,
        ]
        .iter()
        .any(|a| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|m| m.get(*a))
                .map(String::as_str)
                == Some("true")
        })
    };
    classes
        .iter()
        .filter(|c| marked(c))
        .max_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
        .map(|c| c.name_any())
}

fn ns_of(c: &PersistentVolumeClaim) -> &str {
    c.metadata.namespace.as_deref().unwrap_or("")
}

/// The event of a WaitForFirstConsumer claim without a selected node: waiting for a pod to
/// use it, or for the pods that do to be scheduled (upstream's wording).
fn waiting_for_consumer(pods: &[Arc<Pod>], claim: &str) -> (&'static str, String) {
    let mut waiting: Vec<String> = pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.node_name.as_deref().unwrap_or("").is_empty())
                && uses_claim(p, claim)
        })
        .map(|p| p.name_any())
        .collect();
    waiting.sort();
    match waiting.len() {
        0 => (
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        ),
        1 => (
            "WaitForPodScheduled",
            format!("waiting for pod {} to be scheduled", waiting[0]),
        ),
        _ => (
            "WaitForPodScheduled",
            format!("waiting for pods {} to be scheduled", waiting.join(",")),
        ),
    }
}

fn err(what: &str, e: kube::Error) -> ReconcileError {
    ReconcileError::from(format!("{what}: {e}"))
}

fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_default()
}

impl VolumeController {
    pub fn new(
        client: Client,
        claims: &mut Informer<PersistentVolumeClaim>,
        volumes: &mut Informer<PersistentVolume>,
        classes: &mut Informer<StorageClass>,
        pods: &mut Informer<Pod>,
        nodes: &mut Informer<Node>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        claims.on_change(move |c| {
            let claim = c.latest();
            q.add(format!("{CLAIM}{}", key_of(claim.as_ref())));
            let vn = volume_name(claim);
            if !vn.is_empty() {
                q.add(format!("{VOLUME}{vn}"));
            }
        });
        let (q, claim_cache) = (queue.clone(), claims.cache());
        volumes.on_change(move |c| {
            let v = c.latest();
            q.add(format!("{VOLUME}{}", v.name_any()));
            match claim_ref_key(v) {
                Some(k) => q.add(k),
                // A volume became available: unbound claims may now bind.
                None => {
                    for claim in claim_cache.list() {
                        if volume_name(&claim).is_empty() {
                            q.add(format!("{CLAIM}{}", key_of(claim.as_ref())));
                        }
                    }
                }
            }
        });
        let (q, claim_cache) = (queue.clone(), claims.cache());
        classes.on_change(move |_| {
            for claim in claim_cache.list() {
                if volume_name(&claim).is_empty() {
                    q.add(format!("{CLAIM}{}", key_of(claim.as_ref())));
                }
            }
        });
        let q = queue.clone();
        pods.on_change(move |c| {
            for k in pod_claim_keys(c.latest()) {
                q.add(k);
            }
        });
        // Node labels decide which static volumes a selected node can use; the cache is enough.
        nodes.on_change(|_| {});
        let me = Arc::new(Self {
            recorder: Recorder::new(client.clone(), COMPONENT),
            client,
            claims: claims.cache(),
            volumes: volumes.cache(),
            classes: classes.cache(),
            pods: pods.cache(),
            nodes: nodes.cache(),
        });
        (me, queue)
    }

    fn claim_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volume_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    async fn patch_claim(
        &self,
        c: &PersistentVolumeClaim,
        patch: Value,
    ) -> Result<(), ReconcileError> {
        metrics::global().write(NAME, "patch", "persistentvolumeclaims");
        self.claim_api(c.metadata.namespace.as_deref().unwrap_or(""))
            .patch(
                &c.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("patching claim {}", key_of(c)), e))
    }

    async fn patch_claim_status(
        &self,
        c: &PersistentVolumeClaim,
        status: Value,
    ) -> Result<(), ReconcileError> {
        metrics::global().write(NAME, "patch", "persistentvolumeclaims/status");
        self.claim_api(c.metadata.namespace.as_deref().unwrap_or(""))
            .patch_status(
                &c.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("writing the status of claim {}", key_of(c)), e))
    }

    async fn patch_volume(&self, v: &PersistentVolume, patch: Value) -> Result<(), ReconcileError> {
        metrics::global().write(NAME, "patch", "persistentvolumes");
        self.volume_api()
            .patch(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| err(&format!("patching volume {}", v.name_any()), e))
    }

    /// Sets the volume's phase (and message) when it differs.
    async fn set_volume_phase(
        &self,
        v: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<(), ReconcileError> {
        let cur_msg = v.status.as_ref().and_then(|s| s.message.as_deref());
        if phase_of_volume(v) == phase && cur_msg == message {
            return Ok(());
        }
        metrics::global().write(NAME, "patch", "persistentvolumes/status");
        let mut status = json!({"phase": phase, "message": message});
        if phase_of_volume(v) != phase {
            status["lastPhaseTransitionTime"] = json!(now());
        }
        self.volume_api()
            .patch_status(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .map_err(|e| err(&format!("writing the phase of volume {}", v.name_any()), e))?;
        tracing::info!(volume = %v.name_any(), phase, "volume entered phase");
        Ok(())
    }

    /// Sets the claim's phase; Pending and Lost clear capacity and access modes.
    async fn set_claim_phase(
        &self,
        c: &PersistentVolumeClaim,
        phase: &str,
    ) -> Result<(), ReconcileError> {
        if phase_of_claim(c) == phase {
            return Ok(());
        }
        self.patch_claim_status(
            c,
            json!({"phase": phase, "capacity": null, "accessModes": null}),
        )
        .await?;
        tracing::info!(claim = %key_of(c), phase, "claim entered phase");
        Ok(())
    }

    /// Removes `finalizer` from an object being deleted (the patch carries the version read,
    /// so a concurrent change makes it fail and retry rather than drop another finalizer).
    fn without_finalizer(
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        finalizer: &str,
    ) -> Option<Value> {
        let fs = meta.finalizers.as_ref()?;
        if !fs.iter().any(|f| f == finalizer) {
            return None;
        }
        let rest: Vec<&String> = fs.iter().filter(|f| *f != finalizer).collect();
        Some(json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}}))
    }

    async fn sync_claim(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(claim) = self.claims.get(key) else {
            return Ok(None);
        };
        let ns = claim.metadata.namespace.as_deref().unwrap_or("");
        if claim.metadata.deletion_timestamp.is_some() {
            if let Some(patch) =
                Self::without_finalizer(&claim.metadata, vol::PVC_PROTECTION_FINALIZER)
            {
                if claim_in_use(&self.pods.list_ns(ns), &claim.name_any()) {
                    tracing::debug!(
                        claim = key,
                        "claim is being deleted but a pod still uses it"
                    );
                    return Ok(None);
                }
                self.patch_claim(&claim, patch).await?;
                tracing::info!(
                    claim = key,
                    "no pod uses the claim any more; removed its protection finalizer"
                );
            }
            return Ok(None);
        }
        if volume_name(&claim).is_empty() {
            self.sync_unbound_claim(&claim).await
        } else {
            self.sync_named_claim(&claim).await
        }
    }

    /// A claim without `spec.volumeName`: find a volume, or wait for a consumer or a provisioner.
    async fn sync_unbound_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Option<Duration>, ReconcileError> {
        if has_annotation(&claim.metadata, vol::BIND_COMPLETED_ANNOTATION) {
            self.lost(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(None);
        }
        if self.assign_default_class(claim).await? {
            // The claim changes; its next sync binds it with the class.
            return Ok(None);
        }
        let class_name = vol::claim_class(claim);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get(class_name))
            .flatten();
        let delay = class
            .as_ref()
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let node_name = vol::selected_node(claim);
        let node = node_name.and_then(|n| self.nodes.get(n));
        let labels = node
            .as_ref()
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let node_ref = node_name.filter(|_| node.is_some()).map(|name| NodeRef {
            name,
            labels: &labels,
        });
        let volumes = self.volumes.list();
        let found = vol::best_match(
            claim,
            volumes.iter().map(|v| v.as_ref()),
            node_ref.as_ref(),
            delay,
        );
        if let Some(v) = found {
            self.bind(v, claim).await?;
            return Ok(None);
        }
        self.set_claim_phase(claim, "Pending").await?;
        if delay && node_name.is_none() {
            let (reason, message) =
                waiting_for_consumer(&self.pods.list_ns(ns_of(claim)), &claim.name_any());
            self.recorder.normal(claim, reason, message);
            return Ok(Some(RESYNC));
        }
        if class_name.is_empty() {
            self.recorder.normal(
                claim,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            );
            return Ok(Some(RESYNC));
        }
        let Some(class) = class else {
            self.recorder.warning(
                claim,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            );
            return Ok(Some(RESYNC));
        };
        // Hand the claim to its provisioner, as upstream does for provisioners outside the
        // controller manager (the node agents provision local-path volumes).
        let provisioner = class.provisioner.as_str();
        let annotated = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(vol::STORAGE_PROVISIONER_ANNOTATION))
            .map(String::as_str)
            == Some(provisioner);
        if !annotated {
            self.patch_claim(
                claim,
                json!({"metadata": {"annotations": {
                    vol::STORAGE_PROVISIONER_ANNOTATION: provisioner,
                    vol::BETA_STORAGE_PROVISIONER_ANNOTATION: provisioner,
                }}}),
            )
            .await?;
        }
        self.recorder.normal(claim, "ExternalProvisioning", format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."));
        Ok(Some(RESYNC))
    }

    /// Upstream's retroactive default class: a claim created with no class at all (not even
    /// "") before any class was the default gets the default class once one exists. Returns
    /// whether it patched the claim.
    async fn assign_default_class(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<bool, ReconcileError> {
        let unset = claim
            .spec
            .as_ref()
            .is_none_or(|s| s.storage_class_name.is_none())
            && !has_annotation(&claim.metadata, vol::BETA_CLASS_ANNOTATION);
        if !unset {
            return Ok(false);
        }
        let Some(default) = default_class(&self.classes.list()) else {
            return Ok(false);
        };
        self.patch_claim(claim, json!({"spec": {"storageClassName": default}}))
            .await?;
        tracing::info!(claim = %key_of(claim), class = %default, "assigned the default StorageClass to a claim without one");
        Ok(true)
    }

    /// A claim naming its volume: finish or check the binding.
    async fn sync_named_claim(
        &self,
        claim: &PersistentVolumeClaim,
    ) -> Result<Option<Duration>, ReconcileError> {
        let name = volume_name(claim);
        let completed = has_annotation(&claim.metadata, vol::BIND_COMPLETED_ANNOTATION);
        let Some(v) = self.volumes.get(name) else {
            if completed {
                self.lost(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await?;
                return Ok(None);
            }
            self.set_claim_phase(claim, "Pending").await?;
            self.recorder.normal(
                claim,
                "FailedBinding",
                format!("volume \"{name}\" not found"),
            );
            return Ok(Some(RESYNC));
        };
        let has_ref = v.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
        if vol::is_bound_to_claim(&v, claim) {
            self.bind(&v, claim).await?;
            return Ok(None);
        }
        if !has_ref {
            // The user pre-bound the claim to a free volume: it must satisfy the claim.
            let fits = vol::best_match::<std::collections::BTreeMap<String, String>>(
                claim,
                [v.as_ref()],
                None,
                false,
            )
            .is_some();
            if fits {
                self.bind(&v, claim).await?;
                return Ok(None);
            }
            self.set_claim_phase(claim, "Pending").await?;
            self.recorder.warning(claim, "FailedBinding", format!("Cannot bind to requested volume \"{name}\": requested PV is too small, or its class, access modes or volume mode do not match"));
            return Ok(Some(RESYNC));
        }
        if completed {
            self.lost(
                claim,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await?;
            return Ok(None);
        }
        // Bound to someone else by the user: wait for it to come free.
        self.set_claim_phase(claim, "Pending").await?;
        Ok(Some(RESYNC))
    }

    async fn lost(
        &self,
        claim: &PersistentVolumeClaim,
        reason: &str,
        message: &str,
    ) -> Result<(), ReconcileError> {
        if phase_of_claim(claim) == "Lost" {
            return Ok(());
        }
        self.set_claim_phase(claim, "Lost").await?;
        self.recorder.warning(claim, reason, message);
        Ok(())
    }

    /// Binds `v` and `claim` both ways (each step only when missing, so this also checks an
    /// existing binding): the volume's claimRef and phase, the claim's volumeName,
    /// annotations and status (phase, capacity, access modes).
    async fn bind(
        &self,
        v: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), ReconcileError> {
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let ref_uid = v
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.uid.clone())
            .unwrap_or_default();
        let by_controller = v.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        if ref_uid != uid {
            let mut patch = json!({"spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": claim.metadata.namespace, "name": claim.metadata.name,
                "uid": uid, "resourceVersion": claim.metadata.resource_version}}});
            if by_controller {
                patch["metadata"] =
                    json!({"annotations": {vol::BOUND_BY_CONTROLLER_ANNOTATION: "yes"}});
            }
            self.patch_volume(v, patch).await?;
        }
        self.expand_local_path(v, claim).await?;
        self.set_volume_phase(v, "Bound", None).await?;
        let needs_claim_patch = volume_name(claim) != v.name_any()
            || !has_annotation(&claim.metadata, vol::BIND_COMPLETED_ANNOTATION);
        if needs_claim_patch {
            let mut ann = json!({vol::BIND_COMPLETED_ANNOTATION: "yes"});
            if volume_name(claim).is_empty() {
                ann[vol::BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
            }
            self.patch_claim(
                claim,
                json!({"metadata": {"annotations": ann}, "spec": {"volumeName": v.name_any()}}),
            )
            .await?;
        }
        let spec = v.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        let capacity = self
            .volumes
            .get(&v.name_any())
            .and_then(|v| v.spec.as_ref().and_then(|s| s.capacity.clone()))
            .or(spec.capacity.clone());
        if phase_of_claim(claim) != "Bound"
            || status.capacity != capacity
            || status.access_modes != spec.access_modes
        {
            self.patch_claim_status(
                claim,
                json!({"phase": "Bound", "capacity": capacity, "accessModes": spec.access_modes}),
            )
            .await?;
            if phase_of_claim(claim) != "Bound" {
                tracing::info!(claim = %key_of(claim), volume = %v.name_any(), "claim bound to volume");
            }
        }
        Ok(())
    }

    /// A bound claim asking for more than its local-path volume holds: local-path
    /// directories have no size, so expanding is recording the new size on the volume
    /// (the claim's status capacity follows it).
    async fn expand_local_path(
        &self,
        v: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), ReconcileError> {
        let provisioned_here = v
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(vol::PROVISIONED_BY_ANNOTATION))
            .map(String::as_str)
            == Some(LOCAL_PATH_PROVISIONER);
        let request = vol::claim_request(claim);
        if !provisioned_here || request <= vol::volume_capacity(v) {
            return Ok(());
        }
        let want = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .cloned();
        self.recorder.normal(
            claim,
            "Resizing",
            format!("External resizer is resizing volume {}", v.name_any()),
        );
        self.patch_volume(v, json!({"spec": {"capacity": {"storage": want}}}))
            .await?;
        self.recorder
            .normal(claim, "VolumeResizeSuccessful", "Resize volume succeeded");
        tracing::info!(claim = %key_of(claim), volume = %v.name_any(), size = %request, "local-path volume expanded (recorded)");
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(v) = self.volumes.get(name) else {
            return Ok(None);
        };
        if v.metadata.deletion_timestamp.is_some() {
            if phase_of_volume(&v) != "Bound" {
                if let Some(patch) =
                    Self::without_finalizer(&v.metadata, vol::PV_PROTECTION_FINALIZER)
                {
                    self.patch_volume(&v, patch).await?;
                    tracing::info!(
                        volume = name,
                        "volume not bound any more; removed its protection finalizer"
                    );
                }
            }
            return Ok(None);
        }
        let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            self.set_volume_phase(&v, "Available", None).await?;
            return Ok(None);
        };
        if r.uid.as_deref().unwrap_or("").is_empty() {
            // Pre-bound by the user; the claim's sync binds it.
            self.set_volume_phase(&v, "Available", None).await?;
            return Ok(None);
        }
        let claim_key = format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        );
        let claim = self
            .claims
            .get(&claim_key)
            .filter(|c| c.metadata.uid == r.uid);
        let Some(claim) = claim else {
            return self.reclaim(&v).await;
        };
        let vn = volume_name(&claim);
        if vn.is_empty() {
            // Binding in progress: the claim's sync finishes it.
            return Ok(None);
        }
        if vn == name {
            self.set_volume_phase(&v, "Bound", None).await?;
            return Ok(None);
        }
        // The claim went to another volume: free this one.
        let mut patch = json!({"spec": {"claimRef": null}});
        if !has_annotation(&v.metadata, vol::BOUND_BY_CONTROLLER_ANNOTATION) {
            patch = json!({"spec": {"claimRef": {"uid": null, "resourceVersion": null}}});
        }
        self.patch_volume(&v, patch).await?;
        self.set_volume_phase(&v, "Available", None).await?;
        Ok(None)
    }

    /// The claim of a bound volume is gone: Released, then the reclaim policy.
    async fn reclaim(&self, v: &PersistentVolume) -> Result<Option<Duration>, ReconcileError> {
        let phase = phase_of_volume(v);
        if phase != "Released" && phase != "Failed" {
            self.set_volume_phase(v, "Released", None).await?;
            tracing::info!(volume = %v.name_any(), policy = ?v.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()), "volume is released and its reclaim policy will be executed");
        }
        let policy = v
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        let provisioner = v
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(vol::PROVISIONED_BY_ANNOTATION))
            .cloned();
        match policy {
            "Delete" if provisioner.as_deref() == Some(LOCAL_PATH_PROVISIONER) => {
                // The node agent of the volume's node deletes its directory, then the volume.
                Ok(None)
            }
            "Delete" => {
                let msg = format!("error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched", v.name_any());
                if phase != "Failed" {
                    self.recorder.warning(v, "VolumeFailedDelete", msg.clone());
                }
                self.set_volume_phase(v, "Failed", Some(&msg)).await?;
                Ok(None)
            }
            "Recycle" => {
                let msg = "No recycler plugin found for the volume!";
                if phase != "Failed" {
                    self.recorder.warning(v, "VolumeFailedRecycle", msg);
                }
                self.set_volume_phase(v, "Failed", Some(msg)).await?;
                Ok(None)
            }
            _ => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for VolumeController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        if let Some(k) = key.strip_prefix(CLAIM) {
            self.sync_claim(k).await
        } else if let Some(k) = key.strip_prefix(VOLUME) {
            self.sync_volume(k).await
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, claim: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [], "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
                "status": {"phase": phase}}))
            .expect("pod"),
        )
    }

    #[test]
    fn a_claim_is_in_use_only_by_pods_that_have_not_finished() {
        assert!(claim_in_use(&[pod("Running", "data")], "data"));
        assert!(claim_in_use(&[pod("Pending", "data")], "data"));
        assert!(!claim_in_use(&[pod("Succeeded", "data")], "data"));
        assert!(!claim_in_use(&[pod("Running", "other")], "data"));
    }

    #[test]
    fn a_waiting_claim_names_the_unscheduled_pods_that_use_it() {
        assert_eq!(
            waiting_for_consumer(&[pod("Running", "other")], "data").0,
            "WaitForFirstConsumer"
        );
        assert_eq!(
            waiting_for_consumer(&[pod("Pending", "data")], "data"),
            (
                "WaitForPodScheduled",
                "waiting for pod p to be scheduled".to_string()
            )
        );
    }

    #[test]
    fn the_default_class_is_the_newest_marked_one() {
        let class = |name: &str, default: &str, created: &str| -> Arc<StorageClass> {
            Arc::new(
                serde_json::from_value(
                    json!({"metadata": {"name": name, "creationTimestamp": created,
                    "annotations": {vol::DEFAULT_CLASS_ANNOTATION: default}}, "provisioner": "p"}),
                )
                .expect("class"),
            )
        };
        let classes = [
            class("old", "true", "2024-01-01T00:00:00Z"),
            class("new", "true", "2025-01-01T00:00:00Z"),
            class("newest", "false", "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
    }

    #[test]
    fn removing_a_finalizer_keeps_the_others_and_the_version_read() {
        let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            finalizers: Some(vec!["a".into(), vol::PVC_PROTECTION_FINALIZER.into()]),
            resource_version: Some("7".into()),
            ..Default::default()
        };
        let p = VolumeController::without_finalizer(&meta, vol::PVC_PROTECTION_FINALIZER)
            .expect("patch");
        assert_eq!(
            p,
            json!({"metadata": {"finalizers": ["a"], "resourceVersion": "7"}})
        );
        assert!(VolumeController::without_finalizer(&meta, "b").is_none());
    }
}
