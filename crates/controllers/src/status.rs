//! `status_patch`: a controller's computed status as a JSON merge patch of the status
//! subresource. Each status has one writer (its controller, one worker per key), so the write
//! needs no resourceVersion: the cache being a version behind (our own last write not yet
//! seen) no longer costs a 409 and a retry. Fields the new status leaves out are nulled so
//! the stored status ends up exactly the computed one.

use serde_json::{json, Map, Value};

/// `{"status": new}` with `null` for each of `fields` that `new` does not set.
pub fn status_patch(new: &Value, fields: &[&str]) -> Value {
    let mut s: Map<String, Value> = new.as_object().cloned().unwrap_or_default();
    for f in fields {
        s.entry(f.to_string()).or_insert(Value::Null);
    }
    json!({ "status": s })
}

/// ReplicaSet and ReplicationController status fields.
pub const REPLICA_FIELDS: &[&str] = &[
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "terminatingReplicas",
    "observedGeneration",
    "conditions",
];

/// Deployment status fields.
pub const DEPLOYMENT_FIELDS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "terminatingReplicas",
    "conditions",
    "collisionCount",
];

/// CronJob status fields.
pub const CRON_JOB_FIELDS: &[&str] = &["active", "lastScheduleTime", "lastSuccessfulTime"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_are_cleared() {
        let p = status_patch(
            &json!({"replicas": 2, "observedGeneration": 3}),
            REPLICA_FIELDS,
        );
        assert_eq!(p["status"]["replicas"], 2);
        assert!(p["status"]["readyReplicas"].is_null());
        assert!(p["status"]
            .as_object()
            .is_some_and(|s| s.contains_key("conditions")));
    }
}
