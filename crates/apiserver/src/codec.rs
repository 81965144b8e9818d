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

/// Serialises an object for storage: top-level keys in upstream's wire order (kind,
/// apiVersion, metadata), then the rest, so reads can splice in `resourceVersion` and serve
/// the bytes without parsing; converted to the storage version, without resourceVersion and
/// selfLink.
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
    for k in WIRE_ORDER {
        if let Some(v) = m.remove(*k) {
            out.insert(k.to_string(), canonical(v));
        }
    }
    let mut rest: Vec<(String, Value)> = m.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(rest.into_iter().map(|(k, v)| (k, canonical(v))));
    serde_json::to_vec(&Value::Object(out)).map_err(ApiError::internal)
}

/// The keys every object begins with, in the order Go's encoder writes TypeMeta and
/// ObjectMeta (struct order), which clients comparing bytes or reading streams expect.
const WIRE_ORDER: &[&str] = &["kind", "apiVersion", "metadata"];

/// An object with its top-level keys in wire order (kind, apiVersion, metadata, the rest as
/// they were). Values built from typed structs (k8s-openapi writes apiVersion first) and
/// objects stored by earlier versions pass through here before they are served.
pub fn wire_order(v: Value) -> Value {
    let Value::Object(mut m) = v else {
        return v;
    };
    let in_order = m
        .keys()
        .zip(WIRE_ORDER.iter().filter(|k| m.contains_key(**k)))
        .all(|(a, b)| a == b);
    if in_order {
        return Value::Object(m);
    }
    let mut out = Map::with_capacity(m.len());
    for k in WIRE_ORDER {
        if let Some(v) = m.remove(*k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(m);
    Value::Object(out)
}

/// A response body in wire order: the object itself, and the objects a list (`items`), a
/// watch event (`object`) or a Table (`rows[].object`) carries. Only these: nested references
/// (ownerReferences, involvedObject) keep their own struct order.
pub fn response_order(v: Value) -> Value {
    let m = match wire_order(v) {
        Value::Object(m) => m,
        other => return other,
    };
    let m = m
        .into_iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("items", Value::Array(a)) => Value::Array(a.into_iter().map(wire_order).collect()),
                ("object", v @ Value::Object(_)) => response_order(v),
                ("rows", Value::Array(rows)) => Value::Array(
                    rows.into_iter()
                        .map(|row| match row {
                            Value::Object(mut r) => {
                                if let Some(o) = r.get_mut("object") {
                                    *o = wire_order(o.take());
                                }
                                Value::Object(r)
                            }
                            other => other,
                        })
                        .collect(),
                ),
                (_, v) => v,
            };
            (k, v)
        })
        .collect();
    Value::Object(m)
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

/// The served bytes of a stored object: resourceVersion added, converted when needed, in
/// wire order.
pub fn render(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Bytes> {
    render_vec(info, kv, 0).map(Bytes::from)
}

/// [`render`] followed by the newline Go's `json.Encoder` ends every response body with.
pub fn render_response(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Bytes> {
    let mut out = render_vec(info, kv, 1)?;
    out.push(b'\n');
    Ok(Bytes::from(out))
}

fn render_vec(info: &ResourceInfo, kv: &KeyValue, spare: usize) -> ApiResult<Vec<u8>> {
    if info.conversion.is_none() {
        if let Some(b) = splice_resource_version(&kv.value, kv.mod_revision, spare) {
            return Ok(b);
        }
    }
    let v = decode_stored(info, kv)?;
    serde_json::to_vec(&v).map_err(ApiError::internal)
}

/// The stored bytes with `"resourceVersion":"N"` as the first field of metadata, without
/// parsing the object: stored objects begin with kind and apiVersion (in either order:
/// earlier versions stored apiVersion first) and then metadata, so only those three leading
/// fields are scanned, and kind and apiVersion are written back in wire order. None when the
/// bytes do not begin that way (the caller then parses).
fn splice_resource_version(raw: &[u8], rev: i64, spare: usize) -> Option<Vec<u8>> {
    let mut pos = expect(raw, 0, b"{")?;
    let (first, value1, next) = leading_field(raw, pos)?;
    pos = expect(raw, next, b",")?;
    let (second, value2, next) = leading_field(raw, pos)?;
    let (kind, api_version) = match (first, second) {
        (b"kind", b"apiVersion") => (value1, value2),
        (b"apiVersion", b"kind") => (value2, value1),
        _ => return None,
    };
    pos = expect(raw, next, b",\"metadata\":{")?;
    let rv = format!("\"resourceVersion\":\"{rev}\"");
    let mut out = Vec::with_capacity(raw.len() + rv.len() + 1 + spare);
    out.extend_from_slice(b"{\"kind\":");
    out.extend_from_slice(kind);
    out.extend_from_slice(b",\"apiVersion\":");
    out.extend_from_slice(api_version);
    out.extend_from_slice(b",\"metadata\":{");
    out.extend_from_slice(rv.as_bytes());
    if raw.get(pos) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&raw[pos..]);
    Some(out)
}

/// `pos` past `token` when the bytes at `pos` are `token`.
fn expect(raw: &[u8], pos: usize, token: &[u8]) -> Option<usize> {
    raw.get(pos..pos + token.len())
        .filter(|b| *b == token)
        .map(|_| pos + token.len())
}

/// A `"name":"value"` pair at `pos` whose value is a string: the name, the value with its
/// quotes, and the position after it. Names are compared raw, which is exact for the ASCII
/// names looked for; values are copied as they are, escapes included.
fn leading_field(raw: &[u8], pos: usize) -> Option<(&[u8], &[u8], usize)> {
    let name_end = string_end(raw, pos)?;
    let value_start = expect(raw, name_end, b":")?;
    let value_end = string_end(raw, value_start)?;
    Some((
        &raw[pos + 1..name_end - 1],
        &raw[value_start..value_end],
        value_end,
    ))
}

/// The position after the JSON string starting at `pos` (which must be a quote).
fn string_end(raw: &[u8], pos: usize) -> Option<usize> {
    if raw.get(pos) != Some(&b'"') {
        return None;
    }
    let mut i = pos + 1;
    while i < raw.len() {
        match raw[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A stored object as a JSON value in the served version, with resourceVersion set, in wire
/// order.
pub fn decode_stored(info: &ResourceInfo, kv: &KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    if let Some(c) = info.conversion {
        v = (c.from_storage)(v);
    }
    capstan_api::meta::set_str(&mut v, "resourceVersion", kv.mod_revision.to_string());
    Ok(wire_order(v))
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
                "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"a\"}"
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
        let out = splice_resource_version(
            b"{\"kind\":\"X\",\"apiVersion\":\"v1\",\"metadata\":{}}",
            3,
            0,
        )
        .expect("spliced");
        assert_eq!(
            out,
            b"{\"kind\":\"X\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"3\"}}"
        );
    }

    /// Objects stored by earlier versions begin with apiVersion; they are served in wire
    /// order, on the fast path and on the parsing one alike.
    #[test]
    fn objects_stored_in_the_old_order_render_in_wire_order() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let old = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"d"},"data":{"k":"v"}}"#;
        let kv = KeyValue {
            value: Arc::from(&old[..]),
            ..kv(&json!({}), 5)
        };
        let served = render(info, &kv).expect("renders");
        assert_eq!(
            &served[..],
            br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"5","name":"a","namespace":"d"},"data":{"k":"v"}}"#
        );
        let decoded = decode_stored(info, &kv).expect("decodes");
        let keys: Vec<&String> = decoded.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["kind", "apiVersion", "metadata", "data"]);
        assert_eq!(
            &render_response(info, &kv).expect("renders")[..],
            [&served[..], b"\n"].concat()
        );
    }

    /// Bytes that do not begin with kind, apiVersion and metadata are parsed, and still served
    /// in wire order; escapes inside the leading strings do not confuse the scan.
    #[test]
    fn unusual_stored_bytes_fall_back_to_parsing() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let odd = br#"{"data":{},"metadata":{"name":"a"},"kind":"ConfigMap","apiVersion":"v1"}"#;
        assert!(splice_resource_version(odd, 1, 0).is_none());
        let kv = KeyValue {
            value: Arc::from(&odd[..]),
            ..kv(&json!({}), 2)
        };
        let served = String::from_utf8(render(info, &kv).expect("renders").to_vec()).expect("utf8");
        assert!(served.starts_with(r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"2"}"#), "{served}");
        let escaped = br#"{"apiVersion":"x\"y","kind":"K\\","metadata":{"name":"a"}}"#;
        let out = splice_resource_version(escaped, 4, 0).expect("spliced");
        let v: Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(v["apiVersion"], "x\"y");
        assert_eq!(v["kind"], "K\\");
        assert!(splice_resource_version(br#"{"kind":"K"#, 1, 0).is_none());
    }

    /// On demand: `cargo test --release -p capstan-apiserver --lib render_costs -- --ignored
    /// --nocapture`. The cost of serving one stored object on the fast path (new and old key
    /// order) against parsing it, for a 2 KiB ConfigMap.
    #[test]
    #[ignore]
    fn render_costs() {
        let info = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let data: serde_json::Map<String, Value> = (0..40)
            .map(|i| (format!("key-{i}"), json!("v".repeat(40))))
            .collect();
        let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"d","uid":"0e73e6d3-5d53-4be5-a402-a04afe4a664c","creationTimestamp":"2026-12-07T16:29:21Z"},"data":data});
        let new = encode_for_storage(info, &obj).expect("encodes");
        let old = serde_json::to_vec(&obj).expect("old order");
        let n = 200_000;
        for (what, bytes) in [("new order", &new), ("old order", &old)] {
            let kv = KeyValue {
                value: Arc::from(bytes.as_slice()),
                ..kv(&json!({}), 7)
            };
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(render(info, &kv).expect("renders"));
            }
            println!(
                "{what}: {:.0} ns/object",
                t.elapsed().as_nanos() as f64 / n as f64
            );
            let t = std::time::Instant::now();
            for _ in 0..n / 10 {
                let v = decode_stored(info, &kv).expect("decodes");
                std::hint::black_box(serde_json::to_vec(&v).expect("json"));
            }
            println!(
                "{what}, parsed: {:.0} ns/object",
                t.elapsed().as_nanos() as f64 / (n / 10) as f64
            );
        }
    }

    #[test]
    fn responses_put_kind_first_in_objects_lists_events_and_tables() {
        let obj = json!({"apiVersion":"v1","metadata":{"name":"a"},"kind":"Pod","spec":{}});
        let order =
            |v: &Value| -> Vec<String> { v.as_object().expect("object").keys().cloned().collect() };
        assert_eq!(
            order(&response_order(obj.clone())),
            ["kind", "apiVersion", "metadata", "spec"]
        );
        let list = response_order(
            json!({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[obj.clone()]}),
        );
        assert_eq!(
            order(&list["items"][0]),
            ["kind", "apiVersion", "metadata", "spec"]
        );
        let event = response_order(json!({"type":"ADDED","object":obj.clone()}));
        assert_eq!(order(&event), ["type", "object"]);
        assert_eq!(
            order(&event["object"]),
            ["kind", "apiVersion", "metadata", "spec"]
        );
        let table = response_order(
            json!({"apiVersion":"meta.k8s.io/v1","kind":"Table","rows":[{"cells":[],"object":obj}]}),
        );
        assert_eq!(order(&table), ["kind", "apiVersion", "rows"]);
        assert_eq!(
            order(&table["rows"][0]["object"]),
            ["kind", "apiVersion", "metadata", "spec"]
        );
        // Nested references keep their own order.
        let owned = response_order(
            json!({"kind":"Pod","apiVersion":"v1","metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet"}]}}),
        );
        assert_eq!(
            order(&owned["metadata"]["ownerReferences"][0]),
            ["apiVersion", "kind"]
        );
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
