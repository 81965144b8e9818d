//! Path elements: how one step into an object is named in a field set, as structured-merge-diff
//! names it. A struct or map field (`f:name`), a list-map item by its keys
//! (`k:{"name":"c"}`), a set item by its value (`v:"a"`), or a list index (`i:0`).
//!
//! The order of elements is upstream's (fields, then keys, then values, then indices; values
//! compared numerically, then as strings, booleans, lists, maps, null), because field sets are
//! serialized in that order and conflicts are listed in it.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Clone, Debug)]
pub enum PathElement {
    /// A field of a struct or a key of a map.
    Field(String),
    /// A list-map item, by its key fields sorted by name.
    Key(Vec<(String, Value)>),
    /// A set item (a list of scalars merged as a set), by its value.
    Value(Value),
    /// A list item by position (only in sets read from clients; upstream never writes them).
    Index(usize),
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

impl PathElement {
    /// Builds a key element, sorting the fields by name as upstream keeps them.
    pub fn key(mut fields: Vec<(String, Value)>) -> Self {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The fieldsV1 spelling: `f:name`, `k:{"a":1}`, `v:"x"`, `i:3`.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut m = Map::new();
                for (k, v) in fields {
                    m.insert(k.clone(), v.clone());
                }
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses the fieldsV1 spelling. `Ok(None)` for an element type this version does not
    /// know (upstream skips those rather than failing, for forward compatibility).
    pub fn deserialize(s: &str) -> Result<Option<Self>, String> {
        let bytes = s.as_bytes();
        if bytes.len() < 2 {
            return Err(format!("key must be 2 characters long: {s}"));
        }
        if bytes[1] != b':' {
            return Err(format!("missing colon: {s}"));
        }
        let rest = &s[2..];
        match bytes[0] {
            b'f' => Ok(Some(PathElement::Field(rest.to_string()))),
            b'v' => serde_json::from_str::<Value>(rest)
                .map(|v| Some(PathElement::Value(v)))
                .map_err(|e| format!("parsing value {rest:?}: {e}")),
            b'k' => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(m)) => Ok(Some(PathElement::key(m.into_iter().collect()))),
                Ok(_) => Err(format!("key {rest:?} is not a JSON object")),
                Err(e) => Err(format!("parsing key {rest:?}: {e}")),
            },
            b'i' => rest
                .parse::<usize>()
                .map(|i| Some(PathElement::Index(i)))
                .map_err(|e| format!("parsing index {rest:?}: {e}")),
            _ => Ok(None),
        }
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => compare_fields(a, b),
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// Key fields compared name by name, then value by value; a prefix sorts first.
fn compare_fields(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b) {
        let c = an.cmp(bn).then_with(|| compare_values(av, bv));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// A total order on JSON values: numbers (compared numerically, ints and floats together),
/// then strings, booleans, lists, maps and null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i.cmp(&j),
                _ => {
                    let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                    f.partial_cmp(&g).unwrap_or(Ordering::Equal)
                }
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (i, j) in x.iter().zip(y) {
                let c = compare_values(i, j);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort();
            yk.sort();
            for (i, j) in xk.iter().zip(&yk) {
                let c = i
                    .cmp(j)
                    .then_with(|| compare_values(&x[i.as_str()], &y[j.as_str()]));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xk.len().cmp(&yk.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// A value as upstream prints it inside a path: strings quoted, the rest as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(value_text).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

impl fmt::Display for PathElement {
    /// `.name`, `[name="c"]`, `[=value]`, `[3]`: the spelling of conflict messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_text(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_text(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A whole path as upstream prints it (`.spec.containers[name="c"].image`).
pub fn path_string(p: &[PathElement]) -> String {
    p.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_round_trip_through_their_fields_v1_spelling() {
        for pe in [
            PathElement::Field("spec".into()),
            PathElement::key(vec![
                ("protocol".into(), json!("TCP")),
                ("containerPort".into(), json!(80)),
            ]),
            PathElement::Value(json!("a")),
            PathElement::Index(3),
        ] {
            let s = pe.serialize();
            assert_eq!(
                PathElement::deserialize(&s).expect("parses"),
                Some(pe.clone()),
                "{s}"
            );
        }
        assert_eq!(
            PathElement::key(vec![
                ("protocol".into(), json!("TCP")),
                ("containerPort".into(), json!(80))
            ])
            .serialize(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
    }

    #[test]
    fn unknown_element_types_are_skipped_and_malformed_ones_fail() {
        assert_eq!(
            PathElement::deserialize("x:whatever").expect("skipped"),
            None
        );
        assert!(PathElement::deserialize("f").is_err());
        assert!(PathElement::deserialize("fx").is_err());
        assert!(PathElement::deserialize("k:[1]").is_err());
        assert!(PathElement::deserialize("i:x").is_err());
    }

    #[test]
    fn fields_sort_before_keys_values_and_indices() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!(1)),
            PathElement::key(vec![("name".into(), json!("a"))]),
            PathElement::Field("z".into()),
        ];
        v.sort();
        assert!(matches!(v[0], PathElement::Field(_)));
        assert!(matches!(v[1], PathElement::Key(_)));
        assert!(matches!(v[2], PathElement::Value(_)));
        assert!(matches!(v[3], PathElement::Index(_)));
    }

    #[test]
    fn numbers_compare_numerically_and_before_strings() {
        assert_eq!(compare_values(&json!(9), &json!(10)), Ordering::Less);
        assert_eq!(compare_values(&json!(1.5), &json!(1)), Ordering::Greater);
        assert_eq!(compare_values(&json!(1000), &json!("a")), Ordering::Less);
        assert_eq!(compare_values(&json!(null), &json!({})), Ordering::Greater);
    }

    #[test]
    fn paths_print_as_in_conflict_messages() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::key(vec![("name".into(), json!("nginx"))]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_string(&p), r#".spec.containers[name="nginx"].image"#);
        assert_eq!(PathElement::Value(json!("x")).to_string(), r#"[="x"]"#);
    }
}
