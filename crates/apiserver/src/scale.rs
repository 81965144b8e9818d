//! The scale subresource (autoscaling/v1 Scale) of deployments, replicasets, statefulsets and
//! replicationcontrollers: a view of spec.replicas, status.replicas and the selector.

use capstan_api::catalogue::ResourceInfo;
use capstan_api::field_error::FieldError;
use capstan_api::selector::Selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::codec::decode_stored;
use crate::error::{ApiError, ApiResult};
use crate::registry::{ObjectOut, Registry, WriteOptions};

/// The selector as upstream's Scale shows it (`Selector.String()`): a plain map for
/// ReplicationControllers, a `metav1.LabelSelector` for the apps kinds; empty when invalid.
pub fn selector_string(info: &ResourceInfo, sel: &Value) -> String {
    let selector = if info.kind == "ReplicationController" {
        serde_json::from_value::<BTreeMap<String, String>>(sel.clone())
            .ok()
            .map(|m| Selector::from_map(Some(&m)))
    } else {
        serde_json::from_value::<LabelSelector>(sel.clone())
            .ok()
            .and_then(|s| Selector::as_selector(&s).ok())
    };
    selector.map(|s| s.to_string()).unwrap_or_default()
}

/// The Scale view of an object.
pub fn to_scale(info: &ResourceInfo, obj: &Value) -> ApiResult<Value> {
    if info.subresource("scale").is_none() {
        return Err(ApiError::no_such_resource());
    }
    let m = &obj["metadata"];
    let mut metadata = json!({
        "name": m["name"],
        "namespace": m["namespace"],
        "uid": m["uid"],
        "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"],
    });
    if let Some(o) = metadata.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(info, &obj["spec"]["selector"]),
        },
    }))
}

/// Applies a Scale to its object: only spec.replicas changes; a resourceVersion in the Scale is
/// a precondition.
pub fn apply_scale(info: &ResourceInfo, obj: &Value, scale: &Value) -> ApiResult<Value> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let replicas = match &scale["spec"]["replicas"] {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!("Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: invalid type, expected an integer: {v}"))
        })?,
    };
    if replicas < 0 {
        let mut e = ApiError::invalid(
            info,
            name,
            &[FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        );
        e.message = format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0");
        return Err(e);
    }
    let mut new = obj.clone();
    new["spec"]["replicas"] = json!(replicas);
    match scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(rv) => new["metadata"]["resourceVersion"] = json!(rv),
        None => {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
    }
    Ok(new)
}

/// PUT on scale.
pub async fn update_scale(
    reg: &Registry,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    scale: &Value,
    opts: &WriteOptions,
) -> ApiResult<Value> {
    let w = reg
        .update_with(info, ns, name, opts, Some("scale"), |old| {
            Ok((apply_scale(info, old, scale)?, vec![]))
        })
        .await?;
    let obj = match &w.object {
        ObjectOut::Stored(kv) => decode_stored(info, kv)?,
        ObjectOut::Value(v) => v.clone(),
    };
    to_scale(info, &obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_like_kubectl_expects() {
        let s = json!({"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]});
        let deploy =
            capstan_api::catalogue::lookup_kind("apps", "v1", "Deployment").expect("deployments");
        let rc =
            capstan_api::catalogue::lookup_kind("", "v1", "ReplicationController").expect("rcs");
        assert_eq!(selector_string(deploy, &s), "app=web,tier in (a,b)");
        assert_eq!(selector_string(rc, &json!({"b":"y","a":"x"})), "a=x,b=y");
    }

    #[test]
    fn scale_reflects_replicas_and_rejects_negative_values() {
        let info = capstan_api::catalogue::lookup("apps", "v1", "deployments").expect("d");
        let d = json!({"metadata":{"name":"web","namespace":"d","resourceVersion":"5"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}}},"status":{"replicas":2}});
        let s = to_scale(info, &d).expect("scale");
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["selector"], "app=web");
        let bad = json!({"spec":{"replicas":-1}});
        let e = apply_scale(info, &d, &bad).expect_err("negative");
        assert_eq!(e.code, 422);
        let ok = apply_scale(info, &d, &json!({"spec":{"replicas":5}})).expect("ok");
        assert_eq!(ok["spec"]["replicas"], 5);
    }
}
