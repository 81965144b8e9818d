//! events.k8s.io/v1 Event, stored as a core Event (kinds::conversion), with upstream's
//! validation (pkg/apis/events/validation) and the core Event's printer.

use k8s_openapi::api::events::v1::Event;
use serde_json::Value;

use super::conversion;
use crate::field_error::{ErrorList, FieldError};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{immutable_field, qualified_name, NameRule};

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// The same event as a core/v1 Event (its storage form).
fn as_core_event(e: &Event) -> Option<k8s_openapi::api::core::v1::Event> {
    let v = serde_json::to_value(e).ok()?;
    serde_json::from_value(conversion::events_v1_to_core(v)).ok()
}

/// Upstream's `legacyValidateEvent` for an events.k8s.io request (core field paths, as
/// upstream validates the internal core type).
fn legacy_validate_event(e: &Event, errs: &mut ErrorList) {
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let regarding_ns = e
        .regarding
        .as_ref()
        .and_then(|r| r.namespace.as_deref())
        .unwrap_or("");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            regarding_ns,
            "does not match event.namespace",
        )
    };
    if e.event_time.is_none() {
        if regarding_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != regarding_ns {
            errs.push(mismatch());
        }
        return;
    }
    if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" {
        errs.push(mismatch());
    }
    let rc = text(&e.reporting_controller);
    if rc.is_empty() {
        errs.push(FieldError::required("reportingController", ""));
    }
    for msg in qualified_name(rc) {
        errs.push(FieldError::invalid("reportingController", rc, msg));
    }
    let limited = [
        (
            "reportingInstance",
            text(&e.reporting_instance),
            REPORTING_INSTANCE_LIMIT,
            true,
        ),
        ("action", text(&e.action), ACTION_LIMIT, true),
        ("reason", text(&e.reason), REASON_LIMIT, true),
        ("message", text(&e.note), NOTE_LIMIT, false),
    ];
    for (field, value, limit, required) in limited {
        if required && value.is_empty() {
            errs.push(FieldError::required(field, ""));
        }
        if value.len() > limit {
            errs.push(FieldError::invalid(
                field,
                "",
                format!("can have at most {limit} characters"),
            ));
        }
    }
}

const EVENT_FIELD_SELECTORS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

impl KindHooks for Event {
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    /// events.k8s.io's own field labels (upstream converts them to the core ones).
    const FIELD_SELECTORS: &'static [&'static str] = EVENT_FIELD_SELECTORS;

    fn defaults(&mut self) {
        // Non-pointer structs upstream, so they always serialize.
        self.regarding.get_or_insert_with(Default::default);
        self.deprecated_source.get_or_insert_with(Default::default);
    }

    /// Upstream's `ValidateEventCreate` for events.k8s.io/v1: legacy plus strict checks.
    fn validate(&self, errs: &mut ErrorList) {
        legacy_validate_event(self, errs);
        if let Some(series) = &self.series {
            if series.count < 2 {
                errs.push(FieldError::invalid(
                    "series.count",
                    "",
                    "should be at least 2",
                ));
            }
        }
        if self.event_time.is_none() {
            errs.push(FieldError::required("eventTime", ""));
        }
        let t = text(&self.type_);
        if t != "Normal" && t != "Warning" {
            errs.push(FieldError::invalid(
                "type",
                "",
                format!("has invalid value: {t}"),
            ));
        }
        if self.deprecated_first_timestamp.is_some() {
            errs.push(FieldError::invalid(
                "firstTimestamp",
                "",
                "needs to be unset",
            ));
        }
        if self.deprecated_last_timestamp.is_some() {
            errs.push(FieldError::invalid(
                "lastTimestamp",
                "",
                "needs to be unset",
            ));
        }
        if self.deprecated_count.unwrap_or(0) != 0 {
            errs.push(FieldError::invalid("count", "", "needs to be unset"));
        }
        let src = self.deprecated_source.clone().unwrap_or_default();
        if !text(&src.component).is_empty() || !text(&src.host).is_empty() {
            errs.push(FieldError::invalid("source", "", "needs to be unset"));
        }
    }

    /// Upstream's `ValidateEventUpdate` for events.k8s.io/v1: most fields are fixed.
    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let regarding = |e: &Event| e.regarding.clone().unwrap_or_default();
        immutable_field(&regarding(self), &regarding(old), "involvedObject", errs);
        immutable_field(&self.reason, &old.reason, "reason", errs);
        immutable_field(&self.note, &old.note, "message", errs);
        immutable_field(
            &self.deprecated_source,
            &old.deprecated_source,
            "source",
            errs,
        );
        immutable_field(
            &self.deprecated_first_timestamp,
            &old.deprecated_first_timestamp,
            "firstTimestamp",
            errs,
        );
        immutable_field(
            &self.deprecated_last_timestamp,
            &old.deprecated_last_timestamp,
            "lastTimestamp",
            errs,
        );
        immutable_field(&self.deprecated_count, &old.deprecated_count, "count", errs);
        immutable_field(&self.type_, &old.type_, "type", errs);
        let micros = |e: &Event| e.event_time.as_ref().map(|t| t.0.as_microsecond());
        if micros(self) != micros(old) {
            immutable_field(&self.event_time, &old.event_time, "eventTime", errs);
        }
        immutable_field(&self.action, &old.action, "action", errs);
        immutable_field(&self.related, &old.related, "related", errs);
        immutable_field(
            &self.reporting_controller,
            &old.reporting_controller,
            "reportingController",
            errs,
        );
        immutable_field(
            &self.reporting_instance,
            &old.reporting_instance,
            "reportingInstance",
            errs,
        );
    }

    /// The core Event printer: upstream prints both versions from the same internal type.
    fn columns() -> &'static [Column] {
        <k8s_openapi::api::core::v1::Event as KindHooks>::columns()
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        match as_core_event(self) {
            Some(core) => core.row(ctx),
            None => crate::table::default_row(&self.metadata),
        }
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let regarding = self.regarding.clone().unwrap_or_default();
        let r = |v: Option<String>| Some(v.unwrap_or_default());
        match field {
            "regarding.kind" => r(regarding.kind),
            "regarding.namespace" => r(regarding.namespace),
            "regarding.name" => r(regarding.name),
            "regarding.uid" => r(regarding.uid),
            "regarding.apiVersion" => r(regarding.api_version),
            "regarding.resourceVersion" => r(regarding.resource_version),
            "regarding.fieldPath" => r(regarding.field_path),
            "reason" => r(self.reason.clone()),
            "reportingController" => r(self.reporting_controller.clone()),
            "type" => r(self.type_.clone()),
            "source" => {
                let component = self
                    .deprecated_source
                    .as_ref()
                    .and_then(|s| s.component.clone())
                    .unwrap_or_default();
                if component.is_empty() {
                    r(self.reporting_controller.clone())
                } else {
                    Some(component)
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update};
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2024-01-01T00:59:00.000000Z",
            "reportingController": "capstan.io/scheduler",
            "reportingInstance": "server-1",
            "action": "Binding",
            "reason": "Scheduled",
            "type": "Normal",
            "note": "Successfully assigned default/web to node-1",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"}
        })
    }

    #[test]
    fn new_style_events_pass_strict_validation() {
        let e = create::<Event>(event());
        assert_eq!(e["deprecatedSource"], json!({}));
        assert!(errors::<Event>(&e).is_empty(), "{:?}", errors::<Event>(&e));
    }

    #[test]
    fn events_k8s_io_requires_event_time_and_new_fields() {
        let e = create::<Event>(json!({
            "metadata": {"name": "e", "namespace": "default"},
            "type": "Info",
            "deprecatedCount": 3,
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"}
        }));
        assert_eq!(
            errors::<Event>(&e),
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Info",
                "count: Invalid value: \"\": needs to be unset",
            ]
        );
    }

    #[test]
    fn events_k8s_io_events_keep_their_facts_on_update() {
        let old = create::<Event>(event());
        let mut new = event();
        new["note"] = json!("changed");
        new["series"] = json!({"count": 2, "lastObservedTime": "2024-01-01T00:59:30.000000Z"});
        let (_, errs) = update::<Event>(new, &old);
        assert_eq!(
            errs,
            vec!["message: Invalid value: \"changed\": field is immutable"]
        );
    }

    #[test]
    fn events_k8s_io_selects_on_its_own_field_names() {
        let e = create::<Event>(event());
        let s: &dyn crate::Strategy = &crate::strategy::Typed::<Event>::NEW;
        assert!(s.field_selectors().contains(&"regarding.name"));
        assert!(!s.field_selectors().contains(&"involvedObject.name"));
        assert_eq!(s.field_value(&e, "regarding.name").as_deref(), Some("web"));
        assert_eq!(
            s.field_value(&e, "source").as_deref(),
            Some("capstan.io/scheduler")
        );
        assert_eq!(
            s.field_value(&e, "reportingController").as_deref(),
            Some("capstan.io/scheduler")
        );
    }

    #[test]
    fn events_k8s_io_events_print_with_the_core_event_columns() {
        let e = create::<Event>(event());
        let core_columns = <k8s_openapi::api::core::v1::Event as KindHooks>::columns();
        assert_eq!(<Event as KindHooks>::columns(), core_columns);
        let cells = row::<Event>(&e);
        assert_eq!(cells.len(), core_columns.len());
        assert!(cells.contains(&json!("pod/web")), "{cells:?}");
        assert!(cells.contains(&json!("Scheduled")), "{cells:?}");
    }
}
