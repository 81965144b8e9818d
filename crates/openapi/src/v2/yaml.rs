//! YAML text for the any-valued fields of the protobuf document (`default`, `enum`, `example`
//! and every `x-...` vendor extension), which gnostic carries as `Any { yaml }`. Entry point:
//! [`to_yaml`].
//!
//! gnostic writes these in block style (`- group: ""\n  kind: Pod\n  version: v1\n`); kubectl
//! reads them back with a YAML 1.1 parser, so a string is written plain only when it cannot be
//! taken for anything else (a number, a boolean, null, an indicator) and double-quoted in JSON's
//! escaping otherwise, which YAML's double-quoted style shares.

use serde_json::{Map, Value};

/// `value` as a YAML document, ending in a newline.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0, false),
        _ => {
            out.push_str(&scalar(value));
            out.push('\n');
        }
    }
    out
}

/// A value written on one line: scalars, and empty collections in flow style.
fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string, plain when unambiguous, else double-quoted.
fn string(s: &str) -> String {
    if plain(s) {
        s.to_string()
    } else {
        // JSON's string escapes are all valid in YAML's double-quoted style.
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

/// Whether `s` reads back as the same string when written without quotes: it starts with a
/// letter, holds only letters, digits and `-_./`, and is none of YAML 1.1's booleans or null.
fn plain(s: &str) -> bool {
    const RESERVED: &[&str] = &["true", "false", "yes", "no", "on", "off", "y", "n", "null"];
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s))
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes a non-empty value that does not fit on one line, or a scalar and its newline.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent, false);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent, false);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(value));
            out.push('\n');
        }
    }
}

/// `key: value` lines at `indent`; with `inline_first` the first line continues a `- `.
fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize, inline_first: bool) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str(&string(key));
        out.push(':');
        write_value(out, value, indent + 2);
    }
}

/// `- item` lines at `indent`; with `inline_first` the first line continues a `- `.
fn write_seq(out: &mut String, items: &[Value], indent: usize, inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => write_map(out, map, indent + 2, true),
            Value::Array(inner) if !inner.is_empty() => write_seq(out, inner, indent + 2, true),
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads_back(value: Value) {
        let text = to_yaml(&value);
        let back: Value =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{text:?} is not YAML: {e}"));
        assert_eq!(back, value, "{text}");
    }

    #[test]
    fn group_version_kinds_look_like_gnostics_block_style() {
        let gvk = json!([{ "group": "", "kind": "ConfigMap", "version": "v1" }]);
        assert_eq!(
            to_yaml(&gvk),
            "- group: \"\"\n  kind: ConfigMap\n  version: v1\n"
        );
        reads_back(gvk);
    }

    #[test]
    fn scalars_that_yaml_would_misread_are_quoted() {
        assert_eq!(to_yaml(&json!("merge")), "merge\n");
        assert_eq!(
            to_yaml(&json!("merge,retainKeys")),
            "\"merge,retainKeys\"\n"
        );
        assert_eq!(to_yaml(&json!("true")), "\"true\"\n");
        assert_eq!(to_yaml(&json!("No")), "\"No\"\n");
        assert_eq!(to_yaml(&json!("10")), "\"10\"\n");
        assert_eq!(to_yaml(&json!({})), "{}\n");
        assert_eq!(to_yaml(&json!(80)), "80\n");
        for v in [
            json!(""),
            json!("a: b"),
            json!("- x"),
            json!("#x"),
            json!("line\nbreak \"quoted\" \t tab"),
            json!("ünïcode"),
            json!(1.5),
            json!(false),
            json!(null),
            json!([]),
        ] {
            reads_back(v);
        }
    }

    #[test]
    fn nested_collections_read_back() {
        reads_back(json!(["containerPort", "protocol"]));
        reads_back(
            json!([{ "discriminator": "type", "fields-to-discriminateBy": { "localhostProfile": "LocalhostProfile" } }]),
        );
        reads_back(
            json!({ "a": [[1, 2], [], {}], "b": { "c": { "d": "e" } }, "with space": [{ "x": [1] }] }),
        );
    }
}
