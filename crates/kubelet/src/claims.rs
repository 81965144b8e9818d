//! [`resolve`]: a pod's persistentVolumeClaim volume on this node: the claim, its bound
//! PersistentVolume, and that volume's hostPath or local directory (the node agent mounts
//! only volumes it can reach as a directory). Errors are upstream's volume manager wording,
//! which the pod's FailedMount event carries while it waits in ContainerCreating.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;

use crate::pods::volumes::ClaimVolume;

/// Looks up claim `ns/name` and its volume's directory (with the hostPath type to check:
/// `local` volumes must already be a directory).
pub async fn resolve(client: &kube::Client, ns: &str, name: &str) -> ClaimVolume {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = match claims.get_opt(name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(format!(
                "failed to fetch PVC from API server: persistentvolumeclaims \"{name}\" not found"
            ))
        }
        Err(e) => return Err(format!("failed to fetch PVC from API server: {e}")),
    };
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err("PVC is not bound".into());
    }
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if volume.is_empty() {
        return Err("PVC has empty pvc.Spec.VolumeName".into());
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = match volumes.get_opt(&volume).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(format!(
                "failed to fetch PV {volume:?} from API server: persistentvolumes \"{volume}\" not found"
            ))
        }
        Err(e) => return Err(format!("failed to fetch PV {volume:?} from API server: {e}")),
    };
    directory_of(&pv)
}

/// The directory of a hostPath or local volume, with the type check its source asks for.
pub fn directory_of(pv: &PersistentVolume) -> ClaimVolume {
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok((PathBuf::from(&h.path), h.type_.clone().unwrap_or_default()));
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        return Ok((PathBuf::from(&l.path), "Directory".into()));
    }
    Err(format!(
        "volume {:?} has no hostPath or local source: capstan's node agent mounts only those",
        pv.metadata.name.as_deref().unwrap_or("")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_path_and_local_volumes_give_their_directory() {
        let pv = |src: serde_json::Value| -> PersistentVolume {
            serde_json::from_value(json!({"metadata": {"name": "pv"}, "spec": src})).expect("pv")
        };
        assert_eq!(
            directory_of(&pv(
                json!({"hostPath": {"path": "/d", "type": "DirectoryOrCreate"}})
            )),
            Ok((PathBuf::from("/d"), "DirectoryOrCreate".into()))
        );
        assert_eq!(
            directory_of(&pv(json!({"local": {"path": "/l"}}))),
            Ok((PathBuf::from("/l"), "Directory".into()))
        );
        assert!(directory_of(&pv(json!({"nfs": {"server": "s", "path": "/p"}}))).is_err());
    }
}
