//! The Swagger 2.0 JSON document as gnostic's protobuf messages, which is the only form of
//! `/openapi/v2` kubectl reads. Entry point: [`document`].
//!
//! This does what upstream's `ToProtoBinary` does through gnostic's compiler (JSON to YAML
//! nodes to messages), for the shapes [`super::convert`] produces: maps become ordered
//! (name, value) lists in the JSON's key order, `x-...` keys become vendor extensions, and
//! any-valued fields (`default`, `enum`, `example`, extensions) are carried as YAML text.

use serde_json::{Map, Value};

use super::gnostic::{
    AdditionalProperties, AdditionalPropertiesItem, Any, ApiKeySecurity, BodyParameter,
    Definitions, Document, Info, ItemsItem, NamedAny, NamedPathItem, NamedResponseValue,
    NamedSchema, NamedSecurityDefinitionsItem, NamedStringArray, NonBodyParameter,
    NonBodyParameterOneof, Operation, Parameter, ParameterOneof, ParametersItem,
    ParametersItemOneof, PathItem, PathParameterSubSchema, Paths, Properties,
    QueryParameterSubSchema, Response, ResponseValue, ResponseValueOneof, Responses, Schema,
    SchemaItem, SchemaItemOneof, SecurityDefinitions, SecurityDefinitionsItem,
    SecurityDefinitionsItemOneof, SecurityRequirement, StringArray, TypeItem,
};
use super::yaml::to_yaml;

/// The protobuf message of a whole Swagger 2.0 document.
pub(crate) fn document(swagger: &Value) -> Document {
    Document {
        swagger: text(swagger, "swagger"),
        info: swagger.get("info").map(info),
        paths: swagger.get("paths").map(paths),
        definitions: swagger.get("definitions").map(|d| Definitions {
            additional_properties: named_schemas(d),
        }),
        security: list(swagger, "security")
            .iter()
            .map(security_requirement)
            .collect(),
        security_definitions: swagger.get("securityDefinitions").map(security_definitions),
        vendor_extension: extensions(swagger),
        ..Default::default()
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn float(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    list(v, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flat_map(Map::iter)
}

fn any(v: &Value) -> Any {
    Any { yaml: to_yaml(v) }
}

/// The `x-...` keys of an object, as vendor extensions.
fn extensions(v: &Value) -> Vec<NamedAny> {
    entries(v)
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

fn info(v: &Value) -> Info {
    Info {
        title: text(v, "title"),
        version: text(v, "version"),
        description: text(v, "description"),
        vendor_extension: extensions(v),
    }
}

fn named_schemas(v: &Value) -> Vec<NamedSchema> {
    entries(v)
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

/// One schema; every field gnostic's `Schema` has a place for.
pub(crate) fn schema(v: &Value) -> Schema {
    Schema {
        r#ref: text(v, "$ref"),
        format: text(v, "format"),
        title: text(v, "title"),
        description: text(v, "description"),
        default: v.get("default").map(any),
        multiple_of: float(v, "multipleOf"),
        maximum: float(v, "maximum"),
        exclusive_maximum: flag(v, "exclusiveMaximum"),
        minimum: float(v, "minimum"),
        exclusive_minimum: flag(v, "exclusiveMinimum"),
        max_length: int(v, "maxLength"),
        min_length: int(v, "minLength"),
        pattern: text(v, "pattern"),
        max_items: int(v, "maxItems"),
        min_items: int(v, "minItems"),
        unique_items: flag(v, "uniqueItems"),
        max_properties: int(v, "maxProperties"),
        min_properties: int(v, "minProperties"),
        required: strings(v, "required"),
        r#enum: list(v, "enum").iter().map(any).collect(),
        additional_properties: v.get("additionalProperties").map(|a| {
            Box::new(AdditionalPropertiesItem {
                oneof: Some(match a {
                    Value::Bool(b) => AdditionalProperties::Boolean(*b),
                    other => AdditionalProperties::Schema(Box::new(schema(other))),
                }),
            })
        }),
        r#type: v.get("type").map(|t| TypeItem {
            value: match t {
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                other => other.as_str().map(str::to_string).into_iter().collect(),
            },
        }),
        items: v.get("items").map(|i| ItemsItem {
            schema: match i {
                Value::Array(all) => all.iter().map(schema).collect(),
                one => vec![schema(one)],
            },
        }),
        all_of: list(v, "allOf").iter().map(schema).collect(),
        properties: v.get("properties").map(|p| Properties {
            additional_properties: named_schemas(p),
        }),
        discriminator: text(v, "discriminator"),
        read_only: flag(v, "readOnly"),
        example: v.get("example").map(any),
        vendor_extension: extensions(v),
    }
}

fn paths(v: &Value) -> Paths {
    Paths {
        vendor_extension: extensions(v),
        path: entries(v)
            .filter(|(k, _)| !k.starts_with("x-"))
            .map(|(name, item)| NamedPathItem {
                name: name.clone(),
                value: Some(path_item(item)),
            })
            .collect(),
    }
}

fn path_item(v: &Value) -> PathItem {
    let op = |method: &str| v.get(method).map(operation);
    PathItem {
        r#ref: text(v, "$ref"),
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        options: op("options"),
        head: op("head"),
        patch: op("patch"),
        parameters: list(v, "parameters").iter().map(parameter).collect(),
        vendor_extension: extensions(v),
    }
}

fn operation(v: &Value) -> Operation {
    Operation {
        tags: strings(v, "tags"),
        summary: text(v, "summary"),
        description: text(v, "description"),
        operation_id: text(v, "operationId"),
        produces: strings(v, "produces"),
        consumes: strings(v, "consumes"),
        parameters: list(v, "parameters").iter().map(parameter).collect(),
        responses: v.get("responses").map(responses),
        schemes: strings(v, "schemes"),
        deprecated: flag(v, "deprecated"),
        vendor_extension: extensions(v),
    }
}

/// A parameter by where it goes: body, query or path (Kubernetes has no other kind).
fn parameter(v: &Value) -> ParametersItem {
    let parameter = match v.get("in").and_then(Value::as_str) {
        Some("body") => ParameterOneof::BodyParameter(Box::new(BodyParameter {
            description: text(v, "description"),
            name: text(v, "name"),
            r#in: text(v, "in"),
            required: flag(v, "required"),
            schema: v.get("schema").map(schema),
            vendor_extension: extensions(v),
        })),
        Some("path") => ParameterOneof::NonBodyParameter(Box::new(NonBodyParameter {
            oneof: Some(NonBodyParameterOneof::PathParameterSubSchema(
                PathParameterSubSchema {
                    required: flag(v, "required"),
                    r#in: text(v, "in"),
                    description: text(v, "description"),
                    name: text(v, "name"),
                    r#type: text(v, "type"),
                    format: text(v, "format"),
                    collection_format: text(v, "collectionFormat"),
                    default: v.get("default").map(any),
                    unique_items: flag(v, "uniqueItems"),
                    r#enum: list(v, "enum").iter().map(any).collect(),
                    vendor_extension: extensions(v),
                },
            )),
        })),
        _ => ParameterOneof::NonBodyParameter(Box::new(NonBodyParameter {
            oneof: Some(NonBodyParameterOneof::QueryParameterSubSchema(
                QueryParameterSubSchema {
                    required: flag(v, "required"),
                    r#in: text(v, "in"),
                    description: text(v, "description"),
                    name: text(v, "name"),
                    allow_empty_value: flag(v, "allowEmptyValue"),
                    r#type: text(v, "type"),
                    format: text(v, "format"),
                    collection_format: text(v, "collectionFormat"),
                    default: v.get("default").map(any),
                    unique_items: flag(v, "uniqueItems"),
                    r#enum: list(v, "enum").iter().map(any).collect(),
                    vendor_extension: extensions(v),
                },
            )),
        })),
    };
    ParametersItem {
        oneof: Some(ParametersItemOneof::Parameter(Parameter {
            oneof: Some(parameter),
        })),
    }
}

fn responses(v: &Value) -> Responses {
    Responses {
        response_code: entries(v)
            .filter(|(k, _)| !k.starts_with("x-"))
            .map(|(code, r)| NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue {
                    oneof: Some(ResponseValueOneof::Response(Box::new(Response {
                        description: text(r, "description"),
                        schema: r.get("schema").map(|s| SchemaItem {
                            oneof: Some(SchemaItemOneof::Schema(schema(s))),
                        }),
                        vendor_extension: extensions(r),
                    }))),
                }),
            })
            .collect(),
        vendor_extension: extensions(v),
    }
}

fn security_requirement(v: &Value) -> SecurityRequirement {
    SecurityRequirement {
        additional_properties: entries(v)
            .map(|(name, scopes)| NamedStringArray {
                name: name.clone(),
                value: Some(StringArray {
                    value: scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                }),
            })
            .collect(),
    }
}

fn security_definitions(v: &Value) -> SecurityDefinitions {
    SecurityDefinitions {
        additional_properties: entries(v)
            .map(|(name, d)| NamedSecurityDefinitionsItem {
                name: name.clone(),
                value: Some(SecurityDefinitionsItem {
                    oneof: Some(SecurityDefinitionsItemOneof::ApiKeySecurity(
                        ApiKeySecurity {
                            r#type: text(d, "type"),
                            name: text(d, "name"),
                            r#in: text(d, "in"),
                            description: text(d, "description"),
                            vendor_extension: extensions(d),
                        },
                    )),
                }),
            })
            .collect(),
    }
}
