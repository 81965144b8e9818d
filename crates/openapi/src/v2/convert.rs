//! The Swagger 2.0 document, derived from what the v3 documents already describe. Entry point:
//! [`swagger`].
//!
//! Upstream builds v2 and v3 from the same definitions, and v3 differs only in form; this undoes
//! those differences (kube-openapi's openapiconv does the opposite):
//! - `#/components/schemas/X` references become `#/definitions/X`;
//! - `allOf: [{$ref}]` with siblings becomes `$ref` with siblings. kubectl's client-side
//!   validator (kube-openapi's `pkg/util/proto`) does not read `allOf`: a field in that form
//!   would accept anything, so unknown fields below it would go unreported.
//! - `oneOf` of primitive types (IntOrString, Quantity) becomes `type: string`, as upstream's v2
//!   writes them (that validator accepts any scalar for a string);
//! - keys Swagger 2.0 does not know (`nullable`, `anyOf`, ...) are dropped;
//! - a request body becomes a `body` parameter, media types become `consumes` and `produces`,
//!   and a parameter's `schema` is flattened into the parameter.
//!
//! Every key is written in sorted order, as upstream's JSON has them.

use serde_json::{json, Map, Value};

use crate::document::{document_paths, document_value};
use crate::schemas::{self, REF_PREFIX};

/// Where v2 documents keep their schemas.
pub(crate) const DEFINITIONS_PREFIX: &str = "#/definitions/";

/// Schema keys Swagger 2.0 has besides `$ref`, `allOf`, `items`, `properties` and
/// `additionalProperties` (which hold schemas and are converted) and the `x-` extensions.
const SCHEMA_KEYS: &[&str] = &[
    "default",
    "description",
    "discriminator",
    "enum",
    "example",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "format",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "readOnly",
    "required",
    "title",
    "type",
    "uniqueItems",
];

/// Operation keys copied as they are.
const OPERATION_KEYS: &[&str] = &[
    "deprecated",
    "description",
    "operationId",
    "summary",
    "tags",
];

/// Media types in the order upstream lists them in `consumes` and `produces`; v3's `content`
/// maps have them sorted instead.
const MEDIA_ORDER: &[&str] = &[
    "text/plain",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

/// HTTP methods a path item can hold, in Swagger's order.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// The whole document: every served kind's definitions and every operation of every v3
/// document, with upstream's `info`, security scheme and key order.
pub(crate) fn swagger() -> Value {
    let definitions: Map<String, Value> = schemas::all()
        .iter()
        .map(|(name, s)| (name.clone(), schema(s)))
        .collect();
    let mut paths = std::collections::BTreeMap::new();
    let mut info = json!({ "title": "Kubernetes" });
    for path in document_paths() {
        let doc = document_value(path);
        if let Some(v3_info) = doc.get("info") {
            info = v3_info.clone();
        }
        if let Some(items) = doc.get("paths").and_then(Value::as_object) {
            for (url, item) in items {
                paths.insert(url.clone(), path_item(item));
            }
        }
    }
    json!({
        "definitions": definitions,
        "info": info,
        "paths": paths,
        "security": [{ "BearerToken": [] }],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            },
        },
        "swagger": "2.0",
    })
}

/// `#/components/schemas/X` as `#/definitions/X`; other references unchanged.
fn reference(v3: &Value) -> Value {
    match v3.as_str().and_then(|r| r.strip_prefix(REF_PREFIX)) {
        Some(name) => Value::String(format!("{DEFINITIONS_PREFIX}{name}")),
        None => v3.clone(),
    }
}

/// The reference of `allOf: [{$ref}]`, if that is what `all_of` is.
fn single_ref(all_of: &Value) -> Option<&Value> {
    match all_of.as_array().map(Vec::as_slice) {
        Some([only]) => only
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("$ref")),
        _ => None,
    }
}

/// Whether every alternative of a `oneOf` is a bare primitive type.
fn primitive_alternatives(one_of: &Value) -> bool {
    one_of.as_array().is_some_and(|alts| {
        !alts.is_empty()
            && alts.iter().all(|a| {
                a.as_object().is_some_and(|o| {
                    o.len() == 1
                        && o.get("type").and_then(Value::as_str).is_some_and(|t| {
                            matches!(t, "string" | "integer" | "number" | "boolean")
                        })
                })
            })
    })
}

/// One schema in Swagger 2.0 form.
pub(crate) fn schema(v3: &Value) -> Value {
    let Some(obj) = v3.as_object() else {
        return v3.clone();
    };
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in obj {
        match key.as_str() {
            "$ref" => {
                out.insert(key.clone(), reference(value));
            }
            "allOf" => match single_ref(value) {
                Some(r) => {
                    out.insert("$ref".into(), reference(r));
                }
                None => {
                    let all: Vec<Value> = value
                        .as_array()
                        .map(|a| a.iter().map(schema).collect())
                        .unwrap_or_default();
                    out.insert(key.clone(), Value::Array(all));
                }
            },
            "oneOf" if primitive_alternatives(value) && !obj.contains_key("type") => {
                out.insert("type".into(), "string".into());
            }
            "properties" => {
                let props: Map<String, Value> = value
                    .as_object()
                    .map(|p| p.iter().map(|(k, s)| (k.clone(), schema(s))).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" => {
                let items = match value {
                    Value::Array(list) => Value::Array(list.iter().map(schema).collect()),
                    other => schema(other),
                };
                out.insert(key.clone(), items);
            }
            "additionalProperties" => {
                out.insert(key.clone(), schema(value));
            }
            // Swagger 2.0 has one type per schema; v3.1-style lists keep their first non-null.
            "type" => {
                let ty = match value {
                    Value::Array(types) => types
                        .iter()
                        .find(|t| t.as_str() != Some("null"))
                        .cloned()
                        .unwrap_or(Value::Null),
                    other => other.clone(),
                };
                if !ty.is_null() {
                    out.insert(key.clone(), ty);
                }
            }
            k if k.starts_with("x-") || SCHEMA_KEYS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out.into_iter().collect())
}

/// One path item: its operations and path-level parameters.
fn path_item(v3: &Value) -> Value {
    let mut out = std::collections::BTreeMap::new();
    let Some(obj) = v3.as_object() else {
        return Value::Object(Map::new());
    };
    for (key, value) in obj {
        if METHODS.contains(&key.as_str()) {
            out.insert(key.clone(), operation(value));
        } else if key == "parameters" {
            out.insert(key.clone(), parameters(value));
        } else if key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out.into_iter().collect())
}

/// Converts a list of v3 parameters.
fn parameters(v3: &Value) -> Value {
    Value::Array(
        v3.as_array()
            .map(|list| list.iter().map(parameter).collect())
            .unwrap_or_default(),
    )
}

/// A query or path parameter: its schema's `type` (and the like) move up into it.
fn parameter(v3: &Value) -> Value {
    let mut out = std::collections::BTreeMap::new();
    let Some(obj) = v3.as_object() else {
        return v3.clone();
    };
    for (key, value) in obj {
        match key.as_str() {
            "schema" => {
                if let Some(s) = schema(value).as_object() {
                    for (k, v) in s {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
            "description" | "in" | "name" | "required" | "allowEmptyValue" => {
                out.insert(key.clone(), value.clone());
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out.into_iter().collect())
}

/// The media types of a v3 `content` object, in upstream's order.
fn media_types(content: Option<&Value>) -> Vec<Value> {
    let mut types: Vec<&String> = content
        .and_then(Value::as_object)
        .map(|c| c.keys().collect())
        .unwrap_or_default();
    let rank = |t: &str| {
        MEDIA_ORDER
            .iter()
            .position(|m| *m == t)
            .unwrap_or(MEDIA_ORDER.len())
    };
    types.sort_by_key(|t| rank(t));
    types
        .into_iter()
        .map(|t| Value::String(t.clone()))
        .collect()
}

/// The schema of the first media type of a v3 `content` object, converted.
fn content_schema(content: Option<&Value>) -> Option<Value> {
    content
        .and_then(Value::as_object)
        .and_then(|c| c.values().next())
        .and_then(|m| m.get("schema"))
        .map(schema)
}

/// One operation: a request body becomes the `body` parameter (listed first, as upstream).
fn operation(v3: &Value) -> Value {
    let mut out = std::collections::BTreeMap::new();
    let Some(obj) = v3.as_object() else {
        return Value::Object(Map::new());
    };
    for (key, value) in obj {
        if OPERATION_KEYS.contains(&key.as_str()) || key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    let mut params = Vec::new();
    let request = obj.get("requestBody");
    let request_content = request.and_then(|r| r.get("content"));
    match content_schema(request_content) {
        Some(body) => {
            let required = request
                .and_then(|r| r.get("required"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut param = json!({ "in": "body", "name": "body", "schema": body });
            if required {
                param["required"] = Value::Bool(true);
            }
            params.push(param);
            out.insert(
                "consumes".into(),
                Value::Array(media_types(request_content)),
            );
        }
        None => {
            out.insert("consumes".into(), json!(["*/*"]));
        }
    }
    if let Some(Value::Array(list)) = obj.get("parameters") {
        params.extend(list.iter().map(parameter));
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let mut produces = Vec::new();
    let mut responses = Map::new();
    if let Some(codes) = obj.get("responses").and_then(Value::as_object) {
        for (code, response) in codes {
            let content = response.get("content");
            if produces.is_empty() {
                produces = media_types(content);
            }
            let mut r = Map::new();
            if let Some(d) = response.get("description") {
                r.insert("description".into(), d.clone());
            }
            if let Some(s) = content_schema(content) {
                r.insert("schema".into(), s);
            }
            responses.insert(code.clone(), Value::Object(r));
        }
    }
    if !produces.is_empty() {
        out.insert("produces".into(), Value::Array(produces));
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_wrapped_in_all_of_becomes_a_reference_with_its_siblings() {
        let v3 = json!({
            "allOf": [{ "$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy" }],
            "default": {},
            "description": "The deployment strategy.",
            "x-kubernetes-patch-strategy": "retainKeys",
        });
        assert_eq!(
            schema(&v3),
            json!({
                "$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy",
                "default": {},
                "description": "The deployment strategy.",
                "x-kubernetes-patch-strategy": "retainKeys",
            })
        );
    }

    #[test]
    fn int_or_string_and_quantity_become_strings_as_upstreams_v2() {
        let int_or_string = json!({ "description": "d", "format": "int-or-string", "oneOf": [{ "type": "integer" }, { "type": "string" }] });
        assert_eq!(
            schema(&int_or_string),
            json!({ "description": "d", "format": "int-or-string", "type": "string" })
        );
        let quantity =
            json!({ "description": "q", "oneOf": [{ "type": "string" }, { "type": "number" }] });
        assert_eq!(
            schema(&quantity),
            json!({ "description": "q", "type": "string" })
        );
    }

    #[test]
    fn nested_items_and_maps_are_converted_and_unknown_keys_dropped() {
        let v3 = json!({
            "type": "object",
            "nullable": true,
            "additionalProperties": { "items": { "allOf": [{ "$ref": "#/components/schemas/A" }], "default": {} }, "type": "array" },
        });
        assert_eq!(
            schema(&v3),
            json!({
                "additionalProperties": { "items": { "$ref": "#/definitions/A", "default": {} }, "type": "array" },
                "type": "object",
            })
        );
    }

    #[test]
    fn a_patch_operation_keeps_its_kind_and_gets_a_body_parameter() {
        let v3 = json!({
            "description": "partially update the specified ConfigMap",
            "operationId": "patchCoreV1NamespacedConfigMap",
            "parameters": [{ "description": "v", "in": "query", "name": "fieldValidation", "schema": { "type": "string", "uniqueItems": true } }],
            "requestBody": {
                "content": {
                    "application/apply-patch+yaml": { "schema": { "$ref": "#/components/schemas/P" } },
                    "application/json-patch+json": { "schema": { "$ref": "#/components/schemas/P" } },
                },
                "required": true,
            },
            "responses": {
                "200": {
                    "content": {
                        "application/json": { "schema": { "$ref": "#/components/schemas/C" } },
                        "application/vnd.kubernetes.protobuf": { "schema": { "$ref": "#/components/schemas/C" } },
                        "application/yaml": { "schema": { "$ref": "#/components/schemas/C" } },
                    },
                    "description": "OK",
                },
                "401": { "description": "Unauthorized" },
            },
            "tags": ["core_v1"],
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": { "group": "", "kind": "ConfigMap", "version": "v1" },
        });
        assert_eq!(
            operation(&v3),
            json!({
                "consumes": ["application/json-patch+json", "application/apply-patch+yaml"],
                "description": "partially update the specified ConfigMap",
                "operationId": "patchCoreV1NamespacedConfigMap",
                "parameters": [
                    { "in": "body", "name": "body", "required": true, "schema": { "$ref": "#/definitions/P" } },
                    { "description": "v", "in": "query", "name": "fieldValidation", "type": "string", "uniqueItems": true },
                ],
                "produces": ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
                "responses": {
                    "200": { "description": "OK", "schema": { "$ref": "#/definitions/C" } },
                    "401": { "description": "Unauthorized" },
                },
                "schemes": ["https"],
                "tags": ["core_v1"],
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": { "group": "", "kind": "ConfigMap", "version": "v1" },
            })
        );
    }
}
