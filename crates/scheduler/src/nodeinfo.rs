//! [`NodeInfo`]: one node as the scheduler sees it: its labels, taints, cordon flag and
//! allocatable (parsed once per node update), plus the aggregate of the pods bound or assumed
//! on it (requested resources, used host ports, pods with affinity terms).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::labels::Labels;
use crate::podinfo::{HostPort, PodInfo, PodKey};
use crate::resources::Resources;

/// The parts of a Node that scheduling decisions read. Comparing two of them tells which kind
/// of node change happened (for requeueing pods).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeProps {
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
}

impl NodeProps {
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .map(Resources::from_list)
            .unwrap_or_default();
        Self {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: alloc,
        }
    }
}

/// A node and the pods on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: Arc<str>,
    /// Its slot in the cache (`usize::MAX` outside one).
    pub slot: usize,
    /// None while pods name this node but the Node itself is not (or no longer) known.
    pub props: Option<NodeProps>,
    /// Sum of the pods' requests, including one pod slot each.
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    /// The labels again, with their keys' hashes: per-cycle loops over all nodes look up
    /// topology keys by hash instead of comparing strings through a BTreeMap.
    hashed_labels: Vec<(u64, String, String)>,
    pub pods_with_affinity: usize,
    /// Pods whose affinity terms take part in scoring others.
    pub pods_with_scoring_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    /// Pods with a required anti-affinity term over a topology wider than one node.
    pub pods_with_zonal_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
}

/// The hash [`NodeInfo::label_hashed`] looks labels up by.
pub fn label_hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::fxhash::FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

static EMPTY_LABELS: Labels = Labels::new();
static NO_RESOURCES: Resources = Resources {
    milli_cpu: 0,
    memory: 0,
    ephemeral_storage: 0,
    pods: 0,
    scalar: Vec::new(),
};

impl NodeInfo {
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            slot: usize::MAX,
            props: None,
            requested: Resources::default(),
            non_zero_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            hashed_labels: Vec::new(),
            pods_with_affinity: 0,
            pods_with_scoring_affinity: 0,
            pods_with_required_anti_affinity: 0,
            pods_with_zonal_anti_affinity: 0,
            used_ports: Vec::new(),
        }
    }

    /// A node with these properties and no pods (tests and benchmarks).
    pub fn with_props(name: &str, props: NodeProps) -> Self {
        let mut n = Self::new(Arc::from(name));
        n.set_props(Some(props));
        n
    }

    /// Sets (or clears) the Node's properties.
    pub fn set_props(&mut self, props: Option<NodeProps>) {
        self.hashed_labels = props
            .iter()
            .flat_map(|p| p.labels.iter())
            .map(|(k, v)| (label_hash(k), k.clone(), v.clone()))
            .collect();
        self.props = props;
    }

    /// The label `key` (whose [`label_hash`] is `hash`) as (key, value).
    #[inline]
    pub fn label_hashed(&self, hash: u64, key: &str) -> Option<(&str, &str)> {
        self.hashed_labels
            .iter()
            .find(|(h, k, _)| *h == hash && k == key)
            .map(|(_, k, v)| (k.as_str(), v.as_str()))
    }

    pub fn labels(&self) -> &Labels {
        self.props
            .as_ref()
            .map(|p| &p.labels)
            .unwrap_or(&EMPTY_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        self.props
            .as_ref()
            .map(|p| p.taints.as_slice())
            .unwrap_or(&[])
    }

    pub fn allocatable(&self) -> &Resources {
        self.props
            .as_ref()
            .map(|p| &p.allocatable)
            .unwrap_or(&NO_RESOURCES)
    }

    pub fn unschedulable(&self) -> bool {
        self.props.as_ref().is_some_and(|p| p.unschedulable)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if pod.has_scoring_affinity() {
            self.pods_with_scoring_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        if pod.has_zonal_anti_affinity() {
            self.pods_with_zonal_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `key`; returns it if it was here.
    pub fn remove_pod(&mut self, key: &PodKey) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| &p.key == key)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if pod.has_scoring_affinity() {
            self.pods_with_scoring_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if pod.has_zonal_anti_affinity() {
            self.pods_with_zonal_anti_affinity -= 1;
        }
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    #[test]
    fn adding_and_removing_pods_keeps_the_aggregates_exact() {
        let mut n = NodeInfo::new(Arc::from("n"));
        let a = Arc::new(pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [
                {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}, "ports": [{"containerPort": 80, "hostPort": 80}]}
            ]}}),
        ));
        let b = Arc::new(pod(json!({"metadata": {"name": "b"}, "spec": {}})));
        n.add_pod(a.clone());
        n.add_pod(b.clone());
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.requested.pods, 2);
        assert_eq!(n.non_zero_cpu, 1100);
        assert_eq!(n.used_ports.len(), 1);
        n.remove_pod(&a.key);
        assert_eq!(n.requested.milli_cpu, 0);
        assert_eq!(n.requested.pods, 1);
        assert!(n.used_ports.is_empty());
        assert!(n.remove_pod(&a.key).is_none());
    }
}
