//! The per-kind strategy: what the generic API server asks of a kind, and the typed adapter
//! ([`Typed`]) that lets each kind write its hooks ([`KindHooks`]) against k8s-openapi's types.
//!
//! The generic server fixes the order (as upstream's `BeforeCreate`/`BeforeUpdate` do):
//! decode → defaults → system metadata → `prepare_for_create`/`prepare_for_update` →
//! metadata validation → kind validation → store. Strategies are stateless values.

use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::field_error::ErrorList;
use crate::table::{self, Column, RowContext};
use crate::validation::NameRule;

/// A failure to decode a body into a kind: the message says which field and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Everything kind-specific the API server needs, on JSON values (object-safe).
pub trait Strategy: Send + Sync {
    /// Decodes a JSON object into this kind's canonical form: fields the kind does not have are
    /// dropped and their paths (e.g. `spec.foo`) appended to `unknown`; wrongly typed fields fail.
    fn decode(&self, body: Value, unknown: &mut Vec<String>) -> Result<Value, DecodeError>;

    /// Upstream's defaulting (`SetDefaults_*`): run on every object a client sends.
    fn apply_defaults(&self, obj: &mut Value);

    /// Resets what a client may not set on create (after the generic code cleared status).
    fn prepare_for_create(&self, obj: &mut Value);

    /// Carries over what a client may not change on update (after the generic code kept status).
    fn prepare_for_update(&self, new: &mut Value, old: &Value);

    /// Kind-specific validation of a new object (metadata is validated generically).
    fn validate(&self, obj: &Value, errs: &mut ErrorList);

    /// Kind-specific validation of an update (immutable fields and the like), in addition to
    /// `validate` on the new object.
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut ErrorList);

    /// How names of this kind are checked.
    fn name_rule(&self) -> NameRule;

    /// Table columns, as upstream's printer for the kind defines them.
    fn columns(&self) -> &'static [Column];

    /// One table row's cells, matching `columns()`.
    fn row(&self, obj: &Value, ctx: &RowContext) -> Vec<Value>;

    /// Field selector labels this kind supports beyond metadata.name and metadata.namespace.
    fn field_selectors(&self) -> &'static [&'static str];

    /// The value of a supported field selector label on `obj`.
    fn field_value(&self, obj: &Value, field: &str) -> Option<String>;
}

/// Per-kind behaviour written against the typed k8s-openapi struct. Every method has a default
/// that does nothing, so a kind overrides only what upstream's strategy for it does.
pub trait KindHooks:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Default
    + Clone
    + Send
    + Sync
    + 'static
{
    /// How names are checked (upstream's ValidateNameFunc for the kind).
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;

    /// Field selector labels beyond metadata.name and metadata.namespace.
    const FIELD_SELECTORS: &'static [&'static str] = &[];

    fn defaults(&mut self) {}

    fn prepare_for_create(&mut self) {}

    fn prepare_for_update(&mut self, _old: &Self) {}

    fn validate(&self, _errs: &mut ErrorList) {}

    fn validate_update(&self, _old: &Self, _errs: &mut ErrorList) {}

    /// Upstream's printer columns; the default is the generic "Name, Created At" table.
    fn columns() -> &'static [Column] {
        table::DEFAULT_COLUMNS
    }

    fn row(&self, _ctx: &RowContext) -> Vec<Value> {
        table::default_row(self.metadata())
    }

    fn field_value(&self, _field: &str) -> Option<String> {
        None
    }
}

/// Adapts a [`KindHooks`] type to the object-safe [`Strategy`].
pub struct Typed<K>(PhantomData<fn() -> K>);

impl<K> Typed<K> {
    pub const NEW: Self = Typed(PhantomData);
}

/// Converts a JSON value to `K`. Values reaching hooks were produced by `decode`, so this only
/// fails on a bug; the hook is then skipped rather than corrupting the object.
fn typed<K: DeserializeOwned>(v: &Value) -> Option<K> {
    K::deserialize(v).ok()
}

fn store_back<K: Serialize>(k: &K, into: &mut Value) {
    if let Ok(v) = serde_json::to_value(k) {
        *into = v;
    }
}

/// Renders an ignored field's path as upstream's strict decoder does: `spec.containers[0].foo`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

impl<K: KindHooks> Strategy for Typed<K> {
    fn decode(&self, body: Value, unknown: &mut Vec<String>) -> Result<Value, DecodeError> {
        let k: K = serde_ignored::deserialize(&body, |path| unknown.push(field_path(&path)))
            .map_err(|e| DecodeError(e.to_string()))?;
        serde_json::to_value(&k).map_err(|e| DecodeError(e.to_string()))
    }

    fn apply_defaults(&self, obj: &mut Value) {
        if let Some(mut k) = typed::<K>(obj) {
            k.defaults();
            store_back(&k, obj);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(mut k) = typed::<K>(obj) {
            k.prepare_for_create();
            store_back(&k, obj);
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if let (Some(mut k), Some(o)) = (typed::<K>(new), typed::<K>(old)) {
            k.prepare_for_update(&o);
            store_back(&k, new);
        }
    }

    fn validate(&self, obj: &Value, errs: &mut ErrorList) {
        if let Some(k) = typed::<K>(obj) {
            k.validate(errs);
        }
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut ErrorList) {
        if let (Some(k), Some(o)) = (typed::<K>(new), typed::<K>(old)) {
            k.validate_update(&o, errs);
        }
    }

    fn name_rule(&self) -> NameRule {
        K::NAME_RULE
    }

    fn columns(&self) -> &'static [Column] {
        K::columns()
    }

    fn row(&self, obj: &Value, ctx: &RowContext) -> Vec<Value> {
        match typed::<K>(obj) {
            Some(k) => k.row(ctx),
            None => vec![obj["metadata"]["name"].clone()],
        }
    }

    fn field_selectors(&self) -> &'static [&'static str] {
        K::FIELD_SELECTORS
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        typed::<K>(obj).and_then(|k| k.field_value(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn decode_reports_unknown_fields_with_their_paths() {
        let s: &dyn Strategy = &Typed::<ConfigMap>::NEW;
        let mut unknown = Vec::new();
        let out = s
            .decode(
                json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","bogus":1},"data":{"k":"v"},"spec":{"x":1}}),
                &mut unknown,
            )
            .expect("decodes");
        assert_eq!(
            unknown,
            vec!["metadata.bogus".to_string(), "spec".to_string()]
        );
        assert_eq!(out["data"]["k"], "v");
        assert!(out.get("spec").is_none());
    }

    #[test]
    fn unknown_fields_in_lists_are_reported_with_indexes() {
        let s: &dyn Strategy = &Typed::<k8s_openapi::api::core::v1::Pod>::NEW;
        let mut unknown = Vec::new();
        s.decode(
            json!({"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"},{"name":"d","image":"i","foo":1}]}}),
            &mut unknown,
        )
        .expect("decodes");
        assert_eq!(unknown, vec!["spec.containers[1].foo".to_string()]);
    }

    #[test]
    fn decode_rejects_wrongly_typed_fields() {
        let s: &dyn Strategy = &Typed::<ConfigMap>::NEW;
        let mut unknown = Vec::new();
        let err = s
            .decode(
                json!({"metadata":{"name":"a"},"data":{"k":1}}),
                &mut unknown,
            )
            .expect_err("must fail");
        assert!(err.0.contains("invalid type"), "{}", err.0);
    }
}
