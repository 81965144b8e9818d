//! What can go wrong applying or computing a strategic merge patch. Every variant names the
//! field (`path`, like `spec.template.spec.containers`) and what to change in the patch.

/// A strategic merge patch that cannot be applied (or a diff that cannot be computed). None of
/// these is retryable: the patch itself must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The patch (or the object) is not a JSON object at the top.
    #[error("invalid JSON document: a strategic merge patch must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },

    /// `$patch` has a value other than replace, delete (or merge, in lists).
    #[error("unknown patch type: {value} in map at {path}: use $patch: replace or $patch: delete")]
    UnknownDirective { path: String, value: String },

    /// `$patch: merge` inside a list, which upstream never implemented.
    #[error("merging lists cannot yet be specified in the patch (at {path})")]
    MergeDirectiveInList { path: String },

    /// An item of a list merged by key lacks the key.
    #[error("map: {item} does not contain declared merge key: {key} (at {path})")]
    MissingMergeKey {
        path: String,
        key: String,
        item: String,
    },

    /// A list of objects has merge semantics but no merge key is known for it.
    #[error("cannot merge lists without merge key for {path}")]
    NoMergeKey { path: String },

    /// `$retainKeys` is not a list, or the patch sets a field the list does not retain.
    #[error("invalid patch format of retainKeys at {path}: {reason}")]
    BadRetainKeys { path: String, reason: String },

    /// `$setElementOrder/<field>` is not a list, or disagrees with the patch's list.
    #[error("invalid patch format of setElementOrder list at {path}: {reason}")]
    BadSetElementOrder { path: String, reason: String },

    /// `$deleteFromPrimitiveList/<field>` is not a list of scalars, or has no field name.
    #[error("invalid patch format of primitive list at {path}: {reason}")]
    BadDeleteFromPrimitiveList { path: String, reason: String },

    /// A list holding lists, which strategic merge patch does not support.
    #[error("lists of lists are not supported (at {path})")]
    ListOfLists { path: String },

    /// A list whose items are of different JSON types.
    #[error("list element types are not identical at {path}: expected {expected}, found {found}")]
    MixedList {
        path: String,
        expected: &'static str,
        found: &'static str,
    },

    /// A value where the patch expects another shape (e.g. a list patched with an object).
    #[error("invalid type for {path}: got {found:?}, expected {expected:?}")]
    TypeMismatch {
        path: String,
        expected: &'static str,
        found: &'static str,
    },

    /// Two patches being combined (three-way diff) disagree on a directive.
    #[error("conflicting directives at {path}: {reason}")]
    Conflict { path: String, reason: String },
}

impl Error {
    /// The HTTP status upstream answers with: 400 for a malformed patch, 422 for a patch that
    /// cannot apply to this object.
    pub fn status_code(&self) -> u16 {
        match self {
            Error::NotAnObject { .. }
            | Error::UnknownDirective { .. }
            | Error::MergeDirectiveInList { .. }
            | Error::BadRetainKeys { .. }
            | Error::BadSetElementOrder { .. }
            | Error::BadDeleteFromPrimitiveList { .. } => 400,
            _ => 422,
        }
    }
}

/// A `Result` with this module's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The JSON type name of a value, for messages.
pub(crate) fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// `parent.field` (or `field` at the top), for error paths.
pub(crate) fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}
