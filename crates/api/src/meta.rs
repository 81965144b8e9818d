//! Reading and writing object metadata on JSON values, for the generic code paths that never
//! decode an object into its typed form.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `metadata` of an object, if it is an object.
pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

/// `metadata`, created if missing (a non-object `metadata` is replaced).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let root = match obj {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    };
    let entry = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// A string field of metadata; `None` when missing or empty.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub fn set_str(obj: &mut Value, field: &str, value: impl Into<String>) {
    metadata_mut(obj).insert(field.to_string(), Value::String(value.into()));
}

/// The object's labels (empty map when none).
pub fn labels(obj: &Value) -> BTreeMap<&str, &str> {
    string_map(obj, "labels")
}

pub fn annotations(obj: &Value) -> BTreeMap<&str, &str> {
    string_map(obj, "annotations")
}

fn string_map<'a>(obj: &'a Value, field: &str) -> BTreeMap<&'a str, &'a str> {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn generation(obj: &Value) -> Option<i64> {
    metadata(obj)?.get("generation")?.as_i64()
}

/// The object without metadata and status: what a spec change compares.
pub fn spec_part(obj: &Value) -> Value {
    match obj {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_strings_read_as_missing() {
        let o = json!({"metadata":{"name":"","namespace":"ns"}});
        assert_eq!(name(&o), None);
        assert_eq!(namespace(&o), Some("ns"));
    }

    #[test]
    fn metadata_mut_creates_metadata() {
        let mut o = json!({"kind":"Pod"});
        set_str(&mut o, "name", "p");
        assert_eq!(o["metadata"]["name"], "p");
    }

    #[test]
    fn spec_part_leaves_out_metadata_and_status() {
        let o = json!({"apiVersion":"v1","kind":"K","metadata":{"a":1},"spec":{"x":1},"status":{"y":2},"data":{}});
        assert_eq!(spec_part(&o), json!({"spec":{"x":1},"data":{}}));
    }
}
