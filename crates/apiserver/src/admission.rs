//! Admission that needs other objects than the one written (the kind's strategy sees only its
//! own object): upstream's DefaultIngressClass, DefaultStorageClass,
//! StorageObjectInUseProtection (the protection finalizers) and PersistentVolumeClaimResize.

use capstan_api::catalogue::{self, ResourceInfo};
use capstan_store::{ListOptions, Store};
use serde_json::Value;

use crate::codec;
use crate::error::{from_store, ApiError, ApiResult};

const DEFAULT_INGRESS_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Runs the admission steps for a create of `obj`.
pub async fn on_create(store: &dyn Store, info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if info.group == "networking.k8s.io" && info.plural == "ingresses" {
        default_ingress_class(store, obj).await?;
    }
    if info.group.is_empty() && info.plural == "persistentvolumeclaims" {
        default_storage_class(store, obj).await?;
        add_finalizer(obj, capstan_api::volume::PVC_PROTECTION_FINALIZER);
    }
    if info.group.is_empty() && info.plural == "persistentvolumes" {
        add_finalizer(obj, capstan_api::volume::PV_PROTECTION_FINALIZER);
    }
    Ok(())
}

/// Runs the validating admission steps for an update of `old` to `new` (after the kind's own
/// validation, where upstream runs validating admission).
pub async fn on_update(
    store: &dyn Store,
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> ApiResult<()> {
    if info.group.is_empty() && info.plural == "persistentvolumeclaims" {
        claim_resize(store, info, old, new).await?;
    }
    Ok(())
}

/// StorageObjectInUseProtection: claims and volumes carry a finalizer from creation, which the
/// PV controller removes once no pod uses the claim (or no claim the volume).
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let m = capstan_api::meta::metadata_mut(obj);
    let list = m
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        if !items.iter().any(|f| f.as_str() == Some(finalizer)) {
            items.push(Value::String(finalizer.to_string()));
        }
    }
}

/// The StorageClass named `name`, if stored.
async fn storage_class(store: &dyn Store, name: &str) -> ApiResult<Option<Value>> {
    let Some(classes) = catalogue::lookup("storage.k8s.io", "v1", "storageclasses") else {
        return Ok(None);
    };
    match store
        .get(&codec::key(classes, None, name))
        .await
        .map_err(from_store)?
    {
        Some(kv) => Ok(Some(codec::decode_stored(classes, &kv)?)),
        None => Ok(None),
    }
}

/// DefaultStorageClass: a claim created without a class (no `storageClassName`, not even "",
/// and no beta annotation) gets the default StorageClass, the newest when several are marked.
async fn default_storage_class(store: &dyn Store, obj: &mut Value) -> ApiResult<()> {
    let has_class = obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null());
    let has_annotation = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(capstan_api::volume::BETA_CLASS_ANNOTATION))
        .is_some();
    if has_class || has_annotation {
        return Ok(());
    }
    let Some(classes) = catalogue::lookup("storage.k8s.io", "v1", "storageclasses") else {
        return Ok(());
    };
    let listed = store
        .list(&codec::prefix(classes, None), ListOptions::default())
        .await
        .map_err(from_store)?;
    let mut defaults = Vec::new();
    for kv in &listed.items {
        let class = codec::decode_stored(classes, kv)?;
        let marked = [
            capstan_api::volume::DEFAULT_CLASS_ANNOTATION,
            capstan_api::volume::BETA_DEFAULT_CLASS_ANNOTATION,
        ]
        .iter()
        .any(|a| {
            class
                .pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        });
        if let (true, Some(name)) = (marked, capstan_api::meta::name(&class)) {
            let created = capstan_api::meta::meta_str(&class, "creationTimestamp")
                .unwrap_or("")
                .to_string();
            defaults.push((created, name.to_string()));
        }
    }
    defaults.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    if let Some((_, name)) = defaults.into_iter().next() {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = Value::Object(Default::default());
        }
        obj["spec"]["storageClassName"] = Value::String(name);
    }
    Ok(())
}

fn storage_request(claim: &Value) -> Option<capstan_api::kinds::core::quantity::Quantity> {
    claim
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(|q| capstan_api::kinds::core::quantity::Quantity::parse(q).ok())
}

/// PersistentVolumeClaimResize: a claim may grow only when bound and when its class allows
/// volume expansion (shrinking is refused by validation before this runs).
async fn claim_resize(
    store: &dyn Store,
    info: &ResourceInfo,
    old: &Value,
    new: &Value,
) -> ApiResult<()> {
    let (Some(before), Some(after)) = (storage_request(old), storage_request(new)) else {
        return Ok(());
    };
    if after <= before {
        return Ok(());
    }
    let name = capstan_api::meta::name(new).unwrap_or_default();
    if old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
        return Err(ApiError::forbidden(
            info,
            name,
            "Only bound persistent volume claims can be expanded",
        ));
    }
    let class = new
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let expandable = !class.is_empty()
        && storage_class(store, class)
            .await?
            .and_then(|c| c.get("allowVolumeExpansion").and_then(Value::as_bool))
            == Some(true);
    if !expandable {
        return Err(ApiError::forbidden(
            info,
            name,
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
        ));
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
