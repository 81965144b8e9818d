//! Pod spec defaulting and validation, shared by Pods and every kind with a pod template
//! (ReplicationController, PodTemplate, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob).

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

use crate::field_error::{ErrorList, Path};

/// Upstream's SetDefaults_PodSpec and the container/volume defaults under it.
pub fn default_pod_spec(_spec: &mut PodSpec) {}

/// Defaults for a pod template (its spec, plus template metadata where upstream sets any).
pub fn default_pod_template_spec(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// Upstream's ValidatePodSpec at `path` (e.g. `spec` or `spec.template.spec`).
pub fn validate_pod_spec(_spec: &PodSpec, _path: &Path, _errs: &mut ErrorList) {}

/// Validates a pod template at `path` (e.g. `spec.template`): its labels and its spec.
pub fn validate_pod_template_spec(_template: &PodTemplateSpec, _path: &Path, _errs: &mut ErrorList) {}
