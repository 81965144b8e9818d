//! policy/v1 PodDisruptionBudget, with upstream's validation (pkg/apis/policy/validation) and
//! printer; [`budget`], the disruption arithmetic.

pub mod budget;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::apps::selector::validate_label_selector;
use super::apps::{
    age_cell, int_or_string_text, name_cell, validate_not_more_than_100_percent,
    validate_positive_int_or_percent,
};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

const PDB_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    Column::new(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::new(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    Column::age(),
];

impl KindHooks for PodDisruptionBudget {
    fn defaults(&mut self) {
        // A non-pointer struct upstream: always serialized.
        self.spec.get_or_insert_with(Default::default);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let Some(spec) = &self.spec else { return };
        let path = Path::new("spec");
        if spec.min_available.is_some() && spec.max_unavailable.is_some() {
            errs.push(FieldError::invalid(
                &path,
                serde_json::to_value(spec).unwrap_or(Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (field, v) in [
            ("minAvailable", &spec.min_available),
            ("maxUnavailable", &spec.max_unavailable),
        ] {
            if let Some(v) = v {
                validate_positive_int_or_percent(v, &path.child(field), errs);
                validate_not_more_than_100_percent(v, &path.child(field), errs);
            }
        }
        if let Some(sel) = &spec.selector {
            validate_label_selector(sel, &path.child("selector"), errs);
        }
        if let Some(p) = spec.unhealthy_pod_eviction_policy.as_deref() {
            if p != "IfHealthyBudget" && p != "AlwaysAllow" {
                errs.push(FieldError::not_supported(
                    path.child("unhealthyPodEvictionPolicy"),
                    p,
                    &["AlwaysAllow", "IfHealthyBudget"],
                ));
            }
        }
    }

    fn columns() -> &'static [Column] {
        PDB_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let show = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
            v.map_or_else(|| "N/A".to_string(), int_or_string_text)
        };
        vec![
            name_cell(&self.metadata),
            json!(show(spec.min_available.as_ref())),
            json!(show(spec.max_unavailable.as_ref())),
            json!(self.status.as_ref().map_or(0, |s| s.disruptions_allowed)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row};
    use super::*;

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn pdbs_take_one_of_min_available_and_max_unavailable() {
        let p = create::<PodDisruptionBudget>(pdb(
            json!({"minAvailable": 1, "maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
        ));
        let errs = errors::<PodDisruptionBudget>(&p);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Invalid value: {"), "{}", errs[0]);
        assert!(
            errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn a_pdb_prints_its_budget() {
        let p = create::<PodDisruptionBudget>(pdb(
            json!({"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}}),
        ));
        assert_eq!(
            p["status"],
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
        );
        assert!(errors::<PodDisruptionBudget>(&p).is_empty());
        assert_eq!(
            row::<PodDisruptionBudget>(&p),
            vec![
                json!("web"),
                json!("N/A"),
                json!("25%"),
                json!(0),
                json!("60m")
            ]
        );
        let bad = create::<PodDisruptionBudget>(pdb(json!({"minAvailable": "150%"})));
        assert_eq!(
            errors::<PodDisruptionBudget>(&bad),
            vec!["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
    }
}
