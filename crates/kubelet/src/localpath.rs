//! The built-in local-path provisioner (k3s's `rancher.io/local-path`), node side: each node
//! agent provisions the claims whose first consumer was scheduled to its node and deletes the
//! volumes it made once they are released with reclaim policy Delete. This is the part that
//! touches the node's disk, so it runs where the disk is (a joined agent has its own data dir).
//!
//! [`start`] runs informers on claims, volumes and classes and one reconciler for keys
//! `claim:<ns>/<name>` and `volume:<name>`:
//! - a claim handed to `rancher.io/local-path` (the PV controller's storage-provisioner
//!   annotation) and marked with this node (the scheduler's selected-node annotation) gets a
//!   directory `<data-dir>/storage/<pv>_<ns>_<claim>` and a PersistentVolume `pvc-<claim uid>`
//!   (hostPath DirectoryOrCreate, required node affinity to this node, pre-bound to the claim,
//!   the class's reclaim policy); the PV controller then binds them;
//! - a volume this provisioner made for this node, Released with policy Delete, loses its
//!   directory and then its PersistentVolume object.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use capstan_api::volume as vol;
use capstan_runtime::{
    key_of, run_workers, Cache, Informer, Queue, ReconcileError, Reconciler, Recorder,
    WorkerObserver,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// k3s's provisioner name, so that manifests written for k3s work unchanged.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The node label the volumes' node affinity names (the node agent sets it to the node name).
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

const CLAIM: &str = "claim:";
const VOLUME: &str = "volume:";

/// Where a node keeps local-path volumes: `<data-dir>/storage`, as k3s (`agent_dir` is
/// `<data-dir>/agent`).
pub fn storage_root(agent_dir: &Path) -> PathBuf {
    agent_dir.parent().unwrap_or(agent_dir).join("storage")
}

/// The directory of the volume `pv` for claim `ns/name` (k3s's layout).
pub fn volume_dir(root: &Path, pv: &str, ns: &str, claim: &str) -> PathBuf {
    root.join(format!("{pv}_{ns}_{claim}"))
}

/// What the provisioner has done, on the agent's `/metrics` (prefix `capstan_local_path`).
#[derive(Clone, Default)]
struct Counters {
    provisioned: Counter,
    deleted: Counter,
    failed: Counter,
}

impl Counters {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "volumes_provisioned",
            "Local-path volumes created (directory and PersistentVolume)",
            self.provisioned.clone(),
        );
        registry.register(
            "volumes_deleted",
            "Released local-path volumes deleted (directory and PersistentVolume)",
            self.deleted.clone(),
        );
        registry.register(
            "failures",
            "Provisioning or deletion attempts that failed",
            self.failed.clone(),
        );
    }
}

struct LocalPath {
    counters: Counters,
    client: Client,
    node: String,
    root: PathBuf,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    recorder: Recorder,
}

/// Errors are logged and the key retried with backoff.
struct Quiet;

impl WorkerObserver for Quiet {
    fn reconciling(&self, _: &'static str, _: usize) {}
    fn failed(&self, controller: &'static str) {
        tracing::debug!(controller, "local-path reconcile failed; retrying");
    }
}

/// Starts the provisioner for `node`, keeping volumes under `root`; its counters join the
/// agent's `metrics`.
pub fn start(
    client: Client,
    node: String,
    root: PathBuf,
    metrics: &crate::metrics::Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let counters = Counters::default();
    let mut registry = Registry::with_prefix("capstan_local_path");
    counters.register(&mut registry);
    metrics.append_registry(registry);
    let mut claims = Informer::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut volumes = Informer::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut classes = Informer::new(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    );
    let queue = Queue::new();
    let q = queue.clone();
    claims.on_change(move |c| q.add(format!("{CLAIM}{}", key_of(c.latest().as_ref()))));
    let q = queue.clone();
    volumes.on_change(move |c| q.add(format!("{VOLUME}{}", c.latest().name_any())));
    classes.on_change(|_| {});
    let me = Arc::new(LocalPath {
        counters,
        recorder: Recorder::new(client.clone(), &format!("{PROVISIONER}_{node}")),
        client,
        node,
        root,
        claims: claims.cache(),
        volumes: volumes.cache(),
        classes: classes.cache(),
    });
    tracing::info!(node = %me.node, root = %me.root.display(), "local-path provisioner started");
    let caches = (me.claims.clone(), me.volumes.clone(), me.classes.clone());
    tokio::spawn(claims.run(shutdown.clone()));
    tokio::spawn(volumes.run(shutdown.clone()));
    tokio::spawn(classes.run(shutdown.clone()));
    tokio::spawn(async move {
        caches.0.wait_ready().await;
        caches.1.wait_ready().await;
        caches.2.wait_ready().await;
        run_workers(me, queue, 2, Arc::new(Quiet), shutdown).await;
    });
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn failed(what: String) -> ReconcileError {
    ReconcileError::from(what)
}

impl LocalPath {
    async fn provision(&self, key: &str) -> Result<(), ReconcileError> {
        let Some(claim) = self.claims.get(key) else {
            return Ok(());
        };
        let spec = claim.spec.clone().unwrap_or_default();
        let ours = annotation(&claim.metadata, vol::STORAGE_PROVISIONER_ANNOTATION)
            == Some(PROVISIONER)
            && vol::selected_node(&claim) == Some(self.node.as_str());
        if !ours
            || claim.metadata.deletion_timestamp.is_some()
            || !spec.volume_name.as_deref().unwrap_or("").is_empty()
        {
            return Ok(());
        }
        let class_name = vol::claim_class(&claim).to_string();
        let Some(class) = self.classes.get(&class_name) else {
            return Ok(()); // the PV controller reports a missing class
        };
        if class.provisioner != PROVISIONER {
            return Ok(());
        }
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let pv_name = format!("pvc-{uid}");
        if self.volumes.get(&pv_name).is_some() {
            return Ok(());
        }
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.name_any();
        self.recorder.normal(
            claim.as_ref(),
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
        );
        // What k3s's local-path-provisioner refuses, with its words.
        let unsupported = if spec.selector.is_some() {
            Some("claim.Spec.Selector is not supported")
        } else if spec.volume_mode.as_deref() == Some("Block") {
            Some("Block volumes are not supported by local-path")
        } else {
            None
        };
        if let Some(why) = unsupported {
            let msg =
                format!("failed to provision volume with StorageClass \"{class_name}\": {why}");
            self.recorder
                .warning(claim.as_ref(), "ProvisioningFailed", msg);
            return Ok(());
        }
        let dir = volume_dir(&self.root, &pv_name, &ns, &name);
        if let Err(e) = create_dir(&dir) {
            let msg = format!(
                "failed to provision volume with StorageClass \"{class_name}\": creating {}: {e}",
                dir.display()
            );
            self.recorder
                .warning(claim.as_ref(), "ProvisioningFailed", msg.clone());
            return Err(failed(msg));
        }
        let request = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .cloned();
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {
                vol::PROVISIONED_BY_ANNOTATION: PROVISIONER,
                "local.path.provisioner/selected-node": self.node,
            }},
            "spec": {
                "capacity": {"storage": request},
                "accessModes": spec.access_modes,
                "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
                "storageClassName": class_name,
                "volumeMode": "Filesystem",
                "hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [self.node]}]}]}},
                "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                    "name": name, "uid": uid, "resourceVersion": claim.metadata.resource_version},
            },
        });
        let pv: PersistentVolume = serde_json::from_value(pv)
            .map_err(|e| failed(format!("building volume {pv_name}: {e}")))?;
        match Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), &pv)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(e) => {
                let msg =
                    format!("failed to provision volume with StorageClass \"{class_name}\": {e}");
                self.recorder
                    .warning(claim.as_ref(), "ProvisioningFailed", msg.clone());
                return Err(failed(msg));
            }
        }
        self.recorder.normal(
            claim.as_ref(),
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        );
        self.counters.provisioned.inc();
        tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, dir = %dir.display(), "provisioned a local-path volume");
        Ok(())
    }

    /// Whether this provisioner made `pv` for this node.
    fn is_ours(&self, pv: &PersistentVolume) -> bool {
        let labels: std::collections::BTreeMap<String, String> =
            [(HOSTNAME_LABEL.to_string(), self.node.clone())].into();
        annotation(&pv.metadata, vol::PROVISIONED_BY_ANNOTATION) == Some(PROVISIONER)
            && pv.spec.as_ref().is_some_and(|s| s.node_affinity.is_some())
            && vol::node_affinity_matches(pv, &self.node, &labels)
    }

    async fn delete(&self, name: &str) -> Result<(), ReconcileError> {
        let Some(pv) = self.volumes.get(name) else {
            return Ok(());
        };
        let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let delete = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete");
        if !released || !delete || pv.metadata.deletion_timestamp.is_some() || !self.is_ours(&pv) {
            return Ok(());
        }
        if let Some(dir) = vol::host_directory(&pv) {
            let dir = PathBuf::from(dir);
            // Only ever remove what lies in this node's storage folder.
            if dir.starts_with(&self.root) && dir != self.root {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        let msg = format!("deleting {}: {e}", dir.display());
                        self.recorder
                            .warning(pv.as_ref(), "VolumeFailedDelete", msg.clone());
                        return Err(failed(msg));
                    }
                }
                tracing::info!(volume = name, dir = %dir.display(), "deleted a released local-path volume's directory");
            }
        }
        match Api::<PersistentVolume>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.counters.deleted.inc();
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(failed(format!("deleting volume {name}: {e}"))),
        }
    }
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    // As k3s's helper pod: any container user may write to the volume.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

#[async_trait::async_trait]
impl Reconciler for LocalPath {
    fn name(&self) -> &'static str {
        "local-path-provisioner"
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let done = if let Some(k) = key.strip_prefix(CLAIM) {
            self.provision(k).await
        } else if let Some(k) = key.strip_prefix(VOLUME) {
            self.delete(k).await
        } else {
            Ok(())
        };
        if done.is_err() {
            self.counters.failed.inc();
        }
        done.map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_live_in_the_data_dirs_storage_folder_as_k3s_lays_them_out() {
        let root = storage_root(Path::new("/var/lib/capstan/agent"));
        assert_eq!(root, PathBuf::from("/var/lib/capstan/storage"));
        assert_eq!(
            volume_dir(&root, "pvc-1", "default", "data"),
            PathBuf::from("/var/lib/capstan/storage/pvc-1_default_data")
        );
    }
}
