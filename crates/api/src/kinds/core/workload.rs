//! ReplicationControllers and PodTemplates: template defaults (RC selector and labels from the
//! template, one replica), their validation, and their table columns.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodTemplate, PodTemplateSpec, ReplicationController};
use serde_json::{json, Value};

use super::{age_cell, checks};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::pod_spec;
use crate::strategy::KindHooks;
use crate::table::{format_labels, Column, RowContext};

/// Names and images of a template's containers, comma-joined (upstream's layoutContainerCells).
pub(crate) fn container_cells(containers: &[Container]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

fn template_containers(t: Option<&PodTemplateSpec>) -> Vec<Container> {
    t.and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default()
}

static RC_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas.",
    ),
    Column::new(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    Column::new(
        "Ready",
        "integer",
        "The number of ready replicas for this replication controller.",
    ),
    Column::age(),
    Column::new(
        "Containers",
        "string",
        "Names of each container in the template.",
    )
    .wide(),
    Column::new(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    )
    .wide(),
    Column::new(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the Replicas count.",
    )
    .wide(),
];

impl KindHooks for ReplicationController {
    const FIELD_SELECTORS: &'static [&'static str] = &["status.replicas"];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let labels = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone());
        if let Some(labels) = labels {
            if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
                spec.selector = Some(labels.clone());
            }
            if self.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                self.metadata.labels = Some(labels);
            }
        }
        if spec.replicas.is_none() {
            spec.replicas = Some(1);
        }
        if let Some(t) = spec.template.as_mut() {
            pod_spec::default_pod_template_spec(t);
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let spec = self.spec.clone().unwrap_or_default();
        let sp = Path::new("spec");
        checks::non_negative(
            i64::from(spec.min_ready_seconds.unwrap_or(0)),
            &sp.child("minReadySeconds"),
            errs,
        );
        let selector: BTreeMap<String, String> = spec.selector.clone().unwrap_or_default();
        if selector.is_empty() {
            errs.push(FieldError::required(sp.child("selector"), ""));
        }
        checks::non_negative(
            i64::from(spec.replicas.unwrap_or(0)),
            &sp.child("replicas"),
            errs,
        );
        let tp = sp.child("template");
        match &spec.template {
            None => errs.push(FieldError::required(&tp, "")),
            Some(t) => {
                let labels = t.metadata.as_ref().and_then(|m| m.labels.clone());
                if !selector.is_empty() && !checks::selector_matches(&selector, labels.as_ref()) {
                    errs.push(FieldError::invalid(
                        tp.child("metadata").child("labels"),
                        json!(labels.unwrap_or_default()),
                        "`selector` does not match template `labels`",
                    ));
                }
                pod_spec::validate_pod_template_spec(t, &tp, errs);
                let pod = t.spec.clone().unwrap_or_default();
                let rp = pod.restart_policy.clone().unwrap_or_default();
                if rp != "Always" {
                    errs.push(FieldError::not_supported(
                        tp.child("spec").child("restartPolicy"),
                        rp,
                        &["Always"],
                    ));
                }
                if pod.active_deadline_seconds.is_some() {
                    errs.push(FieldError::forbidden(
                        tp.child("spec").child("activeDeadlineSeconds"),
                        "activeDeadlineSeconds in ReplicationController is not Supported",
                    ));
                }
            }
        }
    }

    fn columns() -> &'static [Column] {
        RC_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let (names, images) = container_cells(&template_containers(spec.template.as_ref()));
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(spec.replicas.unwrap_or(0)),
            json!(status.replicas),
            json!(status.ready_replicas.unwrap_or(0)),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(format_labels(spec.selector.as_ref())),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "status.replicas" => Some(self.status.as_ref().map_or(0, |s| s.replicas).to_string()),
            _ => None,
        }
    }
}

static POD_TEMPLATE_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Containers",
        "string",
        "Names of each container in the template.",
    ),
    Column::new(
        "Images",
        "string",
        "Images referenced by each container in the template.",
    ),
    Column::new("Pod Labels", "string", "The labels for the pod template."),
];

impl KindHooks for PodTemplate {
    fn defaults(&mut self) {
        pod_spec::default_pod_template_spec(self.template.get_or_insert_with(Default::default));
    }

    fn validate(&self, errs: &mut ErrorList) {
        pod_spec::validate_pod_template_spec(
            &self.template.clone().unwrap_or_default(),
            &Path::new("template"),
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        POD_TEMPLATE_COLUMNS
    }

    fn row(&self, _ctx: &RowContext) -> Vec<Value> {
        let (names, images) = container_cells(&template_containers(self.template.as_ref()));
        let labels = self
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.as_ref());
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(names),
            json!(images),
            json!(format_labels(labels)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(v: Value) -> ReplicationController {
        let mut r: ReplicationController = serde_json::from_value(v).expect("rc");
        r.defaults();
        r
    }

    #[test]
    fn selector_labels_and_replicas_come_from_the_template() {
        let r = rc(
            json!({"metadata": {"name": "web"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut errs = Vec::new();
        r.validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn the_selector_must_match_the_template() {
        let r = rc(
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "other"}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "restartPolicy": "Never"}}}}),
        );
        let mut errs = Vec::new();
        r.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ]
        );
    }

    #[test]
    fn rc_rows_and_field_values() {
        let mut r = rc(
            json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]}}}}),
        );
        r.status =
            serde_json::from_value(json!({"replicas": 3, "readyReplicas": 2})).expect("status");
        let row = r.row(&RowContext::now());
        assert_eq!(row[1..4], [json!(3), json!(3), json!(2)]);
        assert_eq!(
            row[5..],
            [json!("a,b"), json!("nginx,busybox"), json!("app=web")]
        );
        assert_eq!(r.field_value("status.replicas").as_deref(), Some("3"));
    }

    #[test]
    fn pod_templates_print_containers_and_labels() {
        let mut t: PodTemplate = serde_json::from_value(
            json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}),
        )
        .expect("t");
        t.defaults();
        assert_eq!(
            t.row(&RowContext::now()),
            vec![json!("t"), json!("c"), json!("nginx"), json!("a=b")]
        );
        let mut errs = Vec::new();
        t.validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }
}
