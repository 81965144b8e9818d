//! Table output (meta.k8s.io/v1 Table): column definitions and the cell formatting helpers
//! upstream's printers use (ages, joined lists, `<none>`), so `kubectl get` looks as usual.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// One column of a Table, as in `columnDefinitions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// "string", "integer", "date", ...
    pub type_: &'static str,
    /// "name" for the name column, otherwise usually empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

impl Column {
    pub const fn new(name: &'static str, type_: &'static str, description: &'static str) -> Self {
        Self {
            name,
            type_,
            format: "",
            description,
            priority: 0,
        }
    }

    /// The Name column every printer starts with.
    pub const fn name() -> Self {
        Self {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
            priority: 0,
        }
    }

    /// The Age column most printers have.
    pub const fn age() -> Self {
        Self::new(
            "Age",
            "string",
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        )
    }

    /// The same column shown only with `-o wide`.
    pub const fn wide(self) -> Self {
        Self {
            priority: 1,
            ..self
        }
    }
}

/// What a printer may need besides the object: the time "now" for ages.
#[derive(Clone, Debug)]
pub struct RowContext {
    pub now: Timestamp,
}

impl RowContext {
    pub fn now() -> Self {
        Self {
            now: Timestamp::now(),
        }
    }

    /// The age of an object as kubectl prints it ("5s", "3m2s", "4h", "2d3h", "<unknown>").
    pub fn age(&self, t: Option<&Time>) -> String {
        match t {
            Some(t) => human_duration_since(t.0, self.now),
            None => "<unknown>".to_string(),
        }
    }
}

/// Columns of upstream's default table for kinds without a printer.
pub const DEFAULT_COLUMNS: &[Column] = &[
    Column::name(),
    Column {
        name: "Created At",
        type_: "date",
        format: "",
        description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        priority: 0,
    },
];

/// The row for [`DEFAULT_COLUMNS`].
pub fn default_row(meta: &ObjectMeta) -> Vec<Value> {
    vec![
        json!(meta.name.clone().unwrap_or_default()),
        serde_json::to_value(&meta.creation_timestamp).unwrap_or(Value::Null),
    ]
}

/// Upstream's `duration.HumanDuration` applied to `now - t` (negative durations print as 0s
/// unless far off, as upstream does for clock skew).
pub fn human_duration_since(t: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    if secs < -1 {
        return "<invalid>".to_string();
    }
    human_duration(secs.max(0))
}

/// Formats seconds like upstream's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let minutes = secs / 60;
    let hours = secs / 3600;
    let days = hours / 24;
    let years = days / 365;
    if secs < 60 * 2 {
        format!("{secs}s")
    } else if minutes < 10 {
        let s = secs % 60;
        if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        }
    } else if minutes < 60 * 3 {
        format!("{minutes}m")
    } else if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        }
    } else if hours < 24 * 365 * 2 {
        format!("{days}d")
    } else if hours < 24 * 365 * 8 {
        let d = days % 365;
        if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        }
    } else {
        format!("{years}y")
    }
}

/// `<none>` for empty strings, as upstream prints missing values.
pub fn or_none(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// Label selector map rendered as `a=b,c=d`, or `<none>`.
pub fn format_labels(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    match labels {
        Some(l) if !l.is_empty() => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_upstream_thresholds() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
    }
}
