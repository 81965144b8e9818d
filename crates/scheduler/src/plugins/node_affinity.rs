//! NodeAffinity: `spec.nodeSelector` and required node affinity decide where a pod may go
//! (filter; terms pinning `metadata.name` narrow the nodes before filtering, as a DaemonSet's
//! pods do); preferred node affinity terms add their weights to a node's score.

use std::collections::BTreeSet;

use super::{default_normalize, Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use capstan_api::selector::Op;

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

/// The outcome of the pre-filter.
#[derive(Debug, PartialEq, Eq)]
pub enum PreFilter {
    /// Every node is a candidate.
    AllNodes,
    /// Only these nodes can match (each term pins `metadata.name In (...)`).
    Only(BTreeSet<String>),
    /// The terms contradict each other: no node can match.
    Conflict,
}

/// Upstream's NodeAffinity PreFilter: when every required term pins node names, only the union
/// of those names can match.
pub fn pre_filter(pod: &PodInfo) -> PreFilter {
    let Some(req) = pod.required_node_affinity.as_ref() else {
        return PreFilter::AllNodes;
    };
    let mut names: Option<BTreeSet<String>> = None;
    for term in &req.terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for f in term.fields() {
            if f.key != "metadata.name" || f.op != Op::In {
                continue;
            }
            let s: BTreeSet<String> = f.values.iter().cloned().collect();
            term_names = Some(match term_names {
                None => s,
                Some(t) => t.intersection(&s).cloned().collect(),
            });
        }
        let Some(t) = term_names else {
            return PreFilter::AllNodes;
        };
        names.get_or_insert_with(BTreeSet::new).extend(t);
    }
    match names {
        Some(n) if n.is_empty() => PreFilter::Conflict,
        Some(n) => PreFilter::Only(n),
        None => PreFilter::AllNodes,
    }
}

/// Whether the node satisfies the pod's nodeSelector and required node affinity.
pub fn matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let labels = node.labels();
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    pod.required_node_affinity
        .as_ref()
        .is_none_or(|a| a.matches(&node.name, labels))
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    (!matches(pod, node)).then(|| Rejection::unresolvable(Plugin::NodeAffinity, ERR_REASON_POD))
}

/// Whether scoring has anything to do for this pod.
pub fn has_preferences(pod: &PodInfo) -> bool {
    pod.preferred_node_affinity.iter().any(|(w, _)| *w != 0)
}

/// The sum of the weights of the preferred terms the node matches.
pub fn raw_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|(_, t)| t.matches(&node.name, node.labels()))
        .map(|(w, _)| *w as i64)
        .sum()
}

pub fn normalize(scores: &mut [i64]) {
    default_normalize(scores, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        let props = NodeProps {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        NodeInfo::with_props(name, props)
    }

    #[test]
    fn node_selector_and_required_affinity_must_both_match() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
            ]}}}
        }}));
        assert!(filter(&p, &node("n", &[("disk", "ssd"), ("zone", "a")])).is_none());
        let r = filter(&p, &node("n", &[("disk", "hdd"), ("zone", "a")])).expect("rejected");
        assert_eq!(r.reasons, vec![ERR_REASON_POD]);
        assert!(filter(&p, &node("n", &[("disk", "ssd"), ("zone", "c")])).is_some());
    }

    #[test]
    fn terms_pinning_node_names_narrow_the_candidates() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]}}}}}),
        );
        assert_eq!(
            pre_filter(&p),
            PreFilter::Only(["n1".to_string()].into_iter().collect())
        );
        let conflict = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1"]},
                    {"key": "metadata.name", "operator": "In", "values": ["n2"]}
                ]}
            ]}}}}}),
        );
        assert_eq!(pre_filter(&conflict), PreFilter::Conflict);
        assert_eq!(
            pre_filter(&pod(json!({"metadata": {"name": "p"}, "spec": {}}))),
            PreFilter::AllNodes
        );
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}
            ]}}}}),
        );
        let nodes = [
            node("a", &[("zone", "a")]),
            node("b", &[("zone", "a"), ("disk", "ssd")]),
            node("c", &[]),
        ];
        let mut s: Vec<i64> = nodes.iter().map(|n| raw_score(&p, n)).collect();
        assert_eq!(s, vec![10, 40, 0]);
        normalize(&mut s);
        assert_eq!(s, vec![25, 100, 0]);
    }
}
