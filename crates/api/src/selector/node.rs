//! Node selectors (`v1.NodeSelector`, required node affinity): terms ORed, each a list of label
//! expressions (with Gt/Lt) and `metadata.name` field expressions that must all hold.

use k8s_openapi::api::core::v1::{
    NodeSelector as NodeSelectorApi, NodeSelectorRequirement,
    NodeSelectorTerm as NodeSelectorTermApi,
};

use super::{LabelLookup, Op, Requirement};

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

    pub fn matches(&self, node_name: &str, labels: &impl LabelLookup) -> bool {
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

    pub fn matches(&self, node_name: &str, labels: &impl LabelLookup) -> bool {
        self.terms.iter().any(|t| t.matches(node_name, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
