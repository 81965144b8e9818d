//! Label selectors in workload specs: validation with upstream's wording
//! (`ValidateLabelSelector`) and the printers' `FormatLabelSelector`. Conversion and matching
//! are the shared [`crate::selector::Selector`]'s.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::field_error::{ErrorList, FieldError, Path};
pub(crate) use crate::selector::Selector;
use crate::validation::{label_value, qualified_name, validate_labels};

/// Whether a selector has neither matchLabels nor matchExpressions.
///
/// k8s-openapi decodes a missing selector of a kind whose selector field is required into
/// an empty one, so for those kinds "empty" stands for upstream's nil selector.
pub(crate) fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The selector as a JSON value, for error messages.
pub(crate) fn to_value(sel: &LabelSelector) -> Value {
    serde_json::to_value(sel).unwrap_or(Value::Null)
}

/// Upstream's `ValidateLabelSelector` (strict label values).
pub(crate) fn validate_label_selector(sel: &LabelSelector, path: &Path, errs: &mut ErrorList) {
    if let Some(labels) = &sel.match_labels {
        validate_labels(labels, &path.child("matchLabels"), errs);
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or(&[]);
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for msg in qualified_name(&expr.key) {
            errs.push(FieldError::invalid(p.child("key"), expr.key.as_str(), msg));
        }
        for (vi, v) in values.iter().enumerate() {
            for msg in label_value(v) {
                errs.push(FieldError::invalid(
                    p.child("values").index(vi),
                    v.as_str(),
                    msg,
                ));
            }
        }
    }
}

/// Upstream's `LabelSelectorAsSelector` on a present selector (see [`Selector::as_selector`]).
pub(crate) fn as_selector(sel: &LabelSelector) -> Result<Selector, String> {
    Selector::as_selector(sel)
}

/// Upstream's `FormatLabelSelector`: `<none>` for an empty or missing selector, `<error>`
/// for an invalid one.
pub(crate) fn format_label_selector(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "<none>".to_string();
    };
    match as_selector(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn sel(labels: &[(&str, &str)], exprs: &[(&str, &str, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            match_expressions: (!exprs.is_empty()).then(|| {
                exprs
                    .iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.to_string(),
                        operator: op.to_string(),
                        values: (!vs.is_empty())
                            .then(|| vs.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect()
            }),
        }
    }

    #[test]
    fn selectors_print_sorted_by_key_with_sorted_values() {
        let s = sel(
            &[("tier", "web"), ("app", "x")],
            &[
                ("env", "In", &["prod", "dev"]),
                ("old", "DoesNotExist", &[]),
            ],
        );
        assert_eq!(
            format_label_selector(Some(&s)),
            "app=x,env in (dev,prod),!old,tier=web"
        );
    }

    #[test]
    fn an_empty_selector_formats_as_none() {
        assert_eq!(
            format_label_selector(Some(&LabelSelector::default())),
            "<none>"
        );
        assert_eq!(format_label_selector(None), "<none>");
    }

    #[test]
    fn expressions_match_as_upstream() {
        let s = as_selector(&sel(
            &[],
            &[("env", "NotIn", &["prod"]), ("app", "Exists", &[])],
        ))
        .expect("valid");
        let l: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        assert!(s.matches(&Some(&l)));
        let l2: BTreeMap<String, String> = [
            ("app".to_string(), "x".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]
        .into();
        assert!(!s.matches(&Some(&l2)));
        assert!(!s.matches(&None::<&BTreeMap<String, String>>));
    }

    #[test]
    fn bad_operators_are_reported_and_do_not_convert() {
        let s = sel(&[], &[("app", "Is", &["x"])]);
        let mut errs = Vec::new();
        validate_label_selector(&s, &Path::new("spec.selector"), &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid selector operator"
        );
        assert!(as_selector(&s).is_err());
    }

    #[test]
    fn in_without_values_is_required() {
        let s = sel(&[], &[("app", "In", &[])]);
        let mut errs = Vec::new();
        validate_label_selector(&s, &Path::new("spec.selector"), &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
    }
}
