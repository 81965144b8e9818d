//! Compiled label selectors (`metav1.LabelSelector`) and node selectors (required node
//! affinity), matched against label maps without allocating. Compiling happens once per pod,
//! matching happens per node or per pod in every scheduling cycle.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector as NodeSelectorApi, NodeSelectorRequirement,
    NodeSelectorTerm as NodeSelectorTermApi,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// One requirement on a label (or field) value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl Requirement {
    fn matches_value(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A compiled `metav1.LabelSelector`. A missing selector selects nothing; an empty one selects
/// everything, as upstream's `LabelSelectorAsSelector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    pub fn nothing() -> Self {
        Self {
            reqs: vec![],
            nothing: true,
        }
    }

    pub fn everything() -> Self {
        Self {
            reqs: vec![],
            nothing: false,
        }
    }

    /// Compiles a label selector; an unknown operator makes it select nothing (the API server
    /// rejects those, so this only guards against bad stored data).
    pub fn from_api(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else {
            return Self::nothing();
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement {
                key: k.clone(),
                op: Op::In,
                values: vec![v.clone()],
            });
        }
        for e in sel.match_expressions.iter().flatten() {
            let op = match e.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Self::nothing(),
            };
            reqs.push(Requirement {
                key: e.key.clone(),
                op,
                values: e.values.clone().unwrap_or_default(),
            });
        }
        Self {
            reqs,
            nothing: false,
        }
    }

    /// Adds `key In (value)` (matchLabelKeys) or `key NotIn (value)` (mismatchLabelKeys).
    pub fn require(&mut self, key: &str, value: &str, equal: bool) {
        let op = if equal { Op::In } else { Op::NotIn };
        self.reqs.push(Requirement {
            key: key.to_string(),
            op,
            values: vec![value.to_string()],
        });
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels))
    }

    /// Adds `other`'s requirements (both must hold).
    pub fn extend(&mut self, other: &Selector) {
        self.nothing |= other.nothing;
        self.reqs.extend(other.reqs.iter().cloned());
    }

    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether this selects everything (no requirements at all).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }
}

/// One compiled node selector term: label expressions and `metadata.name` field expressions,
/// all of which must hold. A term with neither matches no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    exprs: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

fn node_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let values = r.values.clone().unwrap_or_default();
    let op = match r.operator.as_str() {
        "In" => Op::In,
        "NotIn" => Op::NotIn,
        "Exists" => Op::Exists,
        "DoesNotExist" => Op::DoesNotExist,
        "Gt" | "Lt" => {
            let n = values
                .first()
                .filter(|_| values.len() == 1)?
                .parse::<i64>()
                .ok()?;
            if r.operator == "Gt" {
                Op::Gt(n)
            } else {
                Op::Lt(n)
            }
        }
        _ => return None,
    };
    Some(Requirement {
        key: r.key.clone(),
        op,
        values,
    })
}

impl NodeSelectorTerm {
    pub fn from_api(t: &NodeSelectorTermApi) -> Self {
        let mut valid = true;
        let mut compile = |list: &Option<Vec<NodeSelectorRequirement>>| -> Vec<Requirement> {
            list.iter()
                .flatten()
                .filter_map(|r| {
                    let c = node_requirement(r);
                    valid &= c.is_some();
                    c
                })
                .collect()
        };
        let exprs = compile(&t.match_expressions);
        let fields = compile(&t.match_fields);
        // Only metadata.name is a supported field, with In/NotIn.
        let fields_ok = fields
            .iter()
            .all(|f| f.key == "metadata.name" && matches!(f.op, Op::In | Op::NotIn));
        Self {
            exprs,
            fields,
            valid: valid && fields_ok,
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if !self.valid || (self.exprs.is_empty() && self.fields.is_empty()) {
            return false;
        }
        self.exprs.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|f| f.matches_value(Some(node_name)))
    }

    /// The term's field requirements (only `metadata.name` is valid).
    pub fn fields(&self) -> &[Requirement] {
        &self.fields
    }
}

/// A compiled `v1.NodeSelector`: its terms are ORed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSelector {
    pub terms: Vec<NodeSelectorTerm>,
}

impl NodeSelector {
    pub fn from_api(s: &NodeSelectorApi) -> Self {
        Self {
            terms: s
                .node_selector_terms
                .iter()
                .map(NodeSelectorTerm::from_api)
                .collect(),
        }
    }

    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
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
    }

    #[test]
    fn label_selectors_combine_match_labels_and_expressions() {
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
    }

    #[test]
    fn node_selector_terms_are_ored_and_support_gt_lt_and_fields() {
        let ns: NodeSelectorApi = serde_json::from_value(json!({"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}
        ]}))
        .expect("ns");
        let s = NodeSelector::from_api(&ns);
        assert!(s.matches("n1", &labels(&[("cores", "16")])));
        assert!(!s.matches("n1", &labels(&[("cores", "8")])));
        assert!(!s.matches("n1", &labels(&[("cores", "x")])));
        assert!(s.matches("n3", &labels(&[])));
        assert_eq!(s.terms[1].fields()[0].values, vec!["n3".to_string()]);
    }

    #[test]
    fn an_empty_node_selector_term_matches_no_node() {
        let ns: NodeSelectorApi =
            serde_json::from_value(json!({"nodeSelectorTerms": [{}]})).expect("ns");
        assert!(!NodeSelector::from_api(&ns).matches("n", &labels(&[("a", "b")])));
    }
}
