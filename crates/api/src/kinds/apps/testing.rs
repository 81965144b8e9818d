//! Test helpers shared by the non-core kinds' tests: run an object through the same hook
//! sequence the API server uses, and render errors and rows as strings.

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::catalogue;
use crate::strategy::{KindHooks, Strategy, Typed};
use crate::table::RowContext;

/// The uid every created test object gets.
pub(crate) const UID: &str = "0b2c56e4-1f4e-4d0e-9a57-7c0a0f7a1a11";

fn info<K: KindHooks>() -> Option<&'static catalogue::ResourceInfo> {
    catalogue::lookup_kind(K::GROUP, K::VERSION, K::KIND)
}

/// Decodes `v` as `K`, failing the test on unknown or wrongly typed fields.
pub(crate) fn decode<K: KindHooks>(v: Value) -> Value {
    let mut unknown = Vec::new();
    let out = Typed::<K>::NEW.decode(v, &mut unknown).expect("decodes");
    assert!(unknown.is_empty(), "unknown fields {unknown:?}");
    out
}

/// What the server does before validating a create: system metadata, status reset,
/// defaults, create preparation.
pub(crate) fn create<K: KindHooks>(v: Value) -> Value {
    let s = Typed::<K>::NEW;
    let mut v = decode::<K>(v);
    v["metadata"]["uid"] = json!(UID);
    v["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
    if info::<K>().is_some_and(|i| i.has_status() && !i.keeps_status_on_create) {
        v["status"] = json!({});
    }
    s.apply_defaults(&mut v);
    s.prepare_for_create(&mut v);
    v
}

/// Kind validation messages of a new object.
pub(crate) fn errors<K: KindHooks>(v: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    Typed::<K>::NEW.validate(v, &mut errs);
    errs.iter().map(ToString::to_string).collect()
}

/// An update as the server runs it: status carried over, defaults, preparation; then the
/// validation messages (new object and update rules).
pub(crate) fn update<K: KindHooks>(new: Value, old: &Value) -> (Value, Vec<String>) {
    let s = Typed::<K>::NEW;
    let mut new = decode::<K>(new);
    new["metadata"]["uid"] = old["metadata"]["uid"].clone();
    if info::<K>().is_some_and(|i| i.has_status()) {
        new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
    }
    s.apply_defaults(&mut new);
    s.prepare_for_update(&mut new, old);
    let mut errs = Vec::new();
    s.validate(&new, &mut errs);
    s.validate_update(&new, old, &mut errs);
    (new, errs.iter().map(ToString::to_string).collect())
}

/// The table row of `v` one hour after 2024-01-01T00:00:00Z.
pub(crate) fn row<K: KindHooks>(v: &Value) -> Vec<Value> {
    let now: Timestamp = "2024-01-01T01:00:00Z".parse().expect("time");
    let cells = Typed::<K>::NEW.row(v, &RowContext { now });
    assert_eq!(cells.len(), K::columns().len(), "one cell per column");
    cells
}
