//! Upstream's ValidatePodSpec and everything under it (volumes, containers, probes, resources,
//! security contexts, scheduling constraints), with upstream's field paths and messages.
//! The common, user-facing checks are here; exotic volume plugins only get their type counted.
//!
//! One module per subject; this one keeps what they share (the options, small helpers) and
//! re-exports what the rest of the crate calls.

mod claims;
mod containers;
mod dns;
mod env;
mod field_refs;
mod mounts;
mod probes;
mod resources;
mod scheduling;
mod security;
mod spec;
mod template;
mod volumes;

use serde_json::Value;

pub(crate) use claims::{check_access_modes, validate_pvc_spec};
pub(crate) use containers::image_whitespace;
pub(crate) use resources::parsed;
pub(crate) use scheduling::taint_effect;
pub(crate) use spec::validate_spec;
pub(crate) use template::{pod_annotations, validate_template};
pub(crate) use volumes::{host_path, nfs};

/// Where a pod spec sits, which changes a few rules (upstream's PodValidationOptions).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// The spec is a Pod's own, not a template's.
    pub resource_is_pod: bool,
}

const MAX_INT32: i64 = i32::MAX as i64;

fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
