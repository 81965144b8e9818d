//! Upstream's ValidatePodTemplateSpec, and the pod-specific annotations it checks as Pods do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

use super::spec::validate_spec;
use super::Options;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::validation::{validate_annotations, validate_labels};

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
