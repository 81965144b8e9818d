//! Reads k8s-openapi's generated types for the JSON side of each message: the JSON property
//! names and which properties are required. Entry point: [`read`].
//!
//! Every k8s-openapi struct file has the struct (`pub rust_name: Option<T>` for optional
//! fields, a bare `T` for required ones) and a serde visitor arm per property
//! (`"podIP" => Field::Key_pod_ip,`). Module paths mirror k8s-pb's (`api::core::v1`), type
//! names may differ in case (`JSONSchemaProps` here, `JsonSchemaProps` in k8s-pb).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One JSON property of a type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    pub json: String,
    pub required: bool,
}

/// One k8s-openapi struct: its Go/JSON type name (`JSONSchemaProps`) and properties.
#[derive(Clone, Debug)]
pub struct Type {
    pub name: String,
    pub props: Vec<Property>,
}

/// module path → lowercased type name → type.
pub type Types = BTreeMap<String, BTreeMap<String, Type>>;

/// Reads one version directory of k8s-openapi (e.g. `src/v1_33`).
pub fn read(version_dir: &Path) -> Result<Types, String> {
    let mut out = Types::new();
    walk(version_dir, version_dir, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Types) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("listing {}: {e}", dir.display()))?;
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = dir
            .strip_prefix(root)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("::");
        let text =
            fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if let Some((name, props)) = parse_type(&text) {
            out.entry(module)
                .or_default()
                .insert(name.to_ascii_lowercase(), Type { name, props });
        }
    }
    Ok(())
}

/// The struct in one file and its properties; None for files without a braced struct
/// (enums such as IntOrString, newtypes such as Time: those are special-cased by name).
fn parse_type(text: &str) -> Option<(String, Vec<Property>)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("pub struct ") && l.trim_end().ends_with('{'))?;
    let name = lines[start]
        .strip_prefix("pub struct ")?
        .split([' ', '{', '<'])
        .next()?
        .to_string();
    // Rust field name → required.
    let mut fields: BTreeMap<String, bool> = BTreeMap::new();
    for line in &lines[start + 1..] {
        if *line == "}" {
            break;
        }
        let Some(decl) = line.trim().strip_prefix("pub ") else {
            continue;
        };
        let Some((field, ty)) = decl.split_once(':') else {
            continue;
        };
        let field = field.trim().trim_start_matches("r#").to_string();
        fields.insert(field, !ty.trim().starts_with("Option<"));
    }
    // The visitor arms name each property once; the schema and serializer repeat them.
    let mut props = Vec::new();
    for line in &lines {
        let l = line.trim();
        let Some((json, key)) = l.split_once("\" => Field::Key_") else {
            continue;
        };
        let Some(json) = json.strip_prefix('"') else {
            continue;
        };
        let key = key.trim_end_matches(',');
        if let Some(required) = fields.get(key) {
            if !props.iter().any(|p: &Property| p.json == json) {
                props.push(Property {
                    json: json.to_string(),
                    required: *required,
                });
            }
        }
    }
    Some((name, props))
}

/// The comparison key between a k8s-pb field name and a JSON property name: ASCII letters and
/// digits, lowercased (`pod_i_ps` and `podIPs` both give `podips`; `ref` and `$ref` give `ref`;
/// `x_kubernetes_list_type` and `x-kubernetes-list-type` agree).
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_come_from_the_visitor_arms_with_requiredness_from_the_struct() {
        let text = r#"
pub struct ContainerPort {
    /// doc
    pub container_port: i32,

    pub host_ip: Option<std::string::String>,
}

impl X {
                        Ok(match v {
                            "containerPort" => Field::Key_container_port,
                            "hostIP" => Field::Key_host_ip,
                            "apiVersion" => Field::Key_api_version,
"#;
        let (name, props) = parse_type(text).unwrap();
        assert_eq!(name, "ContainerPort");
        assert_eq!(
            props,
            vec![
                Property {
                    json: "containerPort".into(),
                    required: true
                },
                Property {
                    json: "hostIP".into(),
                    required: false
                },
            ]
        );
    }

    #[test]
    fn names_normalize_across_cases_and_punctuation() {
        assert_eq!(normalize("external_i_ps"), normalize("externalIPs"));
        assert_eq!(normalize("ref"), normalize("$ref"));
        assert_eq!(
            normalize("x_kubernetes_preserve_unknown_fields"),
            normalize("x-kubernetes-preserve-unknown-fields")
        );
    }
}
