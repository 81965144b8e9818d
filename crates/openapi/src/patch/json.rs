//! JSON patch (RFC 6902, `application/json-patch+json`), on the json-patch crate, with the
//! checks and messages upstream's API server has. Entry point: [`apply`].

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::Value;

/// Upstream refuses JSON patches with more operations than this (413).
pub const MAX_OPERATIONS: usize = 10_000;

/// Why a JSON patch was not applied. The document is left unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not a JSON array of operations (400).
    #[error("{0}")]
    Decode(String),
    /// More than [`MAX_OPERATIONS`] operations (413).
    #[error("The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {0}")]
    TooManyOperations(usize),
    /// An operation does not apply to this document (422); the message names it and its path.
    #[error("{0}")]
    Apply(String),
}

impl Error {
    /// The HTTP status upstream answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Decode(_) => 400,
            Error::TooManyOperations(_) => 413,
            Error::Apply(_) => 422,
        }
    }
}

/// Parses a JSON patch document.
pub fn parse(patch: &Value) -> Result<Vec<PatchOperation>, Error> {
    let ops: Vec<PatchOperation> =
        serde_json::from_value(patch.clone()).map_err(|e| Error::Decode(e.to_string()))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(Error::TooManyOperations(ops.len()));
    }
    Ok(ops)
}

/// Applies a JSON patch (the array of operations as a JSON value) to `doc`, all or nothing.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), Error> {
    let ops = parse(patch)?;
    json_patch::patch(doc, &ops).map_err(|e| {
        let op = ops.get(e.operation);
        Error::Apply(describe(op, &e.path.to_string(), &e.kind))
    })
}

/// Upstream's (evanphx/json-patch) wording for a failed operation.
fn describe(op: Option<&PatchOperation>, path: &str, kind: &PatchErrorKind) -> String {
    let name = match op {
        Some(PatchOperation::Add(_)) => "add",
        Some(PatchOperation::Remove(_)) => "remove",
        Some(PatchOperation::Replace(_)) => "replace",
        Some(PatchOperation::Move(_)) => "move",
        Some(PatchOperation::Copy(_)) => "copy",
        Some(PatchOperation::Test(_)) => "test",
        None => "patch",
    };
    match kind {
        PatchErrorKind::TestFailed => format!("testing value {path} failed: test failed"),
        PatchErrorKind::InvalidFromPointer => {
            let from = match op {
                Some(PatchOperation::Move(m)) => m.from.to_string(),
                Some(PatchOperation::Copy(c)) => c.from.to_string(),
                _ => String::new(),
            };
            format!("{name} operation does not apply: doc is missing from path: {from:?}: missing value")
        }
        PatchErrorKind::CannotMoveInsideItself => {
            format!("{name} operation does not apply: cannot move {path:?} into itself")
        }
        _ => {
            format!("{name} operation does not apply: doc is missing path: {path:?}: missing value")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_in_order() {
        let mut doc =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"items": [1, 2]}});
        apply(
            &mut doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/y", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/x"},
                {"op": "replace", "path": "/spec/items/0", "value": 9},
                {"op": "add", "path": "/spec/items/-", "value": 3},
                {"op": "test", "path": "/metadata/name", "value": "a"},
                {"op": "copy", "from": "/metadata/name", "path": "/spec/name"},
            ]),
        )
        .expect("applies");
        assert_eq!(
            doc,
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"items": [9, 2, 3], "name": "a"}})
        );
    }

    #[test]
    fn a_failing_operation_leaves_the_document_unchanged_and_says_why() {
        let original = json!({"spec": {"replicas": 1}});
        let mut doc = original.clone();
        let err = apply(
            &mut doc,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "replace", "path": "/spec/missing/x", "value": 1},
            ]),
        )
        .expect_err("fails");
        assert_eq!(doc, original);
        assert_eq!(err.status_code(), 422);
        assert!(
            err.to_string().contains("replace operation does not apply"),
            "{err}"
        );
        assert!(err.to_string().contains("/spec/missing/x"), "{err}");

        let err = apply(
            &mut doc,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
        )
        .expect_err("test");
        assert_eq!(
            err.to_string(),
            "testing value /spec/replicas failed: test failed"
        );
    }

    #[test]
    fn malformed_patches_are_bad_requests() {
        let mut doc = json!({});
        assert_eq!(
            apply(&mut doc, &json!({"op": "add"}))
                .expect_err("object")
                .status_code(),
            400
        );
        assert_eq!(
            apply(&mut doc, &json!([{"op": "frobnicate", "path": "/a"}]))
                .expect_err("op")
                .status_code(),
            400
        );
        let many: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "", "value": {}}))
            .collect();
        assert_eq!(
            apply(&mut doc, &Value::Array(many))
                .expect_err("too many")
                .status_code(),
            413
        );
    }
}
