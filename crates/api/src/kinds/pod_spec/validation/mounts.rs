//! A container's volumeMounts and volumeDevices, checked against the pod's volumes and each
//! other.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, VolumeMount};

use super::s;
use super::volumes::VolumeKind;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

pub(super) fn volume_mounts(
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

pub(super) fn volume_devices(
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
