//! List helpers shared by applying and computing strategic merge patches: element kinds,
//! scalar ordering, and the order-preserving merge upstream performs so that items keep the
//! order of `$setElementOrder`, then of the patch, then of the live object.

use serde_json::Value;

use super::error::{type_name, Error, Result};
use super::{DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE, RETAIN_KEYS, SET_ELEMENT_ORDER_PREFIX};

/// What a list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Items {
    /// Nothing: every list given was empty.
    Empty,
    /// Objects (merged by key).
    Objects,
    /// Scalars of one JSON type (merged as a set).
    Scalars,
}

/// The kind of the items of all `lists` together; they must agree and must not be lists.
pub(crate) fn items_kind(lists: &[&[Value]], path: &str) -> Result<Items> {
    let mut first: Option<&Value> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        if item.is_array() {
            return Err(Error::ListOfLists {
                path: path.to_string(),
            });
        }
        match first {
            None => first = Some(item),
            Some(f) if std::mem::discriminant(f) != std::mem::discriminant(item) => {
                return Err(Error::MixedList {
                    path: path.to_string(),
                    expected: type_name(f),
                    found: type_name(item),
                });
            }
            Some(_) => {}
        }
    }
    Ok(match first {
        None => Items::Empty,
        Some(Value::Object(_)) => Items::Objects,
        Some(_) => Items::Scalars,
    })
}

/// A scalar's text as upstream compares it (Go's `%v`): strings bare, numbers and booleans as
/// written.
pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Scalars sorted by their text (stable).
pub(crate) fn sort_scalars(list: &[Value]) -> Vec<Value> {
    let mut out = list.to_vec();
    out.sort_by_key(scalar_text);
    out
}

/// The list without repeated values, first occurrences kept in place.
pub(crate) fn dedup(list: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(list.len());
    for v in list {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The value identifying an item: its merge key's value for objects, itself for scalars.
fn identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Option<&'a Value> {
    match merge_key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

/// Where `item` sits in `list`, matched by merge key (objects) or by value (scalars).
pub(crate) fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let id = identity(item, merge_key);
    list.iter().position(|v| identity(v, merge_key) == id)
}

/// Checks every object in `lists` carries the merge key.
pub(crate) fn require_merge_key(lists: &[&[Value]], key: &str, path: &str) -> Result<()> {
    for item in lists.iter().flat_map(|l| l.iter()) {
        if item.get(key).is_none() {
            return Err(Error::MissingMergeKey {
                path: path.to_string(),
                key: key.to_string(),
                item: item.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether an item is a `{$patch: delete}` directive.
pub(crate) fn is_delete_directive(item: &Value) -> bool {
    item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

/// `to_sort` ordered by `order` (items missing from `order` keep their relative order, last),
/// with `$patch: delete` items moved to the end.
pub(crate) fn normalize_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    objects: bool,
    path: &str,
) -> Result<Vec<Value>> {
    let (mut keep, deletes): (Vec<Value>, Vec<Value>) = if objects {
        if let Some(key) = merge_key {
            require_merge_key(&[&to_sort, order], key, path)?;
        }
        to_sort.into_iter().partition(|v| !is_delete_directive(v))
    } else {
        (to_sort, Vec::new())
    };
    keep.sort_by_key(|v| position(order, v, merge_key).unwrap_or(usize::MAX));
    keep.extend(deletes);
    Ok(keep)
}

/// Interleaves two sorted, disjoint lists: an item of `left` goes before the next item of
/// `right` when the live order (`server_order`) puts it first; otherwise `right` leads.
pub(crate) fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, merge_key), position(server_order, r, merge_key)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// Splits `merged` into the items present in `by` and the others, keeping order.
pub(crate) fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|v| position(by, v, merge_key).is_some())
}

/// Puts a merged list in order: items named by `patch_order` in that order, the others in
/// `server_order`'s, interleaved as upstream's `normalizeElementOrder` does.
pub(crate) fn order_merged(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    objects: bool,
    path: &str,
) -> Result<Vec<Value>> {
    let (in_patch, server_only) = partition(merged, patch_order, merge_key);
    let in_patch = normalize_order(in_patch, patch_order, merge_key, objects, path)?;
    let server_only = normalize_order(server_only, server_order, merge_key, objects, path)?;
    Ok(merge_sorted(server_only, in_patch, server_order, merge_key))
}

/// Whether a key is a patch directive rather than a field.
pub(crate) fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// The value with every directive removed; None when the value itself is a `$patch` directive
/// (and so should not be kept at all).
pub(crate) fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            let cleaned = map
                .into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(cleaned))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Drops every `null` field, recursively (a null in new content means "absent").
pub(crate) fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    #[test]
    fn lists_must_hold_one_kind_of_item() {
        assert_eq!(
            items_kind(&[&list(json!([{"a": 1}]))], "x"),
            Ok(Items::Objects)
        );
        assert_eq!(items_kind(&[&[], &[]], "x"), Ok(Items::Empty));
        assert!(matches!(
            items_kind(&[&list(json!([1, "a"]))], "x"),
            Err(Error::MixedList { .. })
        ));
        assert!(matches!(
            items_kind(&[&list(json!([[1]]))], "x"),
            Err(Error::ListOfLists { .. })
        ));
    }

    #[test]
    fn server_only_items_keep_their_live_position() {
        // Live: a b c; the patch names c then a; b only exists on the server and stays ahead
        // of c, where it was live.
        let server = list(json!([{"n": "a"}, {"n": "b"}, {"n": "c"}]));
        let patch_order = list(json!([{"n": "c"}, {"n": "a"}]));
        let merged = server.clone();
        let out =
            order_merged(merged, &patch_order, &server, Some("n"), true, "x").expect("ordered");
        assert_eq!(out, list(json!([{"n": "b"}, {"n": "c"}, {"n": "a"}])));
    }

    #[test]
    fn directives_are_stripped_from_new_content() {
        let v = json!({"a": {"$patch": "delete"}, "b": [{"$patch": "replace"}, 1], "$retainKeys": ["b"], "c": 1});
        assert_eq!(remove_directives(v), Some(json!({"b": [1], "c": 1})));
    }
}
