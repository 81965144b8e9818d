//! Builds meta.k8s.io Tables (what `kubectl get` prints) and PartialObjectMetadata from objects,
//! using each kind's columns and row printer.

use capstan_api::catalogue::ResourceInfo;
use capstan_api::table::RowContext;
use serde_json::{json, Map, Value};

use crate::params::IncludeObject;

fn meta_api_version(v1beta1: bool) -> &'static str {
    if v1beta1 {
        "meta.k8s.io/v1beta1"
    } else {
        "meta.k8s.io/v1"
    }
}

/// The column definitions of a kind's table.
pub fn column_definitions(info: &ResourceInfo) -> Value {
    Value::Array(
        info.strategy
            .columns()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.type_,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// PartialObjectMetadata for an object.
pub fn partial_metadata(obj: &Value, v1beta1: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": meta_api_version(v1beta1),
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A Table of objects it may consume (lists): each row takes its object's metadata (or the
/// whole object) instead of copying it, and nothing goes through `json!`, which would
/// serialise the finished rows into a second copy.
pub fn table_owned(
    info: &ResourceInfo,
    objects: Vec<Value>,
    include: IncludeObject,
    list_meta: Value,
    v1beta1: bool,
) -> Value {
    let ctx = RowContext::now();
    let rows: Vec<Value> = objects
        .into_iter()
        .map(|mut obj| {
            let mut r = Map::new();
            r.insert("cells".into(), Value::Array(info.strategy.row(&obj, &ctx)));
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let metadata = obj
                        .get_mut("metadata")
                        .map(Value::take)
                        .unwrap_or_else(|| Value::Object(Map::new()));
                    let mut p = Map::new();
                    p.insert("kind".into(), Value::from("PartialObjectMetadata"));
                    p.insert("apiVersion".into(), Value::from(meta_api_version(v1beta1)));
                    p.insert("metadata".into(), metadata);
                    r.insert("object".into(), Value::Object(p));
                }
                IncludeObject::Object => {
                    r.insert("object".into(), obj);
                }
            }
            Value::Object(r)
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), Value::from("Table"));
    t.insert("apiVersion".into(), Value::from(meta_api_version(v1beta1)));
    t.insert("metadata".into(), list_meta);
    t.insert("columnDefinitions".into(), column_definitions(info));
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

/// A Table of borrowed objects (single objects and watch events).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
    v1beta1: bool,
) -> Value {
    table_owned(info, objects.to_vec(), include, list_meta, v1beta1)
}

/// A PartialObjectMetadataList.
pub fn metadata_list(objects: &[Value], list_meta: Value, v1beta1: bool) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": meta_api_version(v1beta1),
        "metadata": list_meta,
        "items": objects.iter().map(|o| partial_metadata(o, v1beta1)["metadata"].clone()).map(|m| json!({"metadata": m})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_object_decides_what_each_row_carries() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"metadata":{"name":"a","namespace":"d","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"k":"v"}});
        let none = table_owned(
            info,
            vec![obj.clone()],
            IncludeObject::None,
            json!({}),
            false,
        );
        assert!(none["rows"][0].get("object").is_none());
        let whole = table_owned(
            info,
            vec![obj.clone()],
            IncludeObject::Object,
            json!({}),
            false,
        );
        assert_eq!(whole["rows"][0]["object"], obj);
        let meta = table_owned(
            info,
            vec![obj.clone()],
            IncludeObject::Metadata,
            json!({}),
            true,
        );
        assert_eq!(meta["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(meta["rows"][0]["object"]["metadata"], obj["metadata"]);
        assert!(meta["rows"][0]["object"].get("data").is_none());
    }

    #[test]
    fn tables_carry_columns_rows_and_row_metadata() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"metadata":{"name":"a","namespace":"d","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"k":"v"}});
        let t = table(
            info,
            &[obj],
            IncludeObject::Metadata,
            json!({"resourceVersion":"5"}),
            false,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "d");
    }
}
