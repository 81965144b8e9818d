//! `metadata.managedFields` as data: who manages which fields, read from and written back to
//! the entries upstream serializes (`manager`, `operation`, `apiVersion`, `time`,
//! `fieldsType: FieldsV1`, `fieldsV1`, `subresource`).
//!
//! A manager's identity is its name, operation and subresource, plus the API version for
//! `Update` entries (an applier keeps one entry whatever version it applies with).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::fieldset::Set;

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who a managedFields entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn new(
        manager: &str,
        operation: Operation,
        api_version: &str,
        subresource: Option<&str>,
    ) -> Self {
        ManagerId {
            manager: if manager.is_empty() {
                "unknown".into()
            } else {
                manager.to_string()
            },
            operation,
            api_version: if operation == Operation::Apply {
                String::new()
            } else {
                api_version.to_string()
            },
            subresource: subresource.unwrap_or_default().to_string(),
        }
    }

    /// How conflict messages name a manager: `"kubectl-client-side-apply" using apps/v1`,
    /// `"kubectl"`, `"m" with subresource "status"`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// The fields one manager owns, in the API version it last wrote with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedSet {
    pub set: Set,
    pub api_version: String,
    pub applied: bool,
}

/// Every manager's fields and the time each last changed something.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Managed {
    pub fields: BTreeMap<ManagerId, VersionedSet>,
    pub times: BTreeMap<ManagerId, Option<String>>,
}

impl Managed {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Reads managedFields entries; any invalid entry makes the whole list invalid (upstream
    /// then falls back to the stored entries, or to none).
    pub fn decode(entries: &Value) -> Result<Managed, String> {
        let mut out = Managed::default();
        let Some(list) = entries.as_array() else {
            return match entries {
                Value::Null => Ok(out),
                _ => Err("managedFields is not a list".into()),
            };
        };
        for (i, e) in list.iter().enumerate() {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".into()),
            };
            let api_version = text("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            match text("fieldsType") {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ))
                }
            }
            let set = match e.get("fieldsV1") {
                None | Some(Value::Null) => Set::new(),
                Some(v) => {
                    Set::from_fields_v1(v).map_err(|err| format!("error decoding set: {err}"))?
                }
            };
            let id = ManagerId {
                manager: text("manager").to_string(),
                operation,
                api_version: if operation == Operation::Apply {
                    String::new()
                } else {
                    api_version.to_string()
                },
                subresource: text("subresource").to_string(),
            };
            out.times.insert(
                id.clone(),
                e.get("time").and_then(Value::as_str).map(str::to_string),
            );
            out.fields.insert(
                id,
                VersionedSet {
                    set,
                    api_version: api_version.to_string(),
                    applied: operation == Operation::Apply,
                },
            );
        }
        Ok(out)
    }

    /// The entries, sorted as upstream sorts them (operation, time, manager, apiVersion,
    /// subresource); None when nobody manages anything.
    pub fn encode(&self) -> Option<Value> {
        if self.fields.is_empty() {
            return None;
        }
        let mut entries: Vec<(&ManagerId, Map<String, Value>, i64)> = Vec::new();
        for (id, vs) in &self.fields {
            let operation = if vs.applied {
                Operation::Apply
            } else {
                id.operation
            };
            let mut e = Map::new();
            e.insert("manager".into(), json!(id.manager));
            e.insert("operation".into(), json!(operation.as_str()));
            e.insert("apiVersion".into(), json!(vs.api_version));
            let time = self.times.get(id).cloned().flatten();
            if let Some(t) = &time {
                e.insert("time".into(), json!(t));
            }
            e.insert("fieldsType".into(), json!("FieldsV1"));
            e.insert("fieldsV1".into(), vs.set.to_fields_v1());
            if !id.subresource.is_empty() {
                e.insert("subresource".into(), json!(id.subresource));
            }
            entries.push((id, e, time.as_deref().map(unix_seconds).unwrap_or(0)));
        }
        entries.sort_by(|(a, ae, at), (b, be, bt)| {
            let op =
                |e: &Map<String, Value>| e["operation"].as_str().unwrap_or_default().to_string();
            op(ae)
                .cmp(&op(be))
                .then(at.cmp(bt))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| ae["apiVersion"].as_str().cmp(&be["apiVersion"].as_str()))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        Some(Value::Array(
            entries
                .into_iter()
                .map(|(_, e, _)| Value::Object(e))
                .collect(),
        ))
    }
}

/// Seconds since the epoch of an RFC 3339 time; 0 when it does not parse.
pub fn unix_seconds(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_second())
        .unwrap_or(0)
}

/// Whether the entries ask for managedFields to be reset: an empty list, or one empty entry.
pub fn is_reset(entries: Option<&Value>) -> bool {
    match entries {
        Some(Value::Array(a)) if a.is_empty() => true,
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_sort_appliers_first() {
        let entries = json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "apps/v1",
             "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
             "time": "2024-01-02T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:a": {}}}}}
        ]);
        let m = Managed::decode(&entries).expect("valid");
        let out = m.encode().expect("entries");
        assert_eq!(out[0]["manager"], "kubectl");
        assert_eq!(out[1]["manager"], "kubectl-client-side-apply");
        assert_eq!(Managed::decode(&out).expect("valid"), m);
    }

    #[test]
    fn invalid_entries_are_rejected_as_upstream_words_it() {
        let bad = |e: Value| Managed::decode(&json!([e])).expect_err("invalid");
        assert_eq!(
            bad(
                json!({"manager": "m", "operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"})
            ),
            "operation must be `Apply` or `Update`"
        );
        assert_eq!(
            bad(json!({"manager": "m", "operation": "Update", "fieldsType": "FieldsV1"})),
            "apiVersion must not be empty"
        );
        assert_eq!(
            bad(json!({"manager": "m", "operation": "Update", "apiVersion": "v1"})),
            "missing fieldsType in managed fields entry 0"
        );
        assert!(bad(json!({"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"k:x": {}}})).starts_with("error decoding set"));
    }

    #[test]
    fn managers_are_described_as_in_conflict_messages() {
        assert_eq!(
            ManagerId::new(
                "kubectl-client-side-apply",
                Operation::Update,
                "apps/v1",
                None
            )
            .describe(),
            "\"kubectl-client-side-apply\" using apps/v1"
        );
        assert_eq!(
            ManagerId::new("kubectl", Operation::Apply, "apps/v1", None).describe(),
            "\"kubectl\""
        );
        assert_eq!(
            ManagerId::new("", Operation::Update, "v1", Some("status")).describe(),
            "\"unknown\" with subresource \"status\" using v1"
        );
    }

    #[test]
    fn an_empty_list_or_one_empty_entry_resets() {
        assert!(is_reset(Some(&json!([]))));
        assert!(is_reset(Some(&json!([{}]))));
        assert!(!is_reset(Some(&json!([{"manager": "m"}]))));
        assert!(!is_reset(None));
    }
}
