//! core/v1 kinds: one submodule per kind or family of kinds, each implementing
//! [`KindHooks`](crate::strategy::KindHooks) as upstream's registry strategy, validation and
//! printer for the kind do; plus the value checks ([`checks`]) and the resource quantity
//! type ([`quantity`]) they share with pod specs.

pub(crate) mod checks;
mod config;
mod endpoints;
mod event;
mod namespace;
mod node;
mod pod;
mod policy;
pub mod quantity;
mod service;
mod storage;
mod workload;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use crate::field_error::{ErrorList, FieldError, Path};
use crate::table::RowContext;

pub use pod::qos_class;

/// An optional string as `&str`, "" when unset (Go's zero value).
fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// The AGE cell of a row.
fn age_cell(meta: &ObjectMeta, ctx: &RowContext) -> Value {
    json!(ctx.age(meta.creation_timestamp.as_ref()))
}

/// Upstream's validateFinalizerName for core finalizer lists: qualified, and standard unless
/// prefixed.
fn finalizer_name(name: &str, path: &Path, errs: &mut ErrorList) {
    let before = errs.len();
    checks::qualified(name, path, errs);
    if errs.len() == before
        && !name.contains('/')
        && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion")
    {
        errs.push(FieldError::invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}
