//! fieldRef and resourceFieldRef selectors, as env vars and downward API volume files name a
//! pod's fields and its containers' resources.

use k8s_openapi::api::core::v1::{ObjectFieldSelector, ResourceFieldSelector};

use super::s;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::{checks, quantity};

pub(super) const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

pub(super) const ENV_FIELD_PATHS: &[&str] = &[
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

pub(super) fn object_field_selector(
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

pub(super) fn resource_field_selector(
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
