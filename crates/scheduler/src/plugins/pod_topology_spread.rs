//! PodTopologySpread: DoNotSchedule constraints keep the skew of matching pods between
//! topology domains within maxSkew (filter, with per-domain counts computed once per cycle);
//! ScheduleAnyway constraints prefer the domains with fewer matching pods (score).

use std::collections::HashSet;

use crate::fxhash::FxMap;

use super::node_affinity;
use super::taint_toleration::first_untolerated;
use super::{Plugin, Rejection, MAX_NODE_SCORE};
use crate::nodeinfo::{label_hash, NodeInfo};
use crate::podinfo::{PodInfo, SpreadConstraint};
use crate::spread_index::{count_at, SpreadIndex};
use capstan_api::selector::Selector;

pub const ERR_REASON_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

type Pair<'a> = (&'a str, &'a str);

/// Pods on `node` in namespace `ns` selected by `selector`, terminating pods excluded (an
/// empty selector counts nothing, as upstream).
fn count_matching(node: &NodeInfo, selector: &Selector, ns: &str, index: Option<&[u32]>) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    if let Some(n) = index.and_then(|c| count_at(c, node)) {
        return n;
    }
    node.pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == ns && selector.matches(&p.labels))
        .count() as i64
}

fn has_all_keys<'a>(
    node: &NodeInfo,
    mut constraints: impl Iterator<Item = &'a SpreadConstraint>,
) -> bool {
    constraints.all(|c| node.labels().contains_key(&c.topology_key))
}

/// nodeAffinityPolicy and nodeTaintsPolicy: whether the node's domain counts at all.
fn node_included(c: &SpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if c.honor_node_affinity && !node_affinity::matches(pod, node) {
        return false;
    }
    !(c.honor_node_taints && first_untolerated(node.taints(), &pod.tolerations).is_some())
}

/// Domains stay in a list searched linearly while there are few of them (zones, regions:
/// cheaper than hashing two strings for every node), and get a hash index beyond that
/// (hostnames).
const LINEAR_DOMAINS: usize = 16;

/// Pod counts per topology domain.
#[derive(Debug, Default)]
struct DomainCounts<'a> {
    list: Vec<(Pair<'a>, i64)>,
    index: Option<FxMap<Pair<'a>, usize>>,
}

impl<'a> DomainCounts<'a> {
    fn position(&self, p: Pair<'_>) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(&p).copied(),
            None => self
                .list
                .iter()
                .position(|((k, v), _)| *v == p.1 && *k == p.0),
        }
    }

    /// The counter of `p`, created at 0.
    fn slot(&mut self, p: Pair<'a>) -> &mut i64 {
        let i = match self.position(p) {
            Some(i) => i,
            None => {
                self.list.push((p, 0));
                let i = self.list.len() - 1;
                if let Some(ix) = self.index.as_mut() {
                    ix.insert(p, i);
                } else if self.list.len() > LINEAR_DOMAINS {
                    self.index = Some(
                        self.list
                            .iter()
                            .enumerate()
                            .map(|(i, (p, _))| (*p, i))
                            .collect(),
                    );
                }
                i
            }
        };
        &mut self.list[i].1
    }

    fn get(&self, p: Pair<'_>) -> Option<i64> {
        self.position(p).map(|i| self.list[i].1)
    }
}

/// Counts of matching pods per domain for the hard constraints.
#[derive(Debug, Default)]
pub struct FilterState<'a> {
    constraints: Vec<&'a SpreadConstraint>,
    matches: DomainCounts<'a>,
    /// Per topology key: number of domains and the lowest count among them.
    domains: FxMap<&'a str, (i64, i64)>,
}

/// Upstream's PreFilter: None when the pod has no DoNotSchedule constraint.
/// `index` holds per-node counts of indexed selectors (see [`crate::spread_index`]).
pub fn pre_filter<'a>(
    pod: &'a PodInfo,
    nodes: &[&'a NodeInfo],
    index: Option<&SpreadIndex>,
) -> Option<FilterState<'a>> {
    let constraints: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| c.hard).collect();
    if constraints.is_empty() {
        return None;
    }
    let indexed: Vec<Option<&[u32]>> = constraints
        .iter()
        .map(|c| index.and_then(|i| i.counts(&pod.namespace, &c.selector)))
        .collect();
    let mut matches = DomainCounts::default();
    let hashes: Vec<u64> = constraints
        .iter()
        .map(|c| label_hash(&c.topology_key))
        .collect();
    let mut pairs: Vec<Pair<'a>> = Vec::with_capacity(constraints.len());
    for &node in nodes {
        // Each constraint's domain on this node; the node counts only if it has them all.
        pairs.clear();
        for (c, h) in constraints.iter().zip(&hashes) {
            match node.label_hashed(*h, &c.topology_key) {
                Some(p) => pairs.push(p),
                None => break,
            }
        }
        if pairs.len() < constraints.len() {
            continue;
        }
        for ((c, p), ix) in constraints.iter().zip(&pairs).zip(&indexed) {
            if !node_included(c, pod, node) {
                continue;
            }
            *matches.slot(*p) += count_matching(node, &c.selector, &pod.namespace, *ix);
        }
    }
    let mut domains: FxMap<&str, (i64, i64)> = FxMap::default();
    for ((k, _), n) in &matches.list {
        let e = domains.entry(k).or_insert((0, i64::MAX));
        e.0 += 1;
        e.1 = e.1.min(*n);
    }
    Some(FilterState {
        constraints,
        matches,
        domains,
    })
}

pub fn filter(state: Option<&FilterState>, pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    let state = state?;
    for c in &state.constraints {
        let Some((k, v)) = node.labels().get_key_value(&c.topology_key) else {
            return Some(Rejection::unresolvable(
                Plugin::PodTopologySpread,
                ERR_REASON_MISSING_LABEL,
            ));
        };
        let (num_domains, min) = state
            .domains
            .get(c.topology_key.as_str())
            .copied()
            .unwrap_or((0, 0));
        let min = if c.min_domains.is_some_and(|m| num_domains < m as i64) || num_domains == 0 {
            0
        } else {
            min
        };
        let self_match = i64::from(c.selector.matches(&pod.labels));
        let here = state.matches.get((k.as_str(), v.as_str())).unwrap_or(0);
        if here + self_match - min > c.max_skew as i64 {
            return Some(Rejection::unschedulable(
                Plugin::PodTopologySpread,
                ERR_REASON_CONSTRAINTS,
            ));
        }
    }
    None
}

/// The soft constraints upstream gives pods that have none of their own but belong to a
/// Service or a controller (`systemDefaultConstraints`).
pub fn system_default_constraints(selector: Selector) -> Vec<SpreadConstraint> {
    [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)]
        .into_iter()
        .map(|(key, max_skew)| SpreadConstraint {
            max_skew,
            topology_key: key.to_string(),
            hard: false,
            selector: selector.clone(),
            min_domains: None,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

/// Counts per domain among the feasible nodes for the soft constraints (upstream's PreScore).
#[derive(Debug, Default)]
pub struct ScoreState<'a> {
    constraints: Vec<SpreadConstraint>,
    /// Per constraint, the indexed per-node counts of its selector, if any.
    indexed: Vec<Option<&'a [u32]>>,
    counts: FxMap<Pair<'a>, i64>,
    weights: Vec<f64>,
    ignored: HashSet<&'a str>,
}

/// None when there is nothing to score: the pod has no ScheduleAnyway constraint, or it has
/// no constraints and `defaults` (the default selector of its Services and controller) is
/// None. With system defaults, nodes lacking a topology key are still scored.
pub fn pre_score<'a>(
    pod: &PodInfo,
    feasible: &[&'a NodeInfo],
    all_nodes: &[&'a NodeInfo],
    defaults: Option<Selector>,
    index: Option<&'a SpreadIndex>,
) -> Option<ScoreState<'a>> {
    let (constraints, require_all): (Vec<SpreadConstraint>, bool) = if pod.spread.is_empty() {
        (system_default_constraints(defaults?), false)
    } else {
        (
            pod.spread.iter().filter(|c| !c.hard).cloned().collect(),
            true,
        )
    };
    if constraints.is_empty() || feasible.is_empty() {
        return None;
    }
    let indexed = constraints
        .iter()
        .map(|c| index.and_then(|i| i.counts(&pod.namespace, &c.selector)))
        .collect();
    let mut s = ScoreState {
        constraints,
        indexed,
        ..Default::default()
    };
    let mut sizes = vec![0usize; s.constraints.len()];
    let mut unlabelled = vec![false; s.constraints.len()];
    for &node in feasible {
        if require_all && !has_all_keys(node, s.constraints.iter()) {
            s.ignored.insert(&node.name);
            continue;
        }
        for (i, c) in s.constraints.iter().enumerate() {
            if c.topology_key == HOSTNAME_LABEL {
                continue;
            }
            match node.labels().get_key_value(&c.topology_key) {
                Some((k, v)) if s.counts.insert((k.as_str(), v.as_str()), 0).is_none() => {
                    sizes[i] += 1
                }
                Some(_) => {}
                // Upstream counts the nodes without the key as one more (empty) domain.
                None if !unlabelled[i] => {
                    unlabelled[i] = true;
                    sizes[i] += 1;
                }
                None => {}
            }
        }
    }
    s.weights = s
        .constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.topology_key == HOSTNAME_LABEL {
                feasible.len() - s.ignored.len()
            } else {
                sizes[i]
            };
            ((size + 2) as f64).ln()
        })
        .collect();
    for &node in all_nodes {
        if require_all && !has_all_keys(node, s.constraints.iter()) {
            continue;
        }
        for (c, ix) in s.constraints.iter().zip(&s.indexed) {
            if c.topology_key == HOSTNAME_LABEL || !node_included(c, pod, node) {
                continue;
            }
            let Some((k, v)) = node.labels().get_key_value(&c.topology_key) else {
                continue;
            };
            if let Some(n) = s.counts.get_mut(&(k.as_str(), v.as_str())) {
                *n += count_matching(node, &c.selector, &pod.namespace, *ix);
            }
        }
    }
    Some(s)
}

pub fn raw_score(state: &ScoreState, pod: &PodInfo, node: &NodeInfo) -> i64 {
    if state.ignored.contains(&*node.name) {
        return 0;
    }
    let mut score = 0f64;
    for (i, c) in state.constraints.iter().enumerate() {
        let Some((k, v)) = node.labels().get_key_value(&c.topology_key) else {
            continue;
        };
        let count = if c.topology_key == HOSTNAME_LABEL {
            count_matching(node, &c.selector, &pod.namespace, state.indexed[i])
        } else {
            state
                .counts
                .get(&(k.as_str(), v.as_str()))
                .copied()
                .unwrap_or(0)
        };
        score += count as f64 * state.weights[i] + (c.max_skew - 1) as f64;
    }
    score.round() as i64
}

/// Fewer matching pods score higher; ignored nodes (missing a topology key) score 0.
pub fn normalize(state: &ScoreState, nodes: &[&NodeInfo], scores: &mut [i64]) {
    let considered = || {
        nodes
            .iter()
            .zip(scores.iter())
            .filter(|(n, _)| !state.ignored.contains(&*n.name))
            .map(|(_, s)| *s)
    };
    let min = considered().min().unwrap_or(0);
    let max = considered().max().unwrap_or(0);
    for (n, s) in nodes.iter().zip(scores.iter_mut()) {
        *s = if state.ignored.contains(&*n.name) {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels: crate::labels::Labels = [(HOSTNAME_LABEL.to_string(), name.to_string())]
            .into_iter()
            .collect();
        if let Some(z) = zone {
            labels.insert("zone".into(), z.into());
        }
        NodeInfo::with_props(
            name,
            NodeProps {
                labels,
                ..Default::default()
            },
        )
    }

    fn spread(name: &str, max_skew: i32, when: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [
                {"maxSkew": max_skew, "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}
            ]}}),
        )
    }

    #[test]
    fn the_filter_keeps_skew_within_max_skew() {
        let mut nodes = [
            node("a", Some("z1")),
            node("b", Some("z1")),
            node("c", Some("z2")),
            node("d", None),
        ];
        nodes[0].add_pod(Arc::new(spread("w1", 1, "DoNotSchedule")));
        let p = spread("w2", 1, "DoNotSchedule");
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let state = pre_filter(&p, &refs, None);
        let r: Vec<Option<String>> = nodes
            .iter()
            .map(|n| filter(state.as_ref(), &p, n).map(|r| r.reasons[0].to_string()))
            .collect();
        assert_eq!(
            r,
            vec![
                Some(ERR_REASON_CONSTRAINTS.to_string()),
                Some(ERR_REASON_CONSTRAINTS.to_string()),
                None,
                Some(ERR_REASON_MISSING_LABEL.to_string())
            ]
        );
    }

    #[test]
    fn terminating_pods_and_other_namespaces_do_not_count() {
        let mut nodes = [node("a", Some("z1")), node("c", Some("z2"))];
        let mut gone = spread("w1", 1, "DoNotSchedule");
        gone.terminating = true;
        nodes[0].add_pod(Arc::new(gone));
        nodes[0].add_pod(Arc::new(pod(json!({"metadata": {"name": "o", "namespace": "other", "labels": {"app": "web"}}, "spec": {}}))));
        let p = spread("w2", 1, "DoNotSchedule");
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let state = pre_filter(&p, &refs, None);
        assert!(nodes
            .iter()
            .all(|n| filter(state.as_ref(), &p, n).is_none()));
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let mut nodes = [
            node("a", Some("z1")),
            node("b", Some("z1")),
            node("c", Some("z2")),
            node("d", None),
        ];
        nodes[0].add_pod(Arc::new(spread("w1", 1, "ScheduleAnyway")));
        nodes[1].add_pod(Arc::new(spread("w2", 1, "ScheduleAnyway")));
        let p = spread("w3", 1, "ScheduleAnyway");
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(pre_filter(&p, &refs, None).is_none());
        let state = pre_score(&p, &refs, &refs, None, None).expect("soft constraints");
        let mut scores: Vec<i64> = nodes.iter().map(|n| raw_score(&state, &p, n)).collect();
        normalize(&state, &refs, &mut scores);
        assert_eq!(scores[3], 0, "a node without the key is ignored");
        assert!(
            scores[2] > scores[0] && scores[0] == scores[1],
            "{scores:?}"
        );
        assert_eq!(scores[2], MAX_NODE_SCORE);
    }

    #[test]
    fn pods_of_a_workload_spread_over_hosts_by_default() {
        let mut nodes = [node("a", None), node("b", None), node("c", None)];
        let replica =
            |n: &str| pod(json!({"metadata": {"name": n, "labels": {"app": "web"}}, "spec": {}}));
        nodes[0].add_pod(Arc::new(replica("w1")));
        let p = replica("w2");
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(
            pre_score(&p, &refs, &refs, None, None).is_none(),
            "no Service or controller: nothing to spread"
        );
        let sel = Selector::from_api(Some(
            &serde_json::from_value(json!({"matchLabels": {"app": "web"}})).expect("sel"),
        ));
        let state = pre_score(&p, &refs, &refs, Some(sel), None).expect("defaults");
        let mut scores: Vec<i64> = nodes.iter().map(|n| raw_score(&state, &p, n)).collect();
        normalize(&state, &refs, &mut scores);
        assert!(
            scores[0] < scores[1] && scores[1] == scores[2],
            "{scores:?}"
        );
    }
}
