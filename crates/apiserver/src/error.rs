//! API errors and their rendering as a Kubernetes `Status`, worded as upstream's
//! apimachinery `errors` package words them, since kubectl prints the message verbatim.

use capstan_api::field_error::{aggregate_message, FieldError};
use capstan_api::ResourceInfo;
use serde_json::{json, Map, Value};

/// A failed request, ready to be rendered as a Status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds a client should wait before retrying (Retry-After), for 429/504.
    pub retry_after: Option<u32>,
}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden_message(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// `pods "x" is forbidden: <why>`.
    pub fn forbidden(info: &ResourceInfo, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: {why}",
                info.qualified_resource()
            ),
        )
        .with_details(details(name, info.group, info.plural))
    }

    /// `configmaps "x" not found`.
    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::not_found_resource(info.group, info.plural, name)
    }

    pub fn not_found_resource(group: &str, plural: &str, name: &str) -> Self {
        let qualified = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .with_details(details(name, group, plural))
    }

    /// An unknown path or resource.
    pub fn no_such_resource() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.qualified_resource()),
        )
        .with_details(details(name, info.group, info.plural))
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.qualified_resource()
            ),
        )
        .with_details(details(name, info.group, info.plural))
    }

    /// The optimistic-concurrency conflict every client knows.
    pub fn modified(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per field error.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({
                    "reason": e.error_type.cause_reason(),
                    "message": e.body(),
                    "field": e.field,
                })
            })
            .collect();
        let mut d = details(name, info.group, info.kind);
        if let Value::Object(m) = &mut d {
            m.insert("causes".into(), Value::Array(causes));
        }
        Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {}",
                info.qualified_kind(),
                aggregate_message(errors)
            ),
        )
        .with_details(d)
    }

    pub fn method_not_supported() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 410: the requested history is gone.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 504 for a resourceVersion ahead of the store, which clients retry.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1}));
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, "NotImplemented", message)
    }

    /// The Status object, fields in metav1.Status' order (kind, apiVersion, metadata, status,
    /// message, reason, details, code), empty ones left out as Go's omitempty does.
    pub fn to_status(&self) -> Value {
        let mut s = Map::new();
        s.insert("kind".into(), json!("Status"));
        s.insert("apiVersion".into(), json!("v1"));
        s.insert("metadata".into(), json!({}));
        s.insert("status".into(), json!("Failure"));
        if !self.message.is_empty() {
            s.insert("message".into(), json!(self.message));
        }
        if !self.reason.is_empty() {
            s.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            s.insert("details".into(), d.clone());
        }
        s.insert("code".into(), json!(self.code));
        Value::Object(s)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

/// A success Status, as returned by deletes that do not return the object.
pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// Maps store errors that are not already answers to API errors.
pub fn from_store(e: capstan_store::Error) -> ApiError {
    use capstan_store::Error as E;
    match e {
        E::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        E::FutureRevision { requested, current } => {
            ApiError::too_large_resource_version(requested, current)
        }
        E::Closed => ApiError::service_unavailable("the storage is shutting down"),
        other => ApiError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> &'static ResourceInfo {
        capstan_api::catalogue::lookup("", "v1", "configmaps").expect("configmaps")
    }

    #[test]
    fn not_found_names_the_resource() {
        let e = ApiError::not_found(cm(), "x");
        assert_eq!(e.message, "configmaps \"x\" not found");
        assert_eq!(
            e.to_status()["details"],
            json!({"name":"x","kind":"configmaps"})
        );
    }

    /// The bytes upstream writes for a conflicting create (metav1.Status field order).
    #[test]
    fn status_fields_are_in_upstream_order() {
        let e = ApiError::already_exists(cm(), "x");
        assert_eq!(
            serde_json::to_string(&e.to_status()).expect("json"),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"x\" already exists","reason":"AlreadyExists","details":{"name":"x","kind":"configmaps"},"code":409}"#
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let d = capstan_api::catalogue::lookup("apps", "v1", "deployments").expect("deployments");
        let e = ApiError::invalid(d, "web", &[FieldError::required("spec.selector", "")]);
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
        let s = e.to_status();
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["kind"], "Deployment");
        assert_eq!(s["details"]["group"], "apps");
    }
}
