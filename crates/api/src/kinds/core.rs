//! core/v1 kinds: one submodule per kind or family of kinds, each implementing
//! [`KindHooks`](crate::strategy::KindHooks) as upstream's registry strategy, validation and
//! printer for the kind do; plus the value checks ([`checks`]) and the resource quantity
//! type ([`quantity`]) they share with pod specs.

pub(crate) mod checks;
mod component_status;
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1 as core;
    use proptest::prelude::*;
    use serde_json::json;

    use crate::strategy::{Strategy, Typed};
    use crate::table::RowContext;

    fn strategies() -> Vec<(&'static str, &'static dyn Strategy)> {
        vec![
            ("Pod", &Typed::<core::Pod>::NEW),
            ("Service", &Typed::<core::Service>::NEW),
            ("Node", &Typed::<core::Node>::NEW),
            ("Namespace", &Typed::<core::Namespace>::NEW),
            ("Endpoints", &Typed::<core::Endpoints>::NEW),
            ("Event", &Typed::<core::Event>::NEW),
            ("ConfigMap", &Typed::<core::ConfigMap>::NEW),
            ("Secret", &Typed::<core::Secret>::NEW),
            ("ServiceAccount", &Typed::<core::ServiceAccount>::NEW),
            ("PersistentVolume", &Typed::<core::PersistentVolume>::NEW),
            (
                "PersistentVolumeClaim",
                &Typed::<core::PersistentVolumeClaim>::NEW,
            ),
            ("LimitRange", &Typed::<core::LimitRange>::NEW),
            ("ResourceQuota", &Typed::<core::ResourceQuota>::NEW),
            (
                "ReplicationController",
                &Typed::<core::ReplicationController>::NEW,
            ),
            ("PodTemplate", &Typed::<core::PodTemplate>::NEW),
        ]
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        let ctx = RowContext::now();
        for (kind, s) in strategies() {
            let mut unknown = Vec::new();
            let mut obj = s
                .decode(
                    json!({"metadata": {"name": "x", "namespace": "d"}}),
                    &mut unknown,
                )
                .expect("decodes");
            s.apply_defaults(&mut obj);
            s.prepare_for_create(&mut obj);
            assert_eq!(s.row(&obj, &ctx).len(), s.columns().len(), "{kind}");
            for f in s.field_selectors() {
                assert!(s.field_value(&obj, f).is_some(), "{kind} {f}");
            }
        }
    }

    proptest! {
        #[test]
        fn hooks_never_panic_on_arbitrary_strings(a in "\\PC{0,16}", b in "\\PC{0,16}", n in any::<i32>()) {
            let body = json!({
                "metadata": {"name": a, "namespace": b, "labels": {a.clone(): b}},
                "spec": {
                    "type": a, "clusterIP": b, "ports": [{"port": n, "name": a, "targetPort": b, "nodePort": n}],
                    "selector": {b.clone(): a}, "containers": [{"name": a, "image": b, "ports": [{"containerPort": n}]}],
                    "capacity": {"storage": a}, "accessModes": [b], "hard": {a.clone(): b},
                    "limits": [{"type": a, "max": {b.clone(): a}}], "finalizers": [a], "podCIDRs": [b],
                    "taints": [{"key": a, "effect": b}], "replicas": n
                },
                "data": {a.clone(): b}, "type": a,
                "subsets": [{"addresses": [{"ip": a}], "ports": [{"port": n, "protocol": b}]}],
                "involvedObject": {"kind": a, "namespace": b}, "reason": a,
                "template": {"metadata": {"labels": {a.clone(): b}}, "spec": {"containers": [{"name": b, "image": a}]}}
            });
            let ctx = RowContext::now();
            for (_, s) in strategies() {
                let mut unknown = Vec::new();
                let Ok(mut obj) = s.decode(body.clone(), &mut unknown) else { continue };
                s.apply_defaults(&mut obj);
                let old = obj.clone();
                s.prepare_for_create(&mut obj);
                let mut errs = Vec::new();
                s.validate(&obj, &mut errs);
                let mut new = obj.clone();
                s.prepare_for_update(&mut new, &old);
                s.validate_update(&new, &old, &mut errs);
                let _ = s.row(&obj, &ctx);
                for f in s.field_selectors() {
                    let _ = s.field_value(&obj, f);
                }
            }
        }
    }
}
