//! NodeResourcesFit and NodeResourcesBalancedAllocation: a pod fits a node when its requests
//! fit in allocatable minus what the node's pods already request, the pod count included
//! (filter); emptier nodes score higher (LeastAllocated) and so do nodes whose CPU and memory
//! use stay in proportion (BalancedAllocation). Both scores spread load.

use std::borrow::Cow;

use super::{Code, Plugin, Rejection, MAX_NODE_SCORE};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream's `fitsRequest`: every insufficient resource is a reason of its own.
pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    let alloc = node.allocatable();
    let used = &node.requested;
    let want = &pod.requests;
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    if node.pods.len() as i64 + 1 > alloc.pods {
        reasons.push("Too many pods".into());
    }
    if !want.is_zero() {
        if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > alloc.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0
            && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, v) in &want.scalar {
            if *v > 0 && *v > alloc.scalar(name) - used.scalar(name) {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
    }
    (!reasons.is_empty()).then_some(Rejection {
        plugin: Plugin::NodeResourcesFit,
        code: Code::Unschedulable,
        reasons,
    })
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// LeastAllocated over CPU and memory (weight 1 each), counting containers without requests
/// at the scoring defaults (100m CPU, 200Mi memory).
pub fn least_allocated_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = node.allocatable();
    let mut sum = 0;
    let mut weights = 0;
    for (requested, capacity) in [
        (node.non_zero_cpu + pod.non_zero_cpu, alloc.milli_cpu),
        (node.non_zero_memory + pod.non_zero_memory, alloc.memory),
    ] {
        if capacity == 0 {
            continue;
        }
        sum += least_requested(requested, capacity);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        sum / weights
    }
}

/// Whether BalancedAllocation scores this pod: best-effort pods (no CPU or memory requests)
/// are skipped, so that they do not all pile onto one node.
pub fn balanced_applies(pod: &PodInfo) -> bool {
    pod.requests.milli_cpu != 0 || pod.requests.memory != 0
}

/// BalancedAllocation: `(1 - std) * 100` over the CPU and memory fractions the node would
/// have with the pod (actual requests; fractions capped at 1).
pub fn balanced_allocation_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = node.allocatable();
    let mut fractions = [0f64; 2];
    let mut n = 0;
    for (requested, capacity) in [
        (
            node.requested.milli_cpu + pod.requests.milli_cpu,
            alloc.milli_cpu,
        ),
        (node.requested.memory + pod.requests.memory, alloc.memory),
    ] {
        if capacity == 0 {
            continue;
        }
        fractions[n] = (requested as f64 / capacity as f64).min(1.0);
        n += 1;
    }
    let std = if n == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use crate::resources::Resources;
    use serde_json::json;
    use std::sync::Arc;

    fn node(cpu_milli: i64, memory: i64, pods: i64) -> NodeInfo {
        let props = NodeProps {
            allocatable: Resources {
                milli_cpu: cpu_milli,
                memory,
                pods,
                ..Default::default()
            },
            ..Default::default()
        };
        NodeInfo::with_props("n", props)
    }

    fn requesting(name: &str, cpu: &str, memory: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
        ]}}))
    }

    #[test]
    fn a_pod_too_big_for_what_is_left_is_rejected_per_resource() {
        let mut n = node(2000, 4 << 30, 110);
        n.add_pod(Arc::new(requesting("a", "1500m", "1Gi")));
        let r = filter(&requesting("b", "1", "4Gi"), &n).expect("rejected");
        assert_eq!(r.code, Code::Unschedulable);
        assert_eq!(r.reasons, vec!["Insufficient cpu", "Insufficient memory"]);
        assert!(filter(&requesting("c", "500m", "1Gi"), &n).is_none());
    }

    #[test]
    fn the_pod_count_is_a_resource_too() {
        let mut n = node(2000, 1 << 30, 1);
        n.add_pod(Arc::new(pod(
            json!({"metadata": {"name": "a"}, "spec": {}}),
        )));
        let r = filter(&pod(json!({"metadata": {"name": "b"}, "spec": {}})), &n).expect("rejected");
        assert_eq!(r.reasons, vec!["Too many pods"]);
    }

    #[test]
    fn extended_resources_must_be_allocatable() {
        let n = node(2000, 1 << 30, 110);
        let p = pod(json!({"metadata": {"name": "g"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"example.com/gpu": "1"}}}
        ]}}));
        assert_eq!(
            filter(&p, &n).expect("rejected").reasons,
            vec!["Insufficient example.com/gpu"]
        );
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let empty = node(4000, 8 << 30, 110);
        let mut busy = node(4000, 8 << 30, 110);
        busy.add_pod(Arc::new(requesting("a", "2", "4Gi")));
        let p = requesting("p", "1", "2Gi");
        // (3/4*100 + 3/4*100)/2 = 75 and (1/4*100 + 1/4*100)/2 = 25
        assert_eq!(least_allocated_score(&p, &empty), 75);
        assert_eq!(least_allocated_score(&p, &busy), 25);
    }

    #[test]
    fn balanced_allocation_prefers_proportional_use_and_skips_best_effort_pods() {
        let n = node(4000, 8 << 30, 110);
        // cpu 1/4, memory 1/4: perfectly balanced.
        assert_eq!(
            balanced_allocation_score(&requesting("p", "1", "2Gi"), &n),
            100
        );
        // cpu 1/2, memory 0: std 0.25.
        assert_eq!(
            balanced_allocation_score(&requesting("p", "2", "0"), &n),
            75
        );
        assert!(!balanced_applies(&pod(
            json!({"metadata": {"name": "b"}, "spec": {}})
        )));
    }
}
