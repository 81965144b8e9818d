//! Label, field and node selectors, written once for the API server (query parameters,
//! validation, printing) and every in-process client (controllers, scheduler, node agent).
//!
//! A [`Selector`] is a list of [`Requirement`]s that must all hold, or the selector of nothing.
//! It is built from a `metav1.LabelSelector` ([`Selector::from_api`], lenient, or
//! [`Selector::as_selector`], upstream's strict `LabelSelectorAsSelector`), from a plain map
//! as ReplicationControllers and Services carry ([`Selector::from_map`]), or from the query
//! string grammar ([`Selector::parse`]). It prints as upstream's `Selector.String()`.

mod field;
mod node;
mod parse;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::validation::{label_value, qualified_name};

pub use field::{FieldRequirement, FieldSelector};
pub use node::{NodeSelector, NodeSelectorTerm};

/// Anything labels can be looked up in: owned and borrowed maps, and a missing map.
pub trait LabelLookup {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelLookup for BTreeMap<&str, &str> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).copied()
    }
}

impl LabelLookup for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: LabelLookup> LabelLookup for Option<&T> {
    fn label(&self, key: &str) -> Option<&str> {
        self.and_then(|m| m.label(key))
    }
}

/// A requirement's operator, as `labels.Requirement` and node selectors know them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// One requirement on a label (or, in node selectors, a field) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// One value for Equals/NotEquals, a set for In/NotIn, none otherwise.
    pub values: Vec<String>,
}

impl Requirement {
    pub fn new(key: impl Into<String>, op: Op, values: Vec<String>) -> Self {
        Self {
            key: key.into(),
            op,
            values,
        }
    }

    /// Whether a (possibly missing) value satisfies this requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.iter().any(|x| x == v);
        match (&self.op, value) {
            (Op::Equals | Op::In, Some(v)) => contains(v),
            (Op::Equals | Op::In, None) => false,
            (Op::NotEquals | Op::NotIn, Some(v)) => !contains(v),
            (Op::NotEquals | Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }

    pub fn matches(&self, labels: &impl LabelLookup) -> bool {
        self.matches_value(labels.label(&self.key))
    }
}

impl std::fmt::Display for Requirement {
    /// Upstream's `Requirement.String()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (k, vs) = (&self.key, self.values.join(","));
        match &self.op {
            Op::Equals => write!(f, "{k}={vs}"),
            Op::NotEquals => write!(f, "{k}!={vs}"),
            Op::In => write!(f, "{k} in ({vs})"),
            Op::NotIn => write!(f, "{k} notin ({vs})"),
            Op::Exists => write!(f, "{k}"),
            Op::DoesNotExist => write!(f, "!{k}"),
            Op::Gt(n) => write!(f, "{k}>{n}"),
            Op::Lt(n) => write!(f, "{k}<{n}"),
        }
    }
}

/// A label selector: every requirement must hold. No requirements select everything; the
/// selector of nothing (a nil `LabelSelector`, an empty RC/Service map) matches no object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    pub fn nothing() -> Self {
        Self {
            reqs: Vec::new(),
            nothing: true,
        }
    }

    pub fn everything() -> Self {
        Self::default()
    }

    pub fn from_requirements(reqs: Vec<Requirement>) -> Self {
        Self {
            reqs,
            nothing: false,
        }
    }

    /// A `metav1.LabelSelector` as clients use one: missing selects nothing, empty selects
    /// everything, and an unknown operator selects nothing (the API server refuses those, so
    /// this only guards against bad stored data).
    pub fn from_api(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else {
            return Self::nothing();
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::new(k.clone(), Op::Equals, vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let Some(op) = set_op(&e.operator) else {
                return Self::nothing();
            };
            reqs.push(Requirement::new(
                e.key.clone(),
                op,
                e.values.clone().unwrap_or_default(),
            ));
        }
        Self::from_requirements(reqs)
    }

    /// A map selector (ReplicationController, Service): nil or empty selects nothing, as
    /// upstream only turns a non-empty set into a selector.
    pub fn from_map(m: Option<&BTreeMap<String, String>>) -> Self {
        match m {
            Some(m) if !m.is_empty() => Self::from_requirements(
                m.iter()
                    .map(|(k, v)| Requirement::new(k.clone(), Op::Equals, vec![v.clone()]))
                    .collect(),
            ),
            _ => Self::nothing(),
        }
    }

    /// Upstream's `LabelSelectorAsSelector` on a present selector: requirements sorted by key
    /// with sorted unique values; an error when an operator is unknown, a value set has the
    /// wrong size, or a key or value is not a valid label.
    pub fn as_selector(sel: &LabelSelector) -> Result<Self, String> {
        let valid = |key: &str, values: &[String]| {
            qualified_name(key).is_empty() && values.iter().all(|v| label_value(v).is_empty())
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            let values = vec![v.clone()];
            if !valid(k, &values) {
                return Err(format!("invalid requirement {k}={v}"));
            }
            reqs.push(Requirement::new(k.clone(), Op::Equals, values));
        }
        for expr in sel.match_expressions.iter().flatten() {
            let op = set_op(&expr.operator).ok_or_else(|| {
                format!("{:?} is not a valid label selector operator", expr.operator)
            })?;
            let mut values: Vec<String> = expr.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            let size_ok = match op {
                Op::In | Op::NotIn => !values.is_empty(),
                _ => values.is_empty(),
            };
            if !size_ok || !valid(&expr.key, &values) {
                return Err(format!("invalid requirement on {}", expr.key));
            }
            reqs.push(Requirement::new(expr.key.clone(), op, values));
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self::from_requirements(reqs))
    }

    /// Parses the query-string form: `app=web,tier!=db,env in (a,b),!legacy,n>3`, with
    /// upstream's grammar, checks and error wording. Never panics on any input.
    pub fn parse(s: &str) -> Result<Self, String> {
        parse::parse_label_selector(s).map(Self::from_requirements)
    }

    /// Adds `key = value` (matchLabelKeys) or `key != value` (mismatchLabelKeys).
    pub fn require(&mut self, key: &str, value: &str, equal: bool) {
        let op = if equal { Op::Equals } else { Op::NotEquals };
        self.reqs
            .push(Requirement::new(key, op, vec![value.to_string()]));
    }

    /// Adds `other`'s requirements (both must hold).
    pub fn extend(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.reqs.extend(other.reqs.iter().cloned());
    }

    pub fn matches(&self, labels: &impl LabelLookup) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels))
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether this selects everything (no requirements at all).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }
}

impl std::fmt::Display for Selector {
    /// Upstream's `Selector.String()` (`a=b,c in (x,y),!d`), which is also the form a
    /// `labelSelector=` query parameter takes. The selector of nothing prints as nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The operators a `LabelSelectorRequirement` may carry.
fn set_op(op: &str) -> Option<Op> {
    Some(match op {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_missing_selector_selects_nothing_and_an_empty_one_everything() {
        assert!(!Selector::from_api(None).matches(&labels(&[])));
        let empty: LabelSelector = serde_json::from_value(json!({})).expect("sel");
        assert!(Selector::from_api(Some(&empty)).matches(&labels(&[("a", "b")])));
        assert!(Selector::from_api(Some(&empty)).matches(&None::<&BTreeMap<String, String>>));
        assert!(!Selector::from_map(None).matches(&labels(&[("a", "b")])));
        assert!(!Selector::from_map(Some(&labels(&[]))).matches(&labels(&[("a", "b")])));
        assert!(Selector::from_map(Some(&labels(&[("a", "b")])))
            .matches(&labels(&[("a", "b"), ("c", "d")])));
    }

    #[test]
    fn match_labels_and_expressions_combine() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["db"]},
                {"key": "env", "operator": "Exists"}
            ]
        }))
        .expect("sel");
        let s = Selector::from_api(Some(&sel));
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert_eq!(s.to_string(), "app=web,tier notin (db),env");
    }

    #[test]
    fn an_unknown_operator_selects_nothing_leniently_and_fails_strictly() {
        let sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Is".into(),
                values: Some(vec!["x".into()]),
            }]),
            ..Default::default()
        };
        assert!(Selector::from_api(Some(&sel)).is_nothing());
        assert!(Selector::as_selector(&sel).is_err());
    }

    #[test]
    fn strict_conversion_sorts_by_key_and_values() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"tier": "web", "app": "x"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]
        }))
        .expect("sel");
        let s = Selector::as_selector(&sel).expect("valid");
        assert_eq!(s.to_string(), "app=x,env in (dev,prod),tier=web");
    }

    #[test]
    fn require_and_extend_add_requirements() {
        let mut s = Selector::everything();
        s.require("a", "1", true);
        s.require("b", "2", false);
        assert!(s.matches(&labels(&[("a", "1"), ("b", "3")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "2")])));
        s.extend(&Selector::nothing());
        assert!(s.is_nothing());
    }

    #[test]
    fn gt_and_lt_compare_integers_and_never_match_other_values() {
        let r = Requirement::new("n", Op::Gt(3), vec![]);
        assert!(r.matches_value(Some("4")));
        assert!(!r.matches_value(Some("3")));
        assert!(!r.matches_value(Some("x")));
        assert!(!r.matches_value(None));
        assert!(Requirement::new("n", Op::Lt(3), vec![]).matches_value(Some("-1")));
    }
}
