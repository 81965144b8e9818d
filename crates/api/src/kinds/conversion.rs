//! Conversions between a served version and the version its objects are stored in, for kinds
//! that two group-versions serve from one storage (HPA autoscaling/v1 as v2, events.k8s.io/v1
//! events as core/v1 events). Both directions work on JSON and keep unknown-to-the-other fields
//! out, as upstream's conversion functions do.

use serde_json::{json, Map, Value};

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

fn take(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    obj.remove(key).filter(|v| !v.is_null())
}

fn put(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        obj.insert(key.to_string(), v);
    }
}

fn hpa_v1_to_v2(v: Value) -> Value {
    let Value::Object(mut o) = v else { return v };
    o.insert("apiVersion".into(), json!("autoscaling/v2"));
    if let Some(Value::Object(mut spec)) = take(&mut o, "spec") {
        if let Some(target) = take(&mut spec, "targetCPUUtilizationPercentage") {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]),
            );
        }
        o.insert("spec".into(), Value::Object(spec));
    }
    if let Some(Value::Object(mut status)) = take(&mut o, "status") {
        if let Some(current) = take(&mut status, "currentCPUUtilizationPercentage") {
            status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]),
            );
        }
        o.insert("status".into(), Value::Object(status));
    }
    Value::Object(o)
}

fn cpu_utilization(metrics: Option<&Value>, field: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        let r = m.get("resource")?;
        if m.get("type")? == "Resource" && r.get("name")? == "cpu" {
            r.get(field)?.get("averageUtilization").cloned()
        } else {
            None
        }
    })
}

fn hpa_v2_to_v1(v: Value) -> Value {
    let Value::Object(mut o) = v else { return v };
    o.insert("apiVersion".into(), json!("autoscaling/v1"));
    if let Some(Value::Object(spec)) = take(&mut o, "spec") {
        let mut out = Map::new();
        for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            put(&mut out, k, spec.get(k).cloned());
        }
        put(
            &mut out,
            "targetCPUUtilizationPercentage",
            cpu_utilization(spec.get("metrics"), "target"),
        );
        o.insert("spec".into(), Value::Object(out));
    }
    if let Some(Value::Object(status)) = take(&mut o, "status") {
        let mut out = Map::new();
        for k in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            put(&mut out, k, status.get(k).cloned());
        }
        put(
            &mut out,
            "currentCPUUtilizationPercentage",
            cpu_utilization(status.get("currentMetrics"), "current"),
        );
        o.insert("status".into(), Value::Object(out));
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

fn events_v1_to_core(v: Value) -> Value {
    rename(v, "v1", true)
}

fn core_to_events_v1(v: Value) -> Value {
    rename(v, "events.k8s.io/v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_v1_target_becomes_a_cpu_metric_and_back() {
        let v1 = json!({"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"a"},
            "spec":{"scaleTargetRef":{"kind":"Deployment","name":"d","apiVersion":"apps/v1"},"minReplicas":1,"maxReplicas":5,"targetCPUUtilizationPercentage":70}});
        let v2 = hpa_v1_to_v2(v1.clone());
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);
        let back = hpa_v2_to_v1(v2);
        assert_eq!(back["spec"], v1["spec"]);
    }

    #[test]
    fn events_fields_are_renamed_both_ways() {
        let e = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","note":"hi","regarding":{"name":"p"},"reason":"R"});
        let core = events_v1_to_core(e.clone());
        assert_eq!(core["message"], "hi");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core_to_events_v1(core), e);
    }
}
