//! InterPodAffinity: required pod affinity and anti-affinity over a topology key (filter, with
//! the counts of matching pods per topology domain computed once per cycle), and the
//! preferred terms of both the incoming pod and the pods already placed (score).

use std::collections::HashMap;

use crate::fxhash::FxMap;

use super::{Plugin, Rejection, MAX_NODE_SCORE};
use crate::labels::Labels;
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{AffinityTerm, PodInfo, WeightedAffinityTerm, HOSTNAME_LABEL};

pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// How much an existing pod's required affinity term matching the incoming pod adds to a
/// domain's score (upstream's default `hardPodAffinityWeight`).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Namespace labels by namespace name (for namespace selectors).
pub type NamespaceLabels = HashMap<String, Labels>;

/// A (topology key, value) pair borrowed from the cycle's pods and nodes.
type Pair<'a> = (&'a str, &'a str);

/// Counts of matching pods per topology domain, computed once per cycle.
#[derive(Debug)]
pub struct FilterState<'a> {
    /// Domains where existing pods' required anti-affinity terms select the incoming pod.
    existing_anti: FxMap<Pair<'a>, i64>,
    /// Domains holding pods that match all of the incoming pod's required affinity terms.
    affinity: FxMap<Pair<'a>, i64>,
    /// Domains holding pods matched by any of the incoming pod's required anti-affinity terms.
    anti: FxMap<Pair<'a>, i64>,
    /// Hostnames are unique: anti-affinity over `kubernetes.io/hostname` (a domain of one
    /// node) is checked against the filtered node's own pods instead of being counted over
    /// the whole cluster (the common case, made cheap).
    per_host: bool,
    ns: &'a NamespaceLabels,
}

fn bump<'a>(m: &mut FxMap<Pair<'a>, i64>, node: &'a NodeInfo, key: &'a str, by: i64) {
    if let Some((k, v)) = node.labels().get_key_value(key) {
        *m.entry((k.as_str(), v.as_str())).or_insert(0) += by;
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    // The incoming pod's terms are matched without namespace labels only when they carry no
    // namespace selector; with one, the namespace's labels decide.
    !terms.is_empty() && terms.iter().all(|t| t.matches_pod(pod, None))
}

/// Upstream's PreFilter. None when nothing constrains the pod (the filter then passes).
/// `per_host`: whether hostnames are unique, so per-host terms can be checked per node.
pub fn pre_filter<'a>(
    pod: &'a PodInfo,
    nodes: &[&'a NodeInfo],
    ns: &'a NamespaceLabels,
    per_host: bool,
) -> Option<FilterState<'a>> {
    let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
    let any_existing = nodes.iter().any(|n| n.pods_with_required_anti_affinity > 0);
    if !own_terms && !any_existing {
        return None;
    }
    let mut s = FilterState {
        existing_anti: FxMap::default(),
        affinity: FxMap::default(),
        anti: FxMap::default(),
        per_host,
        ns,
    };
    let pod_ns_labels = ns.get(&pod.namespace);
    let counted = |t: &AffinityTerm| !(per_host && t.per_host);
    let own_anti_counted = pod.required_anti_affinity.iter().any(counted);
    let walk_own = !pod.required_affinity.is_empty() || own_anti_counted;
    let own_ns_selector =
        has_ns_selector(&pod.required_affinity) || has_ns_selector(&pod.required_anti_affinity);
    for &node in nodes {
        let existing_here = if per_host {
            node.pods_with_zonal_anti_affinity
        } else {
            node.pods_with_required_anti_affinity
        };
        if existing_here > 0 {
            for existing in node
                .pods
                .iter()
                .filter(|p| !p.required_anti_affinity.is_empty())
            {
                for t in existing
                    .required_anti_affinity
                    .iter()
                    .filter(|t| counted(t))
                {
                    if t.matches_pod(pod, pod_ns_labels) {
                        bump(&mut s.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
        }
        if !walk_own {
            continue;
        }
        for existing in &node.pods {
            let existing_ns = if own_ns_selector {
                ns.get(&existing.namespace)
            } else {
                None
            };
            if !pod.required_affinity.is_empty()
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| t.matches_pod(existing, existing_ns))
            {
                for t in &pod.required_affinity {
                    bump(&mut s.affinity, node, &t.topology_key, 1);
                }
            }
            for t in pod.required_anti_affinity.iter().filter(|t| counted(t)) {
                if t.matches_pod(existing, existing_ns) {
                    bump(&mut s.anti, node, &t.topology_key, 1);
                }
            }
        }
    }
    Some(s)
}

fn has_ns_selector(terms: &[AffinityTerm]) -> bool {
    terms.iter().any(|t| !t.namespace_selector.is_nothing())
}

fn satisfies_affinity(state: &FilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in &pod.required_affinity {
        match node.labels().get_key_value(&t.topology_key) {
            Some((k, v)) => {
                if state
                    .affinity
                    .get(&(k.as_str(), v.as_str()))
                    .copied()
                    .unwrap_or(0)
                    <= 0
                {
                    pods_exist = false;
                }
            }
            // Every topology key of the terms must exist on the node.
            None => return false,
        }
    }
    if pods_exist {
        return true;
    }
    // The first pod of a group with affinity to itself may go anywhere its keys exist.
    state.affinity.is_empty() && matches_all(&pod.required_affinity, pod)
}

fn satisfies_anti_affinity(state: &FilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    let has_host = node.labels().contains_key(HOSTNAME_LABEL);
    for t in &pod.required_anti_affinity {
        if state.per_host && t.per_host {
            // The domain is this node: no pod on it may match.
            let clash = has_host
                && node.pods.iter().any(|existing| {
                    let existing_ns = if t.namespace_selector.is_nothing() {
                        None
                    } else {
                        state.ns.get(&existing.namespace)
                    };
                    t.matches_pod(existing, existing_ns)
                });
            if clash {
                return false;
            }
            continue;
        }
        let occupied = node
            .labels()
            .get_key_value(&t.topology_key)
            .is_some_and(|(k, v)| {
                state
                    .anti
                    .get(&(k.as_str(), v.as_str()))
                    .copied()
                    .unwrap_or(0)
                    > 0
            });
        if occupied {
            return false;
        }
    }
    true
}

fn satisfies_existing_anti_affinity(state: &FilterState, pod: &PodInfo, node: &NodeInfo) -> bool {
    let counted_ok = state.existing_anti.is_empty()
        || node.labels().iter().all(|(k, v)| {
            state
                .existing_anti
                .get(&(k.as_str(), v.as_str()))
                .copied()
                .unwrap_or(0)
                <= 0
        });
    if !counted_ok {
        return false;
    }
    if !state.per_host
        || node.pods_with_required_anti_affinity == 0
        || !node.labels().contains_key(HOSTNAME_LABEL)
    {
        return true;
    }
    let pod_ns = state.ns.get(&pod.namespace);
    !node.pods.iter().any(|existing| {
        existing
            .required_anti_affinity
            .iter()
            .any(|t| t.per_host && t.matches_pod(pod, pod_ns))
    })
}

pub fn filter(state: Option<&FilterState>, pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    let state = state?;
    if !satisfies_affinity(state, pod, node) {
        return Some(Rejection::unresolvable(
            Plugin::InterPodAffinity,
            ERR_REASON_AFFINITY,
        ));
    }
    if !satisfies_anti_affinity(state, pod, node) {
        return Some(Rejection::unschedulable(
            Plugin::InterPodAffinity,
            ERR_REASON_ANTI_AFFINITY,
        ));
    }
    if !satisfies_existing_anti_affinity(state, pod, node) {
        return Some(Rejection::unschedulable(
            Plugin::InterPodAffinity,
            ERR_REASON_EXISTING_ANTI_AFFINITY,
        ));
    }
    None
}

/// Per-domain preference sums, computed once per cycle (upstream's PreScore).
#[derive(Debug, Default)]
pub struct ScoreState<'a> {
    topology_score: FxMap<Pair<'a>, i64>,
}

fn add_terms<'a>(
    m: &mut FxMap<Pair<'a>, i64>,
    terms: &'a [WeightedAffinityTerm],
    target: &PodInfo,
    target_ns: Option<&Labels>,
    node: &'a NodeInfo,
    sign: i64,
) {
    for w in terms {
        if w.weight != 0 && w.term.matches_pod(target, target_ns) {
            bump(m, node, &w.term.topology_key, sign * w.weight as i64);
        }
    }
}

/// Upstream's PreScore over all nodes. None when there is nothing to score (the plugin is
/// skipped for this pod).
pub fn pre_score<'a>(
    pod: &'a PodInfo,
    all_nodes: &[&'a NodeInfo],
    ns: &'a NamespaceLabels,
) -> Option<ScoreState<'a>> {
    let has_constraints =
        !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    // Without preferences of its own, only existing pods whose required affinity or
    // preferred terms can be about the incoming pod matter (required anti-affinity never
    // scores).
    if !has_constraints && all_nodes.iter().all(|n| n.pods_with_scoring_affinity == 0) {
        return None;
    }
    let pod_ns = ns.get(&pod.namespace);
    let own_ns_selector = pod
        .preferred_affinity
        .iter()
        .chain(&pod.preferred_anti_affinity)
        .any(|w| !w.term.namespace_selector.is_nothing());
    let mut m: FxMap<Pair<'a>, i64> = FxMap::default();
    for &node in all_nodes {
        if node.labels().is_empty() || (!has_constraints && node.pods_with_scoring_affinity == 0) {
            continue;
        }
        let pods = node
            .pods
            .iter()
            .filter(|p| has_constraints || p.has_scoring_affinity());
        for existing in pods {
            let existing_ns = if own_ns_selector {
                ns.get(&existing.namespace)
            } else {
                None
            };
            // The incoming pod's preferences about the existing pod.
            add_terms(
                &mut m,
                &pod.preferred_affinity,
                existing,
                existing_ns,
                node,
                1,
            );
            add_terms(
                &mut m,
                &pod.preferred_anti_affinity,
                existing,
                existing_ns,
                node,
                -1,
            );
            // The existing pod's requirements and preferences about the incoming pod.
            for t in &existing.required_affinity {
                if t.matches_pod(pod, pod_ns) {
                    bump(&mut m, node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            add_terms(&mut m, &existing.preferred_affinity, pod, pod_ns, node, 1);
            add_terms(
                &mut m,
                &existing.preferred_anti_affinity,
                pod,
                pod_ns,
                node,
                -1,
            );
        }
    }
    if m.is_empty() {
        return None;
    }
    Some(ScoreState { topology_score: m })
}

pub fn raw_score(state: &ScoreState, node: &NodeInfo) -> i64 {
    node.labels()
        .iter()
        .map(|(k, v)| {
            state
                .topology_score
                .get(&(k.as_str(), v.as_str()))
                .copied()
                .unwrap_or(0)
        })
        .sum()
}

/// Scales scores linearly between the lowest (0) and the highest (100).
pub fn normalize(scores: &mut [i64]) {
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
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

    fn node(name: &str, zone: &str) -> NodeInfo {
        let labels = [("kubernetes.io/hostname", name), ("zone", zone)]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NodeInfo::with_props(
            name,
            NodeProps {
                labels,
                ..Default::default()
            },
        )
    }

    fn app(name: &str, app: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {}}))
    }

    fn with_anti(name: &str, app: &str, key: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]
            }}}}),
        )
    }

    fn with_affinity(name: &str, app: &str, to: &str, key: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": to}}, "topologyKey": key}]
            }}}}),
        )
    }

    /// Filters every node, counting per-host terms both ways; both must agree.
    fn run(pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<Option<&'static str>> {
        let ns = NamespaceLabels::new();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let results: Vec<Vec<Option<&'static str>>> = [false, true]
            .into_iter()
            .map(|per_host| {
                let state = pre_filter(pod, &refs, &ns, per_host);
                nodes
                    .iter()
                    .map(|n| {
                        filter(state.as_ref(), pod, n).map(|r| match r.reasons[0].as_ref() {
                            ERR_REASON_AFFINITY => ERR_REASON_AFFINITY,
                            ERR_REASON_ANTI_AFFINITY => ERR_REASON_ANTI_AFFINITY,
                            _ => ERR_REASON_EXISTING_ANTI_AFFINITY,
                        })
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            results[0], results[1],
            "per-host checks agree with cluster-wide counts"
        );
        results[0].clone()
    }

    #[test]
    fn anti_affinity_keeps_replicas_apart_per_host() {
        let mut nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        nodes[0].add_pod(Arc::new(with_anti(
            "web-1",
            "web",
            "kubernetes.io/hostname",
        )));
        let r = run(&with_anti("web-2", "web", "kubernetes.io/hostname"), &nodes);
        assert_eq!(r, vec![Some(ERR_REASON_ANTI_AFFINITY), None, None]);
    }

    #[test]
    fn existing_per_host_anti_affinity_keeps_other_pods_off_that_node_only() {
        let mut nodes = [node("a", "z1"), node("b", "z1")];
        nodes[0].add_pod(Arc::new(with_anti(
            "web-1",
            "web",
            "kubernetes.io/hostname",
        )));
        assert_eq!(
            run(&app("plain", "web"), &nodes),
            vec![Some(ERR_REASON_EXISTING_ANTI_AFFINITY), None]
        );
    }

    #[test]
    fn existing_pods_anti_affinity_is_honoured_even_without_own_terms() {
        let mut nodes = [node("a", "z1"), node("b", "z2")];
        nodes[0].add_pod(Arc::new(with_anti("web-1", "web", "zone")));
        let r = run(&app("plain", "web"), &nodes);
        assert_eq!(r, vec![Some(ERR_REASON_EXISTING_ANTI_AFFINITY), None]);
        // A pod the term does not select goes anywhere.
        assert_eq!(run(&app("other", "db"), &nodes), vec![None, None]);
    }

    #[test]
    fn affinity_needs_a_matching_pod_in_the_domain_unless_it_is_the_first_of_its_group() {
        let mut nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let r = run(&with_affinity("cache", "cache", "db", "zone"), &nodes);
        assert_eq!(r, vec![Some(ERR_REASON_AFFINITY); 3]);
        nodes[0].add_pod(Arc::new(app("db-1", "db")));
        let r = run(&with_affinity("cache", "cache", "db", "zone"), &nodes);
        assert_eq!(r, vec![None, None, Some(ERR_REASON_AFFINITY)]);
        // Affinity to its own label: the first one may go anywhere.
        let empty = vec![node("a", "z1"), node("b", "z2")];
        assert_eq!(
            run(&with_affinity("w", "w", "w", "zone"), &empty),
            vec![None, None]
        );
    }

    #[test]
    fn preferred_terms_score_domains_with_matching_pods() {
        let mut nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        nodes[0].add_pod(Arc::new(app("db-1", "db")));
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}
            ]}}}}),
        );
        let ns = NamespaceLabels::new();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let state = pre_score(&p, &refs, &ns).expect("something to score");
        let mut scores: Vec<i64> = nodes.iter().map(|n| raw_score(&state, n)).collect();
        assert_eq!(scores, vec![50, 50, 0]);
        normalize(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
        assert!(pre_score(&app("q", "x"), &refs, &ns).is_none());
    }
}
