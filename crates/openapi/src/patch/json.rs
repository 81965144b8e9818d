//! JSON patch (RFC 6902, `application/json-patch+json`), on the json-patch crate, with the
//! checks and messages upstream's API server has. Entry point: [`apply`].

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::Value;

/// Upstream refuses JSON patches with more operations than this (413).
pub const MAX_OPERATIONS: usize = 10_000;

/// Upstream's `JSONPatchMaxCopyBytes`: the most bytes (as JSON) all `copy` operations of one
/// patch may add together. Without it a few dozen copies of a value into itself double the
/// object each time and exhaust memory long before the result's size is checked.
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

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
    /// The `copy` operations so far added more than [`MAX_COPY_BYTES`] (422, as upstream).
    #[error("Unable to complete the copy, the accumulated size increase of copy is {0}, exceeding the limit {MAX_COPY_BYTES}")]
    CopyTooLarge(usize),
}

impl Error {
    /// The HTTP status upstream answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::Decode(_) => 400,
            Error::TooManyOperations(_) => 413,
            Error::Apply(_) | Error::CopyTooLarge(_) => 422,
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
/// Operations run one at a time on a working copy so that each `copy` can be measured against
/// [`MAX_COPY_BYTES`] before it duplicates anything.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), Error> {
    let ops = parse(patch)?;
    let mut work = doc.clone();
    let mut copied = 0usize;
    for op in &ops {
        if let PatchOperation::Copy(c) = op {
            // A missing `from` is left to json_patch, which words that error.
            if let Some(value) = work.pointer(&c.from.to_string()) {
                copied = copied.saturating_add(json_size(value));
                if copied > MAX_COPY_BYTES {
                    return Err(Error::CopyTooLarge(copied));
                }
            }
        }
        json_patch::patch(&mut work, std::slice::from_ref(op))
            .map_err(|e| Error::Apply(describe(Some(op), &e.path.to_string(), &e.kind)))?;
    }
    *doc = work;
    Ok(())
}

/// The length of `value` serialised as compact JSON, without building the text.
pub fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
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
    fn copies_that_grow_the_object_past_the_limit_are_refused_early() {
        let original = json!({"data": {"k": "x".repeat(100_000)}});
        let mut doc = original.clone();
        // Each copy doubles /data: 100 kB, 200 kB, ... passes 3 MiB at the sixth copy.
        let ops: Vec<Value> = (0..25)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/x{i}")}))
            .collect();
        let err = apply(&mut doc, &Value::Array(ops)).expect_err("too large");
        assert_eq!(err.status_code(), 422);
        let Error::CopyTooLarge(n) = err else {
            panic!("wrong error: {err}")
        };
        assert!(
            n > MAX_COPY_BYTES && n < 2 * MAX_COPY_BYTES + 200_000,
            "{n}"
        );
        assert!(err_text(n)
            .starts_with("Unable to complete the copy, the accumulated size increase of copy is"));
        assert_eq!(
            doc, original,
            "a refused patch leaves the document unchanged"
        );
    }

    #[test]
    fn copies_under_the_limit_apply() {
        let mut doc = json!({"data": {"k": "x".repeat(1_000_000)}});
        apply(
            &mut doc,
            &json!([
                {"op": "copy", "from": "/data/k", "path": "/data/a"},
                {"op": "copy", "from": "/data/k", "path": "/data/b"},
            ]),
        )
        .expect("2 MB of copies is under 3 MiB");
        assert_eq!(doc["data"]["a"], doc["data"]["k"]);
        assert_eq!(json_size(&json!({"a": [1, "b"]})), r#"{"a":[1,"b"]}"#.len());
    }

    fn err_text(n: usize) -> String {
        Error::CopyTooLarge(n).to_string()
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
