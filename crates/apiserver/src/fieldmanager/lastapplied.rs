//! kubectl's `last-applied-configuration` annotation and server-side apply, as upstream joins
//! them for the manager `kubectl`: an apply may take over fields client-side apply set
//! (while the live values still match the annotation), and the annotation is rewritten to the
//! applied configuration when the object carries one, so `kubectl apply` without
//! `--server-side` keeps working afterwards.

use serde_json::{Map, Value};

use super::fieldset::Set;
use super::typed;
use super::updater::Updater;

/// The field manager `kubectl apply --server-side` uses by default.
pub const KUBECTL: &str = "kubectl";

/// The annotation client-side apply writes.
pub const ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn annotation(obj: &Value) -> Option<&str> {
    obj["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields an apply by `kubectl` may take from other managers without a conflict: those
/// in the last-applied configuration whose values the live object still has. None when there
/// is no usable annotation.
pub fn allowed_conflicts(updater: &Updater, live: &Value) -> Option<Set> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(updater.version().as_str()) {
        return None;
    }
    let schema = updater.schema();
    let mut errors = Vec::new();
    let set = typed::to_field_set(&last, schema, &mut errors);
    if !errors.is_empty() {
        return None;
    }
    let c = typed::compare(&last, live, schema);
    Some(
        set.difference(&c.modified)
            .difference(&c.added)
            .difference(&c.removed),
    )
}

/// Rewrites the annotation of `obj` (when it has one) to the applied configuration, encoded as
/// kubectl encodes it: the object without the annotation itself, keys sorted, one line.
pub fn update_annotation(obj: &mut Value, config: &Value) {
    if annotation(obj).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ANNOTATION);
    }
    let text = format!("{}\n", go_json(&sorted(&applied)));
    if let Some(a) = obj["metadata"]["annotations"].as_object_mut() {
        a.insert(ANNOTATION.into(), Value::String(text));
    }
}

/// JSON as Go's encoder writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (they can only
/// occur inside strings, so replacing them in the text is safe).
fn go_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// `v` with every object's keys sorted (how Go encodes maps).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k.as_str()]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::catalogue;
    use serde_json::json;

    #[test]
    fn the_annotation_is_rewritten_only_when_present() {
        let config = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"b": "1", "a": "2"}});
        let mut without = json!({"metadata": {"name": "c"}});
        update_annotation(&mut without, &config);
        assert!(without["metadata"].get("annotations").is_none());
        let mut with = json!({"metadata": {"name": "c", "annotations": {ANNOTATION: "{}"}}});
        update_annotation(&mut with, &config);
        assert_eq!(
            with["metadata"]["annotations"][ANNOTATION],
            "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"2\",\"b\":\"1\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\"}}\n"
        );
    }

    #[test]
    fn the_annotation_escapes_html_characters_as_go_does() {
        assert_eq!(
            go_json(&json!({"c": "a && b <x>"})),
            r#"{"c":"a \u0026\u0026 b \u003cx\u003e"}"#
        );
    }

    #[test]
    fn fields_still_matching_the_last_applied_configuration_are_allowed() {
        let info = catalogue::lookup("", "v1", "configmaps").expect("configmaps");
        let updater = Updater::new(info, Set::new());
        let last = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "1"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {ANNOTATION: last.to_string()}}, "data": {"a": "1", "b": "changed"}});
        let allowed = allowed_conflicts(&updater, &live).expect("annotation");
        let f = |s: &str| super::super::path::PathElement::Field(s.into());
        assert!(allowed.has(&[f("data"), f("a")]));
        assert!(!allowed.has(&[f("data"), f("b")]));
    }
}
