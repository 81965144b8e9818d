//! Conversions between a served version and the version its objects are stored in, for kinds
//! that two group-versions serve from one storage (HPA autoscaling/v1 as v2, events.k8s.io/v1
//! events as core/v1 events). Both directions work on JSON, as upstream's conversion functions
//! (pkg/apis/autoscaling/v1/conversion.go, pkg/apis/events/v1/conversion.go) do: what v1 HPAs
//! cannot express (other metrics, metric statuses, conditions, behavior) travels in
//! annotations, so objects round-trip through v1 without loss.

use serde_json::{json, Map, Value};

use crate::strategy::KindHooks;

/// How one served version maps onto the stored one.
pub struct Conversion {
    pub storage_group: &'static str,
    pub storage_version: &'static str,
    pub storage_plural: &'static str,
    pub storage_kind: &'static str,
    /// Served form → stored form (apiVersion and kind included).
    pub to_storage: fn(Value) -> Value,
    /// Stored form → served form (apiVersion and kind included).
    pub from_storage: fn(Value) -> Value,
}

pub static HPA_V1: Conversion = Conversion {
    storage_group: "autoscaling",
    storage_version: "v2",
    storage_plural: "horizontalpodautoscalers",
    storage_kind: "HorizontalPodAutoscaler",
    to_storage: hpa_v1_to_v2,
    from_storage: hpa_v2_to_v1,
};

pub static EVENTS_V1: Conversion = Conversion {
    storage_group: "",
    storage_version: "v1",
    storage_plural: "events",
    storage_kind: "Event",
    to_storage: events_v1_to_core,
    from_storage: core_to_events_v1,
};

/// v2 metrics a v1 HPA cannot express, in autoscaling/v1's (v2beta1-shaped) MetricSpec JSON.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// The v2 status's current metrics, in autoscaling/v1's MetricStatus JSON.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// The v2 status's conditions.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// The v2 spec's behavior, in upstream's internal type's JSON (Go field names).
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

const ROUND_TRIP_ANNOTATIONS: &[&str] = &[
    METRIC_SPECS_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
];

fn take(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    obj.remove(key).filter(|v| !v.is_null())
}

/// A JSON object of the given fields in order, leaving out the absent ones.
fn fields<const N: usize>(kv: [(&str, Option<Value>); N]) -> Value {
    Value::Object(
        kv.into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.filter(|v| !v.is_null())?)))
            .collect(),
    )
}

fn get(v: &Value, path: &[&str]) -> Option<Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    (!cur.is_null()).then(|| cur.clone())
}

fn quantity_or_zero(v: Option<Value>) -> Option<Value> {
    Some(v.unwrap_or_else(|| json!("0")))
}

fn annotations_mut(obj: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()
}

/// Sets an annotation, creating metadata.annotations if needed.
fn annotate(obj: &mut Map<String, Value>, key: &str, value: String) {
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Value::Object(m) = meta {
        let ann = m.entry("annotations").or_insert_with(|| json!({}));
        if !ann.is_object() {
            *ann = json!({});
        }
        if let Value::Object(a) = ann {
            a.insert(key.to_string(), Value::String(value));
        }
    }
}

/// Removes the round-trip annotations, returning them; an emptied annotation map goes too.
fn drop_round_trip_annotations(obj: &mut Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(ann) = annotations_mut(obj) {
        for k in ROUND_TRIP_ANNOTATIONS {
            if let Some(v) = ann.remove(*k) {
                out.insert((*k).to_string(), v);
            }
        }
        if ann.is_empty() {
            if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
                meta.remove("annotations");
            }
        }
    }
    out
}

fn parse_annotation(ann: &Map<String, Value>, key: &str) -> Option<Value> {
    serde_json::from_str(ann.get(key)?.as_str()?).ok()
}

fn cross_version_ref_v1(r: Option<Value>) -> Option<Value> {
    let r = r.unwrap_or_else(|| json!({}));
    Some(fields([
        (
            "kind",
            Some(get(&r, &["kind"]).unwrap_or_else(|| json!(""))),
        ),
        (
            "name",
            Some(get(&r, &["name"]).unwrap_or_else(|| json!(""))),
        ),
        (
            "apiVersion",
            get(&r, &["apiVersion"]).filter(|v| v.as_str() != Some("")),
        ),
    ]))
}

fn cross_version_ref_v2(r: Option<Value>) -> Option<Value> {
    let r = r.unwrap_or_else(|| json!({}));
    Some(fields([
        ("apiVersion", get(&r, &["apiVersion"])),
        ("kind", get(&r, &["kind"])),
        ("name", get(&r, &["name"])),
    ]))
}

/// A v2 MetricSpec in autoscaling/v1's MetricSpec JSON (Go field order).
fn metric_spec_to_v1(m: &Value) -> Value {
    let object = get(m, &["object"]).map(|o| {
        fields([
            (
                "target",
                cross_version_ref_v1(get(&o, &["describedObject"])),
            ),
            (
                "metricName",
                Some(get(&o, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            (
                "targetValue",
                quantity_or_zero(get(&o, &["target", "value"])),
            ),
            ("selector", get(&o, &["metric", "selector"])),
            ("averageValue", get(&o, &["target", "averageValue"])),
        ])
    });
    let pods = get(m, &["pods"]).map(|p| {
        fields([
            (
                "metricName",
                Some(get(&p, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            (
                "targetAverageValue",
                quantity_or_zero(get(&p, &["target", "averageValue"])),
            ),
            ("selector", get(&p, &["metric", "selector"])),
        ])
    });
    let resource = get(m, &["resource"]).map(|r| {
        fields([
            ("name", get(&r, &["name"])),
            (
                "targetAverageUtilization",
                get(&r, &["target", "averageUtilization"]),
            ),
            ("targetAverageValue", get(&r, &["target", "averageValue"])),
        ])
    });
    let container_resource = get(m, &["containerResource"]).map(|r| {
        fields([
            ("name", get(&r, &["name"])),
            (
                "targetAverageUtilization",
                get(&r, &["target", "averageUtilization"]),
            ),
            ("targetAverageValue", get(&r, &["target", "averageValue"])),
            ("container", get(&r, &["container"])),
        ])
    });
    let external = get(m, &["external"]).map(|e| {
        fields([
            (
                "metricName",
                Some(get(&e, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            ("metricSelector", get(&e, &["metric", "selector"])),
            ("targetValue", get(&e, &["target", "value"])),
            ("targetAverageValue", get(&e, &["target", "averageValue"])),
        ])
    });
    fields([
        ("type", get(m, &["type"])),
        ("object", object),
        ("pods", pods),
        ("resource", resource),
        ("containerResource", container_resource),
        ("external", external),
    ])
}

fn metric_identifier(name: Option<Value>, selector: Option<Value>) -> Option<Value> {
    Some(fields([
        ("name", Some(name.unwrap_or_else(|| json!("")))),
        ("selector", selector),
    ]))
}

fn target_type(present: bool, if_present: &str, otherwise: &str) -> Option<Value> {
    Some(json!(if present { if_present } else { otherwise }))
}

/// An autoscaling/v1 (annotation) MetricSpec as a v2 MetricSpec.
fn metric_spec_from_v1(m: &Value) -> Value {
    let object = get(m, &["object"]).map(|o| {
        let avg = get(&o, &["averageValue"]);
        fields([
            (
                "describedObject",
                cross_version_ref_v2(get(&o, &["target"])),
            ),
            (
                "metric",
                metric_identifier(get(&o, &["metricName"]), get(&o, &["selector"])),
            ),
            (
                "target",
                Some(fields([
                    ("averageValue", avg.clone()),
                    ("type", target_type(avg.is_some(), "AverageValue", "Value")),
                    ("value", quantity_or_zero(get(&o, &["targetValue"]))),
                ])),
            ),
        ])
    });
    let pods = get(m, &["pods"]).map(|p| {
        fields([
            (
                "metric",
                metric_identifier(get(&p, &["metricName"]), get(&p, &["selector"])),
            ),
            (
                "target",
                Some(fields([
                    (
                        "averageValue",
                        quantity_or_zero(get(&p, &["targetAverageValue"])),
                    ),
                    ("type", Some(json!("AverageValue"))),
                ])),
            ),
        ])
    });
    let resource_target = |r: &Value| {
        let util = get(r, &["targetAverageUtilization"]);
        Some(fields([
            ("averageUtilization", util.clone()),
            ("averageValue", get(r, &["targetAverageValue"])),
            (
                "type",
                target_type(util.is_some(), "Utilization", "AverageValue"),
            ),
        ]))
    };
    let resource = get(m, &["resource"]).map(|r| {
        fields([
            ("name", get(&r, &["name"])),
            ("target", resource_target(&r)),
        ])
    });
    let container_resource = get(m, &["containerResource"]).map(|r| {
        fields([
            ("container", get(&r, &["container"])),
            ("name", get(&r, &["name"])),
            ("target", resource_target(&r)),
        ])
    });
    let external = get(m, &["external"]).map(|e| {
        let value = get(&e, &["targetValue"]);
        fields([
            (
                "metric",
                metric_identifier(get(&e, &["metricName"]), get(&e, &["metricSelector"])),
            ),
            (
                "target",
                Some(fields([
                    ("averageValue", get(&e, &["targetAverageValue"])),
                    (
                        "type",
                        target_type(value.is_some(), "Value", "AverageValue"),
                    ),
                    ("value", value),
                ])),
            ),
        ])
    });
    fields([
        ("containerResource", container_resource),
        ("external", external),
        ("object", object),
        ("pods", pods),
        ("resource", resource),
        ("type", get(m, &["type"])),
    ])
}

/// A v2 MetricStatus in autoscaling/v1's MetricStatus JSON.
fn metric_status_to_v1(m: &Value) -> Value {
    let object = get(m, &["object"]).map(|o| {
        fields([
            (
                "target",
                cross_version_ref_v1(get(&o, &["describedObject"])),
            ),
            (
                "metricName",
                Some(get(&o, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            (
                "currentValue",
                quantity_or_zero(get(&o, &["current", "value"])),
            ),
            ("selector", get(&o, &["metric", "selector"])),
            ("averageValue", get(&o, &["current", "averageValue"])),
        ])
    });
    let pods = get(m, &["pods"]).map(|p| {
        fields([
            (
                "metricName",
                Some(get(&p, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            (
                "currentAverageValue",
                quantity_or_zero(get(&p, &["current", "averageValue"])),
            ),
            ("selector", get(&p, &["metric", "selector"])),
        ])
    });
    let resource = get(m, &["resource"]).map(|r| {
        fields([
            ("name", get(&r, &["name"])),
            (
                "currentAverageUtilization",
                get(&r, &["current", "averageUtilization"]),
            ),
            (
                "currentAverageValue",
                quantity_or_zero(get(&r, &["current", "averageValue"])),
            ),
        ])
    });
    let container_resource = get(m, &["containerResource"]).map(|r| {
        fields([
            ("name", get(&r, &["name"])),
            (
                "currentAverageUtilization",
                get(&r, &["current", "averageUtilization"]),
            ),
            (
                "currentAverageValue",
                quantity_or_zero(get(&r, &["current", "averageValue"])),
            ),
            ("container", get(&r, &["container"])),
        ])
    });
    let external = get(m, &["external"]).map(|e| {
        fields([
            (
                "metricName",
                Some(get(&e, &["metric", "name"]).unwrap_or_else(|| json!(""))),
            ),
            ("metricSelector", get(&e, &["metric", "selector"])),
            (
                "currentValue",
                quantity_or_zero(get(&e, &["current", "value"])),
            ),
            ("currentAverageValue", get(&e, &["current", "averageValue"])),
        ])
    });
    fields([
        ("type", get(m, &["type"])),
        ("object", object),
        ("pods", pods),
        ("resource", resource),
        ("containerResource", container_resource),
        ("external", external),
    ])
}

/// An autoscaling/v1 (annotation) MetricStatus as a v2 MetricStatus.
fn metric_status_from_v1(m: &Value) -> Value {
    let object = get(m, &["object"]).map(|o| {
        fields([
            (
                "current",
                Some(fields([
                    ("averageValue", get(&o, &["averageValue"])),
                    ("value", quantity_or_zero(get(&o, &["currentValue"]))),
                ])),
            ),
            (
                "describedObject",
                cross_version_ref_v2(get(&o, &["target"])),
            ),
            (
                "metric",
                metric_identifier(get(&o, &["metricName"]), get(&o, &["selector"])),
            ),
        ])
    });
    let pods = get(m, &["pods"]).map(|p| {
        fields([
            (
                "current",
                Some(fields([(
                    "averageValue",
                    quantity_or_zero(get(&p, &["currentAverageValue"])),
                )])),
            ),
            (
                "metric",
                metric_identifier(get(&p, &["metricName"]), get(&p, &["selector"])),
            ),
        ])
    });
    let resource_current = |r: &Value| {
        Some(fields([
            ("averageUtilization", get(r, &["currentAverageUtilization"])),
            (
                "averageValue",
                quantity_or_zero(get(r, &["currentAverageValue"])),
            ),
        ]))
    };
    let resource = get(m, &["resource"]).map(|r| {
        fields([
            ("current", resource_current(&r)),
            ("name", get(&r, &["name"])),
        ])
    });
    let container_resource = get(m, &["containerResource"]).map(|r| {
        fields([
            ("container", get(&r, &["container"])),
            ("current", resource_current(&r)),
            ("name", get(&r, &["name"])),
        ])
    });
    let external = get(m, &["external"]).map(|e| {
        fields([
            (
                "current",
                Some(fields([
                    ("averageValue", get(&e, &["currentAverageValue"])),
                    ("value", quantity_or_zero(get(&e, &["currentValue"]))),
                ])),
            ),
            (
                "metric",
                metric_identifier(get(&e, &["metricName"]), get(&e, &["metricSelector"])),
            ),
        ])
    });
    fields([
        ("containerResource", container_resource),
        ("external", external),
        ("object", object),
        ("pods", pods),
        ("resource", resource),
        ("type", get(m, &["type"])),
    ])
}

fn condition_to_v1(c: &Value) -> Value {
    fields([
        ("type", get(c, &["type"])),
        ("status", get(c, &["status"])),
        ("lastTransitionTime", get(c, &["lastTransitionTime"])),
        ("reason", get(c, &["reason"])),
        ("message", get(c, &["message"])),
    ])
}

/// A v2 behavior as upstream's internal type marshals (Go field names, nulls kept).
fn behavior_to_internal(b: &Value) -> Value {
    let rules = |r: Option<Value>| -> Value {
        let Some(r) = r else { return Value::Null };
        let policies = get(&r, &["policies"])
            .and_then(|p| p.as_array().cloned())
            .map(|ps| {
                Value::Array(
                ps.iter()
                    .map(|p| {
                        json!({
                            "Type": get(p, &["type"]).unwrap_or_else(|| json!("")),
                            "Value": get(p, &["value"]).unwrap_or_else(|| json!(0)),
                            "PeriodSeconds": get(p, &["periodSeconds"]).unwrap_or_else(|| json!(0)),
                        })
                    })
                    .collect(),
            )
            });
        json!({
            "StabilizationWindowSeconds": get(&r, &["stabilizationWindowSeconds"]).unwrap_or(Value::Null),
            "SelectPolicy": get(&r, &["selectPolicy"]).unwrap_or(Value::Null),
            "Policies": policies.unwrap_or(Value::Null),
        })
    };
    json!({"ScaleUp": rules(get(b, &["scaleUp"])), "ScaleDown": rules(get(b, &["scaleDown"]))})
}

/// Field lookup ignoring case, as Go's JSON decoding matches struct fields.
fn get_ci(v: &Value, key: &str) -> Option<Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_null())
}

/// The internal-type behavior JSON of the annotation, as a v2 behavior (`None` when empty).
fn behavior_from_internal(b: &Value) -> Option<Value> {
    let rules = |r: Option<Value>| -> Option<Value> {
        let r = r?;
        let policies = get_ci(&r, "Policies")
            .and_then(|p| p.as_array().cloned())
            .map(|ps| {
                Value::Array(
                    ps.iter()
                        .map(|p| {
                            fields([
                                ("periodSeconds", get_ci(p, "PeriodSeconds")),
                                ("type", get_ci(p, "Type")),
                                ("value", get_ci(p, "Value")),
                            ])
                        })
                        .collect(),
                )
            });
        Some(fields([
            ("policies", policies),
            ("selectPolicy", get_ci(&r, "SelectPolicy")),
            (
                "stabilizationWindowSeconds",
                get_ci(&r, "StabilizationWindowSeconds"),
            ),
        ]))
    };
    let out = fields([
        ("scaleDown", rules(get_ci(b, "ScaleDown"))),
        ("scaleUp", rules(get_ci(b, "ScaleUp"))),
    ]);
    (out != json!({})).then_some(out)
}

fn is_cpu_resource(m: &Value) -> bool {
    get(m, &["type"]).as_ref() == Some(&json!("Resource"))
        && get(m, &["resource", "name"]).as_ref() == Some(&json!("cpu"))
}

fn cpu_metric(utilization: Value) -> Value {
    json!({"resource": {"name": "cpu", "target": {"averageUtilization": utilization, "type": "Utilization"}}, "type": "Resource"})
}

fn list(v: Option<Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// autoscaling/v1 → autoscaling/v2, with the round-trip annotations folded back in and v2's
/// defaults applied (upstream applies them whenever it decodes the stored v2 object).
pub(crate) fn hpa_v1_to_v2(v: Value) -> Value {
    let Value::Object(mut o) = v else { return v };
    o.insert("apiVersion".into(), json!("autoscaling/v2"));
    let ann = drop_round_trip_annotations(&mut o);
    if let Some(Value::Object(spec)) = take(&mut o, "spec") {
        let mut metrics: Vec<Value> = list(parse_annotation(&ann, METRIC_SPECS_ANNOTATION))
            .iter()
            .map(metric_spec_from_v1)
            .collect();
        if let Some(target) = spec
            .get("targetCPUUtilizationPercentage")
            .filter(|t| !t.is_null())
        {
            metrics.push(cpu_metric(target.clone()));
        }
        if metrics.is_empty() {
            metrics.push(cpu_metric(json!(
                crate::kinds::autoscaling::DEFAULT_CPU_UTILIZATION
            )));
        }
        let behavior =
            parse_annotation(&ann, BEHAVIOR_ANNOTATION).and_then(|b| behavior_from_internal(&b));
        let spec = fields([
            ("behavior", behavior),
            ("maxReplicas", spec.get("maxReplicas").cloned()),
            ("metrics", Some(Value::Array(metrics))),
            ("minReplicas", spec.get("minReplicas").cloned()),
            (
                "scaleTargetRef",
                cross_version_ref_v2(spec.get("scaleTargetRef").cloned()),
            ),
        ]);
        o.insert("spec".into(), spec);
    }
    if let Some(Value::Object(status)) = take(&mut o, "status") {
        let mut current: Vec<Value> = status
            .get("currentCPUUtilizationPercentage")
            .filter(|c| !c.is_null())
            .map(|c| vec![json!({"resource": {"current": {"averageUtilization": c}, "name": "cpu"}, "type": "Resource"})])
            .unwrap_or_default();
        if let Some(Value::Array(annotated)) = parse_annotation(&ann, METRIC_STATUSES_ANNOTATION) {
            current = annotated.iter().map(metric_status_from_v1).collect();
        }
        let conditions = parse_annotation(&ann, CONDITIONS_ANNOTATION)
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()));
        let status = fields([
            ("conditions", conditions),
            (
                "currentMetrics",
                (!current.is_empty()).then(|| Value::Array(current)),
            ),
            (
                "currentReplicas",
                status.get("currentReplicas").cloned().filter(|r| r != 0),
            ),
            (
                "desiredReplicas",
                Some(status.get("desiredReplicas").cloned().unwrap_or(json!(0))),
            ),
            ("lastScaleTime", status.get("lastScaleTime").cloned()),
            (
                "observedGeneration",
                status.get("observedGeneration").cloned(),
            ),
        ]);
        o.insert("status".into(), status);
    }
    let converted = Value::Object(o);
    match serde_json::from_value::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(
        converted.clone(),
    ) {
        Ok(mut typed) => {
            typed.defaults();
            serde_json::to_value(&typed).unwrap_or(converted)
        }
        Err(_) => converted,
    }
}

/// autoscaling/v2 → autoscaling/v1: what v1 cannot hold goes to annotations.
pub(crate) fn hpa_v2_to_v1(v: Value) -> Value {
    let Value::Object(mut o) = v else { return v };
    o.insert("apiVersion".into(), json!("autoscaling/v1"));
    drop_round_trip_annotations(&mut o);
    let mut notes: Vec<(&str, String)> = Vec::new();
    if let Some(spec) = take(&mut o, "spec") {
        let metrics = list(get(&spec, &["metrics"]));
        let target_cpu = metrics
            .iter()
            .find(|m| is_cpu_resource(m))
            .and_then(|m| get(m, &["resource", "target", "averageUtilization"]));
        let others: Vec<Value> = metrics
            .iter()
            .filter(|m| {
                !(is_cpu_resource(m)
                    && get(m, &["resource", "target", "averageUtilization"]).is_some())
            })
            .map(metric_spec_to_v1)
            .collect();
        if !others.is_empty() {
            notes.push((METRIC_SPECS_ANNOTATION, Value::Array(others).to_string()));
        }
        if let Some(b) = get(&spec, &["behavior"]) {
            notes.push((BEHAVIOR_ANNOTATION, behavior_to_internal(&b).to_string()));
        }
        let spec = fields([
            ("maxReplicas", get(&spec, &["maxReplicas"])),
            ("minReplicas", get(&spec, &["minReplicas"])),
            (
                "scaleTargetRef",
                cross_version_ref_v2(get(&spec, &["scaleTargetRef"])),
            ),
            ("targetCPUUtilizationPercentage", target_cpu),
        ]);
        o.insert("spec".into(), spec);
    }
    if let Some(status) = take(&mut o, "status") {
        let current = list(get(&status, &["currentMetrics"]));
        let current_cpu = current
            .iter()
            .filter(|m| is_cpu_resource(m))
            .filter_map(|m| get(m, &["resource", "current", "averageUtilization"]))
            .next_back();
        if !current.is_empty() {
            let v1: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
            notes.push((METRIC_STATUSES_ANNOTATION, Value::Array(v1).to_string()));
        }
        let conditions = list(get(&status, &["conditions"]));
        if !conditions.is_empty() {
            let v1: Vec<Value> = conditions.iter().map(condition_to_v1).collect();
            notes.push((CONDITIONS_ANNOTATION, Value::Array(v1).to_string()));
        }
        let status = fields([
            ("currentCPUUtilizationPercentage", current_cpu),
            (
                "currentReplicas",
                Some(get(&status, &["currentReplicas"]).unwrap_or(json!(0))),
            ),
            (
                "desiredReplicas",
                Some(get(&status, &["desiredReplicas"]).unwrap_or(json!(0))),
            ),
            ("lastScaleTime", get(&status, &["lastScaleTime"])),
            ("observedGeneration", get(&status, &["observedGeneration"])),
        ]);
        o.insert("status".into(), status);
    }
    for (k, v) in notes {
        annotate(&mut o, k, v);
    }
    Value::Object(o)
}

/// events.k8s.io/v1 field → core/v1 field.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(v: Value, api_version: &str, forward: bool) -> Value {
    let Value::Object(o) = v else { return v };
    let mut out = Map::new();
    for (k, val) in o {
        let renamed = EVENT_RENAMES.iter().find_map(|(new, old)| {
            let (from, to) = if forward { (new, old) } else { (old, new) };
            (k == *from).then(|| to.to_string())
        });
        out.insert(renamed.unwrap_or(k), val);
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// Applies a kind's defaults to a converted object (what upstream's decoding does).
fn defaulted<K: KindHooks>(v: Value) -> Value {
    match serde_json::from_value::<K>(v.clone()) {
        Ok(mut k) => {
            k.defaults();
            serde_json::to_value(&k).unwrap_or(v)
        }
        Err(_) => v,
    }
}

pub(crate) fn events_v1_to_core(v: Value) -> Value {
    defaulted::<k8s_openapi::api::core::v1::Event>(rename(v, "v1", true))
}

pub(crate) fn core_to_events_v1(v: Value) -> Value {
    defaulted::<k8s_openapi::api::events::v1::Event>(rename(v, "events.k8s.io/v1", false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_hpa() -> Value {
        json!({"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"a","namespace":"default"},
            "spec":{"scaleTargetRef":{"kind":"Deployment","name":"d","apiVersion":"apps/v1"},"minReplicas":1,"maxReplicas":5,"targetCPUUtilizationPercentage":70},
            "status":{"currentReplicas":2,"desiredReplicas":3,"currentCPUUtilizationPercentage":55}})
    }

    #[test]
    fn hpa_v1_target_becomes_a_cpu_metric_and_back() {
        let v1 = v1_hpa();
        let v2 = hpa_v1_to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"resource":{"name":"cpu","target":{"averageUtilization":70,"type":"Utilization"}},"type":"Resource"}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            55
        );
        let back = hpa_v2_to_v1(v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"], v1["status"]);
        // The raw current metric is kept for a lossless trip back.
        assert!(back["metadata"]["annotations"][METRIC_STATUSES_ANNOTATION].is_string());
    }

    #[test]
    fn a_v1_hpa_without_target_gets_the_default_cpu_metric() {
        let mut v1 = v1_hpa();
        v1["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("targetCPUUtilizationPercentage");
        let v2 = hpa_v1_to_v2(v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            hpa_v2_to_v1(v2)["spec"]["targetCPUUtilizationPercentage"],
            80
        );
    }

    #[test]
    fn v2_only_fields_round_trip_through_v1_annotations() {
        let v2 = json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"a","namespace":"default"},
            "spec":{
                "behavior":{"scaleDown":{"policies":[{"periodSeconds":15,"type":"Percent","value":100}],"selectPolicy":"Max","stabilizationWindowSeconds":300},
                            "scaleUp":{"policies":[{"periodSeconds":15,"type":"Pods","value":4}],"selectPolicy":"Max","stabilizationWindowSeconds":0}},
                "maxReplicas":5,
                "metrics":[
                    {"resource":{"name":"cpu","target":{"averageUtilization":60,"type":"Utilization"}},"type":"Resource"},
                    {"pods":{"metric":{"name":"qps"},"target":{"averageValue":"10","type":"AverageValue"}},"type":"Pods"}
                ],
                "minReplicas":2,
                "scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"d"}},
            "status":{
                "conditions":[{"lastTransitionTime":"2024-01-01T00:00:00Z","message":"ok","reason":"ReadyForNewScale","status":"True","type":"AbleToScale"}],
                "currentMetrics":[{"resource":{"current":{"averageUtilization":40,"averageValue":"100m"},"name":"cpu"},"type":"Resource"}],
                "currentReplicas":2,"desiredReplicas":2}});
        let v1 = hpa_v2_to_v1(v2.clone());
        let ann = &v1["metadata"]["annotations"];
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(
            ann[METRIC_SPECS_ANNOTATION],
            r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]"#
        );
        assert_eq!(
            ann[BEHAVIOR_ANNOTATION],
            r#"{"ScaleUp":{"StabilizationWindowSeconds":0,"SelectPolicy":"Max","Policies":[{"Type":"Pods","Value":4,"PeriodSeconds":15}]},"ScaleDown":{"StabilizationWindowSeconds":300,"SelectPolicy":"Max","Policies":[{"Type":"Percent","Value":100,"PeriodSeconds":15}]}}"#
        );
        assert_eq!(
            ann[CONDITIONS_ANNOTATION],
            r#"[{"type":"AbleToScale","status":"True","lastTransitionTime":"2024-01-01T00:00:00Z","reason":"ReadyForNewScale","message":"ok"}]"#
        );
        let back = hpa_v1_to_v2(v1);
        assert_eq!(
            back["spec"]["metrics"],
            json!([v2["spec"]["metrics"][1], v2["spec"]["metrics"][0]])
        );
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"], v2["status"]);
        assert!(back["metadata"].get("annotations").is_none());
    }

    proptest::proptest! {
        #[test]
        fn v1_hpa_specs_survive_a_trip_through_v2(target in proptest::option::of(1i32..500), min in 1i32..20, extra in 0i32..20) {
            let mut v1 = v1_hpa();
            v1["spec"]["minReplicas"] = json!(min);
            v1["spec"]["maxReplicas"] = json!(min + extra);
            match target {
                Some(t) => v1["spec"]["targetCPUUtilizationPercentage"] = json!(t),
                None => { v1["spec"].as_object_mut().expect("spec").remove("targetCPUUtilizationPercentage"); }
            }
            let back = hpa_v2_to_v1(hpa_v1_to_v2(v1.clone()));
            let mut want = v1["spec"].clone();
            want["targetCPUUtilizationPercentage"] = json!(target.unwrap_or(80));
            proptest::prop_assert_eq!(&back["spec"], &want);
            proptest::prop_assert_eq!(&back["status"], &v1["status"]);
        }
    }

    #[test]
    fn events_fields_are_renamed_both_ways() {
        let e = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e","namespace":"default"},
            "note":"hi","regarding":{"name":"p"},"reason":"R","reportingController":"kubelet","reportingInstance":"","deprecatedSource":{"component":"kubelet"}});
        let core = events_v1_to_core(e.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["reportingComponent"], "kubelet");
        assert_eq!(core["source"]["component"], "kubelet");
        assert_eq!(core_to_events_v1(core), e);
    }

    #[test]
    fn core_events_read_through_events_k8s_io_show_empty_regarding_and_source() {
        let core = json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e","namespace":"default"},"message":"m"});
        let e = core_to_events_v1(core);
        assert_eq!(e["note"], "m");
        assert_eq!(e["regarding"], json!({}));
        assert_eq!(e["deprecatedSource"], json!({}));
    }
}
