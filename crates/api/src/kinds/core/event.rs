//! core/v1 Events: the legacy validation upstream applies to events created through core/v1,
//! the `kubectl get events` columns, and the event field selectors.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use super::{checks, s};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{human_duration_since, Column, RowContext};
use crate::validation::NameRule;

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

static COLUMNS: &[Column] = &[
    Column::new("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Column::new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column::new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    Column::new("Object", "string", "The object that this event is about."),
    Column::new("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].").wide(),
    Column::new("Source", "string", "The component reporting this event. Should be a short machine understandable string.").wide(),
    Column::new("Message", "string", "A human-readable description of the status of this operation."),
    Column::new("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)").wide(),
    Column::new("Count", "string", "The number of times this event has occurred.").wide(),
    Column {
        name: "Name",
        type_: "string",
        format: "name",
        description: "Name must be unique within a namespace.",
        priority: 1,
    },
];

fn since(t: Option<&Time>, ctx: &RowContext) -> Option<String> {
    t.map(|t| human_duration_since(t.0, ctx.now))
}

fn source(e: &Event) -> String {
    let src = e.source.clone().unwrap_or_default();
    let component = Some(s(&src.component))
        .filter(|c| !c.is_empty())
        .unwrap_or(s(&e.reporting_component));
    let host = Some(s(&src.host))
        .filter(|c| !c.is_empty())
        .unwrap_or(s(&e.reporting_instance));
    if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    }
}

impl KindHooks for Event {
    const NAME_RULE: NameRule = NameRule::PathSegment;
    const FIELD_SELECTORS: &'static [&'static str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];

    fn defaults(&mut self) {
        // Go's non-omitempty strings and non-pointer source always serialize.
        self.reporting_component.get_or_insert_with(String::new);
        self.reporting_instance.get_or_insert_with(String::new);
        self.source.get_or_insert_with(Default::default);
    }

    /// Upstream's legacyValidateEvent for the core/v1 API.
    fn validate(&self, errs: &mut ErrorList) {
        let ns = self.metadata.namespace.clone().unwrap_or_default();
        let involved_ns = s(&self.involved_object.namespace);
        let ns_path = Path::new("involvedObject").child("namespace");
        let mismatch =
            || FieldError::invalid(&ns_path, involved_ns, "does not match event.namespace");
        if self.event_time.is_none() {
            if involved_ns.is_empty() {
                if !ns.is_empty() && ns != "default" {
                    errs.push(mismatch());
                }
            } else if ns != involved_ns {
                errs.push(mismatch());
            }
        } else {
            if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
                errs.push(mismatch());
            }
            let rc = s(&self.reporting_component);
            if rc.is_empty() {
                errs.push(FieldError::required("reportingComponent", ""));
            }
            checks::qualified(rc, &Path::new("reportingComponent"), errs);
            let ri = s(&self.reporting_instance);
            if ri.is_empty() {
                errs.push(FieldError::required("reportingInstance", ""));
            }
            if ri.len() > REPORTING_INSTANCE_LIMIT {
                errs.push(FieldError::invalid(
                    "reportingInstance",
                    "",
                    format!("can have at most {REPORTING_INSTANCE_LIMIT} characters"),
                ));
            }
            let action = s(&self.action);
            if action.is_empty() {
                errs.push(FieldError::required("action", ""));
            }
            if action.len() > ACTION_LIMIT {
                errs.push(FieldError::invalid(
                    "action",
                    "",
                    format!("can have at most {ACTION_LIMIT} characters"),
                ));
            }
            let reason = s(&self.reason);
            if reason.is_empty() {
                errs.push(FieldError::required("reason", ""));
            }
            if reason.len() > REASON_LIMIT {
                errs.push(FieldError::invalid(
                    "reason",
                    "",
                    format!("can have at most {REASON_LIMIT} characters"),
                ));
            }
            if s(&self.message).len() > NOTE_LIMIT {
                errs.push(FieldError::invalid(
                    "message",
                    "",
                    format!("can have at most {NOTE_LIMIT} characters"),
                ));
            }
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let unknown = || "<unknown>".to_string();
        let first = since(self.first_timestamp.as_ref(), ctx)
            .or_else(|| {
                self.event_time
                    .as_ref()
                    .map(|t| human_duration_since(t.0, ctx.now))
            })
            .unwrap_or_else(unknown);
        let mut last = since(self.last_timestamp.as_ref(), ctx).unwrap_or_else(|| first.clone());
        let mut count = i64::from(self.count.unwrap_or(0));
        if let Some(series) = &self.series {
            last = series
                .last_observed_time
                .as_ref()
                .map(|t| human_duration_since(t.0, ctx.now))
                .unwrap_or_else(unknown);
            count = i64::from(series.count.unwrap_or(0));
        } else if count == 0 {
            count = 1;
        }
        let kind = s(&self.involved_object.kind).to_lowercase();
        let name = s(&self.involved_object.name);
        let target = if name.is_empty() {
            kind
        } else {
            format!("{kind}/{name}")
        };
        vec![
            json!(last),
            json!(s(&self.type_)),
            json!(s(&self.reason)),
            json!(target),
            json!(s(&self.involved_object.field_path)),
            json!(source(self)),
            json!(s(&self.message).trim()),
            json!(first),
            json!(count),
            json!(self.metadata.name.clone().unwrap_or_default()),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let o = &self.involved_object;
        let v = match field {
            "involvedObject.kind" => s(&o.kind),
            "involvedObject.namespace" => s(&o.namespace),
            "involvedObject.name" => s(&o.name),
            "involvedObject.uid" => s(&o.uid),
            "involvedObject.apiVersion" => s(&o.api_version),
            "involvedObject.resourceVersion" => s(&o.resource_version),
            "involvedObject.fieldPath" => s(&o.field_path),
            "reason" => s(&self.reason),
            "reportingComponent" => s(&self.reporting_component),
            "source" => {
                let c = self
                    .source
                    .as_ref()
                    .map(|src| s(&src.component))
                    .unwrap_or("");
                if c.is_empty() {
                    s(&self.reporting_component)
                } else {
                    c
                }
            }
            "type" => s(&self.type_),
            _ => return None,
        };
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: Value) -> Event {
        serde_json::from_value(v).expect("event")
    }

    #[test]
    fn a_kubelet_event_prints_like_kubectl() {
        let e = event(
            json!({"metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled", "message": "Successfully pulled image\n", "type": "Normal", "count": 2,
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:09:00Z"}),
        );
        let ctx = RowContext {
            now: "2024-01-01T00:10:00Z".parse().expect("t"),
        };
        assert_eq!(
            e.row(&ctx),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, n1"),
                json!("Successfully pulled image"),
                json!("10m"),
                json!(2),
                json!("web.17a"),
            ]
        );
        assert_eq!(e.field_value("involvedObject.name").as_deref(), Some("web"));
        assert_eq!(e.field_value("source").as_deref(), Some("kubelet"));
        let mut errs = Vec::new();
        e.validate(&mut errs);
        assert!(errs.is_empty());
    }

    #[test]
    fn a_new_style_event_counts_once_and_uses_the_reporting_controller() {
        let e = event(
            json!({"metadata": {"name": "x", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "n1"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingComponent": "capstan-scheduler", "reportingInstance": "s1",
            "action": "Scheduling", "reason": "Scheduled", "type": "Normal"}),
        );
        let ctx = RowContext {
            now: "2024-01-01T00:00:05Z".parse().expect("t"),
        };
        let row = e.row(&ctx);
        assert_eq!(row[0], json!("5s"));
        assert_eq!(row[5], json!("capstan-scheduler, s1"));
        assert_eq!(row[8], json!(1));
        assert_eq!(
            e.field_value("source").as_deref(),
            Some("capstan-scheduler")
        );
    }

    #[test]
    fn involved_object_namespace_must_match() {
        let e = event(
            json!({"metadata": {"name": "x", "namespace": "a"}, "involvedObject": {"kind": "Pod", "namespace": "b"}}),
        );
        let mut errs = Vec::new();
        e.validate(&mut errs);
        assert_eq!(
            errs[0].to_string(),
            "involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"
        );
    }
}
