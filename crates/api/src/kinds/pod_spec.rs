//! Pod spec defaulting and validation, shared by Pods and every kind with a pod template
//! (ReplicationController, PodTemplate, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob).
//!
//! Entry points: [`default_pod_spec`] / [`default_pod_template_spec`] (upstream's defaulters for
//! a spec wherever it appears; Pod-only defaults live with the Pod kind) and
//! [`validate_pod_spec`] / [`validate_pod_template_spec`] (upstream's ValidatePodSpec and
//! ValidatePodTemplateSpec with template rules, i.e. not `ResourceIsPod`).

mod defaults;
mod validation;

use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};

use crate::field_error::{ErrorList, Path};

pub(crate) use defaults::{default_pod_only, default_pvc_spec};
pub(crate) use validation::{
    check_access_modes, host_path, image_whitespace, nfs, parsed, pod_annotations, taint_effect,
    validate_pvc_spec, validate_spec, Options,
};

/// Upstream's SetDefaults_PodSpec and the container/volume defaults under it.
pub fn default_pod_spec(spec: &mut PodSpec) {
    defaults::default_spec(spec);
}

/// Defaults for a pod template (its spec, plus template metadata where upstream sets any).
pub fn default_pod_template_spec(template: &mut PodTemplateSpec) {
    if let Some(spec) = template.spec.as_mut() {
        default_pod_spec(spec);
    }
}

/// Upstream's ValidatePodSpec at `path` (e.g. `spec` or `spec.template.spec`), with the rules
/// for a spec embedded in another object (a template).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path, errs: &mut ErrorList) {
    validation::validate_spec(spec, None, path, Options::default(), errs);
}

/// Validates a pod template at `path` (e.g. `spec.template`): its labels and annotations (at
/// `path.labels`, as upstream reports them), its spec, and no ephemeral containers.
pub fn validate_pod_template_spec(template: &PodTemplateSpec, path: &Path, errs: &mut ErrorList) {
    validation::validate_template(template, path, errs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;
    use proptest::prelude::*;
    use serde_json::json;

    fn template(spec: serde_json::Value) -> PodTemplateSpec {
        serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": spec}))
            .expect("template")
    }

    fn errors_of(mut t: PodTemplateSpec) -> Vec<String> {
        default_pod_template_spec(&mut t);
        let mut errs = Vec::new();
        validate_pod_template_spec(&t, &Path::new("spec.template"), &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_template_spec_gets_upstream_defaults_but_not_pod_only_ones() {
        let mut t = template(
            json!({"containers": [{"name": "c", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}),
        );
        default_pod_template_spec(&mut t);
        assert_eq!(
            serde_json::to_value(&t.spec).expect("json"),
            json!({
                "containers": [{
                    "image": "nginx:1.25",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "c",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30
            })
        );
    }

    #[test]
    fn probes_and_volume_sources_are_defaulted() {
        let mut t = template(json!({
            "containers": [{"name": "c", "image": "i", "livenessProbe": {"httpGet": {"port": 8080}}}],
            "volumes": [{"name": "cm", "configMap": {"name": "x"}}, {"name": "h", "hostPath": {"path": "/tmp"}}],
            "serviceAccount": "builder"
        }));
        default_pod_template_spec(&mut t);
        let v = serde_json::to_value(&t.spec).expect("json");
        assert_eq!(
            v["containers"][0]["livenessProbe"],
            json!({"failureThreshold": 3, "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1})
        );
        assert_eq!(
            v["volumes"][0]["configMap"],
            json!({"defaultMode": 420, "name": "x"})
        );
        assert_eq!(
            v["volumes"][1]["hostPath"],
            json!({"path": "/tmp", "type": ""})
        );
        assert_eq!(v["serviceAccountName"], "builder");
        assert_eq!(v["serviceAccount"], "builder");
    }

    #[test]
    fn resource_quantities_are_stored_canonically() {
        let mut t = template(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "0.5"}}}]}),
        );
        default_pod_template_spec(&mut t);
        let v = serde_json::to_value(&t.spec).expect("json");
        assert_eq!(
            v["containers"][0]["resources"],
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})
        );
    }

    #[test]
    fn a_valid_template_has_no_errors() {
        assert_eq!(
            errors_of(template(
                json!({"containers": [{"name": "c", "image": "nginx"}]})
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn containers_are_required() {
        assert_eq!(
            errors_of(template(json!({"containers": []}))),
            vec!["spec.template.spec.containers: Required value"]
        );
    }

    #[test]
    fn image_is_required() {
        assert_eq!(
            errors_of(template(json!({"containers": [{"name": "c"}]}))),
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn container_names_must_be_labels_and_unique() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "Web", "image": "i"}, {"name": "Web", "image": "i"}]}),
        ));
        assert_eq!(errs.len(), 3);
        assert!(errs[0].starts_with("spec.template.spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of"));
        assert_eq!(
            errs[2],
            "spec.template.spec.containers[1].name: Duplicate value: \"Web\""
        );
    }

    #[test]
    fn mounts_must_name_existing_volumes() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}),
        ));
        assert_eq!(
            errs,
            vec!["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\""]
        );
    }

    #[test]
    fn duplicate_volume_names_are_rejected() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]}),
        ));
        assert_eq!(
            errs,
            vec!["spec.template.spec.volumes[1].name: Duplicate value: \"v\""]
        );
    }

    #[test]
    fn unsupported_restart_and_dns_policies_list_supported_values() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Sometimes", "dnsPolicy": "Cluster"}),
        ));
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
                "spec.template.spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            ]
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]}),
        ));
        assert_eq!(
            errs,
            vec!["spec.template.spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"]
        );
    }

    #[test]
    fn ports_and_env_names_are_checked() {
        let errs = errors_of(template(json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http"}],
            "env": [{"name": "A=B", "value": "x"}]}]})));
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.template.spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.template.spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ]
        );
    }

    #[test]
    fn probes_need_a_handler_and_liveness_success_threshold_one() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i", "livenessProbe": {"successThreshold": 2}}]}),
        ));
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.template.spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            ]
        );
    }

    #[test]
    fn template_labels_are_validated_at_the_template_path() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "-bad"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).expect("t");
        let errs = errors_of(t);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec.template.labels: Invalid value: \"-bad\""));
    }

    #[test]
    fn tolerations_follow_upstream_rules() {
        let errs = errors_of(template(
            json!({"containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"operator": "Equal", "value": "x"}, {"key": "k", "tolerationSeconds": 5, "effect": "NoSchedule"}]}),
        ));
        assert_eq!(
            errs,
            vec![
                "spec.template.spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                "spec.template.spec.tolerations[1].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
            ]
        );
    }

    proptest! {
        #[test]
        fn validation_never_panics_on_arbitrary_strings(name in "\\PC{0,20}", image in "\\PC{0,20}", q in "\\PC{0,10}", path in "\\PC{0,10}") {
            let c: Container = serde_json::from_value(json!({"name": name, "image": image,
                "resources": {"limits": {"cpu": q.clone()}, "requests": {name.clone(): q}},
                "volumeMounts": [{"name": name, "mountPath": path, "subPath": path}],
                "ports": [{"containerPort": 1, "name": name}], "env": [{"name": name}]})).expect("container");
            let mut t = PodTemplateSpec { spec: Some(PodSpec { containers: vec![c], ..Default::default() }), ..Default::default() };
            default_pod_template_spec(&mut t);
            let mut errs = Vec::new();
            validate_pod_template_spec(&t, &Path::new("spec.template"), &mut errs);
        }
    }
}
