//! Reads k8s-pb's prost bindings: every message with its fields (tag, wire type, cardinality,
//! message type) and every `impl crate::Resource` (apiVersion and kind of a top-level type).
//! Entry point: [`read`].
//!
//! The bindings are prost-build output, so their shape is regular: one `mod.rs` per proto
//! package, `#[prost(...)]` on the line(s) before each `pub field: Type,`, types written as
//! paths relative to the module (`super::super::...::ObjectMeta`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// A message's identity: its module path under k8s-pb's `src/` and its name, e.g.
/// (`api::apps::v1`, `Deployment`).
pub type MessageId = (String, String);

/// What one field holds on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message(MessageId),
}

/// How many values a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// `optional` (proto2): at most one, presence is observable.
    Optional,
    Repeated,
    /// `map<string, V>`: repeated key/value entries; the field type is V's.
    Map,
}

#[derive(Clone, Debug)]
pub struct Field {
    pub tag: u32,
    /// The Rust field name without `r#`, e.g. `pod_i_ps`.
    pub name: String,
    pub ty: FieldType,
    pub label: Label,
}

#[derive(Clone, Debug, Default)]
pub struct Message {
    pub fields: Vec<Field>,
}

/// A top-level type with a Resource impl.
#[derive(Clone, Debug)]
pub struct Kind {
    pub api_version: String,
    pub kind: String,
    pub message: MessageId,
}

#[derive(Debug, Default)]
pub struct Protos {
    pub messages: BTreeMap<MessageId, Message>,
    pub kinds: Vec<Kind>,
}

/// Reads every `mod.rs` under `src` (k8s-pb's source directory).
pub fn read(src: &Path) -> Result<Protos, String> {
    let mut out = Protos::default();
    let mut files = Vec::new();
    collect_mod_files(src, &mut files)?;
    files.sort();
    for file in files {
        let rel = file
            .parent()
            .and_then(|p| p.strip_prefix(src).ok())
            .ok_or_else(|| format!("{} is not under {}", file.display(), src.display()))?;
        let module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if module.is_empty() {
            continue; // lib.rs-level code, no messages.
        }
        let text =
            fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        parse_file(&module, &text, &mut out).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(out)
}

fn collect_mod_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("listing {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_mod_files(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses one package's bindings: structs with their prost fields, and Resource impls.
fn parse_file(module: &[String], text: &str, out: &mut Protos) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest
                .split([' ', '{'])
                .next()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("line {}: unnamed struct", i + 1))?;
            let mut message = Message::default();
            // A unit-like `pub struct X {}` has no fields.
            if !rest.trim_end().ends_with("{}") {
                i += 1;
                while i < lines.len() && lines[i] != "}" {
                    let l = lines[i].trim();
                    if let Some(attr) = l
                        .strip_prefix("#[prost(")
                        .and_then(|a| a.strip_suffix(")]"))
                    {
                        // The declaration may wrap: collect lines up to the one ending in ','.
                        let mut decl = String::new();
                        i += 1;
                        while i < lines.len() {
                            decl.push_str(lines[i].trim());
                            let open = decl.matches('<').count();
                            if decl.ends_with(',') && open == decl.matches('>').count() {
                                break;
                            }
                            i += 1;
                        }
                        let field = parse_field(module, attr, &decl)
                            .map_err(|e| format!("{name}, line {}: {e}", i + 1))?;
                        message.fields.push(field);
                    } else if l.starts_with("pub ") {
                        return Err(format!("{name}: field without #[prost] at line {}", i + 1));
                    }
                    i += 1;
                }
            }
            message.fields.sort_by_key(|f| f.tag);
            out.messages
                .insert((module.join("::"), name.to_string()), message);
        } else if let Some(rest) = line.strip_prefix("impl crate::Resource for ") {
            let name = rest.trim_end_matches(" {").trim().to_string();
            let mut api_version = None;
            let mut kind = None;
            i += 1;
            while i < lines.len() && lines[i] != "}" {
                let l = lines[i].trim();
                if let Some(v) = const_str(l, "API_VERSION") {
                    api_version = Some(v);
                } else if let Some(v) = const_str(l, "KIND") {
                    kind = Some(v);
                }
                i += 1;
            }
            match (api_version, kind) {
                (Some(api_version), Some(kind)) => out.kinds.push(Kind {
                    api_version,
                    kind,
                    message: (module.join("::"), name),
                }),
                _ => {
                    return Err(format!(
                        "Resource impl for {name} lacks API_VERSION or KIND"
                    ))
                }
            }
        } else if (line.starts_with("pub mod ") && !line.ends_with(';'))
            || line.starts_with("pub enum ")
        {
            return Err(format!(
                "line {}: nested modules and enums are not supported: {line}",
                i + 1
            ));
        }
        i += 1;
    }
    Ok(())
}

/// `const NAME: &'static str = "value";` → value.
fn const_str(line: &str, name: &str) -> Option<String> {
    let rest = line.strip_prefix(&format!("const {name}: &'static str = \""))?;
    Some(rest.strip_suffix("\";")?.to_string())
}

/// One field from its attribute body (`string, optional, tag = "1"`) and declaration
/// (`pub name: ::core::option::Option<...>,`).
fn parse_field(module: &[String], attr: &str, decl: &str) -> Result<Field, String> {
    let parts: Vec<&str> = split_attr(attr);
    let tag = parts
        .iter()
        .find_map(|p| p.strip_prefix("tag = \""))
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| format!("no tag in #[prost({attr})]"))?
        .parse::<u32>()
        .map_err(|e| format!("bad tag in #[prost({attr})]: {e}"))?;
    let (name, rust_type) = decl
        .strip_prefix("pub ")
        .and_then(|d| d.split_once(':'))
        .ok_or_else(|| format!("unexpected declaration {decl:?}"))?;
    let name = name.trim().trim_start_matches("r#").to_string();
    let rust_type = rust_type.trim().trim_end_matches(',');
    let first = parts.first().copied().unwrap_or_default();
    let label = if parts.contains(&"repeated") {
        Label::Repeated
    } else if first.starts_with("btree_map") {
        Label::Map
    } else if parts.contains(&"optional") {
        Label::Optional
    } else {
        return Err(format!(
            "neither optional, repeated nor a map: #[prost({attr})]"
        ));
    };
    let scalar = |s: &str| -> Result<FieldType, String> {
        Ok(match s {
            "string" => FieldType::String,
            "bytes" | "bytes = \"vec\"" => FieldType::Bytes,
            "bool" => FieldType::Bool,
            "int32" => FieldType::Int32,
            "int64" => FieldType::Int64,
            "double" => FieldType::Double,
            "message" => FieldType::Message(message_path(module, rust_type)?),
            other => {
                return Err(format!(
                    "unsupported field type {other:?} in #[prost({attr})]"
                ))
            }
        })
    };
    let ty = if let Some(map) = first.strip_prefix("btree_map = \"") {
        let (key, value) = map
            .trim_end_matches('"')
            .split_once(", ")
            .ok_or_else(|| format!("bad map in #[prost({attr})]"))?;
        if key != "string" {
            return Err(format!("map keys must be strings: #[prost({attr})]"));
        }
        scalar(value)?
    } else {
        scalar(first)?
    };
    Ok(Field {
        tag,
        name,
        ty,
        label,
    })
}

/// Splits `bytes = "vec", optional, tag = "3"` at the commas outside quotes.
fn split_attr(attr: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in attr.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(attr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(attr[start..].trim());
    out.retain(|p| !p.is_empty());
    out
}

/// The message a field's Rust type names, resolved against the field's module: the last type
/// argument with the Option/Vec/Box/BTreeMap wrappers removed.
fn message_path(module: &[String], rust_type: &str) -> Result<MessageId, String> {
    let mut t = rust_type.trim();
    for wrapper in [
        "::core::option::Option<",
        "::prost::alloc::vec::Vec<",
        "::prost::alloc::boxed::Box<",
    ] {
        if let Some(inner) = t.strip_prefix(wrapper) {
            t = inner
                .strip_suffix('>')
                .unwrap_or(inner)
                .trim_end_matches(',');
        }
    }
    if let Some(inner) = t.strip_prefix("::prost::alloc::collections::BTreeMap<") {
        // A wrapped declaration joins as `BTreeMap<K,V,>`.
        let inner = inner
            .strip_suffix('>')
            .unwrap_or(inner)
            .trim_end_matches(',');
        t = inner
            .split_once(',')
            .map(|(_, v)| v.trim())
            .ok_or_else(|| format!("bad map type {rust_type}"))?;
    }
    if let Some(inner) = t.strip_prefix("::prost::alloc::boxed::Box<") {
        t = inner.strip_suffix('>').unwrap_or(inner);
    }
    let mut path: Vec<String> = module.to_vec();
    let mut segments: Vec<&str> = t.split("::").collect();
    let name = segments
        .pop()
        .filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| format!("cannot resolve type {rust_type}"))?;
    for seg in segments {
        match seg {
            "super" => {
                path.pop()
                    .ok_or_else(|| format!("{rust_type} leaves the crate"))?;
            }
            "crate" => path.clear(),
            s => path.push(s.to_string()),
        }
    }
    Ok((path.join("::"), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module() -> Vec<String> {
        ["api", "apps", "v1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn relative_message_paths_resolve_against_the_module() {
        let t = "::core::option::Option<super::super::super::apimachinery::pkg::apis::meta::v1::ObjectMeta>";
        assert_eq!(
            message_path(&module(), t).unwrap(),
            (
                "apimachinery::pkg::apis::meta::v1".to_string(),
                "ObjectMeta".to_string()
            )
        );
        assert_eq!(
            message_path(&module(), "::prost::alloc::vec::Vec<DaemonSet>").unwrap(),
            ("api::apps::v1".to_string(), "DaemonSet".to_string())
        );
    }

    #[test]
    fn fields_keep_tag_label_and_type() {
        let f = parse_field(
            &module(),
            "btree_map = \"string, bytes\", tag = \"2\"",
            "pub binary_data: ::prost::alloc::collections::BTreeMap<::prost::alloc::string::String, ::prost::alloc::vec::Vec<u8>>,",
        )
        .unwrap();
        assert_eq!((f.tag, f.label, f.ty), (2, Label::Map, FieldType::Bytes));
        let f = parse_field(
            &module(),
            "string, optional, tag = \"1\"",
            "pub r#type: ::core::option::Option<::prost::alloc::string::String>,",
        )
        .unwrap();
        assert_eq!(f.name, "type");
    }
}
