//! Per-node counts of the pods a spreading selector matches, kept up to date as pods come and
//! go, so that topology spreading sums a number per node instead of matching every pod of
//! the cluster in every cycle. One entry per (namespace, selector) recently used by a pod's
//! spread constraints (at most [`MAX_ENTRIES`], least recently used dropped); a selector seen
//! for the first time is counted once over all pods.

use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use capstan_api::selector::Selector;

/// Selectors indexed at once. Pods of one workload share a selector, so this covers many
/// workloads being scheduled at the same time.
pub const MAX_ENTRIES: usize = 16;

#[derive(Debug)]
struct Entry {
    namespace: String,
    selector: Selector,
    /// Matching pods per node slot.
    counts: Vec<u32>,
    used: u64,
}

impl Entry {
    fn matches(&self, pod: &PodInfo) -> bool {
        !pod.terminating && pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }
}

#[derive(Debug, Default)]
pub struct SpreadIndex {
    entries: Vec<Entry>,
    clock: u64,
}

impl SpreadIndex {
    /// Makes sure `(namespace, selector)` is indexed, counting it over `slots` if it is new.
    pub fn ensure(&mut self, namespace: &str, selector: &Selector, slots: &[NodeInfo]) {
        self.clock += 1;
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.namespace == namespace && e.selector == *selector)
        {
            e.used = self.clock;
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(oldest);
            }
        }
        let mut e = Entry {
            namespace: namespace.to_string(),
            selector: selector.clone(),
            counts: vec![0; slots.len()],
            used: self.clock,
        };
        for (s, node) in slots.iter().enumerate() {
            e.counts[s] = node.pods.iter().filter(|p| e.matches(p)).count() as u32;
        }
        self.entries.push(e);
    }

    /// The per-slot counts for `(namespace, selector)`, if indexed.
    pub fn counts(&self, namespace: &str, selector: &Selector) -> Option<&[u32]> {
        self.entries
            .iter()
            .find(|e| e.namespace == namespace && e.selector == *selector)
            .map(|e| e.counts.as_slice())
    }

    /// A pod joined the node in `slot`.
    pub fn added(&mut self, slot: usize, pod: &PodInfo) {
        for e in &mut self.entries {
            if e.matches(pod) {
                if e.counts.len() <= slot {
                    e.counts.resize(slot + 1, 0);
                }
                e.counts[slot] += 1;
            }
        }
    }

    /// A pod left the node in `slot`.
    pub fn removed(&mut self, slot: usize, pod: &PodInfo) {
        for e in &mut self.entries {
            if e.matches(pod) {
                if let Some(c) = e.counts.get_mut(slot) {
                    *c = c.saturating_sub(1);
                }
            }
        }
    }
}

/// The count of `node` in `counts` (nodes outside the cache count their pods directly).
pub fn count_at(counts: &[u32], node: &NodeInfo) -> Option<i64> {
    (node.slot != usize::MAX).then(|| counts.get(node.slot).copied().unwrap_or(0) as i64)
}

#[cfg(test)]
mod tests {
    use crate::cache::Cache;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    use super::count_at;

    fn web(name: &str, spread: bool) -> crate::podinfo::PodInfo {
        let mut v = json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {}});
        if spread {
            v["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
        }
        pod(v)
    }

    #[test]
    fn indexed_counts_follow_pods_added_assumed_and_removed() {
        let mut c = Cache::new();
        c.upsert_node("a", NodeProps::default());
        c.upsert_node("b", NodeProps::default());
        let mut first = web("w1", false);
        first.node_name = "a".into();
        c.add_or_update_pod(std::sync::Arc::new(first.clone()));
        let incoming = web("w2", true);
        c.prepare_spread(&incoming);
        let sel = &incoming.spread[0].selector;
        let count = |c: &Cache, n: &str| {
            count_at(
                c.spread_index().counts("default", sel).expect("indexed"),
                c.node(n).expect("node"),
            )
        };
        assert_eq!(
            (count(&c, "a"), count(&c, "b")),
            (Some(1), Some(0)),
            "counted when first indexed"
        );
        c.assume(&incoming, "b");
        assert_eq!(count(&c, "b"), Some(1));
        c.forget(&incoming.key);
        assert_eq!(count(&c, "b"), Some(0));
        let mut going = first.clone();
        going.terminating = true;
        c.add_or_update_pod(std::sync::Arc::new(going));
        assert_eq!(count(&c, "a"), Some(0), "terminating pods do not count");
        c.remove_pod(&first.key);
        assert_eq!(count(&c, "a"), Some(0));
    }
}
