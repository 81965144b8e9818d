//! PATCH: JSON patch, JSON merge patch and strategic merge patch applied to the current
//! object (or its Scale), then written with the same rules as an update.

use serde_json::Value;

use crate::codec::{self, decode_stored};
use crate::error::{ApiError, ApiResult};
use crate::handlers::Req;
use crate::registry::{decode_body, ObjectOut, Registry, WriteOptions, Written};

/// The patch formats upstream accepts, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

const ACCEPTED: &str = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json";

impl PatchType {
    pub fn from_content_type(ct: Option<&str>) -> ApiResult<Self> {
        let mime = ct
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: {ACCEPTED} (got {other:?})"),
            )),
        }
    }
}

/// The largest object a patch or apply may produce: etcd's default request limit, under which
/// upstream's objects live. The request body limit (3 MiB) does not bound a patch's result.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Refuses a patched or applied object larger than [`MAX_OBJECT_BYTES`] (as JSON) before it
/// is decoded, defaulted and stored.
pub fn check_object_size(what: &str, size: usize) -> ApiResult<()> {
    if size <= MAX_OBJECT_BYTES {
        return Ok(());
    }
    Err(ApiError::new(
        422,
        "Invalid",
        format!("the {what} object is {size} bytes, more than the {MAX_OBJECT_BYTES} bytes an object may have (etcdserver: request is too large)"),
    ))
}

/// What a patch produced.
pub enum Patched {
    Object(Written),
    Scale(Value),
}

fn patch_error(code: u16, message: String) -> ApiError {
    match code {
        400 => ApiError::bad_request(message),
        413 => ApiError::new(413, "RequestEntityTooLarge", message),
        _ => ApiError::new(422, "Invalid", message),
    }
}

/// Applies a parsed patch document of the given type to `doc` (an object of the kind `ty`
/// names, or a Scale).
fn apply_patch(
    pt: PatchType,
    doc: &Value,
    patch: &Value,
    ty: (&str, &str, &str),
) -> ApiResult<Value> {
    use capstan_openapi::patch;
    let mut out = doc.clone();
    match pt {
        PatchType::Merge => patch::merge::apply(&mut out, patch),
        PatchType::Json => patch::json::apply(&mut out, patch)
            .map_err(|e| patch_error(e.status_code(), e.to_string()))?,
        PatchType::Strategic => {
            out = patch::strategic::apply_to_kind(doc, patch, ty.0, ty.1, ty.2)
                .map_err(|e| patch_error(e.status_code(), e.to_string()))?;
        }
        // Server-side apply never gets here: `patch` hands it to the field manager.
        PatchType::Apply => {
            return Err(ApiError::internal(
                "apply patches are merged by the field manager",
            ))
        }
    }
    Ok(out)
}

fn parse_patch(pt: PatchType, body: &[u8]) -> ApiResult<Value> {
    let v: Value = match pt {
        PatchType::Apply => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::bad_request(format!("patch is not UTF-8: {e}")))?;
            serde_saphyr::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (pt, &v) {
        (PatchType::Json, Value::Array(_)) => Ok(v),
        (PatchType::Json, _) => Err(ApiError::bad_request(
            "json patch must be an array of operations",
        )),
        (_, Value::Object(_)) => Ok(v),
        _ => Err(ApiError::bad_request("patch must be a JSON object")),
    }
}

pub async fn patch(
    reg: &Registry,
    req: &Req<'_>,
    name: &str,
    pt: PatchType,
    opts: &WriteOptions,
) -> ApiResult<Patched> {
    crate::fieldmanager::apply::validate_options(pt == PatchType::Apply, &req.query)?;
    if pt == PatchType::Apply {
        return crate::fieldmanager::apply::patch(reg, req, name, opts)
            .await
            .map(Patched::Object);
    }
    let r = &req.route;
    let info = r.info;
    let patch_doc = parse_patch(pt, &req.body)?;
    let fv = opts.field_validation;
    let ephemeral =
        info.plural == "pods" && r.subresource.as_deref() == Some("ephemeralcontainers");
    match r.subresource.as_deref() {
        Some("ephemeralcontainers") if !ephemeral => Err(ApiError::not_implemented(
            "patching the ephemeralcontainers subresource is only served for pods",
        )),
        None | Some("status") | Some("ephemeralcontainers") => {
            let w = reg
                .update_with(
                    info,
                    r.namespace.as_deref(),
                    name,
                    opts,
                    r.subresource.as_deref(),
                    |old| {
                        let patched = apply_patch(
                            pt,
                            old,
                            &patch_doc,
                            (info.group, info.version, info.kind),
                        )?;
                        let mut warnings = Vec::new();
                        let raw = serde_json::to_vec(&patched).map_err(ApiError::internal)?;
                        check_object_size("patched", raw.len())?;
                        let dups = crate::strict::duplicate_fields(&raw, codec::BodyType::Json);
                        let obj = decode_body(info, patched, fv, &dups, &mut warnings)
                            .map_err(|e| strict_error_as_invalid_patch(e, pt, &patch_doc, &raw))?;
                        Ok((obj, warnings))
                    },
                )
                .await?;
            Ok(Patched::Object(w))
        }
        Some("scale") => {
            let w = reg
                .update_with(
                    info,
                    r.namespace.as_deref(),
                    name,
                    opts,
                    Some("scale"),
                    |old| {
                        let scale = crate::scale::to_scale(info, old)?;
                        let patched =
                            apply_patch(pt, &scale, &patch_doc, ("autoscaling", "v1", "Scale"))?;
                        Ok((crate::scale::apply_scale(info, old, &patched)?, vec![]))
                    },
                )
                .await?;
            let obj = match &w.object {
                ObjectOut::Stored(kv) => decode_stored(info, kv)?,
                ObjectOut::Value(v) => v.clone(),
            };
            Ok(Patched::Scale(crate::scale::to_scale(info, &obj)?))
        }
        Some(other) => Err(ApiError::not_implemented(format!(
            "patching the {other} subresource is not implemented yet"
        ))),
    }
}

/// Upstream reports unknown fields in a patched object as an invalid `patch` (422) quoting
/// the patch (strategic) or the patched object (JSON and merge patches), not as the 400 a
/// create gets; kubectl prints it as "The request is invalid: patch: Invalid value: ...".
fn strict_error_as_invalid_patch(
    e: ApiError,
    pt: PatchType,
    patch: &Value,
    patched: &[u8],
) -> ApiError {
    const MARK: &str = "strict decoding error: ";
    let Some(at) = e.message.find(MARK).filter(|_| e.code == 400) else {
        return e;
    };
    let quoted = match pt {
        PatchType::Strategic => go_text(patch),
        _ => String::from_utf8_lossy(patched).into_owned(),
    };
    let body = format!(
        "Invalid value: {}: {}",
        Value::String(quoted),
        &e.message[at..]
    );
    ApiError::new(422, "Invalid", format!(" \"\" is invalid: patch: {body}"))
        .with_details(serde_json::json!({"causes": [{"reason": "FieldValueInvalid", "message": body, "field": "patch"}]}))
}

/// A decoded JSON value as Go's `%+v` prints it (`map[a:1 b:[x y]]`).
fn go_text(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_text(&m[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");

    #[test]
    fn json_patch_applies_and_reports_failures() {
        let doc = json!({"spec": {"replicas": 1}});
        let out = apply_patch(
            PatchType::Json,
            &doc,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            DEPLOYMENT,
        )
        .expect("ok");
        assert_eq!(out["spec"]["replicas"], 3);
        let e = apply_patch(
            PatchType::Json,
            &doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 9}]),
            DEPLOYMENT,
        )
        .expect_err("test fails");
        assert_eq!(e.code, 422);
    }

    #[test]
    fn strategic_patch_merges_containers_by_name() {
        let doc = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let p =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "z"}]}}}});
        let out = apply_patch(PatchType::Strategic, &doc, &p, DEPLOYMENT).expect("ok");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
        );
    }

    #[test]
    fn unknown_fields_in_a_strategic_patch_are_an_invalid_patch() {
        let e = ApiError::bad_request("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\"");
        let patch = json!({"spec": {"foo": 1, "template": {"spec": {}}}});
        let out = strict_error_as_invalid_patch(e, PatchType::Strategic, &patch, b"{}");
        assert_eq!(out.code, 422);
        assert_eq!(
            out.message,
            " \"\" is invalid: patch: Invalid value: \"map[spec:map[foo:1 template:map[spec:map[]]]]\": strict decoding error: unknown field \"spec.foo\""
        );
    }

    #[test]
    fn results_over_the_object_limit_are_invalid() {
        assert!(check_object_size("patched", MAX_OBJECT_BYTES).is_ok());
        let e = check_object_size("patched", MAX_OBJECT_BYTES + 1).expect_err("too large");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(e.message.contains("request is too large"), "{}", e.message);
    }

    #[test]
    fn json_patch_copies_are_bounded() {
        let doc = json!({"data": {"k": "x".repeat(200_000)}});
        let ops: Vec<Value> = (0..20)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/x{i}")}))
            .collect();
        let e = apply_patch(PatchType::Json, &doc, &Value::Array(ops), DEPLOYMENT)
            .expect_err("copy limit");
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains("accumulated size increase of copy"),
            "{}",
            e.message
        );
    }

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type(Some("application/merge-patch+json")).expect("ok"),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::from_content_type(Some("application/json"))
                .expect_err("415")
                .code,
            415
        );
    }
}
