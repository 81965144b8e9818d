//! The scheduler's [`Cache`]: every node and every pod bound to (or assumed on) a node, kept
//! from the watches by the scheduling loop, which is its only writer. A pod is *assumed* on its
//! chosen node the moment the decision is made, so the next decision already sees it; the
//! watch confirms it once the binding lands, and a failed binding forgets it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::labels::Labels;
use crate::nodeinfo::{NodeInfo, NodeProps};
use crate::podinfo::{PodInfo, PodKey, HOSTNAME_LABEL};
use crate::spread_index::SpreadIndex;
use crate::workloads::Workloads;

/// What changed about a node, for requeueing pods that a plugin rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub added: bool,
    pub labels: bool,
    pub taints: bool,
    pub unschedulable: bool,
    pub allocatable: bool,
}

impl NodeChange {
    pub fn any(&self) -> bool {
        self.added || self.labels || self.taints || self.unschedulable || self.allocatable
    }
}

#[derive(Debug)]
struct PodEntry {
    slot: usize,
    assumed: bool,
}

/// Nodes (in a slab with stable slots, iterated in arrival order) and their pods.
#[derive(Default)]
pub struct Cache {
    slots: Vec<NodeInfo>,
    free: Vec<usize>,
    by_name: HashMap<Arc<str>, usize>,
    /// Slots of nodes whose Node object is known, in arrival order.
    order: Vec<usize>,
    pods: HashMap<PodKey, PodEntry>,
    namespaces: HashMap<String, Labels>,
    workloads: Workloads,
    /// How many nodes carry each `kubernetes.io/hostname` value, and how many values more
    /// than one node carries.
    hostnames: HashMap<String, usize>,
    duplicate_hostnames: usize,
    spread: SpreadIndex,
    volumes: crate::plugins::volume_binding::Objects,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(&s) = self.by_name.get(name) {
            return s;
        }
        let name: Arc<str> = Arc::from(name);
        let mut info = NodeInfo::new(name.clone());
        let s = match self.free.pop() {
            Some(s) => {
                info.slot = s;
                self.slots[s] = info;
                s
            }
            None => {
                info.slot = self.slots.len();
                self.slots.push(info);
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name, s);
        s
    }

    /// Drops a slot that has neither a Node nor pods.
    fn release_if_empty(&mut self, s: usize) {
        let n = &self.slots[s];
        if n.props.is_none() && n.pods.is_empty() {
            self.by_name.remove(&n.name);
            self.slots[s] = NodeInfo::new(Arc::from(""));
            self.free.push(s);
        }
    }

    fn count_hostname(&mut self, hostname: Option<String>, delta: isize) {
        let Some(h) = hostname else { return };
        let n = self.hostnames.entry(h.clone()).or_insert(0);
        let before = *n;
        *n = n.saturating_add_signed(delta);
        let after = *n;
        if before <= 1 && after > 1 {
            self.duplicate_hostnames += 1;
        } else if before > 1 && after <= 1 {
            self.duplicate_hostnames -= 1;
        }
        if after == 0 {
            self.hostnames.remove(&h);
        }
    }

    /// Whether every node's `kubernetes.io/hostname` is its own (so hostname topologies can
    /// be checked on one node alone).
    pub fn hostnames_unique(&self) -> bool {
        self.duplicate_hostnames == 0
    }

    /// Adds or updates a node; says what changed.
    pub fn upsert_node(&mut self, name: &str, props: NodeProps) -> NodeChange {
        let old_host = self
            .node(name)
            .and_then(|n| n.labels().get(HOSTNAME_LABEL).cloned());
        self.count_hostname(old_host, -1);
        self.count_hostname(props.labels.get(HOSTNAME_LABEL).cloned(), 1);
        let s = self.slot_for(name);
        let node = &mut self.slots[s];
        let change = match &node.props {
            None => NodeChange {
                added: true,
                ..Default::default()
            },
            Some(old) => NodeChange {
                added: false,
                labels: old.labels != props.labels,
                taints: old.taints != props.taints,
                unschedulable: old.unschedulable != props.unschedulable,
                allocatable: old.allocatable != props.allocatable,
            },
        };
        if change.added {
            self.order.push(s);
        }
        node.set_props(Some(props));
        change
    }

    /// Removes a node; its pods stay (they leave when their own deletions arrive).
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(&s) = self.by_name.get(name) else {
            return false;
        };
        let Some(old) = self.slots[s].props.clone() else {
            return false;
        };
        self.slots[s].set_props(None);
        self.count_hostname(old.labels.get(HOSTNAME_LABEL).cloned(), -1);
        self.order.retain(|&o| o != s);
        self.release_if_empty(s);
        true
    }

    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// Nodes in arrival order (the order scheduling cycles rotate through).
    pub fn nodes(&self) -> Vec<&NodeInfo> {
        self.order.iter().map(|&s| &self.slots[s]).collect()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name
            .get(name)
            .map(|&s| &self.slots[s])
            .filter(|n| n.props.is_some())
    }

    /// Adds or updates a pod bound to a node (from the watch). A pod that was assumed is now
    /// confirmed. Returns the previous version, if any.
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let old = self.remove_pod(&pod.key);
        let s = self.slot_for(&pod.node_name);
        self.slots[s].add_pod(pod.clone());
        self.spread.added(s, &pod);
        self.pods.insert(
            pod.key.clone(),
            PodEntry {
                slot: s,
                assumed: false,
            },
        );
        old
    }

    /// Removes a pod (deleted, or no longer bound). Returns it if it was here.
    pub fn remove_pod(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        let entry = self.pods.remove(key)?;
        let pod = self.slots[entry.slot].remove_pod(key);
        if let Some(p) = &pod {
            self.spread.removed(entry.slot, p);
        }
        self.release_if_empty(entry.slot);
        pod
    }

    /// Places a pod on `node` before the binding is confirmed.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) -> Arc<PodInfo> {
        let mut assumed = pod.clone();
        assumed.node_name = node.to_string();
        let assumed = Arc::new(assumed);
        self.remove_pod(&pod.key);
        let s = self.slot_for(node);
        self.slots[s].add_pod(assumed.clone());
        self.spread.added(s, &assumed);
        self.pods.insert(
            pod.key.clone(),
            PodEntry {
                slot: s,
                assumed: true,
            },
        );
        assumed
    }

    /// Undoes an assumption whose binding failed; a confirmed pod stays.
    pub fn forget(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        if self.is_assumed(key) {
            self.remove_pod(key)
        } else {
            None
        }
    }

    pub fn is_assumed(&self, key: &PodKey) -> bool {
        self.pods.get(key).is_some_and(|e| e.assumed)
    }

    pub fn contains_pod(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// Keys of all pods (for reconciling after a re-list).
    pub fn pod_keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    pub fn set_namespace(&mut self, name: &str, labels: Labels) -> bool {
        self.namespaces
            .insert(name.to_string(), labels.clone())
            .is_none_or(|old| old != labels)
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    pub fn namespaces(&self) -> &HashMap<String, Labels> {
        &self.namespaces
    }

    /// Indexes the selectors of `pod`'s spread constraints (and of the default spreading its
    /// workload gets) before a decision, so spreading reads per-node counts.
    pub fn prepare_spread(&mut self, pod: &PodInfo) {
        let mut selectors: Vec<capstan_api::selector::Selector> =
            pod.spread.iter().map(|c| c.selector.clone()).collect();
        if pod.spread.is_empty() {
            selectors.extend(self.workloads.default_selector(pod));
        }
        for sel in selectors {
            if !sel.is_empty() && !sel.is_nothing() {
                self.spread.ensure(&pod.namespace, &sel, &self.slots);
            }
        }
    }

    pub fn spread_index(&self) -> &SpreadIndex {
        &self.spread
    }

    pub fn workloads(&self) -> &Workloads {
        &self.workloads
    }

    /// Claims, volumes and classes (volume binding).
    pub fn volumes(&self) -> &crate::plugins::volume_binding::Objects {
        &self.volumes
    }

    pub fn volumes_mut(&mut self) -> &mut crate::plugins::volume_binding::Objects {
        &mut self.volumes
    }

    pub fn workloads_mut(&mut self) -> &mut Workloads {
        &mut self.workloads
    }

    /// Node names (for reconciling after a re-list).
    pub fn node_names(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|&s| self.slots[s].name.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use crate::resources::Resources;
    use serde_json::json;

    fn props(cpu: i64) -> NodeProps {
        NodeProps {
            allocatable: Resources {
                milli_cpu: cpu,
                pods: 110,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pending(name: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}
        ]}}))
    }

    #[test]
    fn an_assumed_pod_counts_until_forgotten() {
        let mut c = Cache::new();
        assert!(c.upsert_node("a", props(4000)).added);
        let p = pending("p");
        c.assume(&p, "a");
        assert!(c.is_assumed(&p.key));
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        c.forget(&p.key);
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(0));
        assert!(!c.contains_pod(&p.key));
    }

    #[test]
    fn the_watch_confirms_an_assumed_pod_and_a_late_failure_cannot_forget_it() {
        let mut c = Cache::new();
        c.upsert_node("a", props(4000));
        let p = pending("p");
        c.assume(&p, "a");
        let mut bound = p.clone();
        bound.node_name = "a".into();
        c.add_or_update_pod(Arc::new(bound));
        assert!(!c.is_assumed(&p.key));
        assert!(c.forget(&p.key).is_none());
        assert_eq!(c.node("a").map(|n| n.pods.len()), Some(1));
    }

    #[test]
    fn pods_may_arrive_before_their_node_and_outlive_it() {
        let mut c = Cache::new();
        let mut p = pending("p");
        p.node_name = "late".into();
        c.add_or_update_pod(Arc::new(p.clone()));
        assert_eq!(c.num_nodes(), 0);
        assert!(c.upsert_node("late", props(1000)).added);
        assert_eq!(c.node("late").map(|n| n.requested.milli_cpu), Some(1000));
        assert!(c.remove_node("late"));
        assert_eq!(c.num_nodes(), 0);
        c.remove_pod(&p.key);
        assert!(c.by_name.is_empty());
    }

    #[test]
    fn duplicate_hostnames_are_noticed() {
        let mut c = Cache::new();
        let host = |h: &str| NodeProps {
            labels: [(HOSTNAME_LABEL.to_string(), h.to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        c.upsert_node("a", host("a"));
        c.upsert_node("b", host("b"));
        assert!(c.hostnames_unique());
        c.upsert_node("b", host("a"));
        assert!(!c.hostnames_unique());
        c.remove_node("a");
        assert!(c.hostnames_unique());
    }

    #[test]
    fn node_updates_report_what_changed() {
        let mut c = Cache::new();
        c.upsert_node("a", props(1000));
        assert!(!c.upsert_node("a", props(1000)).any());
        let ch = c.upsert_node("a", props(2000));
        assert!(ch.allocatable && !ch.labels && !ch.added);
    }
}
