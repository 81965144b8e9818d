//! PersistentVolumes and PersistentVolumeClaims: upstream's defaults (Retain, Filesystem,
//! Pending), spec validation and update rules, and their `kubectl get` columns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::quantity::{self, canonicalize_opt_list};
use super::{age_cell, checks, s};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::pod_spec;
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// PV source fields in upstream's order of checking.
const PV_SOURCES: &[(&str, &str)] = &[
    ("hostPath", "hostPath"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("nfs", "nfs"),
    ("rbd", "rbd"),
    ("quobyte", "quobyte"),
    ("cephfs", "cephFS"),
    ("iscsi", "iscsi"),
    ("cinder", "cinder"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("scaleIO", "scaleIO"),
    ("local", "local"),
    ("storageos", "storageos"),
    ("csi", "csi"),
];

/// The volume source part of a PV spec, as JSON (what upstream calls PersistentVolumeSource).
fn pv_source(spec: &PersistentVolumeSpec) -> serde_json::Map<String, Value> {
    let v = serde_json::to_value(spec).unwrap_or(Value::Null);
    PV_SOURCES
        .iter()
        .filter_map(|(k, _)| v.get(*k).map(|x| (k.to_string(), x.clone())))
        .collect()
}

fn access_modes_string(modes: &[String]) -> String {
    let mut out = Vec::new();
    for (mode, short) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m == mode) {
            out.push(short);
        }
    }
    out.join(",")
}

fn storage_class(meta: &ObjectMeta, spec_class: Option<&str>) -> String {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(STORAGE_CLASS_ANNOTATION))
        .map(String::as_str)
        .or(spec_class)
        .unwrap_or("")
        .to_string()
}

fn now_seconds() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn validate_pv_spec(spec: &PersistentVolumeSpec, errs: &mut ErrorList) {
    let sp = Path::new("spec");
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.is_empty() {
        errs.push(FieldError::required(sp.child("accessModes"), ""));
    }
    pod_spec::check_access_modes(&modes, &sp.child("accessModes"), errs);
    let capacity = spec.capacity.clone().unwrap_or_default();
    if capacity.is_empty() {
        errs.push(FieldError::required(sp.child("capacity"), ""));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        errs.push(FieldError::not_supported(
            sp.child("capacity"),
            serde_json::to_value(&capacity).unwrap_or(Value::Null),
            &["storage"],
        ));
    }
    for (k, v) in &capacity {
        let p = sp.child("capacity").key(k);
        if let Some(q) = checks::parse_quantity(v, &p, errs) {
            if q.is_negative() {
                errs.push(FieldError::invalid(
                    &p,
                    q.value().to_string(),
                    "must be a valid resource quantity",
                ));
            }
            if q.is_negative() || q.is_zero() {
                errs.push(FieldError::invalid(
                    &p,
                    q.canonical(),
                    "must be greater than zero",
                ));
            }
        }
    }
    if let Some(p) = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        const POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
        if !POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                sp.child("persistentVolumeReclaimPolicy"),
                p,
                POLICIES,
            ));
        }
    }
    let mut node_affinity_ok = false;
    if let Some(na) = &spec.node_affinity {
        let p = sp.child("nodeAffinity");
        match &na.required {
            None => errs.push(FieldError::required(
                p.child("required"),
                "must specify required node constraints",
            )),
            Some(req) => {
                node_affinity_ok = true;
                let tp = p.child("required").child("nodeSelectorTerms");
                if req.node_selector_terms.is_empty() {
                    errs.push(FieldError::required(
                        tp,
                        "must have at least one node selector term",
                    ));
                }
            }
        }
    }
    let source = pv_source(spec);
    let mut count = 0;
    for (key, name) in PV_SOURCES {
        if !source.contains_key(*key) {
            continue;
        }
        if count > 0 && *key != "flexVolume" {
            errs.push(FieldError::forbidden(
                sp.child(name),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let p = sp.child(name);
        match *key {
            "hostPath" => {
                if let Some(h) = &spec.host_path {
                    pod_spec::host_path(h, &p, errs);
                }
            }
            "nfs" => {
                if let Some(n) = &spec.nfs {
                    pod_spec::nfs(n, &p, errs);
                }
            }
            "local" => {
                if let Some(l) = &spec.local {
                    if l.path.is_empty() {
                        errs.push(FieldError::required(p.child("path"), ""));
                    } else {
                        checks::path_no_backsteps(&l.path, &p.child("path"), errs);
                    }
                }
                if !node_affinity_ok {
                    errs.push(FieldError::required(
                        sp.child("nodeAffinity"),
                        "Local volume requires node affinity",
                    ));
                }
            }
            "csi" => {
                if let Some(c) = &spec.csi {
                    if c.driver.is_empty() {
                        errs.push(FieldError::required(p.child("driver"), ""));
                    }
                    if c.volume_handle.is_empty() {
                        errs.push(FieldError::required(p.child("volumeHandle"), ""));
                    }
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(&sp, "must specify a volume type"));
    }
    if spec
        .host_path
        .as_ref()
        .is_some_and(|h| h.path.trim_end_matches('/').is_empty() && !h.path.is_empty())
        && s(&spec.persistent_volume_reclaim_policy) == "Recycle"
    {
        errs.push(FieldError::forbidden(
            sp.child("persistentVolumeReclaimPolicy"),
            "may not be 'recycle' for a hostPath mount of '/'",
        ));
    }
    if let Some(c) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        checks::dns_subdomain(c, &sp.child("storageClassName"), errs);
    }
    if let Some(vm) = &spec.volume_mode {
        if vm != "Block" && vm != "Filesystem" {
            errs.push(FieldError::not_supported(
                sp.child("volumeMode"),
                vm.as_str(),
                &["Block", "Filesystem"],
            ));
        }
    }
}

/// The line-by-line difference of two JSON objects, for immutability errors.
fn json_diff(kind: &str, old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = format!("  {kind}{{\n");
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a != b {
            if let Some(a) = a {
                out.push_str(&format!("- \t{k}: {a},\n"));
            }
            if let Some(b) = b {
                out.push_str(&format!("+ \t{k}: {b},\n"));
            }
        }
    }
    out.push_str("  }\n");
    out
}

static PV_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    Column::new("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    Column::new("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    Column::new("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    Column::new("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    Column::new("StorageClass", "string", "StorageClass of the pv"),
    Column::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    Column::new("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    Column::age(),
    Column::new("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.").wide(),
];

impl KindHooks for PersistentVolume {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if s(&spec.persistent_volume_reclaim_policy).is_empty() {
            spec.persistent_volume_reclaim_policy = Some("Retain".to_string());
        }
        if spec.volume_mode.is_none() {
            spec.volume_mode = Some("Filesystem".to_string());
        }
        canonicalize_opt_list(&mut spec.capacity);
        if let Some(h) = spec.host_path.as_mut() {
            h.type_.get_or_insert_with(String::new);
        }
        if let Some(r) = spec.rbd.as_mut() {
            for (slot, v) in [
                (&mut r.pool, "rbd"),
                (&mut r.user, "admin"),
                (&mut r.keyring, "/etc/ceph/keyring"),
            ] {
                if s(slot).is_empty() {
                    *slot = Some(v.to_string());
                }
            }
        }
        if let Some(i) = spec.iscsi.as_mut() {
            if s(&i.iscsi_interface).is_empty() {
                i.iscsi_interface = Some("default".to_string());
            }
        }
        let status = self.status.get_or_insert_with(Default::default);
        if s(&status.phase).is_empty() {
            status.phase = Some("Pending".to_string());
        }
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(PersistentVolumeStatus {
            phase: Some("Pending".to_string()),
            last_phase_transition_time: Some(now_seconds()),
            ..Default::default()
        });
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_pv_spec(&self.spec.clone().unwrap_or_default(), errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let (new_spec, old_spec) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let mut new_src = pv_source(&new_spec);
        let old_src = pv_source(&old_spec);
        // Setting controllerExpandSecretRef on a CSI volume that had none is allowed.
        let old_has_ref = old_spec
            .csi
            .as_ref()
            .is_some_and(|c| c.controller_expand_secret_ref.is_some());
        if !old_has_ref {
            if let Some(Value::Object(csi)) = new_src.get_mut("csi") {
                csi.remove("controllerExpandSecretRef");
            }
        }
        if new_src != old_src {
            let diff = json_diff(
                "core.PersistentVolumeSource",
                &Value::Object(old_src),
                &Value::Object(new_src),
            );
            errs.push(FieldError::forbidden(
                Path::new("spec").child("persistentvolumesource"),
                format!("spec.persistentvolumesource is immutable after creation\n{diff}"),
            ));
        }
        crate::validation::immutable_field(
            &new_spec.volume_mode,
            &old_spec.volume_mode,
            "volumeMode",
            errs,
        );
        if old_spec.node_affinity.is_some() && new_spec.node_affinity != old_spec.node_affinity {
            crate::validation::immutable_field(
                &new_spec.node_affinity,
                &old_spec.node_affinity,
                "nodeAffinity",
                errs,
            );
        }
    }

    fn columns() -> &'static [Column] {
        PV_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let claim = spec
            .claim_ref
            .as_ref()
            .map(|c| format!("{}/{}", s(&c.namespace), s(&c.name)))
            .unwrap_or_default();
        let size = spec
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(quantity::display)
            .unwrap_or_else(|| "0".to_string());
        let phase = if self.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            s(&status.phase).to_string()
        };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(size),
            json!(access_modes_string(
                spec.access_modes.as_deref().unwrap_or_default()
            )),
            json!(s(&spec.persistent_volume_reclaim_policy)),
            json!(phase),
            json!(claim),
            json!(storage_class(
                &self.metadata,
                spec.storage_class_name.as_deref()
            )),
            json!(spec
                .volume_attributes_class_name
                .clone()
                .unwrap_or_else(|| "<unset>".to_string())),
            json!(s(&status.reason)),
            age_cell(&self.metadata, ctx),
            json!(spec
                .volume_mode
                .clone()
                .unwrap_or_else(|| "<unset>".to_string())),
        ]
    }
}

static PVC_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    Column::new(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    Column::new(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    Column::new(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    Column::new("StorageClass", "string", "StorageClass of the pvc"),
    Column::new(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    Column::age(),
    Column::new(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    )
    .wide(),
];

impl KindHooks for PersistentVolumeClaim {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        pod_spec::default_pvc_spec(spec);
        let status = self.status.get_or_insert_with(Default::default);
        if s(&status.phase).is_empty() {
            status.phase = Some("Pending".to_string());
        }
        canonicalize_opt_list(&mut status.capacity);
        canonicalize_opt_list(&mut status.allocated_resources);
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".to_string()),
            ..Default::default()
        });
    }

    fn validate(&self, errs: &mut ErrorList) {
        pod_spec::validate_pvc_spec(
            &self.spec.clone().unwrap_or_default(),
            &Path::new("spec"),
            errs,
        );
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let mut new_clone = new_spec.clone();
        let mut old_clone = old_spec.clone();
        if s(&old_spec.volume_name).is_empty() {
            old_clone.volume_name = new_clone.volume_name.clone();
        }
        let old_ann = old.metadata.annotations.clone().unwrap_or_default();
        let new_ann = self.metadata.annotations.clone().unwrap_or_default();
        let old_sc_ann = old_ann.get(STORAGE_CLASS_ANNOTATION);
        let upgrade = old_sc_ann.is_some()
            && old_spec.storage_class_name.is_none()
            && new_spec.storage_class_name.as_ref() == old_sc_ann
            && new_ann
                .get(STORAGE_CLASS_ANNOTATION)
                .is_none_or(|v| Some(v) == old_sc_ann);
        if upgrade {
            new_clone.storage_class_name = None;
        } else {
            let (n, o) = (
                new_ann
                    .get(STORAGE_CLASS_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                old_ann
                    .get(STORAGE_CLASS_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
            );
            if n != o {
                errs.push(FieldError::invalid(
                    Path::new("metadata")
                        .child("annotations")
                        .child(STORAGE_CLASS_ANNOTATION),
                    n,
                    "field is immutable",
                ));
            }
            if new_spec.storage_class_name.is_some()
                && old_spec.storage_class_name.is_none()
                && old_sc_ann.is_none_or(|a| Some(a) == new_spec.storage_class_name.as_ref())
            {
                new_clone.storage_class_name = old_clone.storage_class_name.clone();
            }
        }
        let bound = self.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Bound");
        let storage_of = |spec: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| {
            spec.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .cloned()
        };
        if bound {
            if let Some(req) = new_clone
                .resources
                .as_mut()
                .and_then(|r| r.requests.as_mut())
            {
                match storage_of(&old_spec) {
                    Some(q) => {
                        req.insert("storage".to_string(), q);
                    }
                    None => {
                        req.remove("storage");
                    }
                }
            }
        }
        new_clone.volume_attributes_class_name = old_clone.volume_attributes_class_name.clone();
        if new_clone != old_clone {
            let diff = json_diff(
                "core.PersistentVolumeClaimSpec",
                &serde_json::to_value(&old_clone).unwrap_or(Value::Null),
                &serde_json::to_value(&new_clone).unwrap_or(Value::Null),
            );
            errs.push(FieldError::forbidden(
                "spec",
                format!("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{diff}"),
            ));
        }
        let parse = |q: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>| {
            q.and_then(|q| quantity::parse(&q).ok())
                .unwrap_or(quantity::Quantity::ZERO)
        };
        if parse(storage_of(&new_spec)) < parse(storage_of(&old_spec)) {
            errs.push(FieldError::forbidden(
                Path::new("spec")
                    .child("resources")
                    .child("requests")
                    .child("storage"),
                "field can not be less than previous value",
            ));
        }
        crate::validation::immutable_field(
            &new_spec.volume_mode,
            &old_spec.volume_mode,
            "volumeMode",
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        PVC_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let phase = if self.metadata.deletion_timestamp.is_some() {
            "Terminating".to_string()
        } else {
            s(&status.phase).to_string()
        };
        let volume = s(&spec.volume_name).to_string();
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            let cap: BTreeMap<_, _> = status.capacity.clone().unwrap_or_default();
            (
                cap.get("storage")
                    .map(quantity::display)
                    .unwrap_or_else(|| "0".to_string()),
                access_modes_string(status.access_modes.as_deref().unwrap_or_default()),
            )
        };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(phase),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(storage_class(
                &self.metadata,
                spec.storage_class_name.as_deref()
            )),
            json!(spec
                .volume_attributes_class_name
                .clone()
                .unwrap_or_else(|| "<unset>".to_string())),
            age_cell(&self.metadata, ctx),
            json!(spec
                .volume_mode
                .clone()
                .unwrap_or_else(|| "<unset>".to_string())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Strategy, Typed};

    /// Field paths and details of what `validate` finds in `obj` after defaulting.
    fn problems(st: &dyn Strategy, obj: Value) -> Vec<String> {
        let mut unknown = Vec::new();
        let mut obj = st.decode(obj, &mut unknown).expect("decodes");
        st.apply_defaults(&mut obj);
        let mut errs = Vec::new();
        st.validate(&obj, &mut errs);
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn nfs_sources_need_a_server_and_an_absolute_path_in_volumes_and_pvs() {
        let pv = |nfs: Value| {
            json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"], "nfs": nfs}})
        };
        let pod = |nfs: Value| {
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "v", "nfs": nfs}]}})
        };
        let pv_st: &dyn Strategy = &Typed::<PersistentVolume>::NEW;
        let pod_st: &dyn Strategy = &Typed::<k8s_openapi::api::core::v1::Pod>::NEW;
        let good = json!({"server": "nfs.local", "path": "/exports"});
        assert_eq!(problems(pv_st, pv(good.clone())), Vec::<String>::new());
        assert_eq!(problems(pod_st, pod(good)), Vec::<String>::new());
        let bad = json!({"server": "", "path": "exports"});
        assert_eq!(
            problems(pv_st, pv(bad.clone())),
            [
                "spec.nfs.server: ",
                "spec.nfs.path: must be an absolute path"
            ]
        );
        assert_eq!(
            problems(pod_st, pod(bad)),
            [
                "spec.volumes[0].nfs.server: ",
                "spec.volumes[0].nfs.path: must be an absolute path"
            ]
        );
    }

    #[test]
    fn a_host_path_pv_is_defaulted_and_printed() {
        let st: &dyn Strategy = &Typed::<PersistentVolume>::NEW;
        let mut unknown = Vec::new();
        let mut obj = st
            .decode(
                json!({"metadata": {"name": "pv1", "creationTimestamp": "2024-01-01T00:00:00Z"},
                    "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "hostPath": {"path": "/data"}, "storageClassName": "manual"}}),
                &mut unknown,
            )
            .expect("pv");
        st.apply_defaults(&mut obj);
        obj["status"] = json!({});
        st.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(obj["spec"]["volumeMode"], "Filesystem");
        assert_eq!(obj["spec"]["capacity"], json!({"storage": "1Gi"}));
        assert_eq!(
            obj["spec"]["hostPath"],
            json!({"path": "/data", "type": ""})
        );
        assert_eq!(obj["status"]["phase"], "Pending");
        let mut errs = Vec::new();
        st.validate(&obj, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        let ctx = RowContext {
            now: "2024-01-01T00:00:09Z".parse().expect("t"),
        };
        assert_eq!(
            st.row(&obj, &ctx),
            vec![
                json!("pv1"),
                json!("1Gi"),
                json!("RWO,ROX"),
                json!("Retain"),
                json!("Pending"),
                json!(""),
                json!("manual"),
                json!("<unset>"),
                json!(""),
                json!("9s"),
                json!("Filesystem")
            ]
        );
    }

    #[test]
    fn a_pv_needs_modes_capacity_and_a_source() {
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv"}, "spec": {}})).expect("pv");
        let mut errs = Vec::new();
        pv.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec.capacity: Unsupported value: {}: supported values: \"storage\"",
                "spec: Required value: must specify a volume type",
            ]
        );
    }

    #[test]
    fn a_claim_needs_a_storage_request() {
        let mut pvc: PersistentVolumeClaim = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}}),
        )
        .expect("pvc");
        pvc.defaults();
        let mut errs = Vec::new();
        pvc.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["spec.resources[storage]: Required value"]
        );
        assert_eq!(
            serde_json::to_value(&pvc.spec).expect("json")["volumeMode"],
            "Filesystem"
        );
    }

    #[test]
    fn a_bound_claim_prints_its_capacity() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "c"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1", "storageClassName": "local", "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}}}))
        .expect("pvc");
        let row = pvc.row(&RowContext::now());
        assert_eq!(
            row[..7],
            [
                json!("c"),
                json!("Bound"),
                json!("pv1"),
                json!("2Gi"),
                json!("RWO"),
                json!("local"),
                json!("<unset>")
            ]
        );
    }

    #[test]
    fn claim_specs_are_immutable_except_storage_growth() {
        let old: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "c"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})).expect("pvc");
        let mut new = old.clone();
        if let Some(spec) = new.spec.as_mut() {
            spec.access_modes = Some(vec!["ReadWriteMany".to_string()]);
        }
        let mut errs = Vec::new();
        new.validate_update(&old, &mut errs);
        assert!(errs[0].to_string().starts_with(
            "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"
        ));
    }
}
