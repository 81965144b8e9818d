//! Why a pod fits no node: the per-node rejections of one cycle ([`Diagnosis`]) and upstream's
//! wording of them (`FitError.Error()`): "0/3 nodes are available: 1 node(s) had untolerated
//! taint {k: v}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption
//! victims found for incoming pod..". The preemption part is what upstream's DefaultPreemption
//! reports when it finds nothing to evict; capstan does not preempt yet (see
//! [`Diagnosis::preemption_message`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::Cache;
use crate::plugins::{Code, PluginSet, Rejection};
use crate::podinfo::PodInfo;

pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Nodes where evicting lower-priority pods might help: capstan does not preempt yet.
pub const NOT_IMPLEMENTED: &str = "Preemption is not supported by this scheduler yet";
pub const NOT_ELIGIBLE_NEVER: &str = "not eligible due to preemptionPolicy=Never.";

/// The outcome of filtering for a pod that fits nowhere.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    /// Nodes that were examined and rejected.
    pub rejected: Vec<(Arc<str>, Rejection)>,
    /// The status of nodes that were not examined (a pre-filter narrowed the candidates).
    pub absent: Option<Rejection>,
    /// A pre-filter rejected the pod outright.
    pub pre_filter: Option<Rejection>,
    /// Plugins that rejected the pod somewhere (decides which cluster events retry it).
    pub unschedulable_plugins: PluginSet,
}

impl Diagnosis {
    pub fn new(num_all_nodes: usize) -> Self {
        Self {
            num_all_nodes,
            rejected: Vec::new(),
            absent: None,
            pre_filter: None,
            unschedulable_plugins: PluginSet::default(),
        }
    }

    pub fn reject(&mut self, node: Arc<str>, r: Rejection) {
        self.unschedulable_plugins.insert(r.plugin);
        self.rejected.push((node, r));
    }

    pub fn pre_filter_rejection(&mut self, r: Rejection) {
        self.unschedulable_plugins.insert(r.plugin);
        self.absent = Some(r.clone());
        self.pre_filter = Some(r);
    }

    /// Reason histogram "N reason", sorted as strings (upstream sorts the formatted entries).
    fn histogram(&self) -> Vec<String> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, r) in &self.rejected {
            for reason in &r.reasons {
                *counts.entry(reason.as_ref()).or_insert(0) += 1;
            }
        }
        let absent_nodes = self.num_all_nodes.saturating_sub(self.rejected.len());
        if absent_nodes > 0 {
            for reason in self.absent.iter().flat_map(|a| a.reasons.iter()) {
                *counts.entry(reason.as_ref()).or_insert(0) += absent_nodes;
            }
        }
        let mut out: Vec<String> = counts
            .into_iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        out.sort();
        out
    }

    /// Upstream's `FitError.Error()`, with the post-filter (preemption) message appended.
    pub fn message(&self, post_filter: Option<&str>) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(pf) = &self.pre_filter {
            msg.push_str(&format!(" {}.", pf.reasons.join(", ")));
        } else {
            let h = self.histogram();
            if !h.is_empty() {
                msg.push_str(&format!(" {}.", h.join(", ")));
            }
        }
        if let Some(pf) = post_filter {
            msg.push_str(&format!(" {pf}."));
        }
        msg
    }

    /// What upstream's DefaultPreemption says when it finds no candidate. Nodes rejected with
    /// `UnschedulableAndUnresolvable` cannot be helped by evictions; nodes rejected with
    /// `Unschedulable` could only be helped by evicting lower-priority pods, and when there
    /// are none upstream reports "No preemption victims found". Where there are some, upstream
    /// would preempt; capstan says so instead of evicting.
    pub fn preemption_message(&self, pod: &PodInfo, cache: &Cache) -> String {
        if pod.preemption_never {
            return format!("preemption: {NOT_ELIGIBLE_NEVER}");
        }
        let mut d = Diagnosis::new(self.num_all_nodes);
        d.absent = Some(Rejection::unresolvable(
            crate::plugins::Plugin::NodeResourcesFit,
            NOT_HELPFUL,
        ));
        for (name, r) in &self.rejected {
            if r.code != Code::Unschedulable {
                continue;
            }
            let has_victims = cache
                .node(name)
                .is_some_and(|n| n.pods.iter().any(|p| p.priority < pod.priority));
            let reason = if has_victims {
                NOT_IMPLEMENTED
            } else {
                NO_VICTIMS
            };
            d.rejected
                .push((name.clone(), Rejection::unresolvable(r.plugin, reason)));
        }
        format!("preemption: {}", d.message(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Plugin;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn the_message_counts_reasons_and_sorts_them_as_upstream() {
        let mut d = Diagnosis::new(3);
        d.reject(
            name("a"),
            Rejection::unresolvable(
                Plugin::TaintToleration,
                "node(s) had untolerated taint {key: value}",
            ),
        );
        d.reject(
            name("b"),
            Rejection::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"),
        );
        d.reject(
            name("c"),
            Rejection::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"),
        );
        assert_eq!(
            d.message(None),
            "0/3 nodes are available: 1 node(s) had untolerated taint {key: value}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn preemption_finds_no_victims_among_equal_priority_pods() {
        let mut cache = Cache::new();
        for n in ["a", "b", "c"] {
            cache.upsert_node(n, Default::default());
        }
        let mut d = Diagnosis::new(3);
        for n in ["a", "b", "c"] {
            d.reject(
                name(n),
                Rejection::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"),
            );
        }
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        let pre = d.preemption_message(&p, &cache);
        assert_eq!(
            d.message(Some(&pre)),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn unresolvable_nodes_are_not_helped_by_preemption() {
        let cache = Cache::new();
        let mut d = Diagnosis::new(3);
        d.reject(
            name("a"),
            Rejection::unresolvable(
                Plugin::TaintToleration,
                "node(s) had untolerated taint {k: v}",
            ),
        );
        d.reject(
            name("b"),
            Rejection::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"),
        );
        d.reject(
            name("c"),
            Rejection::unschedulable(Plugin::NodeResourcesFit, "Insufficient cpu"),
        );
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(
            d.preemption_message(&p, &cache),
            "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
        let never = pod(json!({"metadata": {"name": "p"}, "spec": {"preemptionPolicy": "Never"}}));
        assert_eq!(
            d.preemption_message(&never, &cache),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn a_pre_filter_rejection_is_the_whole_message() {
        let mut d = Diagnosis::new(2);
        d.pre_filter_rejection(Rejection::unresolvable(
            Plugin::NodeAffinity,
            "pod affinity terms conflict",
        ));
        assert_eq!(
            d.message(None),
            "0/2 nodes are available: pod affinity terms conflict."
        );
    }
}
