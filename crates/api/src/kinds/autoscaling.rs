//! autoscaling/v2 HorizontalPodAutoscalers (the stored version) with upstream's defaults
//! (pkg/apis/autoscaling/v2/defaults.go), validation (pkg/apis/autoscaling/validation) and
//! printer; autoscaling/v1 ones are converted to v2 (kinds::conversion) and checked and
//! printed as such, as upstream does through its internal version.

use k8s_openapi::api::autoscaling::{v1, v2};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use super::apps::{age_cell, name_cell};
use super::conversion;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{dns1123_label, path_segment_name};

/// Upstream's default target when an HPA names no metric.
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;
const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;
/// With the HPAScaleToZero gate off (1.32), minReplicas must be at least 1.
const MIN_REPLICAS_LOWER_BOUND: i32 = 1;
const METRIC_SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

const COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
    Column::new("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used)."),
    Column::new("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
    Column::new("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."),
    Column::new("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
    Column::age(),
];

fn scale_up_rules() -> v2::HPAScalingRules {
    v2::HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![
            v2::HPAScalingPolicy {
                type_: "Pods".into(),
                value: 4,
                period_seconds: 15,
            },
            v2::HPAScalingPolicy {
                type_: "Percent".into(),
                value: 100,
                period_seconds: 15,
            },
        ]),
        tolerance: None,
    }
}

fn scale_down_rules() -> v2::HPAScalingRules {
    v2::HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".into()),
        policies: Some(vec![v2::HPAScalingPolicy {
            type_: "Percent".into(),
            value: 100,
            period_seconds: 15,
        }]),
        tolerance: None,
    }
}

/// Upstream's `copyHPAScalingRules`: set fields of `from` over the defaults.
fn fill_rules(
    from: Option<v2::HPAScalingRules>,
    mut to: v2::HPAScalingRules,
) -> v2::HPAScalingRules {
    if let Some(from) = from {
        if from.select_policy.is_some() {
            to.select_policy = from.select_policy;
        }
        if from.stabilization_window_seconds.is_some() {
            to.stabilization_window_seconds = from.stabilization_window_seconds;
        }
        if from.policies.is_some() {
            to.policies = from.policies;
        }
    }
    to
}

/// Whether a quantity string is greater than zero (`Sign() == 1`).
fn quantity_positive(q: &Quantity) -> bool {
    let s = q.0.trim();
    if s.starts_with('-') {
        return false;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s[..end].bytes().any(|b| (b'1'..=b'9').contains(&b))
}

fn validate_target_ref(r: &v2::CrossVersionObjectReference, path: &Path, errs: &mut ErrorList) {
    for (field, v) in [("kind", &r.kind), ("name", &r.name)] {
        if v.is_empty() {
            errs.push(FieldError::required(path.child(field), ""));
        } else {
            for msg in path_segment_name(v) {
                errs.push(FieldError::invalid(path.child(field), v.as_str(), msg));
            }
        }
    }
}

fn validate_metric_identifier(id: &v2::MetricIdentifier, path: &Path, errs: &mut ErrorList) {
    let p = path.child("name");
    if id.name.is_empty() {
        errs.push(FieldError::required(p, "must specify a metric name"));
    } else {
        for msg in path_segment_name(&id.name) {
            errs.push(FieldError::invalid(&p, id.name.as_str(), msg));
        }
    }
}

fn quantity_value(q: &Quantity) -> Value {
    json!(q.0)
}

fn validate_metric_target(t: &v2::MetricTarget, path: &Path, errs: &mut ErrorList) {
    if t.type_.is_empty() {
        errs.push(FieldError::required(
            path.child("type"),
            "must specify a metric target type",
        ));
    }
    if !["Utilization", "Value", "AverageValue"].contains(&t.type_.as_str()) {
        errs.push(FieldError::invalid(
            path.child("type"),
            t.type_.as_str(),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    if let Some(v) = t.value.as_ref().filter(|v| !quantity_positive(v)) {
        errs.push(FieldError::invalid(
            path.child("value"),
            quantity_value(v),
            "must be positive",
        ));
    }
    if let Some(v) = t.average_value.as_ref().filter(|v| !quantity_positive(v)) {
        errs.push(FieldError::invalid(
            path.child("averageValue"),
            quantity_value(v),
            "must be positive",
        ));
    }
    if let Some(u) = t.average_utilization.filter(|u| *u < 1) {
        errs.push(FieldError::invalid(
            path.child("averageUtilization"),
            u,
            "must be greater than 0",
        ));
    }
}

fn validate_resource_target(t: &v2::MetricTarget, path: &Path, errs: &mut ErrorList) {
    validate_metric_target(t, &path.child("target"), errs);
    if t.average_utilization.is_none() && t.average_value.is_none() {
        errs.push(FieldError::required(
            path.child("target").child("averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
    if t.average_utilization.is_some() && t.average_value.is_some() {
        errs.push(FieldError::forbidden(
            path.child("target").child("averageValue"),
            "may not set both a target raw value and a target utilization",
        ));
    }
}

fn validate_metric_spec(m: &v2::MetricSpec, path: &Path, errs: &mut ErrorList) {
    if m.type_.is_empty() {
        errs.push(FieldError::required(
            path.child("type"),
            "must specify a metric source type",
        ));
    }
    if !METRIC_SOURCE_TYPES.contains(&m.type_.as_str()) {
        errs.push(FieldError::not_supported(
            path.child("type"),
            m.type_.as_str(),
            METRIC_SOURCE_TYPES,
        ));
    }
    let mut present: Vec<&str> = Vec::new();
    if let Some(o) = &m.object {
        present.push("object");
        if present.len() == 1 {
            let p = path.child("object");
            validate_target_ref(&o.described_object, &p.child("describedObject"), errs);
            validate_metric_identifier(&o.metric, &p.child("metric"), errs);
            validate_metric_target(&o.target, &p.child("target"), errs);
            if o.target.value.is_none() && o.target.average_value.is_none() {
                errs.push(FieldError::required(
                    p.child("target").child("averageValue"),
                    "must set either a target value or averageValue",
                ));
            }
        }
    }
    if let Some(e) = &m.external {
        present.push("external");
        if present.len() == 1 {
            let p = path.child("external");
            validate_metric_identifier(&e.metric, &p.child("metric"), errs);
            validate_metric_target(&e.target, &p.child("target"), errs);
            if e.target.value.is_none() && e.target.average_value.is_none() {
                errs.push(FieldError::required(
                    p.child("target").child("averageValue"),
                    "must set either a target value for metric or a per-pod target",
                ));
            }
            if e.target.value.is_some() && e.target.average_value.is_some() {
                errs.push(FieldError::forbidden(
                    p.child("target").child("value"),
                    "may not set both a target value for metric and a per-pod target",
                ));
            }
        }
    }
    if let Some(pods) = &m.pods {
        present.push("pods");
        if present.len() == 1 {
            let p = path.child("pods");
            validate_metric_identifier(&pods.metric, &p.child("metric"), errs);
            validate_metric_target(&pods.target, &p.child("target"), errs);
            if pods.target.average_value.is_none() {
                errs.push(FieldError::required(
                    p.child("target").child("averageValue"),
                    "must specify a positive target averageValue",
                ));
            }
        }
    }
    if let Some(r) = &m.resource {
        present.push("resource");
        if present.len() == 1 {
            let p = path.child("resource");
            if r.name.is_empty() {
                errs.push(FieldError::required(
                    p.child("name"),
                    "must specify a resource name",
                ));
            }
            validate_resource_target(&r.target, &p, errs);
        }
    }
    if let Some(c) = &m.container_resource {
        present.push("containerResource");
        if present.len() == 1 {
            let p = path.child("containerResource");
            if c.name.is_empty() {
                errs.push(FieldError::required(
                    p.child("name"),
                    "must specify a resource name",
                ));
            }
            if c.container.is_empty() {
                errs.push(FieldError::required(
                    p.child("container"),
                    "must specify a container",
                ));
            } else {
                for msg in dns1123_label(&c.container) {
                    errs.push(FieldError::invalid(
                        p.child("container"),
                        c.container.as_str(),
                        msg,
                    ));
                }
            }
            validate_resource_target(&c.target, &p, errs);
        }
    }
    let expected = match m.type_.as_str() {
        "Object" => Some(("object", m.object.is_some())),
        "Pods" => Some(("pods", m.pods.is_some())),
        "Resource" => Some(("resource", m.resource.is_some())),
        "External" => Some(("external", m.external.is_some())),
        "ContainerResource" => Some(("containerResource", m.container_resource.is_some())),
        _ => None,
    };
    match expected {
        Some((field, false)) => errs.push(FieldError::required(
            path.child(field),
            "must populate information for the given metric source",
        )),
        Some(_) => {}
        // Upstream reports an unknown type twice (a set check and the switch's default).
        None => errs.push(FieldError::not_supported(
            path.child("type"),
            m.type_.as_str(),
            METRIC_SOURCE_TYPES,
        )),
    }
    if present.len() != 1 {
        let expected_field = expected.map(|(f, _)| f);
        for field in present.iter().filter(|f| Some(**f) != expected_field) {
            errs.push(FieldError::forbidden(
                path.child(field),
                "must populate the given metric source only",
            ));
        }
    }
}

fn validate_scaling_rules(rules: Option<&v2::HPAScalingRules>, path: &Path, errs: &mut ErrorList) {
    let Some(rules) = rules else { return };
    if let Some(w) = rules.stabilization_window_seconds {
        let p = path.child("stabilizationWindowSeconds");
        if w < 0 {
            errs.push(FieldError::invalid(
                &p,
                w,
                "must be greater than or equal to zero",
            ));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldError::invalid(
                &p,
                w,
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(sp) = rules.select_policy.as_deref() {
        if !["Disabled", "Max", "Min"].contains(&sp) {
            errs.push(FieldError::not_supported(
                path.child("selectPolicy"),
                sp,
                &["Disabled", "Max", "Min"],
            ));
        }
    }
    let pp = path.child("policies");
    let policies = rules.policies.as_deref().unwrap_or(&[]);
    if policies.is_empty() {
        errs.push(FieldError::required(
            &pp,
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let ip = pp.index(i);
        if p.type_ != "Pods" && p.type_ != "Percent" {
            errs.push(FieldError::not_supported(
                ip.child("type"),
                p.type_.as_str(),
                &["Percent", "Pods"],
            ));
        }
        if p.value <= 0 {
            errs.push(FieldError::invalid(
                ip.child("value"),
                p.value,
                "must be greater than zero",
            ));
        }
        if p.period_seconds <= 0 {
            errs.push(FieldError::invalid(
                ip.child("periodSeconds"),
                p.period_seconds,
                "must be greater than zero",
            ));
        }
        if p.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(FieldError::invalid(
                ip.child("periodSeconds"),
                p.period_seconds,
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

fn drop_tolerance(hpa: &mut v2::HorizontalPodAutoscaler) {
    // spec.behavior.*.tolerance is newer than 1.32 (HPAConfigurableTolerance).
    if let Some(b) = hpa.spec.as_mut().and_then(|s| s.behavior.as_mut()) {
        for r in [b.scale_up.as_mut(), b.scale_down.as_mut()]
            .into_iter()
            .flatten()
        {
            r.tolerance = None;
        }
    }
}

/// A Resource or ContainerResource metric as `formatHPAMetrics` prints it: `cpu: 40%/80%`, or
/// with an average value target `memory: 100Mi/200Mi`.
fn resource_metric(
    name: &str,
    target: &v2::MetricTarget,
    current: Option<&v2::MetricValueStatus>,
) -> String {
    let unknown = || "<unknown>".to_string();
    if let Some(avg) = &target.average_value {
        let current = current.map_or_else(unknown, |c| {
            c.average_value
                .as_ref()
                .map_or_else(|| "0".to_string(), |q| q.0.clone())
        });
        format!("{name}: {current}/{}", avg.0)
    } else {
        let current = current
            .and_then(|c| c.average_utilization)
            .map_or_else(unknown, |u| format!("{u}%"));
        let target = target
            .average_utilization
            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
        format!("{name}: {current}/{target}")
    }
}

/// Upstream's `formatHPAMetrics`: at most two targets, then `+ N more...`.
fn format_metrics(specs: &[v2::MetricSpec], statuses: &[v2::MetricStatus]) -> String {
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let q = |q: Option<&Quantity>| q.map(|q| q.0.clone()).unwrap_or_else(|| "0".to_string());
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            match spec.type_.as_str() {
                "External" => {
                    let e = spec.external.clone().unwrap_or_default();
                    let cur = status.and_then(|s| s.external.as_ref());
                    if let Some(avg) = &e.target.average_value {
                        let current = cur
                            .and_then(|c| c.current.average_value.as_ref())
                            .map_or_else(unknown, |v| v.0.clone());
                        format!("{current}/{} (avg)", avg.0)
                    } else {
                        let current = cur.map_or_else(unknown, |c| q(c.current.value.as_ref()));
                        format!("{current}/{}", q(e.target.value.as_ref()))
                    }
                }
                "Pods" => {
                    let p = spec.pods.clone().unwrap_or_default();
                    let current = status
                        .and_then(|s| s.pods.as_ref())
                        .map_or_else(unknown, |c| q(c.current.average_value.as_ref()));
                    format!("{current}/{}", q(p.target.average_value.as_ref()))
                }
                "Object" => {
                    let o = spec.object.clone().unwrap_or_default();
                    let cur = status.and_then(|s| s.object.as_ref());
                    if let Some(avg) = &o.target.average_value {
                        let current = cur
                            .and_then(|c| c.current.average_value.as_ref())
                            .map_or_else(unknown, |v| v.0.clone());
                        format!("{current}/{} (avg)", avg.0)
                    } else {
                        let current = cur.map_or_else(unknown, |c| q(c.current.value.as_ref()));
                        format!("{current}/{}", q(o.target.value.as_ref()))
                    }
                }
                "Resource" => {
                    let r = spec.resource.clone().unwrap_or_default();
                    let cur = status.and_then(|s| s.resource.as_ref()).map(|c| &c.current);
                    resource_metric(&r.name, &r.target, cur)
                }
                "ContainerResource" => {
                    let r = spec.container_resource.clone().unwrap_or_default();
                    let cur = status
                        .and_then(|s| s.container_resource.as_ref())
                        .map(|c| &c.current);
                    resource_metric(&r.name, &r.target, cur)
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    const MAX: usize = 2;
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

impl KindHooks for v2::HorizontalPodAutoscaler {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.min_replicas.get_or_insert(1);
        if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
            spec.metrics = Some(vec![v2::MetricSpec {
                type_: "Resource".into(),
                resource: Some(v2::ResourceMetricSource {
                    name: "cpu".into(),
                    target: v2::MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
        if let Some(b) = spec.behavior.as_mut() {
            b.scale_up = Some(fill_rules(b.scale_up.take(), scale_up_rules()));
            b.scale_down = Some(fill_rules(b.scale_down.take(), scale_down_rules()));
        }
    }

    fn prepare_for_create(&mut self) {
        drop_tolerance(self);
    }

    fn prepare_for_update(&mut self, _old: &Self) {
        drop_tolerance(self);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = v2::HorizontalPodAutoscalerSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        if let Some(min) = spec.min_replicas.filter(|m| *m < MIN_REPLICAS_LOWER_BOUND) {
            errs.push(FieldError::invalid(
                path.child("minReplicas"),
                min,
                format!("must be greater than or equal to {MIN_REPLICAS_LOWER_BOUND}"),
            ));
        }
        if spec.max_replicas < 1 {
            errs.push(FieldError::invalid(
                path.child("maxReplicas"),
                spec.max_replicas,
                "must be greater than 0",
            ));
        }
        if spec.min_replicas.is_some_and(|min| spec.max_replicas < min) {
            errs.push(FieldError::invalid(
                path.child("maxReplicas"),
                spec.max_replicas,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        validate_target_ref(&spec.scale_target_ref, &path.child("scaleTargetRef"), errs);
        let metrics = spec.metrics.as_deref().unwrap_or(&[]);
        for (i, m) in metrics.iter().enumerate() {
            validate_metric_spec(m, &path.child("metrics").index(i), errs);
        }
        if spec.min_replicas == Some(0)
            && !metrics
                .iter()
                .any(|m| m.type_ == "Object" || m.type_ == "External")
        {
            errs.push(FieldError::forbidden(
                path.child("metrics"),
                "must specify at least one Object or External metric to support scaling to zero replicas",
            ));
        }
        if let Some(b) = &spec.behavior {
            let bp = path.child("behavior");
            validate_scaling_rules(b.scale_up.as_ref(), &bp.child("scaleUp"), errs);
            validate_scaling_rules(b.scale_down.as_ref(), &bp.child("scaleDown"), errs);
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = v2::HorizontalPodAutoscalerSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.clone().unwrap_or_default();
        let reference = format!(
            "{}/{}",
            spec.scale_target_ref.kind, spec.scale_target_ref.name
        );
        let targets = format_metrics(
            spec.metrics.as_deref().unwrap_or(&[]),
            status.current_metrics.as_deref().unwrap_or(&[]),
        );
        let min = spec
            .min_replicas
            .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
        vec![
            name_cell(&self.metadata),
            json!(reference),
            json!(targets),
            json!(min),
            json!(spec.max_replicas),
            json!(status.current_replicas.unwrap_or(0)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

/// The v2 form of a v1 HPA, as the v1 hooks check and print it.
fn as_v2(hpa: &v1::HorizontalPodAutoscaler) -> Option<v2::HorizontalPodAutoscaler> {
    let v = serde_json::to_value(hpa).ok()?;
    serde_json::from_value(conversion::hpa_v1_to_v2(v)).ok()
}

impl KindHooks for v1::HorizontalPodAutoscaler {
    fn defaults(&mut self) {
        self.spec
            .get_or_insert_with(Default::default)
            .min_replicas
            .get_or_insert(1);
    }

    fn validate(&self, errs: &mut ErrorList) {
        if let Some(h) = as_v2(self) {
            h.validate(errs);
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        match as_v2(self) {
            Some(h) => h.row(ctx),
            None => crate::table::default_row(&self.metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row};
    use super::*;

    fn hpa() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 5
            }
        })
    }

    #[test]
    fn an_hpa_without_metrics_targets_80_percent_cpu() {
        let h = create::<v2::HorizontalPodAutoscaler>(hpa());
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"],
            json!([{"resource": {"name": "cpu", "target": {"averageUtilization": 80, "type": "Utilization"}}, "type": "Resource"}])
        );
        assert!(h["spec"].get("behavior").is_none());
        assert_eq!(h["status"], json!({"desiredReplicas": 0}));
        assert!(errors::<v2::HorizontalPodAutoscaler>(&h).is_empty());
    }

    #[test]
    fn a_given_behavior_is_completed_with_upstreams_policies() {
        let mut h = hpa();
        h["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 300}});
        let h = create::<v2::HorizontalPodAutoscaler>(h);
        assert_eq!(
            h["spec"]["behavior"],
            json!({
                "scaleDown": {
                    "policies": [{"periodSeconds": 15, "type": "Percent", "value": 100}],
                    "selectPolicy": "Max",
                    "stabilizationWindowSeconds": 300
                },
                "scaleUp": {
                    "policies": [
                        {"periodSeconds": 15, "type": "Pods", "value": 4},
                        {"periodSeconds": 15, "type": "Percent", "value": 100}
                    ],
                    "selectPolicy": "Max",
                    "stabilizationWindowSeconds": 0
                }
            })
        );
    }

    #[test]
    fn replica_bounds_are_checked() {
        let mut h = hpa();
        h["spec"]["minReplicas"] = json!(6);
        let errs = errors::<v2::HorizontalPodAutoscaler>(&create::<v2::HorizontalPodAutoscaler>(h));
        assert_eq!(errs, vec!["spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"]);
        let mut h = hpa();
        h["spec"]["minReplicas"] = json!(0);
        let errs = errors::<v2::HorizontalPodAutoscaler>(&create::<v2::HorizontalPodAutoscaler>(h));
        assert_eq!(
            errs,
            vec![
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
            ]
        );
    }

    #[test]
    fn metrics_must_populate_their_source() {
        let mut h = hpa();
        h["spec"]["metrics"] = json!([{"type": "Pods", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]);
        let errs = errors::<v2::HorizontalPodAutoscaler>(&create::<v2::HorizontalPodAutoscaler>(h));
        assert_eq!(
            errs,
            vec!["spec.metrics[0].pods: Required value: must populate information for the given metric source"]
        );
        let mut h = hpa();
        h["spec"]["metrics"] = json!([{
            "type": "Pods",
            "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}
        }]);
        let errs = errors::<v2::HorizontalPodAutoscaler>(&create::<v2::HorizontalPodAutoscaler>(h));
        assert_eq!(
            errs,
            vec!["spec.metrics[0].resource: Forbidden: must populate the given metric source only"]
        );
    }

    #[test]
    fn an_hpa_without_metrics_status_prints_unknown_current_values() {
        let h = create::<v2::HorizontalPodAutoscaler>(hpa());
        assert_eq!(
            row::<v2::HorizontalPodAutoscaler>(&h),
            vec![
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!("1"),
                json!(5),
                json!(0),
                json!("60m"),
            ]
        );
    }

    #[test]
    fn many_metrics_are_summarised() {
        let mut h = hpa();
        h["spec"]["metrics"] = json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}
        ]);
        let mut h = create::<v2::HorizontalPodAutoscaler>(h);
        h["status"]["currentMetrics"] = json!([
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42}}}
        ]);
        assert_eq!(
            row::<v2::HorizontalPodAutoscaler>(&h)[2],
            json!("cpu: 42%/50%, memory: <unknown>/100Mi + 1 more...")
        );
    }

    #[test]
    fn container_resource_metrics_print_like_resource_metrics() {
        let mut h = hpa();
        h["spec"]["metrics"] = json!([
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
            {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "app", "target": {"type": "AverageValue", "averageValue": "200Mi"}}}
        ]);
        let mut h = create::<v2::HorizontalPodAutoscaler>(h);
        h["status"]["currentMetrics"] = json!([
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "current": {"averageUtilization": 30}}},
            {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "app", "current": {"averageValue": "150Mi"}}}
        ]);
        assert_eq!(
            row::<v2::HorizontalPodAutoscaler>(&h)[2],
            json!("cpu: 30%/60%, memory: 150Mi/200Mi")
        );
    }

    #[test]
    fn a_v1_hpa_is_checked_and_printed_as_v2() {
        let h = create::<v1::HorizontalPodAutoscaler>(json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 0, "targetCPUUtilizationPercentage": 70}
        }));
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["status"],
            json!({"currentReplicas": 0, "desiredReplicas": 0})
        );
        let errs = errors::<v1::HorizontalPodAutoscaler>(&h);
        assert_eq!(
            errs,
            vec![
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`",
            ]
        );
        assert_eq!(
            row::<v1::HorizontalPodAutoscaler>(&h)[2],
            json!("cpu: <unknown>/70%")
        );
    }
}
