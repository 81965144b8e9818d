//! Upstream's ValidatePersistentVolumeClaimSpec and access modes, shared by ephemeral volumes
//! and the PersistentVolume and PersistentVolumeClaim kinds.

use k8s_openapi::api::core::v1::PersistentVolumeClaimSpec;

use super::s;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

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
