//! Strategic merge patch (`application/strategic-merge-patch+json`), Kubernetes' patch format
//! that merges lists by key where the schema says so. Entry points: [`apply`] (what the API
//! server does with a PATCH), [`diff`] (the two-way patch kubectl computes for `edit`),
//! [`three_way`] (the patch of client-side `kubectl apply`).
//!
//! Driven by the [`crate::model`]: each field's patch strategy and merge key come from the same
//! schemas the OpenAPI documents serve. Fields the model does not know (not in the schema) merge
//! like maps and replace like lists rather than failing: whether unknown fields are acceptable
//! at all is the decoder's call (fieldValidation), made after the patch is applied.
//!
//! Directives: `$patch: replace|delete` on maps, `$patch: replace|delete` items in lists,
//! `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`; `null` deletes.

mod apply;
mod diff;
mod error;
mod list;

use serde_json::{Map, Value};

pub use error::{Error, Result};

use crate::model::{Model, PatchMeta, PatchStrategy, Shape, TypeRef};

pub(crate) const DIRECTIVE: &str = "$patch";
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
pub(crate) const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
pub(crate) const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// Applies `patch` to `original` (both JSON objects); `ty` is the object's type, e.g.
/// `Model::for_kind("apps", "v1", "Deployment")`. Returns the patched object; neither input
/// changes.
pub fn apply(original: &Value, patch: &Value, ty: Option<TypeRef>) -> Result<Value> {
    let original = as_object(original)?;
    let patch = as_object(patch)?;
    apply::merge_map(original.clone(), patch.clone(), ty, apply::APPLY, "").map(Value::Object)
}

/// [`apply`] for a kind given by group, version and kind (group "" for the core group).
pub fn apply_to_kind(
    original: &Value,
    patch: &Value,
    group: &str,
    version: &str,
    kind: &str,
) -> Result<Value> {
    apply(original, patch, Model::for_kind(group, version, kind))
}

/// The two-way patch from `original` to `modified` (with `$setElementOrder` lists, as kubectl
/// computes it): `apply(original, diff(original, modified))` equals `modified`. `{}` when equal.
pub fn diff(original: &Value, modified: &Value, ty: Option<TypeRef>) -> Result<Value> {
    let opts = diff::DiffOptions {
        set_element_order: true,
        ..Default::default()
    };
    diff::diff_maps(as_object(original)?, as_object(modified)?, ty, opts, "").map(Value::Object)
}

/// The three-way patch of client-side apply: `original` is the last applied configuration,
/// `modified` the new one, `current` the live object. Changes are taken against the live
/// object, deletions only of what the user had applied before (fields others set survive).
pub fn three_way(
    original: &Value,
    modified: &Value,
    current: &Value,
    ty: Option<TypeRef>,
) -> Result<Value> {
    let (original, modified, current) = (
        as_object(original)?,
        as_object(modified)?,
        as_object(current)?,
    );
    let delta = diff::diff_maps(
        current,
        modified,
        ty,
        diff::DiffOptions {
            ignore_deletions: true,
            set_element_order: true,
            ..Default::default()
        },
        "",
    )?;
    let deletions = diff::diff_maps(
        original,
        modified,
        ty,
        diff::DiffOptions {
            ignore_changes_and_additions: true,
            set_element_order: true,
            ..Default::default()
        },
        "",
    )?;
    apply::merge_map(deletions, delta, ty, apply::COMBINE, "").map(Value::Object)
}

fn as_object(v: &Value) -> Result<&Map<String, Value>> {
    v.as_object().ok_or(Error::NotAnObject {
        found: error::type_name(v),
    })
}

/// The type of `key` under `ty`: a struct's field, or a map's value type.
pub(crate) fn child(ty: Option<TypeRef>, key: &str) -> Option<TypeRef> {
    let ty = ty?;
    if ty.shape() == Shape::Map {
        ty.items()
    } else {
        ty.field(key)
    }
}

/// How a position merges; unknown positions get the defaults (maps merge, lists replace).
pub(crate) fn meta_of(ty: Option<TypeRef>) -> PatchMeta {
    ty.map(|t| t.patch_meta()).unwrap_or(PatchMeta {
        shape: Shape::Untyped,
        strategy: PatchStrategy::Default,
        merge_key: None,
        list_type: None,
        map_keys: Vec::new(),
        map_type: None,
    })
}

#[cfg(test)]
mod tests;
