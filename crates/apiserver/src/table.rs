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

/// One table row for an object.
pub fn row(info: &ResourceInfo, obj: &Value, include: IncludeObject, ctx: &RowContext) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(info.strategy.row(obj, ctx)));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert("object".into(), partial_metadata(obj, false));
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

/// A Table of objects with list metadata.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_meta: Value,
    v1beta1: bool,
) -> Value {
    let ctx = RowContext::now();
    json!({
        "kind": "Table",
        "apiVersion": meta_api_version(v1beta1),
        "metadata": list_meta,
        "columnDefinitions": column_definitions(info),
        "rows": objects.iter().map(|o| row(info, o, include, &ctx)).collect::<Vec<_>>(),
    })
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
    fn tables_carry_columns_rows_and_row_metadata() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"metadata":{"name":"a","namespace":"d","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"k":"v"}});
        let t = table(info, &[obj], IncludeObject::Metadata, json!({"resourceVersion":"5"}), false);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "d");
    }
}
