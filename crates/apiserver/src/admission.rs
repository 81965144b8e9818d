//! Mutating admission that needs other objects than the one written (the kind's strategy sees
//! only its own object). Today: upstream's DefaultIngressClass.

use capstan_api::catalogue::{self, ResourceInfo};
use capstan_store::{ListOptions, Store};
use serde_json::Value;

use crate::codec;
use crate::error::{from_store, ApiResult};

const DEFAULT_INGRESS_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Runs the admission steps for a create of `obj`.
pub async fn on_create(store: &dyn Store, info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if info.group == "networking.k8s.io" && info.plural == "ingresses" {
        default_ingress_class(store, obj).await?;
    }
    Ok(())
}

/// An Ingress created without a class (neither `spec.ingressClassName` nor the legacy
/// annotation) gets the default IngressClass's name, the newest one when several are marked
/// default, as upstream's DefaultIngressClass admission plugin does. None marked: unchanged.
async fn default_ingress_class(store: &dyn Store, obj: &mut Value) -> ApiResult<()> {
    let has_class = obj
        .pointer("/spec/ingressClassName")
        .is_some_and(|v| !v.is_null());
    let has_annotation = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
        .is_some();
    if has_class || has_annotation {
        return Ok(());
    }
    let Some(classes) = catalogue::lookup("networking.k8s.io", "v1", "ingressclasses") else {
        return Ok(());
    };
    let listed = store
        .list(&codec::prefix(classes, None), ListOptions::default())
        .await
        .map_err(from_store)?;
    let mut defaults = Vec::new();
    for kv in &listed.items {
        let class = codec::decode_stored(classes, kv)?;
        if let Some(name) = default_class_name(&class) {
            let created = capstan_api::meta::meta_str(&class, "creationTimestamp")
                .unwrap_or("")
                .to_string();
            defaults.push((created, name));
        }
    }
    // Newest first; the name breaks ties so that the choice does not depend on key order.
    defaults.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if let Some((_, name)) = defaults.into_iter().next() {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = Value::Object(Default::default());
        }
        obj["spec"]["ingressClassName"] = Value::String(name);
    }
    Ok(())
}

/// The name of `class` when it is marked as the default IngressClass.
fn default_class_name(class: &Value) -> Option<String> {
    let marked = class
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DEFAULT_INGRESS_CLASS))
        .and_then(Value::as_str)
        == Some("true");
    marked
        .then(|| capstan_api::meta::name(class).map(str::to_string))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_classes_annotated_true_are_defaults() {
        let class =
            |v: &str| json!({"metadata": {"name": "c", "annotations": {DEFAULT_INGRESS_CLASS: v}}});
        assert_eq!(default_class_name(&class("true")).as_deref(), Some("c"));
        assert_eq!(default_class_name(&class("false")), None);
        assert_eq!(
            default_class_name(&json!({"metadata": {"name": "c"}})),
            None
        );
    }
}
