//! Computing strategic merge patches, as kubectl does: the two-way patch from an original to a
//! modified object ([`diff_maps`] with `set_element_order`), and the pieces of the three-way patch
//! of client-side apply. Follows upstream's `diffMaps`/`diffLists`.

use serde_json::{Map, Value};

use super::error::{join, Error, Result};
use super::list::{self, scalar_text, Items};
use super::{
    child, meta_of, DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE, RETAIN_KEYS,
    SET_ELEMENT_ORDER_PREFIX,
};
use crate::model::{PatchStrategy, TypeRef};

/// What a diff reports.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DiffOptions {
    /// Emit `$setElementOrder/` lists so the patch also fixes the order of merged lists.
    pub set_element_order: bool,
    /// Report only deletions (the "what did the user remove" half of a three-way patch).
    pub ignore_changes_and_additions: bool,
    /// Report no deletions (the "what differs from the live object" half).
    pub ignore_deletions: bool,
    /// Emit `$retainKeys` for this map (its field has the retainKeys strategy).
    pub build_retain_keys: bool,
}

/// The patch turning `original` into `modified` at `path`.
pub(crate) fn diff_maps(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    ty: Option<TypeRef>,
    opts: DiffOptions,
    path: &str,
) -> Result<Map<String, Value>> {
    let mut patch = Map::new();
    let mut retain: Vec<Value> = Vec::new();
    for (key, new) in modified {
        if opts.build_retain_keys && !new.is_null() {
            retain.push(Value::String(key.clone()));
        }
        let Some(old) = original.get(key) else {
            if !opts.ignore_changes_and_additions {
                patch.insert(key.clone(), new.clone());
            }
            continue;
        };
        if key == DIRECTIVE {
            match (old.as_str(), new.as_str()) {
                (Some(o), Some(n)) if o != n => {
                    patch.insert(key.clone(), new.clone());
                }
                (Some(_), Some(_)) => {}
                _ => {
                    return Err(Error::UnknownDirective {
                        path: path.to_string(),
                        value: new.to_string(),
                    })
                }
            }
            continue;
        }
        let field_path = join(path, key);
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                map_field(key, o, n, ty, opts, &mut patch, &field_path)?
            }
            (Value::Array(o), Value::Array(n)) => {
                list_field(key, o, n, ty, opts, &mut patch, &field_path)?
            }
            _ => {
                if !opts.ignore_changes_and_additions && old != new {
                    patch.insert(key.clone(), new.clone());
                }
            }
        }
    }
    if !opts.ignore_deletions {
        for key in original.keys() {
            if !modified.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    let removed_field = original
        .iter()
        .any(|(k, v)| !v.is_null() && !modified.contains_key(k));
    if !retain.is_empty() && (!patch.is_empty() || removed_field) {
        retain.sort_by_key(scalar_text);
        patch.insert(RETAIN_KEYS.into(), Value::Array(retain));
    }
    Ok(patch)
}

/// A field holding a map on both sides: replaced whole or diffed recursively.
fn map_field(
    key: &str,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    ty: Option<TypeRef>,
    opts: DiffOptions,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<()> {
    let field_ty = child(ty, key);
    let meta = meta_of(field_ty);
    if meta.strategy == PatchStrategy::Replace {
        if !opts.ignore_changes_and_additions && old != new {
            patch.insert(key.to_string(), Value::Object(new.clone()));
        }
        return Ok(());
    }
    let sub_opts = DiffOptions {
        build_retain_keys: meta.strategy.retains_keys(),
        ..opts
    };
    let sub = diff_maps(old, new, field_ty, sub_opts, path)?;
    if !sub.is_empty() {
        patch.insert(key.to_string(), Value::Object(sub));
    }
    Ok(())
}

/// A field holding a list on both sides: diffed item by item when it merges, else replaced.
fn list_field(
    key: &str,
    old: &[Value],
    new: &[Value],
    ty: Option<TypeRef>,
    opts: DiffOptions,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<()> {
    let field_ty = child(ty, key);
    let meta = meta_of(field_ty);
    if !meta.strategy.merges() {
        if !opts.ignore_changes_and_additions && old != new {
            patch.insert(key.to_string(), Value::Array(new.to_vec()));
        }
        return Ok(());
    }
    let sub_opts = DiffOptions {
        build_retain_keys: meta.strategy.retains_keys(),
        ..opts
    };
    let item_ty = field_ty.and_then(|t| t.items());
    let (changes, deletions, order) =
        diff_lists(old, new, item_ty, meta.merge_key, sub_opts, path)?;
    if !changes.is_empty() {
        patch.insert(key.to_string(), Value::Array(changes));
    }
    if !deletions.is_empty() {
        patch.insert(
            format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}/{key}"),
            Value::Array(deletions),
        );
    }
    if !order.is_empty() {
        patch.insert(
            format!("{SET_ELEMENT_ORDER_PREFIX}/{key}"),
            Value::Array(order),
        );
    }
    Ok(())
}

/// Changed and added items (with delete directives for removed objects), removed scalars (for
/// `$deleteFromPrimitiveList`), and the `$setElementOrder` list.
type ListDiff = (Vec<Value>, Vec<Value>, Vec<Value>);

fn diff_lists(
    original: &[Value],
    modified: &[Value],
    item_ty: Option<TypeRef>,
    merge_key: Option<&str>,
    opts: DiffOptions,
    path: &str,
) -> Result<ListDiff> {
    if original.is_empty() {
        if modified.is_empty() || opts.ignore_changes_and_additions {
            return Ok((Vec::new(), Vec::new(), Vec::new()));
        }
        return Ok((modified.to_vec(), Vec::new(), Vec::new()));
    }
    match list::items_kind(&[original, modified], path)? {
        Items::Objects => {
            let Some(key) = merge_key else {
                return Err(Error::NoMergeKey {
                    path: path.to_string(),
                });
            };
            let (changes, deletions) =
                diff_lists_of_maps(original, modified, item_ty, key, opts, path)?;
            let mut changes = list::normalize_order(changes, modified, Some(key), true, path)?;
            let order_same = original.len() == modified.len()
                && original
                    .iter()
                    .zip(modified)
                    .all(|(o, m)| o.get(key) == m.get(key));
            changes.extend(deletions);
            let mut order = Vec::new();
            let wanted = (!opts.ignore_changes_and_additions
                && (!changes.is_empty() || !order_same))
                || (!opts.ignore_deletions && !changes.is_empty());
            if opts.set_element_order && wanted {
                order = modified
                    .iter()
                    .map(|v| {
                        let mut m = Map::new();
                        m.insert(key.to_string(), v.get(key).cloned().unwrap_or(Value::Null));
                        Value::Object(m)
                    })
                    .collect();
            }
            Ok((changes, Vec::new(), order))
        }
        _ => {
            let (added, deleted) = diff_lists_of_scalars(original, modified, opts);
            let added = list::normalize_order(added, modified, None, false, path)?;
            let mut order = Vec::new();
            let wanted = (!opts.ignore_deletions && !deleted.is_empty())
                || (!opts.ignore_changes_and_additions && original != modified);
            if opts.set_element_order && wanted {
                order = modified.to_vec();
            }
            Ok((added, deleted, order))
        }
    }
}

/// Lists of objects compared by merge key: changed items as sub-patches carrying the key,
/// added items whole, removed items as `{key: value, $patch: delete}`.
fn diff_lists_of_maps(
    original: &[Value],
    modified: &[Value],
    item_ty: Option<TypeRef>,
    key: &str,
    opts: DiffOptions,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    list::require_merge_key(&[original, modified], key, path)?;
    let sorted = |l: &[Value]| {
        let mut l: Vec<Value> = l.to_vec();
        l.sort_by_key(|v| v.get(key).map(scalar_text).unwrap_or_default());
        l
    };
    let (original, modified) = (sorted(original), sorted(modified));
    let mut changes = Vec::new();
    let mut deletions = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < original.len() || j < modified.len() {
        let o_key = original.get(i).and_then(|v| v.get(key)).map(scalar_text);
        let m_key = modified.get(j).and_then(|v| v.get(key)).map(scalar_text);
        match (o_key, m_key) {
            (Some(o), Some(m)) if o == m => {
                if let (Value::Object(old), Value::Object(new)) = (&original[i], &modified[j]) {
                    let item_path = format!("{path}[{key}={o}]");
                    let mut sub = diff_maps(old, new, item_ty, opts, &item_path)?;
                    if !sub.is_empty() {
                        sub.insert(
                            key.to_string(),
                            new.get(key).cloned().unwrap_or(Value::Null),
                        );
                        changes.push(Value::Object(sub));
                    }
                }
                i += 1;
                j += 1;
            }
            (o, Some(m)) if o.as_ref().is_none_or(|o| *o > m) => {
                if !opts.ignore_changes_and_additions {
                    changes.push(modified[j].clone());
                }
                j += 1;
            }
            _ => {
                if !opts.ignore_deletions {
                    let mut directive = Map::new();
                    directive.insert(
                        key.to_string(),
                        original[i].get(key).cloned().unwrap_or(Value::Null),
                    );
                    directive.insert(DIRECTIVE.into(), Value::from("delete"));
                    deletions.push(Value::Object(directive));
                }
                i += 1;
            }
        }
    }
    Ok((changes, deletions))
}

/// Lists of scalars compared as sorted sets: (added, removed).
fn diff_lists_of_scalars(
    original: &[Value],
    modified: &[Value],
    opts: DiffOptions,
) -> (Vec<Value>, Vec<Value>) {
    let original = list::sort_scalars(original);
    let modified = list::sort_scalars(modified);
    let mut added = Vec::new();
    let mut deleted = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < original.len() || j < modified.len() {
        let o = original.get(i).map(scalar_text);
        let m = modified.get(j).map(scalar_text);
        match (o, m) {
            (Some(o), Some(m)) if o == m => {
                i += 1;
                j += 1;
            }
            (o, Some(m)) if o.as_ref().is_none_or(|o| *o > m) => {
                if !opts.ignore_changes_and_additions {
                    added.push(modified[j].clone());
                }
                j += 1;
            }
            _ => {
                if !opts.ignore_deletions {
                    deleted.push(original[i].clone());
                }
                i += 1;
            }
        }
    }
    (added, list::dedup(deleted))
}
