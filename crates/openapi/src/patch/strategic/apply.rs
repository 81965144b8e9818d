//! Applying a strategic merge patch to an object ([`merge_map`]), following upstream's
//! `mergeMap`: maps merge, `null` deletes, lists merge by key or as sets where the schema says
//! so and are replaced otherwise, and the directives (`$patch`, `$retainKeys`,
//! `$setElementOrder/`, `$deleteFromPrimitiveList/`) do what their names say.
//!
//! The same function combines two patches into one (the three-way diff of client-side apply),
//! which is why [`Options`] exists: combining keeps directives and nulls instead of executing
//! them.

use serde_json::{Map, Value};

use super::error::{join, Error, Result};
use super::list::{self, Items};
use super::{
    child, meta_of, DELETE_FROM_PRIMITIVE_LIST_PREFIX, DIRECTIVE, RETAIN_KEYS,
    SET_ELEMENT_ORDER_PREFIX,
};
use crate::model::{PatchStrategy, TypeRef};

/// How [`merge_map`] treats directives and nulls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Execute `$deleteFromPrimitiveList`, `$retainKeys` and `$setElementOrder` (applying), or
    /// carry them into the result (combining patches).
    pub execute_directives: bool,
    /// Drop nulls (applying: null means delete), or keep them (combining: the null is itself
    /// the instruction).
    pub drop_nulls: bool,
}

/// Options for applying a patch to an object.
pub(crate) const APPLY: Options = Options {
    execute_directives: true,
    drop_nulls: true,
};

/// Options for merging one patch into another.
pub(crate) const COMBINE: Options = Options {
    execute_directives: false,
    drop_nulls: false,
};

/// Merges `patch` into `original` at `path`, typed by `ty` (None: unknown, so maps merge and
/// lists are replaced).
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<TypeRef>,
    opts: Options,
    path: &str,
) -> Result<Map<String, Value>> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(new_content_map(patch, opts))
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(Error::UnknownDirective {
                path: path.to_string(),
                value: directive.to_string(),
            }),
        };
    }
    retain_keys(&mut original, &mut patch, opts, path)?;
    set_element_orders(&mut original, &mut patch, ty, opts, path)?;

    for (key, value) in patch {
        let (field, delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            Some(rest) => {
                if !opts.execute_directives {
                    original.insert(key, value);
                    continue;
                }
                let Some(field) = rest.strip_prefix('/').filter(|f| !f.is_empty()) else {
                    return Err(Error::BadDeleteFromPrimitiveList {
                        path: join(path, &key),
                        reason: "the directive must be written $deleteFromPrimitiveList/<field>"
                            .into(),
                    });
                };
                (field.to_string(), true)
            }
            None => (key, false),
        };
        let field_path = join(path, &field);
        if value.is_null() {
            original.remove(&field);
            if opts.drop_nulls {
                continue;
            }
        }
        let existing = original.remove(&field);
        let merged = match (existing, value) {
            (None, value) => {
                if delete_list {
                    continue;
                }
                new_content(value, opts)
            }
            (Some(Value::Object(old)), Value::Object(new)) => {
                let field_ty = child(ty, &field);
                if meta_of(field_ty).strategy == PatchStrategy::Replace {
                    new_content(Value::Object(new), opts)
                } else {
                    Some(Value::Object(merge_map(
                        old,
                        new,
                        field_ty,
                        opts,
                        &field_path,
                    )?))
                }
            }
            (Some(Value::Array(old)), Value::Array(new)) => {
                let field_ty = child(ty, &field);
                Some(Value::Array(merge_list_field(
                    old,
                    new,
                    field_ty,
                    delete_list,
                    opts,
                    &field_path,
                )?))
            }
            (Some(old), value) => {
                if delete_list {
                    Some(old)
                } else {
                    new_content(value, opts)
                }
            }
        };
        if let Some(v) = merged {
            original.insert(field, v);
        }
    }
    Ok(original)
}

/// Content the patch brings in whole (a new field, a replaced value): when applying, it must
/// not carry directives or nulls into the object. None when the value is itself a directive.
fn new_content(mut value: Value, opts: Options) -> Option<Value> {
    if !opts.drop_nulls {
        return Some(value);
    }
    list::discard_nulls(&mut value);
    list::remove_directives(value)
}

fn new_content_map(map: Map<String, Value>, opts: Options) -> Map<String, Value> {
    match new_content(Value::Object(map), opts) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// `$retainKeys: [fields]`: when applying, fields of `original` not listed are cleared, and the
/// patch may only set listed fields.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    opts: Options,
    path: &str,
) -> Result<()> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    if !opts.execute_directives {
        match original.get(RETAIN_KEYS) {
            Some(existing) if *existing != retain => {
                return Err(Error::Conflict {
                    path: path.to_string(),
                    reason: format!("$retainKeys {existing} and {retain} differ"),
                })
            }
            Some(_) => {}
            None => {
                original.insert(RETAIN_KEYS.into(), retain);
            }
        }
        return Ok(());
    }
    let Value::Array(keys) = retain else {
        return Err(Error::BadRetainKeys {
            path: path.to_string(),
            reason: format!("$retainKeys must be a list of field names, got {retain}"),
        });
    };
    let listed = |k: &str| keys.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(Error::BadRetainKeys {
                path: path.to_string(),
                reason: format!("the patch sets {k:?}, which $retainKeys does not list"),
            });
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `$setElementOrder/<field>: [items]`: merges the field's list now and puts it in that order
/// (items only on the server keep their live positions), then drops the list from the patch.
fn set_element_orders(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<TypeRef>,
    opts: Options,
    path: &str,
) -> Result<()> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let Some(order_value) = patch.remove(&key) else {
            continue;
        };
        if !opts.execute_directives {
            match original.get(&key) {
                Some(existing) if *existing != order_value => {
                    return Err(Error::BadSetElementOrder {
                        path: join(path, &key),
                        reason: "the two patches being combined order the list differently".into(),
                    })
                }
                Some(_) => {}
                None => {
                    original.insert(key.clone(), order_value.clone());
                }
            }
        }
        let Some(field) = key
            .strip_prefix(SET_ELEMENT_ORDER_PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|f| !f.is_empty())
            .map(str::to_string)
        else {
            return Err(Error::BadSetElementOrder {
                path: join(path, &key),
                reason: "the directive must be written $setElementOrder/<field>".into(),
            });
        };
        let field_path = join(path, &field);
        let Value::Array(order) = order_value else {
            return Err(Error::BadSetElementOrder {
                path: field_path,
                reason: format!("$setElementOrder must be a list, got {order_value}"),
            });
        };
        let old = take_list(original, &field, &field_path)?;
        let new = take_list(patch, &field, &field_path)?;
        let field_ty = child(ty, &field);
        let merge_key = meta_of(field_ty).merge_key;
        if let Some(new) = &new {
            validate_order(new, &order, merge_key, &field_path)?;
        }
        let objects = list::items_kind(
            &[old.as_deref().unwrap_or(&[]), new.as_deref().unwrap_or(&[])],
            &field_path,
        )? == Items::Objects;
        let server_order = old.clone().unwrap_or_default();
        let merged = match (old, new) {
            (Some(old), None) => old,
            (None, Some(new)) => match new_content(Value::Array(new), opts) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            (Some(old), Some(new)) => {
                merge_list_field(old, new, field_ty, false, opts, &field_path)?
            }
            (None, None) => continue,
        };
        let ordered = list::order_merged(
            merged,
            &order,
            &server_order,
            merge_key,
            objects,
            &field_path,
        )?;
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Removes and returns the list at `field` (None if absent; an error if it is not a list).
fn take_list(map: &mut Map<String, Value>, field: &str, path: &str) -> Result<Option<Vec<Value>>> {
    match map.remove(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(Value::Null) => Ok(None),
        Some(other) => Err(Error::TypeMismatch {
            path: path.to_string(),
            expected: "array",
            found: super::error::type_name(&other),
        }),
    }
}

/// The items of the patch's list must appear in `$setElementOrder` in the same relative order.
fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &str,
) -> Result<()> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|v| !(merge_key.is_some() && list::is_delete_directive(v)))
        .filter(|v| v.get(DIRECTIVE).is_none())
        .collect();
    let id = |v: &Value| -> Result<Value> {
        match merge_key {
            None => Ok(v.clone()),
            Some(key) => v.get(key).cloned().ok_or_else(|| Error::MissingMergeKey {
                path: path.to_string(),
                key: key.to_string(),
                item: v.to_string(),
            }),
        }
    };
    let mut next = 0;
    for wanted in order {
        if next >= items.len() {
            break;
        }
        if id(items[next])? == id(wanted)? {
            next += 1;
        }
    }
    if next < items.len() {
        return Err(Error::BadSetElementOrder {
            path: path.to_string(),
            reason: format!(
                "the patch's list {} does not follow the order of $setElementOrder {}",
                Value::Array(patch_list.to_vec()),
                Value::Array(order.to_vec())
            ),
        });
    }
    Ok(())
}

/// Merges the list of a field per its strategy: merged when the schema says so (or for a
/// deletion list), replaced otherwise.
fn merge_list_field(
    old: Vec<Value>,
    new: Vec<Value>,
    field_ty: Option<TypeRef>,
    delete_list: bool,
    opts: Options,
    path: &str,
) -> Result<Vec<Value>> {
    let meta = meta_of(field_ty);
    if meta.strategy.merges() || delete_list {
        let item_ty = field_ty.and_then(|t| t.items());
        merge_list(old, new, item_ty, meta.merge_key, delete_list, opts, path)
    } else {
        match new_content(Value::Array(new), opts) {
            Some(Value::Array(items)) => Ok(items),
            _ => Ok(Vec::new()),
        }
    }
}

/// Upstream's `mergeSlice`: scalars are unioned (or deleted, for a deletion list); objects are
/// matched by merge key and merged, with `$patch: delete|replace` items honoured; the result is
/// ordered as the patch orders it, server-only items kept in their live places.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    item_ty: Option<TypeRef>,
    merge_key: Option<&'static str>,
    delete_list: bool,
    opts: Options,
    path: &str,
) -> Result<Vec<Value>> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    match list::items_kind(&[&original, &patch], path)? {
        Items::Objects => {
            let Some(key) = merge_key else {
                return Err(Error::NoMergeKey {
                    path: path.to_string(),
                });
            };
            let (original, patch) = special_elements(original, patch, key, opts, path)?;
            let server_order = original.clone();
            let merged = merge_by_key(original, patch.clone(), key, item_ty, opts, path)?;
            list::order_merged(merged, &patch, &server_order, Some(key), true, path)
        }
        _ => {
            if delete_list && opts.execute_directives {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.contains(v))
                    .collect());
            }
            let server_order = original.clone();
            let mut both = original;
            both.extend(patch.iter().cloned());
            let merged = list::dedup(both);
            list::order_merged(merged, &patch, &server_order, None, false, path)
        }
    }
}

/// Executes `$patch: delete` (drop the item with that key) and `$patch: replace` (the patch's
/// other items become the whole list) items; returns the new original and the plain items.
fn special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    opts: Options,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut replace = false;
    let mut plain = Vec::with_capacity(patch.len());
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = item.get(key) else {
                    return Err(Error::MissingMergeKey {
                        path: path.to_string(),
                        key: key.to_string(),
                        item: item.to_string(),
                    });
                };
                original.retain(|o| o.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(Error::MergeDirectiveInList {
                    path: path.to_string(),
                })
            }
            _ => {
                return Err(Error::UnknownDirective {
                    path: path.to_string(),
                    value: directive.to_string(),
                })
            }
        }
    }
    if replace {
        let items = plain
            .into_iter()
            .filter_map(|v| new_content(v, opts))
            .collect();
        return Ok((items, Vec::new()));
    }
    Ok((original, plain))
}

/// Merges each patch item into the original item with the same key, or appends it.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    item_ty: Option<TypeRef>,
    opts: Options,
    path: &str,
) -> Result<Vec<Value>> {
    for item in patch {
        let Value::Object(item) = item else { continue };
        let Some(value) = item.get(key).cloned() else {
            return Err(Error::MissingMergeKey {
                path: path.to_string(),
                key: key.to_string(),
                item: Value::Object(item).to_string(),
            });
        };
        match original.iter().position(|o| o.get(key) == Some(&value)) {
            Some(i) => {
                let old = match std::mem::take(&mut original[i]) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let item_path = format!("{path}[{key}={value}]");
                original[i] = Value::Object(merge_map(old, item, item_ty, opts, &item_path)?);
            }
            None => original.extend(new_content(Value::Object(item), opts)),
        }
    }
    Ok(original)
}
