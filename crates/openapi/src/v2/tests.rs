//! Tests of `/openapi/v2`: the protobuf form decodes to the JSON form, kubectl's parser
//! (kube-openapi's `pkg/util/proto`) would accept every definition, every reference resolves,
//! and kubectl finds each served kind's definition and PATCH operation.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use serde_json::{json, Map, Value};

use super::gnostic::{
    AdditionalProperties, Document, NamedAny, NonBodyParameterOneof, ParameterOneof,
    ParametersItemOneof, Schema,
};
use super::*;

fn decoded() -> Document {
    let (_, bytes) = document(Format::Protobuf);
    Document::decode(bytes).expect("the protobuf form decodes as openapi.v2.Document")
}

fn json_form() -> Value {
    let (_, bytes) = document(Format::Json);
    serde_json::from_slice(bytes).expect("the JSON form parses")
}

fn yaml_value(any: &NamedAny) -> Value {
    let text = &any.value.as_ref().expect("extension value").yaml;
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{}: {text:?}: {e}", any.name))
}

fn extension(extensions: &[NamedAny], name: &str) -> Option<Value> {
    extensions.iter().find(|e| e.name == name).map(yaml_value)
}

fn definitions(doc: &Document) -> BTreeMap<&str, &Schema> {
    doc.definitions
        .as_ref()
        .expect("definitions")
        .additional_properties
        .iter()
        .map(|n| (n.name.as_str(), n.value.as_ref().expect("schema")))
        .collect()
}

/// A decoded schema back in JSON, to compare with the JSON form.
fn schema_json(s: &Schema) -> Value {
    let mut out = Map::new();
    let mut put_str = |k: &str, v: &str| {
        if !v.is_empty() {
            out.insert(k.into(), v.into());
        }
    };
    put_str("$ref", &s.r#ref);
    put_str("format", &s.format);
    put_str("title", &s.title);
    put_str("description", &s.description);
    put_str("pattern", &s.pattern);
    put_str("discriminator", &s.discriminator);
    if let Some(d) = &s.default {
        out.insert(
            "default".into(),
            serde_saphyr::from_str(&d.yaml).expect("default"),
        );
    }
    if !s.required.is_empty() {
        out.insert("required".into(), json!(s.required));
    }
    if !s.r#enum.is_empty() {
        let values: Vec<Value> = s
            .r#enum
            .iter()
            .map(|a| serde_saphyr::from_str(&a.yaml).expect("enum value"))
            .collect();
        out.insert("enum".into(), values.into());
    }
    for (k, v) in [
        ("maxLength", s.max_length),
        ("minLength", s.min_length),
        ("maxItems", s.max_items),
        ("minItems", s.min_items),
        ("maxProperties", s.max_properties),
        ("minProperties", s.min_properties),
    ] {
        if v != 0 {
            out.insert(k.into(), v.into());
        }
    }
    for (k, v) in [
        ("uniqueItems", s.unique_items),
        ("readOnly", s.read_only),
        ("exclusiveMaximum", s.exclusive_maximum),
        ("exclusiveMinimum", s.exclusive_minimum),
    ] {
        if v {
            out.insert(k.into(), v.into());
        }
    }
    for (k, v) in [
        ("maximum", s.maximum),
        ("minimum", s.minimum),
        ("multipleOf", s.multiple_of),
    ] {
        if v != 0.0 {
            out.insert(k.into(), json!(v));
        }
    }
    if let Some(t) = &s.r#type {
        out.insert(
            "type".into(),
            t.value.first().cloned().unwrap_or_default().into(),
        );
    }
    if let Some(items) = &s.items {
        out.insert("items".into(), schema_json(&items.schema[0]));
    }
    if !s.all_of.is_empty() {
        out.insert("allOf".into(), s.all_of.iter().map(schema_json).collect());
    }
    if let Some(props) = &s.properties {
        let p: Map<String, Value> = props
            .additional_properties
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    schema_json(n.value.as_ref().expect("property")),
                )
            })
            .collect();
        out.insert("properties".into(), p.into());
    }
    match s
        .additional_properties
        .as_ref()
        .and_then(|a| a.oneof.as_ref())
    {
        Some(AdditionalProperties::Schema(a)) => {
            out.insert("additionalProperties".into(), schema_json(a));
        }
        Some(AdditionalProperties::Boolean(b)) => {
            out.insert("additionalProperties".into(), (*b).into());
        }
        None => {}
    }
    for e in &s.vendor_extension {
        out.insert(e.name.clone(), yaml_value(e));
    }
    Value::Object(out)
}

/// kube-openapi's `Definitions.ParseSchema`, reduced to the errors it can raise: what kubectl
/// would refuse before validating anything.
fn parse_errors(s: &Schema, path: &str, names: &BTreeSet<&str>, errors: &mut Vec<String>) {
    let types = s.r#type.as_ref().map(|t| t.value.as_slice()).unwrap_or(&[]);
    if !s.r#ref.is_empty() {
        if s.properties
            .as_ref()
            .is_some_and(|p| !p.additional_properties.is_empty())
        {
            errors.push(format!("{path}: unallowed embedded type definition"));
        }
        if !types.is_empty() {
            errors.push(format!("{path}: definition reference can't have a type"));
        }
        match s.r#ref.strip_prefix("#/definitions/") {
            Some(name) if names.contains(name) => {}
            _ => errors.push(format!("{path}: unresolved reference {}", s.r#ref)),
        }
        return;
    }
    if !s.all_of.is_empty() {
        errors.push(format!("{path}: allOf, which kubectl ignores"));
    }
    let mut fields = |s: &Schema| {
        for p in s.properties.iter().flat_map(|p| &p.additional_properties) {
            let field = format!("{path}.{}", p.name);
            parse_errors(p.value.as_ref().expect("property"), &field, names, errors);
        }
    };
    match types {
        [] => fields(s),
        [t] if t == "object" => {
            if s.properties.is_some() {
                fields(s);
            } else if let Some(AdditionalProperties::Schema(a)) = s
                .additional_properties
                .as_ref()
                .and_then(|a| a.oneof.as_ref())
            {
                parse_errors(a, path, names, errors);
            }
        }
        [t] if t == "array" => match s.items.as_ref().map(|i| i.schema.as_slice()) {
            Some([item]) => parse_errors(item, path, names, errors),
            _ => errors.push(format!("{path}: array should have exactly one sub-item")),
        },
        [t] if matches!(t.as_str(), "string" | "number" | "integer" | "boolean") => {}
        other => errors.push(format!("{path}: unsupported type {other:?}")),
    }
    // Extensions and defaults are parsed as YAML; a default that is not YAML fails the parse.
    let any_texts = s
        .vendor_extension
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_ref().map(|v| v.yaml.as_str())))
        .chain(s.default.iter().map(|d| ("default", Some(d.yaml.as_str()))));
    for (name, text) in any_texts {
        let text = text.unwrap_or_default();
        if serde_saphyr::from_str::<Value>(text).is_err() {
            errors.push(format!("{path}: {name} is not YAML: {text:?}"));
        }
    }
}

#[test]
fn the_protobuf_form_decodes_to_the_json_form() {
    let doc = decoded();
    let json = json_form();
    assert_eq!(doc.swagger, "2.0");
    let info = doc.info.as_ref().expect("info");
    assert_eq!(info.title, "Kubernetes");
    assert_eq!(json["info"]["version"], info.version.as_str());
    let defs = definitions(&doc);
    let json_defs = json["definitions"].as_object().expect("definitions");
    assert_eq!(defs.len(), json_defs.len());
    for (name, schema) in defs {
        assert_eq!(schema_json(schema), json_defs[name], "{name}");
    }
    let paths = &doc.paths.as_ref().expect("paths").path;
    assert_eq!(paths.len(), json["paths"].as_object().expect("paths").len());
    let security = &doc
        .security_definitions
        .as_ref()
        .expect("security")
        .additional_properties;
    assert_eq!(security[0].name, "BearerToken");
}

#[test]
fn kubectl_would_parse_every_definition() {
    let doc = decoded();
    let defs = definitions(&doc);
    let names: BTreeSet<&str> = defs.keys().copied().collect();
    let mut errors = Vec::new();
    for (name, schema) in &defs {
        parse_errors(schema, name, &names, &mut errors);
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_reference_in_the_json_form_resolves() {
    let json = json_form();
    let names: BTreeSet<&str> = json["definitions"]
        .as_object()
        .expect("definitions")
        .keys()
        .map(String::as_str)
        .collect();
    let mut stack = vec![&json];
    let mut seen = 0;
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    // JSONSchemaProps has a field called "$ref": an object, not a reference.
                    if let (true, Some(r)) = (k == "$ref", child.as_str()) {
                        let name = r
                            .strip_prefix("#/definitions/")
                            .unwrap_or_else(|| panic!("odd ref {r}"));
                        assert!(names.contains(name), "dangling ref {r}");
                        seen += 1;
                    } else {
                        // (JSONSchemaProps also has a field called "allOf".)
                        assert!(
                            !(k == "allOf" && child.is_array()),
                            "allOf left in the v2 document"
                        );
                        stack.push(child);
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    assert!(seen > 1000, "only {seen} references");
}

#[test]
fn every_served_kind_has_a_definition_with_its_group_version_kind() {
    let doc = decoded();
    let mut by_gvk = BTreeMap::new();
    for (name, schema) in definitions(&doc) {
        if let Some(Value::Array(gvks)) =
            extension(&schema.vendor_extension, "x-kubernetes-group-version-kind")
        {
            for gvk in gvks {
                by_gvk.insert(
                    (
                        gvk["group"].as_str().expect("group").to_string(),
                        gvk["version"].as_str().expect("version").to_string(),
                        gvk["kind"].as_str().expect("kind").to_string(),
                    ),
                    name,
                );
            }
        }
    }
    for r in capstan_api::catalogue::all() {
        let key = (
            r.group.to_string(),
            r.version.to_string(),
            r.kind.to_string(),
        );
        assert!(by_gvk.contains_key(&key), "no definition for {key:?}");
        let list = (key.0.clone(), key.1.clone(), format!("{}List", r.kind));
        assert!(by_gvk.contains_key(&list), "no definition for {list:?}");
    }
    assert_eq!(
        by_gvk[&("apps".into(), "v1".into(), "Deployment".into())],
        "io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        by_gvk[&("".into(), "v1".into(), "ConfigMap".into())],
        "io.k8s.api.core.v1.ConfigMap"
    );
}

#[test]
fn every_served_kind_has_a_patch_operation_with_field_validation() {
    let doc = decoded();
    let paths = &doc.paths.as_ref().expect("paths").path;
    for r in capstan_api::catalogue::all()
        .iter()
        .filter(|r| r.verbs.contains(&"patch"))
    {
        // As cli-runtime's supportsQueryParam: the first PATCH with the kind decides.
        let patch = paths
            .iter()
            .filter_map(|p| p.value.as_ref()?.patch.as_ref())
            .find(|op| {
                extension(&op.vendor_extension, "x-kubernetes-group-version-kind").is_some_and(
                    |gvk| gvk == json!({ "group": r.group, "kind": r.kind, "version": r.version }),
                )
            })
            .unwrap_or_else(|| panic!("no PATCH for {} {}", r.group, r.kind));
        let has_param = patch.parameters.iter().any(|p| {
            let Some(ParametersItemOneof::Parameter(p)) = &p.oneof else {
                return false;
            };
            let Some(ParameterOneof::NonBodyParameter(nb)) = &p.oneof else {
                return false;
            };
            matches!(&nb.oneof, Some(NonBodyParameterOneof::QueryParameterSubSchema(q)) if q.name == "fieldValidation")
        });
        assert!(has_param, "PATCH of {} lacks fieldValidation", r.kind);
        assert!(patch
            .consumes
            .iter()
            .any(|c| c == "application/strategic-merge-patch+json"));
    }
}

#[test]
fn fields_are_references_with_their_patch_metadata() {
    let doc = decoded();
    let defs = definitions(&doc);
    let field = |schema: &str, field: &str| -> &Schema {
        defs[schema]
            .properties
            .as_ref()
            .and_then(|p| p.additional_properties.iter().find(|n| n.name == field))
            .and_then(|n| n.value.as_ref())
            .unwrap_or_else(|| panic!("{schema}.{field}"))
    };
    let spec = field("io.k8s.api.apps.v1.Deployment", "spec");
    assert_eq!(
        spec.r#ref,
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(!spec.description.is_empty());
    let containers = field("io.k8s.api.core.v1.PodSpec", "containers");
    assert_eq!(
        containers.items.as_ref().expect("items").schema[0].r#ref,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    assert_eq!(
        extension(&containers.vendor_extension, "x-kubernetes-patch-merge-key"),
        Some(json!("name"))
    );
    assert_eq!(
        extension(&containers.vendor_extension, "x-kubernetes-patch-strategy"),
        Some(json!("merge"))
    );
    let strategy = field("io.k8s.api.apps.v1.DeploymentSpec", "strategy");
    assert_eq!(
        extension(&strategy.vendor_extension, "x-kubernetes-patch-strategy"),
        Some(json!("retainKeys"))
    );
    let port = defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(port.r#type.as_ref().expect("type").value, ["string"]);
    assert_eq!(port.format, "int-or-string");
    let quantity = defs["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(quantity.r#type.as_ref().expect("type").value, ["string"]);
    let labels = field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels");
    assert!(matches!(
        labels.additional_properties.as_ref().and_then(|a| a.oneof.as_ref()),
        Some(AdditionalProperties::Schema(s)) if s.r#type.as_ref().is_some_and(|t| t.value == ["string"])
    ));
}

#[test]
fn negotiation_follows_upstreams_handler() {
    assert_eq!(
        Format::negotiate(Some(PROTOBUF_ACCEPT)),
        Some(Format::Protobuf)
    );
    assert_eq!(
        Format::negotiate(Some(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )),
        Some(Format::Protobuf)
    );
    assert_eq!(
        Format::negotiate(Some("application/json")),
        Some(Format::Json)
    );
    assert_eq!(Format::negotiate(None), Some(Format::Json));
    assert_eq!(Format::negotiate(Some("")), Some(Format::Json));
    assert_eq!(Format::negotiate(Some("*/*")), Some(Format::Json));
    assert_eq!(
        Format::negotiate(Some(
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        )),
        Some(Format::Protobuf)
    );
    assert_eq!(
        Format::negotiate(Some("text/html, */*;q=0.8")),
        Some(Format::Json)
    );
    assert_eq!(Format::negotiate(Some("text/html")), None);
    assert_eq!(Format::negotiate(Some("application/yaml")), None);
    assert_eq!(Format::negotiate(Some("application/json;q=0")), None);
}

#[test]
fn a_client_with_the_current_etag_gets_304() {
    let first = respond(Some(PROTOBUF_ACCEPT), None);
    assert_eq!(first.status, 200);
    assert_eq!(first.content_type, PROTOBUF_CONTENT_TYPE);
    let etag = first.etag.expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 130);
    assert!(!first.body.is_empty());
    let again = respond(Some(PROTOBUF_ACCEPT), Some(etag));
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(respond(None, Some(&format!("W/{etag}"))).status, 304);
    assert_eq!(respond(None, Some("\"stale\"")).status, 200);
    let json = respond(Some("application/json"), None);
    assert_eq!(json.content_type, JSON_CONTENT_TYPE);
    assert_eq!(
        json.etag, first.etag,
        "one ETag for both forms, as upstream"
    );
    assert_eq!(respond(Some("text/html"), None).status, 406);
}

#[test]
#[ignore = "writes the JSON and protobuf forms to $CAPSTAN_OPENAPI_V2_DUMP.{json,pb} for comparison with upstream"]
fn dump_document() {
    if let Ok(path) = std::env::var("CAPSTAN_OPENAPI_V2_DUMP") {
        std::fs::write(format!("{path}.json"), document(Format::Json).1).expect("write json");
        std::fs::write(format!("{path}.pb"), document(Format::Protobuf).1).expect("write pb");
    }
}
