//! The empty object of a kind as upstream's Go types serialize it, which is what a create is
//! compared with: struct-valued fields (`metadata`, `spec`, `status`, `spec.template`, ...)
//! and required fields are present even when empty. That decides whether a created parent
//! is owned itself (`.` in fieldsV1) or only through its children, as upstream records it:
//! `f:containers` has no `.` (the field is always serialized), `f:ports` has one.

use capstan_api::catalogue::ResourceInfo;
use capstan_openapi::{Model, Shape, TypeRef};
use serde_json::{json, Map, Value};

/// Optional fields that are values, not pointers, in upstream's Go types, so they are
/// serialized (as `{}`) in an empty object. Only those reachable from a kind's root through
/// other such fields matter.
const VALUE_STRUCTS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "updateStrategy"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy"),
    ("io.k8s.api.core.v1.ServiceStatus", "loadBalancer"),
    ("io.k8s.api.networking.v1.IngressStatus", "loadBalancer"),
    ("io.k8s.api.core.v1.NodeStatus", "daemonEndpoints"),
    ("io.k8s.api.core.v1.NodeStatus", "nodeInfo"),
    ("io.k8s.api.core.v1.NodeDaemonEndpoints", "kubeletEndpoint"),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "resources"),
    ("io.k8s.api.core.v1.Event", "source"),
];

/// Fields every kind's Go type holds by value.
const ALWAYS: &[&str] = &["metadata", "spec", "status"];

/// The empty object of `info`'s kind.
pub fn object(info: &ResourceInfo) -> Value {
    match Model::for_kind(info.group, info.version, info.kind) {
        Some(t) => Value::Object(zero_struct(t, 0)),
        None => json!({"metadata": {"creationTimestamp": null}}),
    }
}

fn zero_struct(t: TypeRef, depth: usize) -> Map<String, Value> {
    let mut out = Map::new();
    // Recursive types (JSONSchemaProps) end in required pointers long before this.
    if depth > 12 {
        return out;
    }
    let name = t.schema_name().unwrap_or_default();
    let required: Vec<&str> = t.required_fields().collect();
    for field in t.field_names() {
        if matches!(field, "apiVersion" | "kind") {
            continue;
        }
        let by_value = ALWAYS.contains(&field) || VALUE_STRUCTS.contains(&(name, field));
        if !by_value && !required.contains(&field) {
            continue;
        }
        let Some(ft) = t.field(field) else { continue };
        let v = match ft.shape() {
            Shape::Object if field == "metadata" => json!({"creationTimestamp": null}),
            // A required struct behind a pointer would be null, but null and {} compare alike
            // here: both make the field present.
            Shape::Object => Value::Object(zero_struct(ft, depth + 1)),
            // A required slice or map is serialized as null; a scalar's zero value does not
            // matter here (any present value is "not added").
            _ => Value::Null,
        };
        out.insert(field.to_string(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::catalogue;

    #[test]
    fn an_empty_deployment_has_its_value_structs_and_null_required_lists() {
        let d = object(catalogue::lookup("apps", "v1", "deployments").expect("deployments"));
        assert_eq!(d["metadata"], json!({"creationTimestamp": null}));
        assert_eq!(d["spec"]["strategy"], json!({}));
        assert_eq!(
            d["spec"]["template"]["metadata"],
            json!({"creationTimestamp": null})
        );
        assert_eq!(d["spec"]["template"]["spec"]["containers"], Value::Null);
        assert!(d["spec"]["template"]["spec"].get("volumes").is_none());
        assert_eq!(d["status"], json!({}));
    }

    #[test]
    fn an_empty_config_map_is_just_metadata() {
        let c = object(catalogue::lookup("", "v1", "configmaps").expect("configmaps"));
        assert_eq!(c, json!({"metadata": {"creationTimestamp": null}}));
    }
}
