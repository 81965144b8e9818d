//! `PATCH` with `application/apply-patch+yaml`: server-side apply as a request. Entry point:
//! [`patch`]. Checks the options as upstream (a field manager is required), reads the applied
//! configuration (YAML or JSON), then creates the object when it does not exist or merges the
//! configuration into it, and writes the result through the registry like any update
//! (defaults, validation, generation, dry run).

use serde_json::Value;

use crate::codec::BodyType;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Req;
use crate::params::{FieldValidation, Query};
use crate::registry::{decode_body, Registry, WriteOptions, Written};

/// How often a create/update race (the object appearing or vanishing meanwhile) is retried.
const MAX_ATTEMPTS: usize = 5;

/// Upstream's limit on field manager names.
const FIELD_MANAGER_MAX_LENGTH: usize = 128;

fn invalid_patch_options(field: &str, detail: String) -> ApiError {
    let cause =
        serde_json::json!({"reason": "FieldValueRequired", "message": detail, "field": field});
    ApiError::new(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {detail}"),
    )
    .with_details(
        serde_json::json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [cause]}),
    )
}

/// Checks a PATCH's options as upstream's ValidatePatchOptions does: `force` only with apply,
/// a field manager with apply, and field manager names short and printable.
pub fn validate_options(is_apply: bool, q: &Query) -> ApiResult<()> {
    if !is_apply && q.get("force").is_some() {
        let mut e = invalid_patch_options(
            "force",
            "Forbidden: may not be specified for non-apply patch".into(),
        );
        if let Some(d) = e.details.as_mut() {
            d["causes"][0]["reason"] = "FieldValueForbidden".into();
        }
        return Err(e);
    }
    let manager = q.get("fieldManager").unwrap_or_default();
    if is_apply && manager.is_empty() {
        return Err(invalid_patch_options(
            "fieldManager",
            "Required value: is required for apply patch".into(),
        ));
    }
    if manager.len() > FIELD_MANAGER_MAX_LENGTH {
        return Err(invalid_patch_options(
            "fieldManager",
            format!("Too long: may not be more than {FIELD_MANAGER_MAX_LENGTH} bytes"),
        ));
    }
    if manager.chars().any(char::is_control) {
        return Err(invalid_patch_options(
            "fieldManager",
            format!("Invalid value: {manager:?}: must only contain printable characters"),
        ));
    }
    Ok(())
}

/// Reads the applied configuration: YAML, or JSON (which kubectl sends).
fn parse_config(body: &[u8]) -> ApiResult<Value> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let v: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    };
    match v {
        Value::Object(_) => Ok(v),
        Value::Null => Ok(Value::Object(Default::default())),
        _ => Err(ApiError::bad_request(
            "error decoding YAML: error unmarshaling JSON: json: cannot unmarshal array into Go value of type map[string]interface {}",
        )),
    }
}

/// Repeated keys, which upstream's strict YAML decoding reports for Strict and Warn.
fn strict_problems(body: &[u8], fv: FieldValidation, warnings: &mut Vec<String>) -> ApiResult<()> {
    if fv == FieldValidation::Ignore {
        return Ok(());
    }
    let dups = crate::strict::duplicate_fields(body, BodyType::Json);
    if dups.is_empty() {
        return Ok(());
    }
    let detail: Vec<String> = dups
        .iter()
        .map(|d| format!("  mapping key {d:?} already defined"))
        .collect();
    let message = format!(
        "error converting YAML to JSON: yaml: unmarshal errors:\n{}",
        detail.join("\n")
    );
    match fv {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "error strict decoding YAML: {message}"
        ))),
        _ => {
            warnings.push(message);
            Ok(())
        }
    }
}

/// Serves a server-side apply. `opts` are the request's write options.
pub async fn patch(
    reg: &Registry,
    req: &Req<'_>,
    name: &str,
    opts: &WriteOptions,
) -> ApiResult<Written> {
    validate_options(true, &req.query)?;
    // Upstream 1.32 serves CBOR only behind a feature gate that is off by default.
    if req.content_type.is_some_and(|ct| ct.contains("cbor")) {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
        ));
    }
    let r = &req.route;
    let info = r.info;
    let ns = r.namespace.as_deref();
    let subresource = r.subresource.as_deref();
    if !matches!(subresource, None | Some("status")) {
        return Err(ApiError::method_not_supported());
    }
    let manager = req
        .query
        .get("fieldManager")
        .unwrap_or_default()
        .to_string();
    let force = req.query.flag("force");
    let config = parse_config(&req.body)?;
    let mut warnings = Vec::new();
    strict_problems(&req.body, opts.field_validation, &mut warnings)?;
    let opts = WriteOptions {
        fields_tracked: true,
        ..opts.clone()
    };
    // The result of an apply is decoded like any body: unknown fields cannot remain (the
    // merge rejected them), nulls and types are normalized.
    let decode = |obj: Value, warnings: &mut Vec<String>| {
        crate::patch::check_object_size("applied", capstan_openapi::patch::json::json_size(&obj))?;
        decode_body(info, obj, FieldValidation::Ignore, &[], warnings)
    };
    let mut last_error = None;
    for _ in 0..MAX_ATTEMPTS {
        let exists = match reg.get(info, ns, name).await {
            Ok(_) => true,
            Err(e) if e.code == 404 && subresource.is_none() => false,
            Err(e) => return Err(e),
        };
        if !exists {
            let obj = super::apply_object(info, None, &config, &manager, force, None)?;
            if let Some(uid) = obj["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
                return Err(ApiError::conflict(
                    info,
                    name,
                    format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
                ));
            }
            let body_name = obj["metadata"]["name"].as_str().unwrap_or_default();
            if body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let mut w = warnings.clone();
            let obj = decode(obj, &mut w)?;
            match reg.create(info, ns, obj, &opts, w).await {
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
                    last_error = Some(e);
                    continue;
                }
                other => return other,
            }
        }
        let result = reg
            .update_with(info, ns, name, &opts, subresource, |old| {
                let obj =
                    super::apply_object(info, Some(old), &config, &manager, force, subresource)?;
                let mut w = warnings.clone();
                let obj = decode(obj, &mut w)?;
                Ok((obj, w))
            })
            .await;
        match result {
            Err(e) if e.code == 404 && subresource.is_none() => last_error = Some(e),
            other => return other,
        }
    }
    Err(last_error.unwrap_or_else(|| ApiError::internal("server-side apply did not settle")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_needs_a_field_manager_and_force_needs_apply() {
        let e = validate_options(true, &Query::parse(Some("force=true"))).expect_err("no manager");
        assert_eq!(e.code, 422);
        assert_eq!(e.message, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
        let e = validate_options(false, &Query::parse(Some("force=true"))).expect_err("force");
        assert_eq!(e.message, "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");
        assert!(validate_options(
            true,
            &Query::parse(Some("fieldManager=kubectl&force=false"))
        )
        .is_ok());
        assert!(validate_options(false, &Query::parse(Some("fieldManager=kubectl-edit"))).is_ok());
        let long = format!("fieldManager={}", "m".repeat(129));
        assert_eq!(
            validate_options(false, &Query::parse(Some(&long)))
                .expect_err("long")
                .code,
            422
        );
    }

    #[test]
    fn configurations_are_read_as_json_or_yaml() {
        assert_eq!(parse_config(b"{\"a\": 1}").expect("json")["a"], 1);
        assert_eq!(parse_config(b"a: 1\nb: [x]\n").expect("yaml")["b"][0], "x");
        assert_eq!(parse_config(b"[1]").expect_err("list").code, 400);
    }
}
