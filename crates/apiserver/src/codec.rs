//! Storage keys and the bytes of stored objects: what is written (canonical JSON without
//! resourceVersion) and how it is read back (resourceVersion spliced in, converted to the
//! served version when storage is shared). Also request body decoding (JSON or YAML).

use bytes::Bytes;
use capstan_api::catalogue::ResourceInfo;
use capstan_store::KeyValue;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The storage key prefix of a resource's objects (all namespaces, or one).
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let (group, plural) = info.storage_resource();
    let group = if group.is_empty() { "core" } else { group };
    match namespace {
        Some(ns) if info.namespaced() => format!("/{group}/{plural}/{ns}/"),
        _ => format!("/{group}/{plural}/"),
    }
}

/// The storage key of one object.
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(info, namespace))
}

/// Serialises an object for storage: top-level keys in the order apiVersion, kind, metadata,
/// rest (so `resourceVersion` can be spliced in on read without parsing), converted to the
/// storage version, without resourceVersion and selfLink.
pub fn encode_for_storage(info: &ResourceInfo, obj: &Value) -> ApiResult<Vec<u8>> {
    let mut obj = obj.clone();
    if let Some(c) = info.conversion {
        obj = (c.to_storage)(obj);
    }
    let Value::Object(mut m) = obj else {
        return Err(ApiError::internal("object is not a JSON object"));
    };
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
    }
    let mut out = Map::with_capacity(m.len());
    for k in ["apiVersion", "kind", "metadata"] {
        if let Some(v) = m.remove(k) {
            out.insert(k.to_string(), canonical(v));
        }
    }
    let mut rest: Vec<(String, Value)> = m.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(rest.into_iter().map(|(k, v)| (k, canonical(v))));
    serde_json::to_vec(&Value::Object(out)).map_err(ApiError::internal)
}

/// Keys sorted at every level, so equal objects always have equal bytes (an unchanged update
/// is then detected and skipped, whatever order a client or a hook wrote the keys in).
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

const METADATA_OPEN: &[u8] = b"\"metadata\":{";

/// The served bytes of a stored object: resourceVersion added, converted when needed.
pub fn render(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Bytes> {
    if info.conversion.is_none() {
        if let Some(b) = splice_resource_version(&kv.value, kv.mod_revision) {
            return Ok(b);
        }
    }
    let v = decode_stored(info, kv)?;
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

/// Inserts `"resourceVersion":"N"` as the first field of the first `metadata` object, which
/// `encode_for_storage` guarantees is the top-level one (a quote inside a string value is
/// always escaped, so the pattern cannot match inside apiVersion or kind).
fn splice_resource_version(raw: &[u8], rev: i64) -> Option<Bytes> {
    let pos = raw
        .windows(METADATA_OPEN.len())
        .position(|w| w == METADATA_OPEN)?
        + METADATA_OPEN.len();
    // Only trust the fast path when metadata comes right after apiVersion and kind.
    if pos > 200 {
        return None;
    }
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(raw.len() + rv.len() + 1);
    out.extend_from_slice(&raw[..pos]);
    out.extend_from_slice(rv.as_bytes());
    if raw.get(pos) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&raw[pos..]);
    Some(Bytes::from(out))
}

/// A stored object as a JSON value in the served version, with resourceVersion set.
pub fn decode_stored(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    if let Some(c) = info.conversion {
        v = (c.from_storage)(v);
    }
    capstan_api::meta::set_str(&mut v, "resourceVersion", kv.mod_revision.to_string());
    Ok(v)
}

/// The media type of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf` (kubectl's imperative commands), decoded to JSON.
    Protobuf,
}

/// Classifies a Content-Type header; a missing one is JSON (kubectl's PUT on scale sends none).
pub fn body_type(content_type: Option<&str>) -> ApiResult<BodyType> {
    let ct = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "" | "application/json" | "*/*" => Ok(BodyType::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyType::Yaml),
        crate::protobuf::CONTENT_TYPE => Ok(BodyType::Protobuf),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Parses a request body into a JSON value; syntax errors are 400 with the parser's message.
pub fn parse_body(body: &[u8], kind: BodyType) -> ApiResult<Value> {
    let v: Value = match kind {
        BodyType::Json => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        BodyType::Yaml => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?
        }
        // The envelope's apiVersion and kind come back as fields, so the kind checks apply.
        BodyType::Protobuf => crate::protobuf::decode_body(body)?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: expected an object, got {}",
            type_name(&v)
        )));
    }
    Ok(v)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders a JSON value as YAML for `Accept: application/yaml`.
pub fn to_yaml(v: &Value) -> ApiResult<Bytes> {
    serde_saphyr::to_string(v)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn kv(value: &Value, rev: i64) -> KeyValue {
        KeyValue {
            key: "/core/configmaps/d/a".into(),
            value: Arc::from(serde_json::to_vec(value).expect("json")),
            create_revision: rev,
            mod_revision: rev,
        }
    }

    #[test]
    fn stored_objects_come_back_with_their_revision() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"data":{"metadata":{"x":1}},"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"99"}});
        let stored = encode_for_storage(info, &obj).expect("encodes");
        let s = String::from_utf8(stored.clone()).expect("utf8");
        assert!(
            s.starts_with(
                "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}"
            ),
            "{s}"
        );
        let kv = KeyValue {
            value: Arc::from(stored),
            ..kv(&json!({}), 7)
        };
        let served: Value =
            serde_json::from_slice(&render(info, &kv).expect("renders")).expect("json");
        assert_eq!(served["metadata"]["resourceVersion"], "7");
        assert_eq!(served["data"]["metadata"]["x"], 1);
    }

    #[test]
    fn key_order_does_not_change_the_stored_bytes() {
        let info = capstan_api::catalogue::lookup("", "v1", "namespaces").expect("ns");
        let a = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","uid":"u","labels":{"y":"1","x":"2"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}});
        let b = json!({"status":{"phase":"Active"},"metadata":{"labels":{"x":"2","y":"1"},"uid":"u","name":"a"},"spec":{"finalizers":["kubernetes"]},"kind":"Namespace","apiVersion":"v1"});
        assert_eq!(
            encode_for_storage(info, &a).expect("a"),
            encode_for_storage(info, &b).expect("b")
        );
    }

    #[test]
    fn empty_metadata_gets_a_revision_without_a_trailing_comma() {
        let out =
            splice_resource_version(b"{\"apiVersion\":\"v1\",\"kind\":\"X\",\"metadata\":{}}", 3)
                .expect("spliced");
        let v: Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(v["metadata"]["resourceVersion"], "3");
    }

    #[test]
    fn keys_nest_namespaces_under_the_resource() {
        let info = capstan_api::catalogue::lookup("apps", "v1", "deployments").expect("d");
        assert_eq!(key(info, Some("ns"), "web"), "/apps/deployments/ns/web");
        assert_eq!(prefix(info, None), "/apps/deployments/");
        let node = capstan_api::catalogue::lookup("", "v1", "nodes").expect("n");
        assert_eq!(key(node, None, "n1"), "/core/nodes/n1");
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        assert_eq!(parse_body(b"{", BodyType::Json).expect_err("bad").code, 400);
        assert_eq!(
            parse_body(b"[1]", BodyType::Json).expect_err("bad").code,
            400
        );
        assert_eq!(
            parse_body(b"a: [", BodyType::Yaml).expect_err("bad").code,
            400
        );
        assert!(parse_body(b"kind: Pod\nmetadata:\n  name: x\n", BodyType::Yaml).is_ok());
        assert!(matches!(
            body_type(Some("application/vnd.kubernetes.protobuf")),
            Ok(BodyType::Protobuf)
        ));
        assert_eq!(
            body_type(Some("application/cbor")).expect_err("415").code,
            415
        );
        assert_eq!(
            parse_body(b"not protobuf", BodyType::Protobuf)
                .expect_err("bad")
                .code,
            400
        );
    }
}
