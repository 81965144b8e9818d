//! Objects walked with their type, as structured-merge-diff walks them: the field set of a
//! value ([`to_field_set`]), the difference between two values ([`compare`]), the merge of an
//! applied configuration into a live object ([`merge`]), the removal of owned items
//! ([`remove_items`]) and the named-field closure of a set ([`ensure_named_fields`]).
//!
//! The type of each position comes from the served schemas (`capstan_openapi::TypeRef`):
//! structs merge field by field unless `x-kubernetes-map-type: atomic`; maps merge by key;
//! lists are atomic, sets of scalars, or maps keyed by `x-kubernetes-list-map-keys` (with the
//! older `patch-strategy: merge` + merge key read the same way, as upstream's converter does).
//! Positions without a schema (RawExtension, unknown fields of stored data) are *deduced*
//! from the value: maps granular, lists atomic.

use std::collections::BTreeMap;

use capstan_openapi::{ListType, MapType, Shape, TypeRef};
use serde_json::{Map, Value};

use super::fieldset::Set;
use super::path::{compare_values, path_string, Path, PathElement};

/// The type of a position: from the schema, or deduced from the value.
#[derive(Clone, Copy, Debug)]
pub enum Schema {
    Typed(TypeRef),
    Deduced,
}

/// How a list's items are identified.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListRel {
    /// Replaced whole.
    Atomic,
    /// Scalars identified by their value.
    Set,
    /// Maps identified by these key fields.
    Keyed(Vec<&'static str>),
}

/// What a position is, for walking.
enum Atom {
    Scalar,
    List {
        elem: Schema,
        rel: ListRel,
    },
    /// A struct (`fields` set) or a map from strings to `elem`.
    Map {
        fields: Option<TypeRef>,
        elem: Schema,
        atomic: bool,
    },
}

impl Schema {
    fn atom(self, v: Option<&Value>) -> Atom {
        match self {
            Schema::Deduced => deduce(v),
            Schema::Typed(t) => {
                let meta = t.patch_meta();
                let atomic_map = meta.map_type == Some(MapType::Atomic);
                match meta.shape {
                    Shape::Primitive => Atom::Scalar,
                    Shape::Object => Atom::Map {
                        fields: Some(t),
                        elem: Schema::Deduced,
                        atomic: atomic_map,
                    },
                    Shape::Map => Atom::Map {
                        fields: None,
                        elem: t.items().map(Schema::Typed).unwrap_or(Schema::Deduced),
                        atomic: atomic_map,
                    },
                    Shape::List => {
                        let rel = match meta.list_type {
                            Some(ListType::Atomic) => ListRel::Atomic,
                            Some(ListType::Set) => ListRel::Set,
                            Some(ListType::Map) if meta.map_keys.is_empty() => ListRel::Set,
                            Some(ListType::Map) => ListRel::Keyed(meta.map_keys.clone()),
                            None if meta.strategy.merges() => match meta.merge_key {
                                Some(k) => ListRel::Keyed(vec![k]),
                                None => ListRel::Set,
                            },
                            None => ListRel::Atomic,
                        };
                        Atom::List {
                            elem: t.items().map(Schema::Typed).unwrap_or(Schema::Deduced),
                            rel,
                        }
                    }
                    Shape::Untyped => deduce(v),
                }
            }
        }
    }
}

fn deduce(v: Option<&Value>) -> Atom {
    match v {
        Some(Value::Object(_)) => Atom::Map {
            fields: None,
            elem: Schema::Deduced,
            atomic: false,
        },
        Some(Value::Array(_)) => Atom::List {
            elem: Schema::Deduced,
            rel: ListRel::Atomic,
        },
        _ => Atom::Scalar,
    }
}

impl Atom {
    /// The type of a map key or struct field, and whether it is a declared struct field.
    fn child(&self, key: &str) -> (Schema, bool) {
        match self {
            Atom::Map {
                fields: Some(t), ..
            } => match t.field(key) {
                Some(f) => (Schema::Typed(f), true),
                None => (Schema::Deduced, false),
            },
            Atom::Map { elem, .. } => (*elem, false),
            _ => (Schema::Deduced, false),
        }
    }
}

/// A problem with a value's shape, worded as upstream's typed-value validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for TypedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Several errors, joined as upstream joins them.
pub fn join_errors(errs: &[TypedError]) -> String {
    match errs {
        [one] => one.to_string(),
        many => {
            let mut out = vec!["errors:".to_string()];
            out.extend(many.iter().map(|e| format!("  {e}")));
            out.join("\n")
        }
    }
}

fn err(path: &[PathElement], message: impl Into<String>) -> TypedError {
    TypedError {
        path: path_string(path),
        message: message.into(),
    }
}

/// The path element of a list item: its keys (with declared defaults for missing ones), or
/// its value for sets.
fn item_element(
    item: &Value,
    elem: Schema,
    rel: &ListRel,
    index: usize,
) -> Result<PathElement, String> {
    match rel {
        ListRel::Atomic => Ok(PathElement::Index(index)),
        ListRel::Set => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            v => Ok(PathElement::Value(v.clone())),
        },
        ListRel::Keyed(keys) => {
            let Value::Object(m) = item else {
                return Err(if item.is_null() {
                    "associative list with keys may not have a null element".into()
                } else {
                    "associative list with keys may not have non-map elements".into()
                });
            };
            let mut fields = Vec::with_capacity(keys.len());
            for k in keys {
                match m.get(*k) {
                    Some(v) => fields.push((k.to_string(), v.clone())),
                    None => {
                        let default = match elem {
                            Schema::Typed(t) => t.field(k).and_then(|f| f.default_value()),
                            Schema::Deduced => None,
                        };
                        match default {
                            Some(d) => fields.push((k.to_string(), d.clone())),
                            None => {
                                return Err(format!(
                                    "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                                ))
                            }
                        }
                    }
                }
            }
            Ok(PathElement::key(fields))
        }
    }
}

fn list_of(v: Option<&Value>) -> Option<&Vec<Value>> {
    match v {
        Some(Value::Array(a)) => Some(a),
        _ => None,
    }
}

fn map_of(v: Option<&Value>) -> Option<&Map<String, Value>> {
    match v {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// Structural equality with numbers compared by value (1 equals 1.0), as upstream compares.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == std::cmp::Ordering::Equal
}

// ---------------------------------------------------------------------------------------------
// ToFieldSet

/// The set of fields `v` sets: leaves, list items, map entries, and empty or null fields.
/// `errors` receives what does not fit the schema (unknown fields, items without keys).
pub fn to_field_set(v: &Value, schema: Schema, errors: &mut Vec<TypedError>) -> Set {
    let mut set = Set::new();
    field_set_walk(v, schema, &mut Vec::new(), &mut set, errors);
    set
}

fn field_set_walk(
    v: &Value,
    schema: Schema,
    path: &mut Path,
    set: &mut Set,
    errors: &mut Vec<TypedError>,
) {
    match schema.atom(Some(v)) {
        Atom::Scalar => {
            if v.is_object() || v.is_array() {
                errors.push(err(path, format!("expected scalar, got {}", kind_name(v))));
            }
            set.insert(path);
        }
        Atom::List { elem, rel } => {
            if rel == ListRel::Atomic {
                set.insert(path);
                return;
            }
            let Some(items) = v.as_array() else {
                if !v.is_null() {
                    errors.push(err(path, format!("expected list, got {}", kind_name(v))));
                }
                return;
            };
            let mut seen: BTreeMap<PathElement, usize> = BTreeMap::new();
            let mut elements = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item_element(item, elem, &rel, i) {
                    Ok(pe) => {
                        *seen.entry(pe.clone()).or_default() += 1;
                        elements.push(Some(pe));
                    }
                    Err(e) => {
                        errors.push(err(path, format!("element {i}: {e}")));
                        elements.push(None);
                    }
                }
            }
            for (item, pe) in items.iter().zip(elements) {
                let Some(pe) = pe else { continue };
                path.push(pe.clone());
                if seen.get(&pe).copied().unwrap_or(0) > 1 {
                    // Duplicated items are owned as a whole (upstream's duplicate handling).
                    set.insert(path);
                } else {
                    field_set_walk(item, elem, path, set, errors);
                    set.insert(path);
                }
                path.pop();
            }
        }
        Atom::Map { atomic: true, .. } => set.insert(path),
        atom @ Atom::Map { .. } => {
            let Some(m) = v.as_object() else {
                if !v.is_null() {
                    errors.push(err(path, format!("expected map, got {}", kind_name(v))));
                }
                return;
            };
            for (k, child) in m {
                let (cs, is_field) = atom.child(k);
                path.push(PathElement::Field(k.clone()));
                if let Atom::Map {
                    fields: Some(_), ..
                } = atom
                {
                    if !is_field {
                        errors.push(err(path, "field not declared in schema"));
                        path.pop();
                        continue;
                    }
                }
                field_set_walk(child, cs, path, set, errors);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || !is_field {
                    set.insert(path);
                }
                path.pop();
            }
        }
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

// ---------------------------------------------------------------------------------------------
// Compare

/// What changed between two values.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Drops `fields` and everything below them from the three sets.
    pub fn exclude(mut self, fields: &Set) -> Self {
        if !fields.is_empty() {
            self.added = self.added.recursive_difference(fields);
            self.modified = self.modified.recursive_difference(fields);
            self.removed = self.removed.recursive_difference(fields);
        }
        self
    }
}

/// Compares `lhs` (before) with `rhs` (after).
pub fn compare(lhs: &Value, rhs: &Value, schema: Schema) -> Comparison {
    let mut c = Comparison::default();
    compare_walk(Some(lhs), Some(rhs), schema, &mut Vec::new(), &mut c);
    c
}

fn compare_leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &Path, c: &mut Comparison) {
    match (lhs, rhs) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        (Some(l), Some(r)) if !values_equal(l, r) => c.modified.insert(path),
        _ => {}
    }
}

fn compare_walk(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    schema: Schema,
    path: &mut Path,
    c: &mut Comparison,
) {
    let leaf = match schema.atom(rhs.or(lhs)) {
        Atom::Scalar => {
            compare_leaf(lhs, rhs, path, c);
            true
        }
        Atom::List { elem, rel } => {
            let (l, r) = (list_of(lhs), list_of(rhs));
            let empty = l.is_none_or(Vec::is_empty) && r.is_none_or(Vec::is_empty);
            if rel == ListRel::Atomic || empty {
                compare_leaf(lhs, rhs, path, c);
                true
            } else {
                compare_list_items(l, r, elem, &rel, path, c);
                false
            }
        }
        atom @ Atom::Map { .. } => {
            let (l, r) = (map_of(lhs), map_of(rhs));
            let empty = l.is_none_or(Map::is_empty) && r.is_none_or(Map::is_empty);
            let atomic = matches!(atom, Atom::Map { atomic: true, .. });
            if atomic || empty {
                compare_leaf(lhs, rhs, path, c);
                true
            } else {
                let empty_map = Map::new();
                let (l, r) = (l.unwrap_or(&empty_map), r.unwrap_or(&empty_map));
                for k in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                    let (cs, _) = atom.child(k);
                    path.push(PathElement::Field(k.clone()));
                    compare_walk(l.get(k), r.get(k), cs, path, c);
                    path.pop();
                }
                false
            }
        }
    };
    if !leaf {
        if lhs.is_none() {
            c.added.insert(path);
        } else if rhs.is_none() {
            c.removed.insert(path);
        }
    }
}

/// Items of a list by path element, in first-seen order, duplicates kept together.
fn index_items<'a>(
    items: Option<&'a Vec<Value>>,
    elem: Schema,
    rel: &ListRel,
    order: &mut Vec<PathElement>,
) -> BTreeMap<PathElement, Vec<&'a Value>> {
    let mut out: BTreeMap<PathElement, Vec<&Value>> = BTreeMap::new();
    for (i, item) in items.into_iter().flatten().enumerate() {
        // Items whose element cannot be built are skipped: nothing below them can be named.
        let Ok(pe) = item_element(item, elem, rel, i) else {
            continue;
        };
        let entry = out.entry(pe.clone()).or_default();
        if entry.is_empty() {
            order.push(pe);
        }
        entry.push(item);
    }
    out
}

fn compare_list_items(
    lhs: Option<&Vec<Value>>,
    rhs: Option<&Vec<Value>>,
    elem: Schema,
    rel: &ListRel,
    path: &mut Path,
    c: &mut Comparison,
) {
    let mut order = Vec::new();
    let l = index_items(lhs, elem, rel, &mut order);
    let mut r_order = Vec::new();
    let r = index_items(rhs, elem, rel, &mut r_order);
    order.extend(r_order.into_iter().filter(|pe| !l.contains_key(pe)));
    let none: Vec<&Value> = Vec::new();
    for pe in order {
        let li = l.get(&pe).unwrap_or(&none);
        let ri = r.get(&pe).unwrap_or(&none);
        path.push(pe);
        match (li.len(), ri.len()) {
            (ln, rn) if ln <= 1 && rn <= 1 => {
                compare_walk(li.first().copied(), ri.first().copied(), elem, path, c)
            }
            (ln, rn) if ln >= 2 && rn >= 2 => {
                let same = ln == rn && li.iter().zip(ri.iter()).all(|(a, b)| values_equal(a, b));
                if !same {
                    c.modified.insert(path);
                }
            }
            (ln, _) if ln >= 2 => {
                if let Some(first) = ri.first() {
                    compare_walk(None, Some(first), elem, path, c);
                }
                c.removed.insert(path);
            }
            _ => {
                if let Some(first) = li.first() {
                    compare_walk(Some(first), None, elem, path, c);
                }
                c.added.insert(path);
            }
        }
        path.pop();
    }
}

// ---------------------------------------------------------------------------------------------
// Merge

/// Merges `rhs` (an applied configuration) into `lhs` (the live object): the applied value
/// wins at every leaf; maps, granular structs and keyed lists merge. Errors are the
/// configuration's (duplicate or keyless list items).
pub fn merge(lhs: &Value, rhs: &Value, schema: Schema) -> Result<Value, Vec<TypedError>> {
    let mut errors = Vec::new();
    let out = merge_walk(Some(lhs), Some(rhs), schema, &mut Vec::new(), &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(out.unwrap_or(Value::Null))
}

fn keep_rhs(lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
    rhs.or(lhs).cloned()
}

fn merge_walk(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    schema: Schema,
    path: &mut Path,
    errors: &mut Vec<TypedError>,
) -> Option<Value> {
    match schema.atom(rhs.or(lhs)) {
        Atom::Scalar => keep_rhs(lhs, rhs),
        Atom::List { elem, rel } => {
            let (l, r) = (list_of(lhs), list_of(rhs));
            let empty = l.is_none_or(Vec::is_empty) && r.is_none_or(Vec::is_empty);
            if rel == ListRel::Atomic || empty {
                return keep_rhs(lhs, rhs);
            }
            merge_list_items(l, r, elem, &rel, path, errors)
        }
        atom @ Atom::Map { .. } => {
            let (l, r) = (map_of(lhs), map_of(rhs));
            let empty = l.is_none_or(Map::is_empty) && r.is_none_or(Map::is_empty);
            if matches!(atom, Atom::Map { atomic: true, .. }) || empty {
                return keep_rhs(lhs, rhs);
            }
            let empty_map = Map::new();
            let (l, r) = (l.unwrap_or(&empty_map), r.unwrap_or(&empty_map));
            let mut out = Map::new();
            for k in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                let (cs, _) = atom.child(k);
                path.push(PathElement::Field(k.clone()));
                if let Some(v) = merge_walk(l.get(k), r.get(k), cs, path, errors) {
                    out.insert(k.clone(), v);
                }
                path.pop();
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

/// Indexes a list for merging: elements in order (repeats included) and the item per element
/// (a repeated element in the live list maps to null: duplicates are not merged).
fn index_for_merge(
    items: Option<&Vec<Value>>,
    elem: Schema,
    rel: &ListRel,
    allow_duplicates: bool,
    path: &Path,
    errors: &mut Vec<TypedError>,
) -> (Vec<PathElement>, BTreeMap<PathElement, Value>) {
    let mut pes = Vec::new();
    let mut observed = BTreeMap::new();
    for (i, item) in items.into_iter().flatten().enumerate() {
        let pe = match item_element(item, elem, rel, i) {
            Ok(pe) => pe,
            Err(e) => {
                errors.push(err(path, format!("element {i}: {e}")));
                continue;
            }
        };
        if observed.contains_key(&pe) {
            if !allow_duplicates {
                errors.push(err(path, format!("duplicate entries for key {pe}")));
                continue;
            }
            observed.insert(pe.clone(), Value::Null);
        } else {
            observed.insert(pe.clone(), item.clone());
        }
        pes.push(pe);
    }
    (pes, observed)
}

fn merge_list_items(
    lhs: Option<&Vec<Value>>,
    rhs: Option<&Vec<Value>>,
    elem: Schema,
    rel: &ListRel,
    path: &mut Path,
    errors: &mut Vec<TypedError>,
) -> Option<Value> {
    let before = errors.len();
    let (rhs_pes, observed_rhs) = index_for_merge(rhs, elem, rel, false, path, errors);
    let (lhs_pes, observed_lhs) = index_for_merge(lhs, elem, rel, true, path, errors);
    if errors.len() > before {
        return None;
    }
    // Items in both lists keep the applied order among themselves; items only in the live
    // list keep their place relative to them; new items follow the applied order.
    let mut shared: std::collections::VecDeque<&PathElement> = rhs_pes
        .iter()
        .filter(|pe| observed_lhs.contains_key(*pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: std::collections::BTreeSet<PathElement> = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let lhs_items = lhs.map(Vec::as_slice).unwrap_or(&[]);
    let (l_len, r_len) = (lhs_pes.len(), rhs_pes.len());
    let (mut li, mut ri) = (0, 0);
    let mut merge_item = |pe: &PathElement,
                          l: Option<&Value>,
                          r: Option<&Value>,
                          out: &mut Vec<Value>,
                          errors: &mut Vec<TypedError>| {
        path.push(pe.clone());
        if let Some(v) = merge_walk(l, r, elem, path, errors) {
            out.push(v);
        }
        path.pop();
    };
    while li < l_len || ri < r_len {
        if li < l_len && ri < r_len {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe.clone());
                merge_item(
                    pe,
                    observed_lhs.get(pe),
                    observed_rhs.get(pe),
                    &mut out,
                    errors,
                );
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared item, but not the one due in this round.
                li += 1;
                continue;
            }
        }
        if li < l_len {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                // Every live item has an element (errors returned above), so positions match.
                merge_item(pe, lhs_items.get(li), None, &mut out, errors);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_len {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe.clone());
            merge_item(
                pe,
                observed_lhs.get(pe),
                observed_rhs.get(pe),
                &mut out,
                errors,
            );
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

// ---------------------------------------------------------------------------------------------
// RemoveItems

/// `v` without the fields, list items and map entries in `set`. Like upstream, a list or map
/// left empty becomes null (the caller's decoding drops nulls).
pub fn remove_items(v: &Value, set: &Set, schema: Schema) -> Value {
    match schema.atom(Some(v)) {
        Atom::Scalar => v.clone(),
        Atom::List { elem, rel } => {
            let Some(items) = v.as_array() else {
                return Value::Null;
            };
            if items.is_empty() || rel == ListRel::Atomic {
                return Value::Null;
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Ok(pe) = item_element(item, elem, &rel, i) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(sub) if !sub.is_empty() => out.push(remove_items(item, sub, elem)),
                    _ => out.push(item.clone()),
                }
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Array(out)
            }
        }
        atom @ Atom::Map { .. } => {
            let Some(m) = v.as_object() else {
                return Value::Null;
            };
            if m.is_empty() || matches!(atom, Atom::Map { atomic: true, .. }) {
                return Value::Null;
            }
            let mut out = Map::new();
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if set.has_member(&pe) {
                    continue;
                }
                let value = match set.child(&pe) {
                    Some(sub) if !sub.is_empty() => remove_items(child, sub, atom.child(k).0),
                    _ => child.clone(),
                };
                out.insert(k.clone(), value);
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Object(out)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// EnsureNamedFieldsAreMembers

/// `set` plus every struct field that has owned children (a map's keys are not added): what
/// pruning treats as owned, so a struct a manager filled can be removed whole.
pub fn ensure_named_fields(set: &Set, schema: Option<Schema>) -> Set {
    let atom = schema.map(|s| s.atom(None));
    let mut members: std::collections::BTreeSet<PathElement> = set.members().cloned().collect();
    let mut children = BTreeMap::new();
    for (pe, sub) in set.children() {
        let child_schema = match (pe, &atom) {
            (PathElement::Field(name), Some(a @ Atom::Map { .. })) => {
                let (cs, is_field) = a.child(name);
                if is_field {
                    members.insert(pe.clone());
                }
                Some(cs)
            }
            (PathElement::Key(_), Some(Atom::List { elem, .. })) => Some(*elem),
            _ => None,
        };
        children.insert(pe.clone(), ensure_named_fields(sub, child_schema));
    }
    Set::from_parts(members, children)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_openapi::Model;
    use serde_json::json;

    fn deployment() -> Schema {
        Schema::Typed(Model::for_kind("apps", "v1", "Deployment").expect("deployment"))
    }

    fn fields(v: &Value) -> Value {
        let mut errs = Vec::new();
        let s = to_field_set(v, deployment(), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        s.to_fields_v1()
    }

    #[test]
    fn field_sets_own_leaves_items_and_map_entries() {
        let v = json!({
            "metadata": {"name": "d", "labels": {"app": "x"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "x"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}], "resources": {}}]}}
            }
        });
        assert_eq!(
            fields(&v),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                        "f:resources": {}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn unknown_fields_and_keyless_items_are_reported_with_upstream_paths() {
        let v = json!({"spec": {"foo": 1, "template": {"spec": {"containers": [{"image": "x"}]}}}});
        let mut errs = Vec::new();
        to_field_set(&v, deployment(), &mut errs);
        let text = join_errors(&errs);
        assert!(
            text.contains(".spec.foo: field not declared in schema"),
            "{text}"
        );
        assert!(
            text.contains(".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"),
            "{text}"
        );
    }

    #[test]
    fn compare_marks_new_parents_as_added_but_not_existing_ones() {
        let old = json!({"spec": {"template": {"spec": {"containers": null}}}});
        let new = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}});
        let c = compare(&old, &new, deployment());
        let added = c.added.to_fields_v1();
        let containers = &added["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert!(containers.get(".").is_none(), "{added}");
        assert!(
            containers["k:{\"name\":\"c\"}"].get(".").is_some(),
            "{added}"
        );
        assert!(
            containers["k:{\"name\":\"c\"}"]["f:ports"]
                .get(".")
                .is_some(),
            "{added}"
        );
        assert!(c.modified.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn compare_sees_modified_and_removed_leaves() {
        let old = json!({"spec": {"replicas": 1, "paused": true}});
        let new = json!({"spec": {"replicas": 2}});
        let c = compare(&old, &new, deployment());
        assert_eq!(
            c.modified.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert_eq!(
            c.removed.to_fields_v1(),
            json!({"f:spec": {"f:paused": {}}})
        );
        assert!(compare(&old, &old, deployment()).is_same());
    }

    #[test]
    fn merge_keeps_live_items_and_takes_applied_values() {
        let live = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "a1"}, {"name": "b", "image": "b1"}
        ]}}}});
        let applied = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "b", "image": "b2"}, {"name": "c", "image": "c1"}
        ]}}}});
        let out = merge(&live, &applied, deployment()).expect("merges");
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "a1"}, {"name": "b", "image": "b2"}, {"name": "c", "image": "c1"}])
        );
    }

    #[test]
    fn merge_follows_the_applied_order_for_shared_items() {
        let live = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a"}, {"name": "x"}, {"name": "b"}
        ]}}}});
        let applied =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}}});
        let out = merge(&live, &applied, deployment()).expect("merges");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["x", "b", "a"]);
    }

    #[test]
    fn merge_rejects_duplicate_applied_keys() {
        let applied =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
        let e = merge(&json!({}), &applied, deployment()).expect_err("duplicates");
        assert!(
            join_errors(&e).contains("duplicate entries for key [name=\"a\"]"),
            "{e:?}"
        );
    }

    #[test]
    fn remove_items_drops_owned_entries_and_nulls_emptied_lists() {
        let v = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}}});
        let key_a = PathElement::key(vec![("name".into(), json!("a"))]);
        let key_x = PathElement::key(vec![("name".into(), json!("X"))]);
        let f = |s: &str| PathElement::Field(s.into());
        let set = Set::of(&[
            vec![f("spec"), f("replicas")],
            vec![
                f("spec"),
                f("template"),
                f("spec"),
                f("containers"),
                key_a,
                f("env"),
                key_x,
            ],
        ]);
        let out = remove_items(&v, &set, deployment());
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["env"],
            Value::Null
        );
    }

    #[test]
    fn named_fields_become_members_but_map_keys_do_not() {
        let f = |s: &str| PathElement::Field(s.into());
        let set = Set::of(&[
            vec![f("spec"), f("strategy"), f("type")],
            vec![f("metadata"), f("labels"), f("app")],
        ]);
        let out = ensure_named_fields(&set, Some(deployment()));
        assert!(out.has(&[f("spec")]));
        assert!(out.has(&[f("spec"), f("strategy")]));
        assert!(out.has(&[f("metadata"), f("labels")]));
        assert!(out.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.has(&[f("spec")]));
    }
}
