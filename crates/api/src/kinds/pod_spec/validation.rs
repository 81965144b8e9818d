//! Upstream's ValidatePodSpec and everything under it (volumes, containers, probes, resources,
//! security contexts, scheduling constraints), with upstream's field paths and messages.
//! The common, user-facing checks are here; exotic volume plugins only get their type counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvFromSource, EnvVar, EphemeralContainer, HTTPGetAction, KeyToPath,
    Lifecycle, LifecycleHandler, NodeSelector, NodeSelectorTerm, ObjectFieldSelector,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodDNSConfig, PodSecurityContext, PodSpec, Probe,
    ResourceFieldSelector, ResourceRequirements, SeccompProfile, SecurityContext, Toleration,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks::{self, inclusive_range};
use crate::kinds::core::quantity::{self, Quantity};
use crate::validation::{dns1123_subdomain, label_value, validate_annotations, validate_labels};

/// Where a pod spec sits, which changes a few rules (upstream's PodValidationOptions).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// The spec is a Pod's own, not a template's.
    pub resource_is_pod: bool,
}

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const MAX_INT32: i64 = i32::MAX as i64;

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// What a volume is backed by, for the checks of mounts and devices.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VolumeKind {
    claim_backed: bool,
}

// ---- volumes ---------------------------------------------------------------------------------

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

const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// Splits `metadata.labels['key']` into the path and the key.
fn split_subscript(fp: &str) -> Option<(&str, &str)> {
    let open = fp.find("['")?;
    let inner = fp[open + 2..].strip_suffix("']")?;
    Some((&fp[..open], inner))
}

fn object_field_selector(
    fs: &ObjectFieldSelector,
    allowed: &[&str],
    path: &Path,
    errs: &mut ErrorList,
) {
    let api_version = s(&fs.api_version);
    if api_version.is_empty() {
        errs.push(FieldError::required(path.child("apiVersion"), ""));
        return;
    }
    if fs.field_path.is_empty() {
        errs.push(FieldError::required(path.child("fieldPath"), ""));
        return;
    }
    if api_version != "v1" {
        errs.push(FieldError::invalid(
            path.child("fieldPath"),
            fs.field_path.as_str(),
            format!("error converting fieldPath: unsupported pod version: {api_version}"),
        ));
        return;
    }
    if let Some((p, key)) = split_subscript(&fs.field_path) {
        match p {
            "metadata.annotations" => checks::qualified(&key.to_lowercase(), path, errs),
            "metadata.labels" => checks::qualified(key, path, errs),
            _ => errs.push(FieldError::invalid(path, p, "does not support subscript")),
        }
    } else if !allowed.contains(&fs.field_path.as_str()) {
        errs.push(FieldError::not_supported(
            path.child("fieldPath"),
            fs.field_path.as_str(),
            allowed,
        ));
    }
}

fn resource_field_selector(
    r: &ResourceFieldSelector,
    volume: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if volume && s(&r.container_name).is_empty() {
        errs.push(FieldError::required(path.child("containerName"), ""));
    } else if r.resource.is_empty() {
        errs.push(FieldError::required(path.child("resource"), ""));
    } else if !RESOURCE_FIELD_PATHS.contains(&r.resource.as_str())
        && !r.resource.starts_with("requests.hugepages-")
        && !r.resource.starts_with("limits.hugepages-")
    {
        errs.push(FieldError::not_supported(
            path.child("resource"),
            r.resource.as_str(),
            RESOURCE_FIELD_PATHS,
        ));
    }
    let Some(d) = r.divisor.as_ref().and_then(|d| quantity::parse(d).ok()) else {
        return;
    };
    if d.is_zero() {
        return;
    }
    let d = d.canonical();
    let memoryish = [
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let res = r.resource.as_str();
    let bad = |kind: &str| {
        format!("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the {kind} resource")
    };
    match res {
        "limits.cpu" | "requests.cpu" if d != "1m" && d != "1" => errs.push(FieldError::invalid(
            path.child("divisor"),
            res,
            "only divisor's values 1m and 1 are supported with the cpu resource",
        )),
        "limits.memory" | "requests.memory" if !memoryish.contains(&d.as_str()) => errs.push(
            FieldError::invalid(path.child("divisor"), res, bad("memory")),
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage"
            if !memoryish.contains(&d.as_str()) =>
        {
            errs.push(FieldError::invalid(
                path.child("divisor"),
                res,
                bad("local ephemeral storage"),
            ))
        }
        _ => {}
    }
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

/// Upstream's ValidatePersistentVolumeClaimSpec (also used for ephemeral volume templates).
pub(crate) fn validate_pvc_spec(
    spec: &PersistentVolumeClaimSpec,
    path: &Path,
    errs: &mut ErrorList,
) {
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(
            path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    if let Some(sel) = &spec.selector {
        checks::label_selector(sel, &path.child("selector"), errs);
    }
    check_access_modes(modes, &path.child("accessModes"), errs);
    let storage_path = path.child("resources").key("storage");
    match spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
    {
        None => errs.push(FieldError::required(storage_path, "")),
        Some(q) => {
            if let Some(v) = checks::parse_quantity(q, &storage_path, errs) {
                if v.is_negative() || v.is_zero() {
                    errs.push(FieldError::invalid(
                        storage_path,
                        v.canonical(),
                        "must be greater than zero",
                    ));
                } else {
                    checks::resource_quantity_value("storage", &v, &storage_path, errs);
                }
            }
        }
    }
    if let Some(sc) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        checks::dns_subdomain(sc, &path.child("storageClassName"), errs);
    }
    if let Some(vm) = &spec.volume_mode {
        if vm != "Block" && vm != "Filesystem" {
            errs.push(FieldError::not_supported(
                path.child("volumeMode"),
                vm.as_str(),
                &["Block", "Filesystem"],
            ));
        }
    }
    if let Some(ds) = &spec.data_source {
        let p = path.child("dataSource");
        if ds.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if ds.kind.is_empty() {
            errs.push(FieldError::required(p.child("kind"), ""));
        }
        if s(&ds.api_group).is_empty() && ds.kind != "PersistentVolumeClaim" {
            errs.push(FieldError::invalid(
                &p,
                ds.kind.as_str(),
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            ));
        }
    }
}

/// Access modes of PVs and PVCs.
pub(crate) fn check_access_modes(modes: &[String], path: &Path, errs: &mut ErrorList) {
    const SUPPORTED: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let (mut rwop, mut other) = (false, false);
    for m in modes {
        if !SUPPORTED.contains(&m.as_str()) {
            errs.push(FieldError::not_supported(path, m.as_str(), SUPPORTED));
        } else if m == "ReadWriteOncePod" {
            rwop = true;
        } else {
            other = true;
        }
    }
    if rwop && other {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
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

// ---- containers ------------------------------------------------------------------------------

fn container_ports(c: &Container, path: &Path, errs: &mut ErrorList) {
    let mut names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = checks::port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(p.child("name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for m in checks::port_num(i64::from(port.container_port)) {
                errs.push(FieldError::invalid(
                    p.child("containerPort"),
                    port.container_port,
                    m,
                ));
            }
        }
        if let Some(hp) = port.host_port.filter(|h| *h != 0) {
            for m in checks::port_num(i64::from(hp)) {
                errs.push(FieldError::invalid(p.child("hostPort"), hp, m));
            }
        }
        let proto = s(&port.protocol);
        if proto.is_empty() {
            errs.push(FieldError::required(p.child("protocol"), ""));
        } else if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                p.child("protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

fn env(vars: &[EnvVar], path: &Path, errs: &mut ErrorList) {
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for m in checks::env_var_name(&ev.name) {
                errs.push(FieldError::invalid(p.child("name"), ev.name.as_str(), m));
            }
        }
        let Some(from) = &ev.value_from else { continue };
        let fp = p.child("valueFrom");
        let mut n = 0;
        if let Some(f) = &from.field_ref {
            n += 1;
            object_field_selector(f, ENV_FIELD_PATHS, &fp.child("fieldRef"), errs);
        }
        if let Some(r) = &from.resource_field_ref {
            n += 1;
            resource_field_selector(r, false, &fp.child("resourceFieldRef"), errs);
        }
        for (sel, key_path) in [
            (
                from.config_map_key_ref.as_ref().map(|c| (&c.name, &c.key)),
                "configMapKeyRef",
            ),
            (
                from.secret_key_ref.as_ref().map(|c| (&c.name, &c.key)),
                "secretKeyRef",
            ),
        ] {
            let Some((name, key)) = sel else { continue };
            n += 1;
            let kp = fp.child(key_path);
            checks::dns_subdomain(name, &kp.child("name"), errs);
            if key.is_empty() {
                errs.push(FieldError::required(kp.child("key"), ""));
            } else {
                for m in checks::config_map_key(key) {
                    errs.push(FieldError::invalid(kp.child("key"), key.as_str(), m));
                }
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(&ev.value).is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn env_from(sources: &[EnvFromSource], path: &Path, errs: &mut ErrorList) {
    for (i, ev) in sources.iter().enumerate() {
        let p = path.index(i);
        if let Some(prefix) = ev.prefix.as_deref().filter(|x| !x.is_empty()) {
            for m in checks::env_var_name(prefix) {
                errs.push(FieldError::invalid(p.child("prefix"), prefix, m));
            }
        }
        let mut n = 0;
        for (name, child) in [
            (ev.config_map_ref.as_ref().map(|c| &c.name), "configMapRef"),
            (ev.secret_ref.as_ref().map(|c| &c.name), "secretRef"),
        ] {
            let Some(name) = name else { continue };
            n += 1;
            let np = p.child(child).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(np, ""));
            } else {
                checks::dns_subdomain(name, &np, errs);
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn volume_mounts(
    c: &Container,
    vols: &HashMap<String, VolumeKind>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let devices: BTreeMap<&str, &str> = c
        .volume_devices
        .iter()
        .flatten()
        .map(|d| (d.name.as_str(), d.device_path.as_str()))
        .collect();
    let mut mountpoints = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.index(i);
        mount(m, vols, &devices, &mut mountpoints, path, &p, errs);
    }
}

fn mount(
    m: &VolumeMount,
    vols: &HashMap<String, VolumeKind>,
    devices: &BTreeMap<&str, &str>,
    mountpoints: &mut BTreeSet<String>,
    list_path: &Path,
    p: &Path,
    errs: &mut ErrorList,
) {
    if m.name.is_empty() {
        errs.push(FieldError::required(p.child("name"), ""));
    }
    if !vols.contains_key(&m.name) {
        errs.push(FieldError::not_found(p.child("name"), m.name.as_str()));
    }
    if m.mount_path.is_empty() {
        errs.push(FieldError::required(p.child("mountPath"), ""));
    }
    if !mountpoints.insert(m.mount_path.clone()) {
        errs.push(FieldError::invalid(
            p.child("mountPath"),
            m.mount_path.as_str(),
            "must be unique",
        ));
    }
    if devices.contains_key(m.name.as_str()) {
        errs.push(FieldError::invalid(
            p.child("name"),
            m.name.as_str(),
            "must not already exist in volumeDevices",
        ));
    }
    if devices.values().any(|d| *d == m.mount_path) {
        errs.push(FieldError::invalid(
            p.child("mountPath"),
            m.mount_path.as_str(),
            "must not already exist as a path in volumeDevices",
        ));
    }
    let sub = s(&m.sub_path);
    if !sub.is_empty() {
        checks::local_descending_path(sub, &list_path.child("subPath"), errs);
    }
    let expr = s(&m.sub_path_expr);
    if !expr.is_empty() {
        if !sub.is_empty() {
            errs.push(FieldError::invalid(
                p.child("subPathExpr"),
                expr,
                "subPathExpr and subPath are mutually exclusive",
            ));
        }
        checks::local_descending_path(expr, &list_path.child("subPathExpr"), errs);
    }
    if let Some(mp) = &m.mount_propagation {
        const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
        if !MODES.contains(&mp.as_str()) {
            errs.push(FieldError::not_supported(
                list_path.child("mountPropagation"),
                mp.as_str(),
                MODES,
            ));
        }
    }
    if let Some(rro) = &m.recursive_read_only {
        const MODES: &[&str] = &["Disabled", "IfPossible", "Enabled"];
        let rp = list_path.child("recursiveReadOnly");
        if !MODES.contains(&rro.as_str()) {
            errs.push(FieldError::not_supported(&rp, rro.as_str(), MODES));
        } else if rro != "Disabled" && m.read_only != Some(true) {
            errs.push(FieldError::forbidden(
                &rp,
                "may only be specified when readOnly is true",
            ));
        }
    }
}

fn volume_devices(
    c: &Container,
    vols: &HashMap<String, VolumeKind>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mounts: BTreeMap<&str, &str> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    let mut names = BTreeSet::new();
    let mut dev_paths = BTreeSet::new();
    for (i, d) in c.volume_devices.iter().flatten().enumerate() {
        let p = path.index(i);
        let kind = vols.get(&d.name);
        if d.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if names.contains(&d.name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "must be unique",
            ));
        }
        match kind {
            Some(k) if !k.claim_backed => errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            None => errs.push(FieldError::not_found(p.child("name"), d.name.as_str())),
            _ => {}
        }
        if d.device_path.is_empty() {
            errs.push(FieldError::required(p.child("devicePath"), ""));
        }
        if dev_paths.contains(&d.device_path) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "must be unique",
            ));
        }
        if !d.device_path.is_empty() && d.device_path.split('/').any(|x| x == "..") {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "can not contain backsteps ('..')",
            ));
        } else {
            dev_paths.insert(d.device_path.clone());
        }
        if mounts.contains_key(d.name.as_str()) {
            errs.push(FieldError::invalid(
                p.child("name"),
                d.name.as_str(),
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| *m == d.device_path) {
            errs.push(FieldError::invalid(
                p.child("devicePath"),
                d.device_path.as_str(),
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !d.name.is_empty() {
            names.insert(d.name.clone());
        }
    }
}

/// Upstream's ValidateResourceRequirements: names, non-negative values, requests <= limits.
pub(crate) fn resource_requirements(r: &ResourceRequirements, path: &Path, errs: &mut ErrorList) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let (mut lim_cpu_mem, mut req_cpu_mem, mut lim_huge, mut req_huge) =
        (false, false, false, false);
    let limits = checks::resource_list(
        r.limits.as_ref(),
        &lim_path,
        checks::container_resource_name,
        errs,
    );
    for name in limits.keys() {
        lim_huge |= name.starts_with("hugepages-");
        lim_cpu_mem |= name == "cpu" || name == "memory";
    }
    for (name, q) in r.requests.iter().flatten() {
        let p = req_path.key(name);
        checks::container_resource_name(name, &p, errs);
        let Some(q) = checks::parse_quantity(q, &p, errs) else {
            continue;
        };
        checks::resource_quantity_value(name, &q, &p, errs);
        match limits.get(name) {
            Some(lim) => {
                if q != *lim && !checks::is_overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!("must be equal to {name} limit of {}", lim.canonical()),
                    ));
                } else if q > *lim {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            lim.canonical()
                        ),
                    ));
                }
            }
            None if !checks::is_overcommit_allowed(name) => errs.push(FieldError::required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
        req_huge |= name.starts_with("hugepages-");
        req_cpu_mem |= name == "cpu" || name == "memory";
    }
    if !lim_cpu_mem && !req_cpu_mem && (lim_huge || req_huge) {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    let mut claims = BTreeSet::new();
    for (i, c) in r.claims.iter().flatten().enumerate() {
        if c.name.is_empty() {
            errs.push(FieldError::required(path.child("claims").index(i), ""));
        } else if !claims.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(
                path.child("claims").index(i),
                c.name.as_str(),
            ));
        }
    }
}

fn user_or_group_id(id: i64, path: Path, errs: &mut ErrorList) {
    if !(0..=MAX_INT32).contains(&id) {
        errs.push(FieldError::invalid(path, id, inclusive_range(0, MAX_INT32)));
    }
}

fn seccomp(sp: &SeccompProfile, path: &Path, errs: &mut ErrorList) {
    const TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
    match sp.type_.as_str() {
        "" => errs.push(FieldError::required(
            path.child("type"),
            "type is required when seccompProfile is set",
        )),
        t if !TYPES.contains(&t) => {
            errs.push(FieldError::not_supported(path.child("type"), t, TYPES))
        }
        _ => {}
    }
    if sp.type_ == "Localhost" {
        match &sp.localhost_profile {
            None => errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(lp) => checks::local_descending_path(lp, &path.child("localhostProfile"), errs),
        }
    } else if sp.localhost_profile.is_some() {
        errs.push(FieldError::invalid(
            path.child("localhostProfile"),
            to_json(sp),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

fn container_security_context(
    sc: &SecurityContext,
    host_users: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(u) = sc.run_as_user {
        user_or_group_id(u, path.child("runAsUser"), errs);
    }
    if let Some(g) = sc.run_as_group {
        user_or_group_id(g, path.child("runAsGroup"), errs);
    }
    if let Some(pm) = &sc.proc_mount {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(FieldError::not_supported(
                path.child("procMount"),
                pm.as_str(),
                &["Default", "Unmasked"],
            ));
        }
        if host_users && pm == "Unmasked" {
            errs.push(FieldError::invalid(
                path.child("procMount"),
                pm.as_str(),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    if let Some(sp) = &sc.seccomp_profile {
        seccomp(sp, &path.child("seccompProfile"), errs);
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errs.push(FieldError::invalid(
                path,
                to_json(sc),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|c| c == "CAP_SYS_ADMIN"))
        {
            errs.push(FieldError::invalid(
                path,
                to_json(sc),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
}

fn resize_policy(c: &Container, restart_policy: &str, path: &Path, errs: &mut ErrorList) {
    let mut seen = BTreeSet::new();
    for (i, p) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(p.resource_name.clone()) {
            errs.push(FieldError::duplicate(
                path.index(i),
                p.resource_name.as_str(),
            ));
        }
        match p.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(path, other, &["cpu", "memory"])),
        }
        match p.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && p.restart_policy != "NotRequired" {
            errs.push(FieldError::invalid(
                path,
                p.restart_policy.as_str(),
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

/// Upstream's validateContainerCommon: what every kind of container must satisfy.
fn container_common(
    c: &Container,
    vols: &HashMap<String, VolumeKind>,
    restart_policy: &str,
    host_users: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        checks::dns_label(&c.name, &path.child("name"), errs);
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    match s(&c.termination_message_policy) {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            path.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    container_ports(c, &path.child("ports"), errs);
    env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
        errs,
    );
    env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
        errs,
    );
    volume_mounts(c, vols, &path.child("volumeMounts"), errs);
    volume_devices(c, vols, &path.child("volumeDevices"), errs);
    match s(&c.image_pull_policy) {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = &c.resources {
        resource_requirements(r, &path.child("resources"), errs);
    }
    resize_policy(c, restart_policy, &path.child("resizePolicy"), errs);
    if let Some(sc) = &c.security_context {
        container_security_context(sc, host_users, &path.child("securityContext"), errs);
    }
}

fn http_get(h: &HTTPGetAction, path: &Path, errs: &mut ErrorList) {
    if s(&h.path).is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    checks::port_num_or_name(&h.port, &path.child("port"), errs);
    let scheme = s(&h.scheme);
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(FieldError::not_supported(
            path.child("scheme"),
            scheme,
            &["HTTP", "HTTPS"],
        ));
    }
    for header in h.http_headers.iter().flatten() {
        for m in checks::http_header_name(&header.name) {
            errs.push(FieldError::invalid(
                path.child("httpHeaders"),
                header.name.as_str(),
                m,
            ));
        }
    }
}

/// The handler kinds of a probe or lifecycle hook, in upstream's order.
struct Handler<'a> {
    exec: Option<&'a k8s_openapi::api::core::v1::ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&'a k8s_openapi::api::core::v1::GRPCAction>,
    sleep: Option<&'a k8s_openapi::api::core::v1::SleepAction>,
}

fn handler(h: Handler<'_>, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    let mut n = 0;
    let mut one = |name: &str, errs: &mut ErrorList| -> bool {
        if n > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 handler type",
            ));
            false
        } else {
            n += 1;
            true
        }
    };
    if let Some(e) = h.exec {
        if one("exec", errs) && e.command.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(g) = h.http_get {
        if one("httpGet", errs) {
            http_get(g, &path.child("httpGet"), errs);
        }
    }
    if let Some(t) = h.tcp_socket {
        if one("tcpSocket", errs) {
            checks::port_num_or_name(&t.port, &path.child("tcpSocket").child("port"), errs);
        }
    }
    if let Some(g) = h.grpc {
        if one("grpc", errs) {
            checks::port_num_or_name(
                &IntOrString::Int(g.port),
                &path.child("grpc").child("port"),
                errs,
            );
        }
    }
    if let Some(sl) = h.sleep {
        if one("sleep", errs) {
            let g = grace.unwrap_or(30);
            if sl.seconds <= 0 || sl.seconds > g {
                errs.push(FieldError::invalid(
                    path.child("sleep"),
                    sl.seconds,
                    format!(
                        "must be greater than 0 and less than terminationGracePeriodSeconds ({g})"
                    ),
                ));
            }
        }
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
}

fn probe(p: &Probe, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    handler(
        Handler {
            exec: p.exec.as_ref(),
            http_get: p.http_get.as_ref(),
            tcp_socket: p.tcp_socket.as_ref(),
            grpc: p.grpc.as_ref(),
            sleep: None,
        },
        grace,
        path,
        errs,
    );
    for (v, name) in [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ] {
        checks::non_negative(i64::from(v.unwrap_or(0)), &path.child(name), errs);
    }
    if let Some(t) = p.termination_grace_period_seconds.filter(|t| *t <= 0) {
        errs.push(FieldError::invalid(
            path.child("terminationGracePeriodSeconds"),
            t,
            "must be greater than 0",
        ));
    }
}

fn lifecycle_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h.exec.as_ref(),
        http_get: h.http_get.as_ref(),
        tcp_socket: h.tcp_socket.as_ref(),
        grpc: None,
        sleep: h.sleep.as_ref(),
    }
}

fn lifecycle(l: &Lifecycle, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    if let Some(h) = &l.post_start {
        handler(lifecycle_handler(h), grace, &path.child("postStart"), errs);
    }
    if let Some(h) = &l.pre_stop {
        handler(lifecycle_handler(h), grace, &path.child("preStop"), errs);
    }
}

fn probes_and_lifecycle(c: &Container, grace: Option<i64>, path: &Path, errs: &mut ErrorList) {
    if let Some(l) = &c.lifecycle {
        lifecycle(l, grace, &path.child("lifecycle"), errs);
    }
    if let Some(p) = &c.liveness_probe {
        let lp = path.child("livenessProbe");
        probe(p, grace, &lp, errs);
        if p.success_threshold.unwrap_or(0) != 1 {
            errs.push(FieldError::invalid(
                lp.child("successThreshold"),
                p.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
    if let Some(p) = &c.readiness_probe {
        let rp = path.child("readinessProbe");
        probe(p, grace, &rp, errs);
        if let Some(t) = p.termination_grace_period_seconds {
            errs.push(FieldError::invalid(
                rp.child("terminationGracePeriodSeconds"),
                t,
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(p) = &c.startup_probe {
        let sp = path.child("startupProbe");
        probe(p, grace, &sp, errs);
        if p.success_threshold.unwrap_or(0) != 1 {
            errs.push(FieldError::invalid(
                sp.child("successThreshold"),
                p.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
    }
}

fn host_port_conflicts(containers: &[&Container], path: &Path, errs: &mut ErrorList) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{hp}", s(&p.protocol), s(&p.host_ip));
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

struct PodContext<'a> {
    vols: &'a HashMap<String, VolumeKind>,
    grace: Option<i64>,
    restart_policy: &'a str,
    host_users: bool,
}

fn containers(list: &[Container], ctx: &PodContext<'_>, path: &Path, errs: &mut ErrorList) {
    if list.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        container_common(c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        }
        probes_and_lifecycle(c, ctx.grace, &p, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    let refs: Vec<&Container> = list.iter().collect();
    host_port_conflicts(&refs, path, errs);
}

fn init_containers(
    list: &[Container],
    regular: &[Container],
    ctx: &PodContext<'_>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mut names: BTreeSet<String> = regular.iter().map(|c| c.name.clone()).collect();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        container_common(c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        let mut restart_always = false;
        if let Some(rp) = &c.restart_policy {
            if rp == "Always" {
                restart_always = true;
            } else {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    rp.as_str(),
                    &["Always"],
                ));
            }
        }
        if names.contains(&c.name) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        } else if !c.name.is_empty() {
            names.insert(c.name.clone());
        }
        host_port_conflicts(&[c], path, errs);
        if restart_always {
            probes_and_lifecycle(c, ctx.grace, &p, errs);
        } else {
            for (set, name) in [
                (c.lifecycle.is_some(), "lifecycle"),
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        p.child(name),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
        if !c.resize_policy.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::invalid(
                p.child("resizePolicy"),
                to_json(&c.resize_policy),
                "must not be set for init containers",
            ));
        }
    }
}

fn as_container(ec: &EphemeralContainer) -> Container {
    serde_json::to_value(ec)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

fn ephemeral_containers(spec: &PodSpec, ctx: &PodContext<'_>, path: &Path, errs: &mut ErrorList) {
    let list = spec.ephemeral_containers.as_deref().unwrap_or_default();
    if list.is_empty() {
        return;
    }
    let others: BTreeSet<String> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect();
    let mut all = others.clone();
    for (i, ec) in list.iter().enumerate() {
        let p = path.index(i);
        let c = as_container(ec);
        container_common(&c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        image_whitespace(&c, &p, errs);
        if !all.insert(ec.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), ec.name.as_str()));
        }
        if let Some(t) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            if !others.contains(t) {
                errs.push(FieldError::not_found(p.child("targetContainerName"), t));
            }
        }
        for (set, name) in [
            (ec.ports.is_some(), "ports"),
            (
                ec.resources
                    .as_ref()
                    .is_some_and(|r| to_json(r) != json!({})),
                "resources",
            ),
            (ec.liveness_probe.is_some(), "livenessProbe"),
            (ec.readiness_probe.is_some(), "readinessProbe"),
            (ec.startup_probe.is_some(), "startupProbe"),
            (ec.lifecycle.is_some(), "lifecycle"),
            (ec.resize_policy.is_some(), "resizePolicy"),
            (ec.restart_policy.is_some(), "restartPolicy"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    p.child(name),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, vm) in ec.volume_mounts.iter().flatten().enumerate() {
            let vp = p.child("volumeMounts").index(j);
            if !s(&vm.sub_path).is_empty() {
                errs.push(FieldError::forbidden(
                    vp.child("subPath"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
            if !s(&vm.sub_path_expr).is_empty() {
                errs.push(FieldError::forbidden(
                    vp.child("subPathExpr"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
}

/// Pod-only check (templates may carry padded images): no whitespace around the image.
pub(crate) fn image_whitespace(c: &Container, path: &Path, errs: &mut ErrorList) {
    let image = s(&c.image);
    if image.len() != image.trim().len() {
        errs.push(FieldError::invalid(
            path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
}

// ---- scheduling --------------------------------------------------------------------------------

/// Upstream's ValidateTolerations.
pub(crate) fn tolerations(list: &[Toleration], path: &Path, errs: &mut ErrorList) {
    for (i, t) in list.iter().enumerate() {
        let p = path.index(i);
        let key = s(&t.key);
        let op = s(&t.operator);
        let effect = s(&t.effect);
        if !key.is_empty() {
            checks::label_name(key, &p.child("key"), errs);
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = label_value(s(&t.value));
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        s(&t.value),
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !s(&t.value).is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        to_json(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            taint_effect(effect, &p.child("effect"), errs);
        }
    }
}

/// Upstream's validateTaintEffect for a non-empty effect.
pub(crate) fn taint_effect(effect: &str, path: &Path, errs: &mut ErrorList) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errs.push(FieldError::not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
}

fn node_selector_term(term: &NodeSelectorTerm, path: &Path, errs: &mut ErrorList) {
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => errs.push(FieldError::required(
                p.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        checks::label_name(&req.key, &p.child("key"), errs);
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        if req.key != "metadata.name" {
            errs.push(FieldError::invalid(
                p.child("key"),
                req.key.as_str(),
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in values.iter().enumerate() {
                checks::dns_subdomain(v, &p.child("values").index(k), errs);
            }
        }
    }
}

fn node_selector(ns: &NodeSelector, path: &Path, errs: &mut ErrorList) {
    let tp = path.child("nodeSelectorTerms");
    if ns.node_selector_terms.is_empty() {
        errs.push(FieldError::required(
            tp,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, t) in ns.node_selector_terms.iter().enumerate() {
        node_selector_term(t, &tp.index(i), errs);
    }
}

fn pod_affinity_term(t: &PodAffinityTerm, path: &Path, errs: &mut ErrorList) {
    if let Some(sel) = &t.label_selector {
        checks::label_selector(sel, &path.child("labelSelector"), errs);
    }
    if let Some(sel) = &t.namespace_selector {
        checks::label_selector(sel, &path.child("namespaceSelector"), errs);
    }
    for ns in t.namespaces.iter().flatten() {
        checks::dns_label(ns, &path.child("namespace"), errs);
    }
    if t.topology_key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey"),
            "can not be empty",
        ));
    }
    checks::label_name(&t.topology_key, &path.child("topologyKey"), errs);
}

fn affinity(a: &Affinity, path: &Path, errs: &mut ErrorList) {
    if let Some(na) = &a.node_affinity {
        let p = path.child("nodeAffinity");
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            node_selector(
                req,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution"),
                errs,
            );
        }
        let pp = p.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            if t.weight <= 0 || t.weight > 100 {
                errs.push(FieldError::invalid(
                    pp.index(i).child("weight"),
                    t.weight,
                    "must be in the range 1-100",
                ));
            }
            node_selector_term(&t.preference, &pp.index(i).child("preference"), errs);
        }
    }
    let pods = [
        (
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
            "podAffinity",
        ),
        (
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
            "podAntiAffinity",
        ),
    ];
    for (terms, name) in pods {
        let Some((required, preferred)) = terms else {
            continue;
        };
        let p = path.child(name);
        let rp = p.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in required.iter().flatten().enumerate() {
            pod_affinity_term(t, &rp.index(i), errs);
        }
        let pp = p.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in preferred.iter().flatten().enumerate() {
            if t.weight <= 0 || t.weight > 100 {
                errs.push(FieldError::invalid(
                    pp.index(i).child("weight"),
                    t.weight,
                    "must be in the range 1-100",
                ));
            }
            pod_affinity_term(
                &t.pod_affinity_term,
                &pp.index(i).child("podAffinityTerm"),
                errs,
            );
        }
    }
}

fn topology_spread(list: &[TopologySpreadConstraint], path: &Path, errs: &mut ErrorList) {
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                p.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        }
        if !matches!(
            c.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                c.when_unsatisfiable.as_str(),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if list[i + 1..].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        }) {
            errs.push(FieldError::duplicate(
                p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        if let Some(md) = c.min_domains {
            if md <= 0 {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    md,
                    "must be greater than zero",
                ));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    md,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                ));
            }
        }
        for (policy, name) in [
            (&c.node_affinity_policy, "nodeAffinityPolicy"),
            (&c.node_taints_policy, "nodeTaintsPolicy"),
        ] {
            if let Some(pol) = policy {
                if pol != "Honor" && pol != "Ignore" {
                    errs.push(FieldError::not_supported(
                        p.child(name),
                        pol.as_str(),
                        &["Honor", "Ignore"],
                    ));
                }
            }
        }
        if let Some(sel) = &c.label_selector {
            checks::label_selector(sel, &p.child("labelSelector"), errs);
        }
    }
}

fn dns_config(cfg: Option<&PodDNSConfig>, policy: &str, path: &Path, errs: &mut ErrorList) {
    if policy == "None" {
        match cfg {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if c.nameservers.as_deref().unwrap_or_default().is_empty() => {
                errs.push(FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(c) = cfg else { return };
    let ns = c.nameservers.as_deref().unwrap_or_default();
    if ns.len() > 3 {
        errs.push(FieldError::invalid(
            path.child("nameservers"),
            to_json(&ns),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        checks::valid_ip(n, &path.child("nameservers").index(i), errs);
    }
    let searches = c.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            to_json(&searches),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            to_json(&searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, sp) in searches.iter().enumerate() {
        checks::dns_subdomain(
            sp.strip_suffix('.').unwrap_or(sp),
            &path.child("searches").index(i),
            errs,
        );
    }
    for (i, o) in c.options.iter().flatten().enumerate() {
        if s(&o.name).is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}

fn pod_security_context(
    sc: &PodSecurityContext,
    spec: &PodSpec,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(g) = sc.fs_group {
        user_or_group_id(g, path.child("fsGroup"), errs);
    }
    if let Some(u) = sc.run_as_user {
        user_or_group_id(u, path.child("runAsUser"), errs);
    }
    if let Some(g) = sc.run_as_group {
        user_or_group_id(g, path.child("runAsGroup"), errs);
    }
    for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
        user_or_group_id(*g, path.child("supplementalGroups").index(i), errs);
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let p = path.child("sysctls").index(i);
        if sysctl.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !sysctl_name_ok(&sysctl.name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                sysctl.name.as_str(),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        }
        if !names.insert(sysctl.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), sysctl.name.as_str()));
        }
    }
    if let Some(p) = &sc.fs_group_change_policy {
        if p != "Always" && p != "OnRootMismatch" {
            errs.push(FieldError::not_supported(
                path.child("fsGroupChangePolicy"),
                p.as_str(),
                &["Always", "OnRootMismatch"],
            ));
        }
    }
    if let Some(sp) = &sc.seccomp_profile {
        seccomp(sp, &path.child("seccompProfile"), errs);
    }
}

fn sysctl_name_ok(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    name.split(['.', '/']).all(|seg| {
        let b = seg.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    })
}

/// Upstream's ValidatePodSpec.
pub(crate) fn validate_spec(
    spec: &PodSpec,
    meta: Option<&ObjectMeta>,
    path: &Path,
    opts: Options,
    errs: &mut ErrorList,
) {
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let host_users = spec.host_users.unwrap_or(true);
    let pod_name = meta.and_then(|m| m.name.as_deref());
    let vols = volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        pod_name,
        &path.child("volumes"),
        errs,
    );
    let mut claims = BTreeSet::new();
    for (i, c) in spec.resource_claims.iter().flatten().enumerate() {
        let p = path.child("resourceClaims").index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !claims.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        } else {
            checks::dns_label(&c.name, &p.child("name"), errs);
        }
    }
    let restart_policy = s(&spec.restart_policy);
    let ctx = PodContext {
        vols: &vols,
        grace: spec.termination_grace_period_seconds,
        restart_policy,
        host_users,
    };
    containers(&spec.containers, &ctx, &path.child("containers"), errs);
    init_containers(
        spec.init_containers.as_deref().unwrap_or_default(),
        &spec.containers,
        &ctx,
        &path.child("initContainers"),
        errs,
    );
    ephemeral_containers(spec, &ctx, &path.child("ephemeralContainers"), errs);
    if spec.host_network == Some(true) {
        let cp = path.child("containers");
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, port) in c.ports.iter().flatten().enumerate() {
                let hp = port.host_port.unwrap_or(0);
                if (opts.resource_is_pod || hp != 0) && hp != port.container_port {
                    errs.push(FieldError::invalid(
                        cp.index(i).child("ports").index(j).child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = s(&spec.dns_policy);
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path.child("dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(ns) = &spec.node_selector {
        validate_labels(ns, &path.child("nodeSelector"), errs);
    }
    if let Some(sc) = &spec.security_context {
        pod_security_context(sc, spec, &path.child("securityContext"), errs);
    }
    if let Some(a) = &spec.affinity {
        affinity(a, &path.child("affinity"), errs);
    }
    dns_config(
        spec.dns_config.as_ref(),
        dns_policy,
        &path.child("dnsConfig"),
        errs,
    );
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        checks::qualified(
            &g.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
            errs,
        );
    }
    let mut gates = BTreeSet::new();
    for (i, g) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        checks::qualified(&g.name, &p, errs);
        if !gates.insert(g.name.clone()) {
            errs.push(FieldError::duplicate(&p, g.name.as_str()));
        }
    }
    topology_spread(
        spec.topology_spread_constraints
            .as_deref()
            .unwrap_or_default(),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    if spec.host_users == Some(false) {
        for (set, name) in [
            (spec.host_network == Some(true), "hostNetwork"),
            (spec.host_pid == Some(true), "HostPID"),
            (spec.host_ipc == Some(true), "HostIPC"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    path.child(name),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for (value, name) in [
        (&spec.service_account_name, "serviceAccountName"),
        (&spec.node_name, "nodeName"),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            checks::dns_subdomain(v, &path.child(name), errs);
        }
    }
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=MAX_INT32).contains(&ads) {
            errs.push(FieldError::invalid(
                path.child("activeDeadlineSeconds"),
                ads,
                inclusive_range(1, MAX_INT32),
            ));
        }
    }
    for (value, name) in [(&spec.hostname, "hostname"), (&spec.subdomain, "subdomain")] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            checks::dns_label(v, &path.child(name), errs);
        }
    }
    if let Some(t) = spec.tolerations.as_deref().filter(|t| !t.is_empty()) {
        tolerations(t, &path.child("tolerations"), errs);
    }
    for (i, ha) in spec.host_aliases.iter().flatten().enumerate() {
        let p = path.child("hostAliases").index(i);
        checks::valid_ip(&ha.ip, &p.child("ip"), errs);
        for (j, h) in ha.hostnames.iter().flatten().enumerate() {
            checks::dns_subdomain(h, &p.child("hostnames").index(j), errs);
        }
    }
    if let Some(pc) = spec
        .priority_class_name
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        checks::dns_subdomain(pc, &path.child("priorityClassName"), errs);
    }
    if let Some(rc) = &spec.runtime_class_name {
        checks::dns_subdomain(rc, &path.child("runtimeClassName"), errs);
    }
    if let Some(pp) = &spec.preemption_policy {
        match pp.as_str() {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(path.child("preemptionPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(o) = &spec.overhead {
        let r = ResourceRequirements {
            limits: Some(o.clone()),
            ..Default::default()
        };
        resource_requirements(&r, &path.child("overhead"), errs);
    }
    if let Some(os) = &spec.os {
        let p = path.child("os").child("name");
        if os.name.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else if os.name != "linux" && os.name != "windows" {
            errs.push(FieldError::not_supported(
                p,
                os.name.as_str(),
                &["linux", "windows"],
            ));
        }
    }
}

/// Upstream's ValidatePodTemplateSpec body: labels, annotations, spec, no ephemeral containers.
pub(crate) fn validate_template(
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    path: &Path,
    errs: &mut ErrorList,
) {
    let meta = template.metadata.clone().unwrap_or_default();
    if let Some(l) = &meta.labels {
        validate_labels(l, &path.child("labels"), errs);
    }
    if let Some(a) = &meta.annotations {
        validate_annotations(a, &path.child("annotations"), errs);
        pod_annotations(a, template.spec.as_ref(), &path.child("annotations"), errs);
    }
    let spec = template.spec.clone().unwrap_or_default();
    validate_spec(&spec, None, &path.child("spec"), Options::default(), errs);
    if !spec
        .ephemeral_containers
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// Upstream's ValidatePodSpecificAnnotations (mirror pods, deletion cost).
pub(crate) fn pod_annotations(
    annotations: &BTreeMap<String, String>,
    spec: Option<&PodSpec>,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(v) = annotations.get("kubernetes.io/config.mirror") {
        if spec
            .map(|s| s.node_name.as_deref().unwrap_or(""))
            .unwrap_or("")
            .is_empty()
        {
            errs.push(FieldError::invalid(
                path.key("kubernetes.io/config.mirror"),
                v.as_str(),
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
    if let Some(v) = annotations.get("controller.kubernetes.io/pod-deletion-cost") {
        if v.parse::<i32>().is_err() {
            errs.push(FieldError::invalid(
                path.key("controller.kubernetes.io/pod-deletion-cost"),
                v.as_str(),
                "must be a 32bit integer",
            ));
        }
    }
}

/// The parsed requests and limits summed for QoS; shared with the Pod kind.
pub(crate) fn parsed(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, Quantity> {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| quantity::parse(v).ok().map(|q| (k.clone(), q)))
        .collect()
}
