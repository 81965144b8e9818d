//! JSON merge patch (RFC 7386, `application/merge-patch+json`): [`apply`] and its inverse
//! [`diff`].

use serde_json::{Map, Value};

/// Applies a merge patch to `target` in place: objects merge key by key, `null` removes a key,
/// anything else (arrays included) replaces. A non-object patch replaces the whole target.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            apply(target.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

/// The merge patch that turns `original` into `modified`: changed and added keys with their new
/// values, removed keys as `null`, nested objects as nested patches. Arrays are compared whole.
/// Returns `{}` when they are equal.
pub fn diff(original: &Value, modified: &Value) -> Value {
    match (original, modified) {
        (Value::Object(o), Value::Object(m)) => Value::Object(diff_objects(o, m)),
        _ if original == modified => Value::Object(Map::new()),
        _ => modified.clone(),
    }
}

fn diff_objects(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, new) in modified {
        match original.get(key) {
            Some(old) if old == new => {}
            Some(Value::Object(old)) if new.is_object() => {
                if let Value::Object(new) = new {
                    patch.insert(key.clone(), Value::Object(diff_objects(old, new)));
                }
            }
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_remove_and_objects_merge() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        apply(
            &mut doc,
            &json!({"a": null, "b": {"c": 5}, "e": [3], "f": {"g": null, "h": 1}}),
        );
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [3], "f": {"h": 1}}));
    }

    #[test]
    fn a_non_object_patch_replaces_the_document() {
        let mut doc = json!({"a": 1});
        apply(&mut doc, &json!(["x"]));
        assert_eq!(doc, json!(["x"]));
        let mut doc = json!("scalar");
        apply(&mut doc, &json!({"a": 1}));
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn rfc_7386_examples_hold() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            let mut got = doc.clone();
            apply(&mut got, &patch);
            assert_eq!(got, want, "{doc} + {patch}");
        }
    }

    #[test]
    fn diff_then_apply_round_trips() {
        let original = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "x": "gone"});
        let modified = json!({"a": 2, "b": {"c": 2}, "e": [1], "n": {"m": true}});
        let patch = diff(&original, &modified);
        assert_eq!(
            patch,
            json!({"a": 2, "b": {"d": null}, "e": [1], "n": {"m": true}, "x": null})
        );
        let mut doc = original.clone();
        apply(&mut doc, &patch);
        assert_eq!(doc, modified);
        assert_eq!(diff(&modified, &modified), json!({}));
    }
}
