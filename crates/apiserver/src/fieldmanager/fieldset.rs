//! Field sets: which fields of an object a manager owns, as a tree of path elements, with the
//! set algebra server-side apply needs and the `fieldsV1` wire form of managedFields.
//!
//! A set node holds *members* (paths owned at this level) and *children* (subsets below a
//! path element). A path can be both: `{".": {}, "f:a": {}}` in fieldsV1 says the node itself
//! and its child `a` are owned. Children are never empty.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{Path, PathElement};

/// A set of paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of the given paths.
    pub fn of(paths: &[Path]) -> Self {
        let mut s = Set::new();
        for p in paths {
            s.insert(p);
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path (not its parents). The empty path (the whole object) is never owned.
    pub fn insert(&mut self, p: &[PathElement]) {
        let Some((last, parents)) = p.split_last() else {
            return;
        };
        let mut node = self;
        for pe in parents {
            // Only clone the element when the child is new: most inserts share parents.
            if !node.children.contains_key(pe) {
                node.children.insert(pe.clone(), Set::new());
            }
            let Some(child) = node.children.get_mut(pe) else {
                return;
            };
            node = child;
        }
        if !node.members.contains(last) {
            node.members.insert(last.clone());
        }
    }

    /// Whether the path is a member.
    pub fn has(&self, p: &[PathElement]) -> bool {
        let Some((last, parents)) = p.split_last() else {
            return false;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    /// Whether the element is a member at this level.
    pub fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The paths below `pe`, without the prefix.
    pub fn with_prefix(&self, pe: &PathElement) -> Set {
        self.children.get(pe).cloned().unwrap_or_default()
    }

    /// Borrowing form of [`Set::with_prefix`].
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_in(other);
        out
    }

    fn union_in(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, sub) in &other.children {
            self.children.entry(pe.clone()).or_default().union_in(sub);
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = sub.intersection(o);
                if !i.is_empty() {
                    children.insert(pe.clone(), i);
                }
            }
        }
        Set { members, children }
    }

    /// Paths in `self` that are not in `other`. A member of `other` does not remove the
    /// children of the same path in `self` (as upstream).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            match other.children.get(pe) {
                Some(o) => {
                    let d = sub.difference(o);
                    if !d.is_empty() {
                        children.insert(pe.clone(), d);
                    }
                }
                None => {
                    children.insert(pe.clone(), sub.clone());
                }
            }
        }
        Set { members, children }
    }

    /// Like [`Set::difference`], but a member of `other` also removes everything below it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, sub) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            match other.children.get(pe) {
                Some(o) => {
                    let d = sub.recursive_difference(o);
                    if !d.is_empty() {
                        children.insert(pe.clone(), d);
                    }
                }
                None => {
                    children.insert(pe.clone(), sub.clone());
                }
            }
        }
        Set { members, children }
    }

    /// Every member path, preorder: this level's members, then each child's paths.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, sub) in &self.children {
            prefix.push(pe.clone());
            sub.collect(prefix, out);
            prefix.pop();
        }
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &Set)> {
        self.children.iter()
    }

    pub(crate) fn from_parts(
        members: BTreeSet<PathElement>,
        children: BTreeMap<PathElement, Set>,
    ) -> Set {
        Set { members, children }
    }

    /// The fieldsV1 form: `{"f:spec":{"f:replicas":{}},"f:metadata":{"f:labels":{".":{},...}}}`.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        // Members and children interleave in element order; an element that is both is
        // written once with "." inside.
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let value = match self.children.get(pe) {
                Some(sub) => sub.emit(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.serialize(), Value::Object(value));
        }
        out
    }

    /// Reads fieldsV1. Unknown element types are skipped, as upstream does.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("fieldsV1 is not a JSON object".into());
        };
        Ok(read_node(m)?.0.unwrap_or_default())
    }
}

/// One fieldsV1 object: its subset (None when it has no children) and whether it marks its
/// own path a member (`.`, or being an empty object).
fn read_node(m: &Map<String, Value>) -> Result<(Option<Set>, bool), String> {
    let mut children: Option<Set> = None;
    let mut is_member = false;
    for (k, v) in m {
        if k == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = PathElement::deserialize(k)? else {
            continue;
        };
        let Value::Object(sub) = v else {
            return Err(format!("value of {k:?} is not a JSON object"));
        };
        let (grandchildren, child_member) = read_node(sub)?;
        let node = children.get_or_insert_with(Set::new);
        if child_member {
            node.members.insert(pe.clone());
        }
        if let Some(g) = grandchildren {
            node.children.entry(pe).or_default().union_in(&g);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    fn key(name: &str) -> PathElement {
        PathElement::key(vec![("name".into(), json!(name))])
    }

    #[test]
    fn fields_v1_marks_owned_parents_with_a_dot() {
        let s = Set::of(&[
            vec![f("metadata"), f("labels")],
            vec![f("metadata"), f("labels"), f("app")],
            vec![f("spec"), f("replicas")],
            vec![f("spec"), f("containers"), key("c")],
            vec![f("spec"), f("containers"), key("c"), f("image")],
        ]);
        assert_eq!(
            s.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}},
                    "f:replicas": {}
                }
            })
        );
        assert_eq!(Set::from_fields_v1(&s.to_fields_v1()).expect("parses"), s);
    }

    #[test]
    fn fields_v1_keys_come_out_in_upstream_order() {
        let s = Set::of(&[
            vec![f("b")],
            vec![f("a"), f("x")],
            vec![key("z")],
            vec![PathElement::Value(json!("v"))],
        ]);
        let text = s.to_fields_v1().to_string();
        let a = text.find("f:a").expect("a");
        let b = text.find("f:b").expect("b");
        let k = text.find("k:").expect("k");
        let v = text.find("v:").expect("v");
        assert!(a < b && b < k && k < v, "{text}");
    }

    #[test]
    fn malformed_fields_v1_is_an_error() {
        assert!(Set::from_fields_v1(&json!([])).is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:notjson": {}})).is_err());
        assert_eq!(
            Set::from_fields_v1(&json!({"z:skipped": {}})).expect("ok"),
            Set::new()
        );
    }

    #[test]
    fn difference_keeps_children_of_removed_members_and_recursive_difference_drops_them() {
        let s = Set::of(&[vec![f("a"), f("b")], vec![f("a")], vec![f("c")]]);
        let other = Set::of(&[vec![f("a")]]);
        assert_eq!(
            s.difference(&other),
            Set::of(&[vec![f("a"), f("b")], vec![f("c")]])
        );
        assert_eq!(s.recursive_difference(&other), Set::of(&[vec![f("c")]]));
    }

    #[test]
    fn intersection_and_union_are_by_path() {
        let a = Set::of(&[vec![f("spec"), f("replicas")], vec![f("spec"), f("paused")]]);
        let b = Set::of(&[
            vec![f("spec"), f("replicas")],
            vec![f("metadata"), f("labels")],
        ]);
        assert_eq!(
            a.intersection(&b),
            Set::of(&[vec![f("spec"), f("replicas")]])
        );
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.has(&[f("spec"), f("paused")]));
        assert!(!a.has(&[f("spec")]));
        assert!(a.difference(&a).is_empty());
    }
}
