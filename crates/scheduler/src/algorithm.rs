//! One scheduling decision, upstream's `schedulePod`: pre-filter (cluster-wide state, computed
//! once), filter nodes starting where the last cycle stopped until enough feasible ones are
//! found, score those with the weighted score plugins, and pick the best (ties at random).
//! Pure: reads the [`Cache`], changes nothing.

use std::sync::Arc;

use rand::Rng;

use crate::cache::Cache;
use crate::diagnosis::Diagnosis;
use crate::nodeinfo::NodeInfo;
use crate::plugins::{
    inter_pod_affinity, node_affinity, node_name, node_ports, node_resources, node_unschedulable,
    pod_topology_spread, taint_toleration, volume_binding, Plugin, Rejection,
};
use crate::podinfo::PodInfo;

/// Score the fewest nodes at least this many (upstream's `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// ...and at least this percentage of them.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Weights of the score plugins in upstream's default profile.
const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_NODE_RESOURCES_FIT: i64 = 1;
const WEIGHT_POD_TOPOLOGY_SPREAD: i64 = 2;
const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

/// The message upstream gives when no node exists at all.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// A successful decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: Arc<str>,
    pub evaluated: usize,
    pub feasible: usize,
}

#[derive(Debug)]
pub enum Failure {
    /// The cluster has no nodes.
    NoNodes,
    /// No node passed the filters; the diagnosis says why, per node.
    Fit(Diagnosis),
}

/// Upstream's `numFeasibleNodesToFind`: all nodes in small clusters; in big ones an adaptive
/// share (50% minus 1% per 125 nodes, at least 5%) unless `percentage` is set.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, num_nodes: usize) -> usize {
    if num_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_nodes;
    }
    let pct = match percentage {
        Some(p) if p > 0 => (p as usize).min(100),
        _ => (50usize.saturating_sub(num_nodes / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE),
    };
    (num_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The pre-filter state of one cycle.
pub struct Cycle<'a> {
    pub pod: &'a PodInfo,
    affinity: Option<inter_pod_affinity::FilterState<'a>>,
    spread: Option<pod_topology_spread::FilterState<'a>>,
    volumes: Option<volume_binding::State<'a>>,
    objects: &'a volume_binding::Objects,
}

impl<'a> Cycle<'a> {
    /// Computes the cluster-wide pre-filter state over `all_nodes`. (Volume binding's
    /// pre-filter rejections are found earlier, in [`schedule_pod`].)
    pub fn new(pod: &'a PodInfo, all_nodes: &[&'a NodeInfo], cache: &'a Cache) -> Self {
        Self {
            volumes: volume_binding::pre_filter(pod, cache.volumes()).and_then(Result::ok),
            objects: cache.volumes(),
            pod,
            affinity: inter_pod_affinity::pre_filter(
                pod,
                all_nodes,
                cache.namespaces(),
                cache.hostnames_unique(),
            ),
            spread: pod_topology_spread::pre_filter(pod, all_nodes, Some(cache.spread_index())),
        }
    }

    /// Runs the filter plugins in upstream's order; the first rejection wins.
    pub fn filter(&self, node: &NodeInfo) -> Option<Rejection> {
        let pod = self.pod;
        node_unschedulable::filter(pod, node)
            .or_else(|| node_name::filter(pod, node))
            .or_else(|| taint_toleration::filter(pod, node))
            .or_else(|| node_affinity::filter(pod, node))
            .or_else(|| node_ports::filter(pod, node))
            .or_else(|| node_resources::filter(pod, node))
            .or_else(|| pod_topology_spread::filter(self.spread.as_ref(), pod, node))
            .or_else(|| inter_pod_affinity::filter(self.affinity.as_ref(), pod, node))
            .or_else(|| volume_binding::filter(self.volumes.as_ref(), self.objects, node))
    }
}

/// Weighted total scores of `feasible` for `pod`.
pub fn score_nodes(
    pod: &PodInfo,
    feasible: &[&NodeInfo],
    all_nodes: &[&NodeInfo],
    cache: &Cache,
) -> Vec<i64> {
    let mut total = vec![0i64; feasible.len()];
    let mut add = |scores: &[i64], weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += s * weight;
        }
    };
    let per_node =
        |f: &dyn Fn(&NodeInfo) -> i64| -> Vec<i64> { feasible.iter().map(|n| f(n)).collect() };

    add(
        &per_node(&|n| node_resources::least_allocated_score(pod, n)),
        WEIGHT_NODE_RESOURCES_FIT,
    );
    if node_resources::balanced_applies(pod) {
        add(
            &per_node(&|n| node_resources::balanced_allocation_score(pod, n)),
            WEIGHT_BALANCED_ALLOCATION,
        );
    }
    let mut taints = per_node(&|n| taint_toleration::raw_score(pod, n));
    taint_toleration::normalize(&mut taints);
    add(&taints, WEIGHT_TAINT_TOLERATION);
    if node_affinity::has_preferences(pod) {
        let mut s = per_node(&|n| node_affinity::raw_score(pod, n));
        node_affinity::normalize(&mut s);
        add(&s, WEIGHT_NODE_AFFINITY);
    }
    let defaults = if pod.spread.is_empty() {
        cache.workloads().default_selector(pod)
    } else {
        None
    };
    if let Some(state) = pod_topology_spread::pre_score(
        pod,
        feasible,
        all_nodes,
        defaults,
        Some(cache.spread_index()),
    ) {
        let mut s = per_node(&|n| pod_topology_spread::raw_score(&state, pod, n));
        pod_topology_spread::normalize(&state, feasible, &mut s);
        add(&s, WEIGHT_POD_TOPOLOGY_SPREAD);
    }
    if let Some(state) = inter_pod_affinity::pre_score(pod, all_nodes, cache.namespaces()) {
        let mut s = per_node(&|n| inter_pod_affinity::raw_score(&state, n));
        inter_pod_affinity::normalize(&mut s);
        add(&s, WEIGHT_INTER_POD_AFFINITY);
    }
    total
}

/// The index of the highest score; ties broken uniformly at random.
pub fn select_host(scores: &[i64], rng: &mut impl Rng) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    let mut ties = 0u32;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            Some((_, b)) if s < b => {}
            Some((_, b)) if s == b => {
                ties += 1;
                if rng.random_range(0..ties + 1) == 0 {
                    best = Some((i, s));
                }
            }
            _ => {
                best = Some((i, s));
                ties = 0;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Decides where `pod` goes. `next_start` rotates through the nodes between cycles so that
/// every node gets its turn to be examined.
pub fn schedule_pod(
    cache: &Cache,
    pod: &PodInfo,
    next_start: &mut usize,
    percentage: Option<u32>,
    rng: &mut impl Rng,
) -> Result<Decision, Failure> {
    let all_nodes = cache.nodes();
    if all_nodes.is_empty() {
        return Err(Failure::NoNodes);
    }
    let mut diagnosis = Diagnosis::new(all_nodes.len());
    if let Some(Err(r)) = volume_binding::pre_filter(pod, cache.volumes()) {
        diagnosis.pre_filter_rejection(r);
        return Err(Failure::Fit(diagnosis));
    }

    let candidates: Vec<&NodeInfo> = match node_affinity::pre_filter(pod) {
        node_affinity::PreFilter::AllNodes => all_nodes.clone(),
        node_affinity::PreFilter::Conflict => {
            let r =
                Rejection::unresolvable(Plugin::NodeAffinity, node_affinity::ERR_REASON_CONFLICT);
            diagnosis.pre_filter_rejection(r);
            return Err(Failure::Fit(diagnosis));
        }
        node_affinity::PreFilter::Only(names) => {
            diagnosis.absent = Some(Rejection::unresolvable(
                Plugin::NodeAffinity,
                "node(s) didn't satisfy plugin(s) [NodeAffinity]",
            ));
            diagnosis.unschedulable_plugins.insert(Plugin::NodeAffinity);
            all_nodes
                .iter()
                .copied()
                .filter(|n| names.contains(&*n.name))
                .collect()
        }
    };

    let cycle = Cycle::new(pod, &all_nodes, cache);
    let to_find = num_feasible_nodes_to_find(percentage, candidates.len());
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(to_find.min(candidates.len()));
    let start = *next_start;
    let mut processed = 0;
    for i in 0..candidates.len() {
        let node = candidates[(start + i) % candidates.len()];
        processed += 1;
        match cycle.filter(node) {
            Some(r) => diagnosis.reject(node.name.clone(), r),
            None => {
                feasible.push(node);
                if feasible.len() >= to_find {
                    break;
                }
            }
        }
    }
    *next_start = (start + processed) % all_nodes.len();

    if feasible.is_empty() {
        return Err(Failure::Fit(diagnosis));
    }
    let evaluated = processed;
    if feasible.len() == 1 {
        return Ok(Decision {
            node: feasible[0].name.clone(),
            evaluated,
            feasible: 1,
        });
    }
    let scores = score_nodes(pod, &feasible, &all_nodes, cache);
    let best = select_host(&scores, rng).unwrap_or(0);
    Ok(Decision {
        node: feasible[best].name.clone(),
        evaluated,
        feasible: feasible.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use crate::resources::Resources;
    use rand::SeedableRng;
    use serde_json::json;

    fn cluster(n: usize, cpu: i64) -> Cache {
        let mut c = Cache::new();
        for i in 0..n {
            let name = format!("n{i}");
            let labels = [("kubernetes.io/hostname".to_string(), name.clone())]
                .into_iter()
                .collect();
            c.upsert_node(
                &name,
                NodeProps {
                    labels,
                    allocatable: Resources {
                        milli_cpu: cpu,
                        memory: 8 << 30,
                        pods: 110,
                        ..Default::default()
                    },
                    ..Default::default()
                },
            );
        }
        c
    }

    fn cpu_pod(name: &str, cpu: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}
        ]}}))
    }

    #[test]
    fn the_share_of_nodes_to_score_follows_upstream() {
        assert_eq!(num_feasible_nodes_to_find(None, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(None, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(None, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(None, 20000), 1000);
        assert_eq!(num_feasible_nodes_to_find(Some(100), 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(None, 150), 100);
    }

    #[test]
    fn ties_are_broken_at_random_among_the_best() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = [0; 3];
        for _ in 0..300 {
            let i = select_host(&[5, 9, 9], &mut rng).expect("some");
            seen[i] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
    }

    #[test]
    fn pods_spread_over_emptier_nodes() {
        let mut c = cluster(3, 4000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut start = 0;
        let mut used = std::collections::BTreeSet::new();
        for i in 0..3 {
            let p = cpu_pod(&format!("p{i}"), "1");
            let d = schedule_pod(&c, &p, &mut start, None, &mut rng).expect("fits");
            used.insert(d.node.to_string());
            c.assume(&p, &d.node);
        }
        assert_eq!(
            used.len(),
            3,
            "least allocated puts each pod on an empty node"
        );
    }

    #[test]
    fn a_pod_too_big_everywhere_fails_with_one_reason_per_node() {
        let c = cluster(3, 1000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let Err(Failure::Fit(d)) = schedule_pod(&c, &cpu_pod("big", "2"), &mut 0, None, &mut rng)
        else {
            panic!("expected a fit error")
        };
        assert_eq!(
            d.message(None),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    #[test]
    fn no_nodes_is_its_own_failure() {
        let c = Cache::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(matches!(
            schedule_pod(&c, &cpu_pod("p", "1"), &mut 0, None, &mut rng),
            Err(Failure::NoNodes)
        ));
    }

    #[test]
    fn pinned_node_names_report_the_other_nodes_as_not_satisfying_node_affinity() {
        let c = cluster(3, 1000);
        let p = pod(json!({"metadata": {"name": "ds"}, "spec": {
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}}}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]}}}
        }}));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let Err(Failure::Fit(d)) = schedule_pod(&c, &p, &mut 0, None, &mut rng) else {
            panic!("expected a fit error")
        };
        assert_eq!(
            d.message(None),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn the_start_index_rotates_through_big_clusters() {
        let c = cluster(400, 4000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut start = 0;
        let d = schedule_pod(&c, &cpu_pod("p", "1"), &mut start, None, &mut rng).expect("fits");
        // 400 nodes: 50 - 3 = 47% -> 188 nodes examined.
        assert_eq!(d.feasible, 188);
        assert_eq!(start, 188);
    }
}
