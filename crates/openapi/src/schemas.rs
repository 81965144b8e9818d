//! The `components.schemas` of every document: k8s-openapi's schemars schemas, rewritten into the
//! shape upstream serves. Entry point: [`all`].
//!
//! What is added to k8s-openapi's schemas, and why:
//! - `$ref` with siblings becomes `allOf: [{$ref}]` plus the siblings (schemars' RemoveRefSiblings),
//!   as upstream writes it; `kubectl explain` prints a field's description and then its type's
//!   only in that form.
//! - the field extensions from [`crate::extensions`] (kubectl's client-side apply reads patch
//!   strategies and merge keys from here; server-side apply reads list and map types);
//! - `x-kubernetes-group-version-kind` on kinds (kubectl finds a kind's schema by it), with every
//!   served group-version on DeleteOptions and WatchEvent, as upstream does;
//! - list kinds (`DeploymentList`...), which k8s-openapi models as a generic without a schema;
//! - IntOrString and Quantity in upstream's form (`oneOf`, no `type`), so explain shows
//!   `<IntOrString>` and validators accept both shapes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::extensions;
use crate::kinds::{self, KindSchema};

pub(crate) const REF_PREFIX: &str = "#/components/schemas/";
pub(crate) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(crate) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(crate) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(crate) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(crate) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Every schema any document can reference, by component name, in name order.
pub(crate) fn all() -> &'static BTreeMap<String, Value> {
    static ALL: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    ALL.get_or_init(build)
}

/// A `$ref` value pointing at a component.
pub(crate) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// The component name a `$ref` string points at.
pub(crate) fn ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix(REF_PREFIX)
}

/// The component name of a kind's list ("io.k8s.api.apps.v1.DeploymentList").
pub(crate) fn list_name(kind: &KindSchema) -> String {
    format!("{}List", (kind.schema_name)())
}

fn build() -> BTreeMap<String, Value> {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator();
    for kind in kinds::KINDS {
        (kind.register)(&mut generator);
    }
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::APIVersions>();
    generator.subschema_for::<meta::APIGroupList>();
    generator.subschema_for::<meta::APIGroup>();
    // WatchEvent's schema does not depend on its parameter.
    generator.subschema_for::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>();

    let mut out: BTreeMap<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (name, schema) in out.iter_mut() {
        decorate(name, schema);
    }
    for kind in kinds::KINDS.iter().filter(|k| k.listable) {
        let (name, schema) = list_schema(kind);
        out.insert(name, schema);
    }
    add_group_version_kinds(&mut out);
    out
}

/// Adds the field extensions and fixes the schemas upstream writes differently.
fn decorate(name: &str, schema: &mut Value) {
    match name {
        INT_OR_STRING => {
            *schema = json!({
                "description": schema.get("description").cloned().unwrap_or(Value::Null),
                "format": "int-or-string",
                "oneOf": [{ "type": "integer" }, { "type": "string" }],
            });
            return;
        }
        QUANTITY => {
            *schema = json!({
                "description": schema.get("description").cloned().unwrap_or(Value::Null),
                "oneOf": [{ "type": "string" }, { "type": "number" }],
            });
            return;
        }
        // Upstream describes these any-shaped values by their description alone.
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" =>
        {
            *schema =
                json!({ "description": schema.get("description").cloned().unwrap_or(Value::Null) });
            return;
        }
        _ => {}
    }
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    fix_required(name, obj);
    if extensions::UNIONS.contains(&name) {
        obj.insert(
            "x-kubernetes-unions".into(),
            json!([{ "discriminator": "type", "fields-to-discriminateBy": { "localhostProfile": "LocalhostProfile" } }]),
        );
    }
    if name == WATCH_EVENT {
        if let Some(object) = obj.get_mut("properties").and_then(|p| p.get_mut("object")) {
            *object = json!({
                "allOf": [object.clone()],
                "description": "Object is:\n * If Type is Added or Modified: the new state of the object.\n * If Type is Deleted: the state of the object immediately before deletion.\n * If Type is Error: *Status is recommended; other types may make sense\n   depending on context.",
            });
        }
    }
    if let Some(map_type) = extensions::struct_map_type(name) {
        obj.insert("x-kubernetes-map-type".into(), map_type.into());
    }
    let Some(properties) = obj.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for field in properties.values_mut() {
        wrap_item_ref(field);
    }
    for f in extensions::fields_of(name) {
        let Some(field) = properties.get_mut(f.name).and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(default) = f
            .default
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        {
            field.insert("default".into(), default);
        }
        if let Some(s) = f.strategy {
            field.insert("x-kubernetes-patch-strategy".into(), s.into());
        }
        if let Some(k) = f.merge_key {
            field.insert("x-kubernetes-patch-merge-key".into(), k.into());
        }
        if let Some(t) = f.list_type {
            field.insert("x-kubernetes-list-type".into(), t.into());
        }
        if !f.map_keys.is_empty() {
            field.insert("x-kubernetes-list-map-keys".into(), json!(f.map_keys));
        }
        if let Some(t) = f.map_type {
            field.insert("x-kubernetes-map-type".into(), t.into());
        }
    }
}

/// Upstream never requires `metadata`; a few other lists differ too (see the fixes table).
fn fix_required(name: &str, obj: &mut Map<String, Value>) {
    let fix = extensions::REQUIRED_FIXES
        .iter()
        .find(|(n, _, _)| *n == name);
    let Some(Value::Array(required)) = obj.get_mut("required") else {
        if let Some((_, _, add)) = fix.filter(|(_, _, add)| !add.is_empty()) {
            obj.insert("required".into(), json!(add));
        }
        return;
    };
    required.retain(|r| {
        r != "metadata" && !fix.is_some_and(|(_, drop, _)| drop.iter().any(|d| r == d))
    });
    if let Some((_, _, add)) = fix {
        for a in add.iter() {
            if !required.iter().any(|r| r == a) {
                required.push(Value::from(*a));
            }
        }
    }
    if required.is_empty() {
        obj.remove("required");
    }
}

/// Array items that are a bare `$ref` become `allOf: [{$ref}]` with `default: {}`, as upstream
/// writes items of struct type.
fn wrap_item_ref(field: &mut Value) {
    let Some(items) = field.get_mut("items") else {
        return;
    };
    if items.get("$ref").is_some() && items.as_object().is_some_and(|o| o.len() == 1) {
        *items = json!({ "allOf": [items.clone()], "default": {} });
    }
}

/// The schema of a kind's list, as upstream's `<Kind>List` types look.
fn list_schema(kind: &KindSchema) -> (String, Value) {
    let item = (kind.schema_name)();
    let name = list_name(kind);
    let (description, items_description) = extensions::LIST_DESCRIPTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, d, i)| (d.to_string(), i.to_string()))
        .unwrap_or_else(|| {
            (
                format!("{}List is a list of {}.", kind.kind, kind.kind),
                format!("Items is the list of {}.", kind.kind),
            )
        });
    let schema = json!({
        "description": description,
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": items_description,
                "items": { "allOf": [reference(&item)], "default": {} },
                "type": "array",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "allOf": [reference("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")],
                "default": {},
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "required": ["items"],
        "type": "object",
    });
    (name, schema)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn push_gvk(schemas: &mut BTreeMap<String, Value>, name: &str, entry: Value) {
    let Some(obj) = schemas.get_mut(name).and_then(Value::as_object_mut) else {
        return;
    };
    let list = obj
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        if !items.contains(&entry) {
            items.push(entry);
        }
    }
}

/// Tags kinds with their group-version-kind. DeleteOptions and WatchEvent are registered in
/// every group-version upstream, so they list all served ones, sorted as upstream sorts them.
fn add_group_version_kinds(schemas: &mut BTreeMap<String, Value>) {
    for kind in kinds::KINDS {
        push_gvk(
            schemas,
            &(kind.schema_name)(),
            gvk(kind.group, kind.version, kind.kind),
        );
        if kind.listable {
            let list_kind = format!("{}List", kind.kind);
            push_gvk(
                schemas,
                &list_name(kind),
                gvk(kind.group, kind.version, &list_kind),
            );
        }
    }
    push_gvk(schemas, STATUS, gvk("", "v1", "Status"));
    push_gvk(schemas, API_RESOURCE_LIST, gvk("", "v1", "APIResourceList"));
    let mut group_versions: Vec<(&str, &str)> = capstan_api::catalogue::all()
        .iter()
        .map(|r| (r.group, r.version))
        .chain(kinds::KINDS.iter().map(|k| (k.group, k.version)))
        .collect();
    group_versions.sort();
    group_versions.dedup();
    for (group, version) in group_versions {
        push_gvk(
            schemas,
            DELETE_OPTIONS,
            gvk(group, version, "DeleteOptions"),
        );
        push_gvk(schemas, WATCH_EVENT, gvk(group, version, "WatchEvent"));
    }
}

/// Names of every component `value` references, directly or not, added to `out`.
pub(crate) fn collect_refs(value: &Value, out: &mut std::collections::BTreeSet<String>) {
    let schemas = all();
    let mut stack: Vec<&Value> = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "$ref" {
                        if let Some(name) = child.as_str().and_then(ref_name) {
                            if out.insert(name.to_string()) {
                                if let Some(target) = schemas.get(name) {
                                    stack.push(target);
                                }
                            }
                        }
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
}

/// The subset of [`all`] reachable from `roots`, in name order, as a JSON object.
pub(crate) fn closure(roots: &Value) -> Map<String, Value> {
    let mut names = std::collections::BTreeSet::new();
    collect_refs(roots, &mut names);
    let schemas = all();
    names
        .into_iter()
        .filter_map(|n| schemas.get(&n).map(|s| (n, s.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(name: &str) -> &'static Value {
        all()
            .get(name)
            .unwrap_or_else(|| panic!("no schema {name}"))
    }

    #[test]
    fn every_field_in_the_extension_table_exists_in_the_schemas() {
        for (schema_name, f) in extensions::all_fields() {
            let s = schema(schema_name);
            assert!(
                s.pointer(&format!("/properties/{}", f.name)).is_some(),
                "{schema_name} has no field {}",
                f.name
            );
        }
    }

    #[test]
    fn fields_referencing_types_use_all_of_with_their_description() {
        let strategy = schema("io.k8s.api.apps.v1.DeploymentSpec")
            .pointer("/properties/strategy")
            .expect("strategy");
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }

    #[test]
    fn kinds_and_lists_carry_their_group_version_kind() {
        assert_eq!(
            schema("io.k8s.api.apps.v1.Deployment")["x-kubernetes-group-version-kind"],
            json!([{ "group": "apps", "kind": "Deployment", "version": "v1" }])
        );
        assert_eq!(
            schema("io.k8s.api.core.v1.PodList")["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "kind": "PodList", "version": "v1" }])
        );
        let delete = schema(DELETE_OPTIONS)["x-kubernetes-group-version-kind"]
            .as_array()
            .expect("gvk list");
        assert!(delete.len() > 10);
        assert!(
            delete.contains(&json!({ "group": "apps", "kind": "DeleteOptions", "version": "v1" }))
        );
    }

    #[test]
    fn int_or_string_and_quantity_look_like_upstream() {
        assert_eq!(schema(INT_OR_STRING)["format"], "int-or-string");
        assert!(schema(INT_OR_STRING).get("type").is_none());
        assert!(schema(QUANTITY)["oneOf"].is_array());
    }
}

#[cfg(test)]
mod dump {
    #[test]
    #[ignore = "writes the schemas to $CAPSTAN_OPENAPI_DUMP for comparison with upstream"]
    fn dump_schemas() {
        if let Ok(path) = std::env::var("CAPSTAN_OPENAPI_DUMP") {
            let text = serde_json::to_string_pretty(super::all()).expect("json");
            std::fs::write(path, text).expect("write");
        }
    }
}
