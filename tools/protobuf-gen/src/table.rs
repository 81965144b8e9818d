//! Joins k8s-pb's messages with k8s-openapi's JSON names into the decoder's table and renders
//! it as Rust source. Entry point: [`build`].
//!
//! Only messages reachable from GA kinds (apiVersion `v1`, `group/v1`, `group/v2`) are kept.
//! Messages whose JSON form is not an object with one property per field (IntOrString, Time,
//! RawExtension, ...) are "special": the decoder handles them by hand, and this module checks
//! that their wire layout is the one the decoder expects, so a new k8s-pb cannot silently
//! change it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use crate::names::{self, Property, Types};
use crate::protos::{FieldType, Kind, Label, Message, MessageId, Protos};

/// How the decoder treats a special message, and the wire layout it relies on.
struct SpecialSpec {
    variant: &'static str,
    /// (tag, k8s-pb field name, type, label) for every field, in tag order.
    layout: &'static [(u32, &'static str, Shape, Label)],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    /// A message of a named type.
    Message(&'static str),
}

const META: &str = "apimachinery::pkg::apis::meta::v1";
const APIEXT: &str = "apiextensions_apiserver::pkg::apis::apiextensions::v1";

const TIME_LAYOUT: &[(u32, &str, Shape, Label)] = &[
    (1, "seconds", Shape::Int64, Label::Optional),
    (2, "nanos", Shape::Int32, Label::Optional),
];
const RAW_LAYOUT: &[(u32, &str, Shape, Label)] = &[(1, "raw", Shape::Bytes, Label::Optional)];

fn special(id: &MessageId) -> Option<SpecialSpec> {
    let (module, name) = (id.0.as_str(), id.1.as_str());
    let spec = |variant, layout| Some(SpecialSpec { variant, layout });
    match (module, name) {
        ("apimachinery::pkg::util::intstr", "IntOrString") => spec(
            "IntOrString",
            &[
                (1, "type", Shape::Int64, Label::Optional),
                (2, "int_val", Shape::Int32, Label::Optional),
                (3, "str_val", Shape::String, Label::Optional),
            ],
        ),
        ("apimachinery::pkg::api::resource", "Quantity" | "QuantityValue") => {
            spec("Quantity", &[(1, "string", Shape::String, Label::Optional)])
        }
        (META, "Time") => spec("Time", TIME_LAYOUT),
        (META, "MicroTime") => spec("MicroTime", TIME_LAYOUT),
        (META, "Duration") => spec(
            "Duration",
            &[(1, "duration", Shape::Int64, Label::Optional)],
        ),
        (META, "FieldsV1") => spec("RawJson", RAW_LAYOUT),
        ("apimachinery::pkg::runtime", "RawExtension") => spec("RawJson", RAW_LAYOUT),
        (APIEXT, "Json") => spec("RawJson", RAW_LAYOUT),
        (APIEXT, "JsonSchemaPropsOrArray") => spec(
            "SchemaOrArray",
            &[
                (
                    1,
                    "schema",
                    Shape::Message("JsonSchemaProps"),
                    Label::Optional,
                ),
                (
                    2,
                    "j_son_schemas",
                    Shape::Message("JsonSchemaProps"),
                    Label::Repeated,
                ),
            ],
        ),
        (APIEXT, "JsonSchemaPropsOrBool") => spec(
            "SchemaOrBool",
            &[
                (1, "allows", Shape::Bool, Label::Optional),
                (
                    2,
                    "schema",
                    Shape::Message("JsonSchemaProps"),
                    Label::Optional,
                ),
            ],
        ),
        (APIEXT, "JsonSchemaPropsOrStringArray") => spec(
            "SchemaOrStringArray",
            &[
                (
                    1,
                    "schema",
                    Shape::Message("JsonSchemaProps"),
                    Label::Optional,
                ),
                (2, "property", Shape::String, Label::Repeated),
            ],
        ),
        // Go's `type ExtraValue []string`, a message on the wire and a JSON array.
        (_, "ExtraValue") => spec(
            "StringList",
            &[(1, "items", Shape::String, Label::Repeated)],
        ),
        _ => None,
    }
}

/// Whether an apiVersion is GA (`v1`, `apps/v1`, `autoscaling/v2`).
fn is_ga(api_version: &str) -> bool {
    let version = api_version.rsplit('/').next().unwrap_or_default();
    version
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The envelope (`runtime.Unknown` and its `TypeMeta`): tag constants by k8s-pb field name.
const ENVELOPE: &[(&str, &str, &str)] = &[
    ("Unknown", "type_meta", "UNKNOWN_TYPE_META"),
    ("Unknown", "raw", "UNKNOWN_RAW"),
    ("Unknown", "content_encoding", "UNKNOWN_CONTENT_ENCODING"),
    ("Unknown", "content_type", "UNKNOWN_CONTENT_TYPE"),
    ("TypeMeta", "api_version", "TYPE_META_API_VERSION"),
    ("TypeMeta", "kind", "TYPE_META_KIND"),
];

/// Builds the table and renders it; `command` is quoted in the header.
pub fn build(protos: &Protos, openapi: &[Types], command: &str) -> Result<String, String> {
    let roots = roots(protos, openapi);
    let reachable = reachable(protos, roots.iter().map(|k| k.message.clone()))?;
    let index: BTreeMap<&MessageId, usize> = reachable
        .iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();

    let mut errors = Vec::new();
    let inline = inline_props(protos, openapi, &reachable);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! The protobuf field table: every message reachable from a GA kind, with each field's tag,\n\
         //! JSON name, wire type and cardinality. GENERATED by `{command}`\n\
         //! from the sources of k8s-pb 0.9.0 (tags, types) and k8s-openapi 0.29.0 (JSON names, required\n\
         //! properties). Do not edit by hand: change tools/protobuf-gen and run it again.\n"
    );
    let _ = writeln!(
        out,
        "use super::schema::{{Field as F, Label::*, Message as M, Special::*, Type::*}};\n"
    );

    for (message, field, constant) in ENVELOPE {
        let id = (
            "apimachinery::pkg::runtime".to_string(),
            message.to_string(),
        );
        match protos
            .messages
            .get(&id)
            .and_then(|m| m.fields.iter().find(|f| f.name == *field))
        {
            Some(f) => {
                let _ = writeln!(out, "pub(super) const {constant}: u32 = {};", f.tag);
            }
            None => errors.push(format!("runtime.{message} has no field {field}")),
        }
    }

    let _ = writeln!(out, "\n/// (apiVersion, kind) → message index, sorted.");
    let mut kinds: Vec<(String, String, usize)> = roots
        .iter()
        .filter_map(|k| {
            Some((
                k.api_version.clone(),
                k.kind.clone(),
                *index.get(&k.message)?,
            ))
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let _ = writeln!(
        out,
        "#[rustfmt::skip]\npub(super) static KINDS: &[(&str, &str, u16)] = &["
    );
    for (api_version, kind, i) in &kinds {
        let _ = writeln!(out, "    ({api_version:?}, {kind:?}, {i}),");
    }
    let _ = writeln!(out, "];\n");

    let _ = writeln!(out, "/// Messages by index; fields sorted by tag.");
    let _ = writeln!(
        out,
        "#[rustfmt::skip]\npub(super) static MESSAGES: &[M] = &["
    );
    for (i, id) in reachable.iter().enumerate() {
        let message = &protos.messages[id];
        let full = format!("{}.{}", id.0.replace("::", "."), id.1);
        let spec = special(id);
        let props = match &spec {
            Some(spec) => {
                if let Err(e) = check_layout(message, spec) {
                    errors.push(format!("{full}: {e}"));
                }
                None
            }
            None => match lookup(openapi, id).or_else(|| inline.get(id).cloned()) {
                Some(props) => Some(props),
                None if message.fields.is_empty() => None,
                None => {
                    errors.push(format!("{full}: no k8s-openapi type of that name"));
                    continue;
                }
            },
        };
        let special = spec.map_or("Plain", |s| s.variant);
        let _ = writeln!(out, "    // {i}");
        let _ = writeln!(
            out,
            "    M {{ name: {full:?}, special: {special}, fields: &["
        );
        for f in &message.fields {
            let mut inlined = false;
            let (json, required) = match &props {
                None => (f.name.clone(), false),
                Some(props) => match find_property(props, &f.name) {
                    Ok(p) => (p.json.clone(), p.required),
                    Err(_) if embeds(protos, f, props) => {
                        inlined = true;
                        (String::new(), false)
                    }
                    Err(e) => {
                        errors.push(format!("{full}.{}: {e}", f.name));
                        continue;
                    }
                },
            };
            let ty = match &f.ty {
                FieldType::String => "Str".to_string(),
                FieldType::Bytes => "Bytes".to_string(),
                FieldType::Bool => "Bool".to_string(),
                FieldType::Int32 => "I32".to_string(),
                FieldType::Int64 => "I64".to_string(),
                FieldType::Double => "F64".to_string(),
                FieldType::Message(m) => format!("Msg({})", index[m]),
            };
            let label = match f.label {
                Label::Optional if inlined => "Inline",
                Label::Optional => "Optional",
                Label::Repeated => "Repeated",
                Label::Map => "Map",
            };
            let _ = writeln!(
                out,
                "        F {{ tag: {}, json: {json:?}, ty: {ty}, label: {label}, required: {required} }},",
                f.tag
            );
        }
        let _ = writeln!(out, "    ] }},");
    }
    let _ = writeln!(out, "];");
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// The kinds a body may carry: GA types with a Resource impl, plus the other top-level types
/// of the same packages (a `metadata` ObjectMeta as field 1) that k8s-pb gives no impl because
/// they are only bodies of subresources: Eviction, TokenRequest, Scale. Their kind is the
/// k8s-openapi type name, their apiVersion the package's.
fn roots(protos: &Protos, openapi: &[Types]) -> Vec<Kind> {
    let mut out: Vec<Kind> = protos
        .kinds
        .iter()
        .filter(|k| is_ga(&k.api_version))
        .cloned()
        .collect();
    let packages: BTreeMap<String, String> = out
        .iter()
        .map(|k| (k.message.0.clone(), k.api_version.clone()))
        .collect();
    let object_meta = (META.to_string(), "ObjectMeta".to_string());
    for (id, message) in &protos.messages {
        let Some(api_version) = packages.get(&id.0) else {
            continue;
        };
        let top_level = message.fields.first().is_some_and(|f| {
            f.tag == 1 && f.name == "metadata" && f.ty == FieldType::Message(object_meta.clone())
        });
        if !top_level || out.iter().any(|k| &k.message == id) {
            continue;
        }
        let name = openapi.iter().find_map(|types| {
            types
                .get(&id.0)
                .and_then(|m| m.get(&id.1.to_ascii_lowercase()))
                .map(|t| t.name.clone())
        });
        if let Some(kind) = name {
            out.push(Kind {
                api_version: api_version.clone(),
                kind,
                message: id.clone(),
            });
        }
    }
    out
}

/// Every message reachable from the roots, in name order.
fn reachable(
    protos: &Protos,
    roots: impl Iterator<Item = MessageId>,
) -> Result<Vec<MessageId>, String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<MessageId> = roots.collect();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let message = protos
            .messages
            .get(&id)
            .ok_or_else(|| format!("{}::{} is referenced but not defined", id.0, id.1))?;
        for f in &message.fields {
            if let FieldType::Message(m) = &f.ty {
                queue.push_back(m.clone());
            }
        }
    }
    Ok(seen.into_iter().collect())
}

/// The JSON properties of a message's k8s-openapi counterpart: the oldest version directory
/// that has the type wins; later ones only add properties it lacks (fields newer than it).
fn lookup(openapi: &[Types], id: &MessageId) -> Option<Vec<Property>> {
    let mut out: Option<Vec<Property>> = None;
    for types in openapi {
        let Some(props) = types
            .get(&id.0)
            .and_then(|m| m.get(&id.1.to_ascii_lowercase()))
        else {
            continue;
        };
        let merged = out.get_or_insert_with(Vec::new);
        for p in &props.props {
            if !merged.iter().any(|m| m.json == p.json) {
                merged.push(p.clone());
            }
        }
    }
    out
}

/// Whether a field is a Go embedded struct (`json:",inline"`): a singular message field that
/// has no property of its own, while every field of its message (recursively, through further
/// embedded ones) is a property of the embedding type.
fn embeds(protos: &Protos, field: &crate::protos::Field, props: &[Property]) -> bool {
    let FieldType::Message(target) = &field.ty else {
        return false;
    };
    if field.label != Label::Optional || find_property(props, &field.name).is_ok() {
        return false;
    }
    let Some(message) = protos.messages.get(target) else {
        return false;
    };
    !message.fields.is_empty()
        && message
            .fields
            .iter()
            .all(|f| find_property(props, &f.name).is_ok() || embeds(protos, f, props))
}

/// Properties of messages that exist only embedded in others (VolumeSource in Volume,
/// ProbeHandler in Probe): k8s-openapi has no type for them, their fields are properties of
/// the embedding types.
fn inline_props(
    protos: &Protos,
    openapi: &[Types],
    reachable: &[MessageId],
) -> BTreeMap<MessageId, Vec<Property>> {
    let mut out: BTreeMap<MessageId, Vec<Property>> = BTreeMap::new();
    for id in reachable {
        let Some(props) = lookup(openapi, id) else {
            continue;
        };
        let mut stack: Vec<&crate::protos::Field> = protos.messages[id].fields.iter().collect();
        while let Some(f) = stack.pop() {
            let FieldType::Message(target) = &f.ty else {
                continue;
            };
            if !embeds(protos, f, &props) || lookup(openapi, target).is_some() {
                continue;
            }
            let entry = out.entry(target.clone()).or_default();
            for p in &props {
                if !entry.iter().any(|e| e.json == p.json) {
                    entry.push(p.clone());
                }
            }
            stack.extend(protos.messages[target].fields.iter());
        }
    }
    out
}

/// The one property whose name matches a k8s-pb field name (see [`names::normalize`]).
fn find_property<'a>(props: &'a [Property], field: &str) -> Result<&'a Property, String> {
    let key = names::normalize(field);
    let mut found = props.iter().filter(|p| names::normalize(&p.json) == key);
    match (found.next(), found.next()) {
        (Some(p), None) => Ok(p),
        (None, _) => Err("no JSON property of that name in k8s-openapi".to_string()),
        (Some(a), Some(b)) => Err(format!("ambiguous: {} and {}", a.json, b.json)),
    }
}

fn check_layout(message: &Message, spec: &SpecialSpec) -> Result<(), String> {
    let actual: Vec<String> = message
        .fields
        .iter()
        .map(|f| {
            let shape = match &f.ty {
                FieldType::String => "String".to_string(),
                FieldType::Bytes => "Bytes".to_string(),
                FieldType::Bool => "Bool".to_string(),
                FieldType::Int32 => "Int32".to_string(),
                FieldType::Int64 => "Int64".to_string(),
                FieldType::Double => "Double".to_string(),
                FieldType::Message(m) => format!("Message({})", m.1),
            };
            format!("{} {} {shape} {:?}", f.tag, f.name, f.label)
        })
        .collect();
    let expected: Vec<String> = spec
        .layout
        .iter()
        .map(|(tag, name, shape, label)| {
            let shape = match shape {
                Shape::Message(m) => format!("Message({m})"),
                s => format!("{s:?}"),
            };
            format!("{tag} {name} {shape} {label:?}")
        })
        .collect();
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "the decoder handles it as {} and expects fields {expected:?}, k8s-pb has {actual:?}",
            spec.variant
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_versions_are_ga() {
        assert!(is_ga("v1"));
        assert!(is_ga("autoscaling/v2"));
        assert!(!is_ga("batch/v1beta1"));
        assert!(!is_ga("resource.k8s.io/v1alpha3"));
    }
}
