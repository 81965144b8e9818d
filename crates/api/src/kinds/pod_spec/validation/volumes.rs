//! Upstream's ValidateVolumes: each volume's name and its one source (host paths, secrets,
//! config maps, downward API, projected, ephemeral claims...).

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{KeyToPath, Volume};

use super::claims::validate_pvc_spec;
use super::field_refs::{object_field_selector, resource_field_selector, VOLUME_FIELD_PATHS};
use super::{s, to_json};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::{checks, quantity};
use crate::validation::{dns1123_subdomain, validate_labels};

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// What a volume is backed by, for the checks of mounts and devices.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VolumeKind {
    pub(super) claim_backed: bool,
}

/// Volume source fields in upstream's order of checking, with the path name upstream reports.
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

fn mode(m: Option<i32>, path: Path, errs: &mut ErrorList) {
    if let Some(m) = m {
        if !(0..=0o777).contains(&m) {
            errs.push(FieldError::invalid(path, m, FILE_MODE_MSG));
        }
    }
}

fn key_to_path(kp: &KeyToPath, path: &Path, errs: &mut ErrorList) {
    if kp.key.is_empty() {
        errs.push(FieldError::required(path.child("key"), ""));
    }
    if kp.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    checks::local_non_reserved_path(&kp.path, &path.child("path"), errs);
    mode(kp.mode, path.child("mode"), errs);
}

fn downward_api_file(
    file: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
    path: &Path,
    errs: &mut ErrorList,
) {
    if file.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    checks::local_non_reserved_path(&file.path, &path.child("path"), errs);
    if let Some(f) = &file.field_ref {
        object_field_selector(f, VOLUME_FIELD_PATHS, &path.child("fieldRef"), errs);
        if file.resource_field_ref.is_some() {
            errs.push(FieldError::invalid(
                path,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            ));
        }
    } else if let Some(r) = &file.resource_field_ref {
        resource_field_selector(r, true, &path.child("resourceFieldRef"), errs);
    } else {
        errs.push(FieldError::required(
            path,
            "one of fieldRef and resourceFieldRef is required",
        ));
    }
    mode(file.mode, path.child("mode"), errs);
}

fn projected(
    p: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mut all_paths = BTreeSet::new();
    for (i, src) in p.sources.iter().flatten().enumerate() {
        let sp = path.child("sources").index(i);
        let mut n = 0;
        let check_item = |kp: &KeyToPath,
                          p: &Path,
                          owner: &str,
                          seen: &mut BTreeSet<String>,
                          errs: &mut ErrorList| {
            key_to_path(kp, p, errs);
            if !kp.path.is_empty() && !seen.insert(kp.path.clone()) {
                errs.push(FieldError::invalid(
                    path,
                    owner,
                    "conflicting duplicate paths",
                ));
            }
        };
        if let Some(sec) = &src.secret {
            n += 1;
            let pp = sp.child("secret");
            if sec.name.is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
            for (j, kp) in sec.items.iter().flatten().enumerate() {
                check_item(
                    kp,
                    &pp.child("items").index(j),
                    &sec.name,
                    &mut all_paths,
                    errs,
                );
            }
        }
        if let Some(cm) = &src.config_map {
            n += 1;
            let pp = sp.child("configMap");
            if cm.name.is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            }
            for (j, kp) in cm.items.iter().flatten().enumerate() {
                check_item(
                    kp,
                    &pp.child("items").index(j),
                    &cm.name,
                    &mut all_paths,
                    errs,
                );
            }
        }
        if let Some(d) = &src.downward_api {
            n += 1;
            let pp = sp.child("downwardAPI");
            for file in d.items.iter().flatten() {
                downward_api_file(file, &pp, errs);
                if !file.path.is_empty() && !all_paths.insert(file.path.clone()) {
                    errs.push(FieldError::invalid(
                        path,
                        file.path.as_str(),
                        "conflicting duplicate paths",
                    ));
                }
            }
        }
        if let Some(t) = &src.service_account_token {
            n += 1;
            let pp = sp.child("serviceAccountToken");
            let exp = t.expiration_seconds.unwrap_or(3600);
            if exp < 600 {
                errs.push(FieldError::invalid(
                    pp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration less than 10 minutes",
                ));
            }
            if exp > 1 << 32 {
                errs.push(FieldError::invalid(
                    pp.child("expirationSeconds"),
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                ));
            }
            if t.path.is_empty() {
                errs.push(FieldError::required(pp.child("path"), ""));
            }
        }
        if let Some(b) = &src.cluster_trust_bundle {
            n += 1;
            if b.path.is_empty() {
                errs.push(FieldError::required(
                    sp.child("clusterTrustBundle").child("path"),
                    "",
                ));
            }
        }
        if n > 1 {
            errs.push(FieldError::forbidden(
                sp,
                "may not specify more than 1 volume type per source",
            ));
        }
    }
}

/// Upstream's validateHostPathVolumeSource.
pub(crate) fn host_path(
    h: &k8s_openapi::api::core::v1::HostPathVolumeSource,
    path: &Path,
    errs: &mut ErrorList,
) {
    if h.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
        return;
    }
    checks::path_no_backsteps(&h.path, &path.child("path"), errs);
    if let Some(t) = &h.type_ {
        if !HOST_PATH_TYPES.contains(&t.as_str()) {
            errs.push(FieldError::not_supported(
                path.child("type"),
                t.as_str(),
                HOST_PATH_TYPES,
            ));
        }
    }
}

/// Upstream's validateNFSVolumeSource.
pub(crate) fn nfs(
    n: &k8s_openapi::api::core::v1::NFSVolumeSource,
    path: &Path,
    errs: &mut ErrorList,
) {
    if n.server.is_empty() {
        errs.push(FieldError::required(path.child("server"), ""));
    }
    if n.path.is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    if !n.path.starts_with('/') {
        errs.push(FieldError::invalid(
            path.child("path"),
            n.path.as_str(),
            "must be an absolute path",
        ));
    }
}

fn volume_source(v: &Volume, path: &Path, pod_name: Option<&str>, errs: &mut ErrorList) {
    let json = to_json(v);
    let present = |key: &str| json.get(key).is_some_and(|x| !x.is_null());
    let mut count = 0;
    if let Some(e) = &v.empty_dir {
        count += 1;
        if let Some(q) = e.size_limit.as_ref().and_then(|q| quantity::parse(q).ok()) {
            if q.is_negative() {
                errs.push(FieldError::forbidden(
                    path.child("emptyDir").child("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
    }
    for (key, name) in VOLUME_SOURCES {
        if !present(key) {
            continue;
        }
        if count > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = path.child(name);
        match *key {
            "hostPath" => {
                if let Some(h) = &v.host_path {
                    host_path(h, &p, errs);
                }
            }
            "gitRepo" => {
                if let Some(g) = &v.git_repo {
                    if g.repository.is_empty() {
                        errs.push(FieldError::required(p.child("repository"), ""));
                    }
                    checks::local_descending_path(s(&g.directory), &p.child("directory"), errs);
                }
            }
            "secret" => {
                if let Some(sec) = &v.secret {
                    if s(&sec.secret_name).is_empty() {
                        errs.push(FieldError::required(p.child("secretName"), ""));
                    }
                    mode(sec.default_mode, p.child("defaultMode"), errs);
                    for (i, kp) in sec.items.iter().flatten().enumerate() {
                        key_to_path(kp, &p.child("items").index(i), errs);
                    }
                }
            }
            "configMap" => {
                if let Some(cm) = &v.config_map {
                    if cm.name.is_empty() {
                        errs.push(FieldError::required(p.child("name"), ""));
                    }
                    mode(cm.default_mode, p.child("defaultMode"), errs);
                    for (i, kp) in cm.items.iter().flatten().enumerate() {
                        key_to_path(kp, &p.child("items").index(i), errs);
                    }
                }
            }
            "nfs" => {
                if let Some(n) = &v.nfs {
                    nfs(n, &p, errs);
                }
            }
            "persistentVolumeClaim" => {
                if let Some(c) = &v.persistent_volume_claim {
                    if c.claim_name.is_empty() {
                        errs.push(FieldError::required(p.child("claimName"), ""));
                    }
                }
            }
            "downwardAPI" => {
                if let Some(d) = &v.downward_api {
                    let p = path.child("downwardAPI");
                    mode(d.default_mode, p.child("defaultMode"), errs);
                    for file in d.items.iter().flatten() {
                        downward_api_file(file, &p, errs);
                    }
                }
            }
            "projected" => {
                if let Some(pr) = &v.projected {
                    mode(pr.default_mode, p.child("defaultMode"), errs);
                    projected(pr, &p, errs);
                }
            }
            "csi" => {
                if let Some(c) = &v.csi {
                    if c.driver.is_empty() {
                        errs.push(FieldError::required(p.child("driver"), ""));
                    }
                }
            }
            "ephemeral" => {
                if let Some(e) = &v.ephemeral {
                    match &e.volume_claim_template {
                        None => errs.push(FieldError::required(p.child("volumeClaimTemplate"), "")),
                        Some(t) => {
                            let tp = p.child("volumeClaimTemplate");
                            if let Some(m) = &t.metadata {
                                if let Some(l) = &m.labels {
                                    validate_labels(l, &tp.child("metadata").child("labels"), errs);
                                }
                            }
                            validate_pvc_spec(&t.spec, &tp.child("spec"), errs);
                        }
                    }
                    if let Some(pod) = pod_name.filter(|n| !n.is_empty()) {
                        if !v.name.is_empty() {
                            let pvc = format!("{pod}-{}", v.name);
                            for msg in dns1123_subdomain(&pvc) {
                                errs.push(FieldError::invalid(
                                    path.child("name"),
                                    v.name.as_str(),
                                    format!("PVC name {pvc:?}: {msg}"),
                                ));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a volume type"));
    }
}

/// Upstream's ValidateVolumes: valid names, unique, one source each. Returns the good volumes.
pub(crate) fn volumes(
    vols: &[Volume],
    pod_name: Option<&str>,
    path: &Path,
    errs: &mut ErrorList,
) -> HashMap<String, VolumeKind> {
    let mut out = HashMap::new();
    let created_pvcs: BTreeSet<String> = match pod_name.filter(|n| !n.is_empty()) {
        Some(pod) => vols
            .iter()
            .filter(|v| v.ephemeral.is_some())
            .map(|v| format!("{pod}-{}", v.name))
            .collect(),
        None => BTreeSet::new(),
    };
    for (i, v) in vols.iter().enumerate() {
        let p = path.index(i);
        let mut el = Vec::new();
        volume_source(v, &p, pod_name, &mut el);
        if v.name.is_empty() {
            el.push(FieldError::required(p.child("name"), ""));
        } else {
            checks::dns_label(&v.name, &p.child("name"), &mut el);
        }
        if out.contains_key(&v.name) {
            el.push(FieldError::duplicate(p.child("name"), v.name.as_str()));
        }
        if el.is_empty() {
            out.insert(
                v.name.clone(),
                VolumeKind {
                    claim_backed: v.persistent_volume_claim.is_some() || v.ephemeral.is_some(),
                },
            );
        } else {
            errs.extend(el);
        }
        if let Some(c) = &v.persistent_volume_claim {
            if created_pvcs.contains(&c.claim_name) {
                errs.push(FieldError::invalid(
                    p.child("persistentVolumeClaim").child("claimName"),
                    c.claim_name.as_str(),
                    "must not reference a PVC that gets created for an ephemeral volume",
                ));
            }
        }
    }
    out
}
