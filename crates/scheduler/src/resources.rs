//! Resource arithmetic as the scheduler sees it: a pod's effective requests (`pod_requests`,
//! upstream's `PodRequests`: containers summed, init containers as a running maximum, sidecars
//! added, overhead added) and a node's allocatable, both as a [`Resources`] vector in
//! milli-CPU and whole units.

use std::collections::BTreeMap;

use capstan_api::kinds::core::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;

/// CPU assumed for a container that requests none, for scoring only (upstream's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container that requests none, for scoring only (200 MiB, upstream's
/// `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// A vector of resources: CPU in thousandths of a core, everything else in whole units
/// (bytes for memory and storage). Extended resources (`example.com/gpu`) live in `scalar`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pod slots (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended and hugepage resources, sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Whether nothing at all is requested (upstream then only checks the pod count).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .map(|i| self.scalar[i].1)
            .unwrap_or(0)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.scalar.insert(i, (name.to_string(), 0));
                i
            }
        };
        &mut self.scalar[i].1
    }

    /// Adds `other` (a pod joining a node).
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar_mut(k) += v;
        }
    }

    /// Subtracts `other` (a pod leaving a node).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar_mut(k) -= v;
        }
    }

    /// A node's allocatable (or capacity) list.
    pub fn from_list(list: &BTreeMap<String, QuantityString>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            let Some(v) = quantity_value(name, q) else {
                continue;
            };
            match name.as_str() {
                CPU => r.milli_cpu = v,
                MEMORY => r.memory = v,
                EPHEMERAL_STORAGE => r.ephemeral_storage = v,
                PODS => r.pods = v,
                other if is_scalar_resource(other) => *r.scalar_mut(other) = v,
                _ => {}
            }
        }
        r
    }
}

/// Extended resources (`vendor.example/thing`, not `kubernetes.io/`), hugepages and
/// `attachable-volumes-*` count as scalar resources, as upstream's `IsScalarResourceName`.
pub fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/')
            && !name.starts_with("kubernetes.io/")
            && !name.starts_with("requests."))
}

/// A quantity in the unit the scheduler counts `name` in: milli-units for CPU, whole units
/// (rounded up) otherwise. Unparsable quantities count as absent (the API server validates).
pub fn quantity_value(name: &str, q: &QuantityString) -> Option<i64> {
    let parsed = Quantity::parse(&q.0).ok()?;
    let v = if name == CPU {
        parsed.milli_value()
    } else {
        parsed.value()
    };
    Some(v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// One container's requests as a map in scheduler units; with `non_zero`, missing CPU and
/// memory requests take the scoring defaults.
fn container_requests(c: &Container, non_zero: bool) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    if let Some(reqs) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        for (name, q) in reqs {
            if let Some(v) = quantity_value(name, q) {
                out.insert(name.clone(), v);
            }
        }
    }
    if non_zero {
        out.entry(CPU.to_string())
            .or_insert(DEFAULT_MILLI_CPU_REQUEST);
        out.entry(MEMORY.to_string())
            .or_insert(DEFAULT_MEMORY_REQUEST);
    }
    out
}

fn add_into(into: &mut BTreeMap<String, i64>, from: &BTreeMap<String, i64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

fn max_into(into: &mut BTreeMap<String, i64>, from: &BTreeMap<String, i64>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(0);
        if *v > *e {
            *e = *v;
        }
    }
}

/// Upstream's `PodRequests`: regular containers summed; restartable init containers (sidecars)
/// added and carried into each later init container; the largest init step wins over the sum;
/// overhead added on top.
fn pod_request_map(pod: &Pod, non_zero: bool) -> BTreeMap<String, i64> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    let mut reqs = BTreeMap::new();
    for c in &spec.containers {
        add_into(&mut reqs, &container_requests(c, non_zero));
    }
    let mut sidecars = BTreeMap::new();
    let mut init_max = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut reqs, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut tmp = own;
            add_into(&mut tmp, &sidecars);
            tmp
        };
        max_into(&mut init_max, &step);
    }
    max_into(&mut reqs, &init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        for (name, q) in overhead {
            if let Some(v) = quantity_value(name, q) {
                *reqs.entry(name.clone()).or_insert(0) += v;
            }
        }
    }
    reqs
}

fn map_to_resources(m: &BTreeMap<String, i64>) -> Resources {
    let mut r = Resources::default();
    for (name, v) in m {
        match name.as_str() {
            CPU => r.milli_cpu = *v,
            MEMORY => r.memory = *v,
            EPHEMERAL_STORAGE => r.ephemeral_storage = *v,
            other if is_scalar_resource(other) => *r.scalar_mut(other) = *v,
            _ => {}
        }
    }
    r
}

/// A pod's requests as the NodeResourcesFit filter counts them, plus one pod slot.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut r = map_to_resources(&pod_request_map(pod, false));
    r.pods = 1;
    r
}

/// A pod's CPU and memory requests with the scoring defaults for containers that set none
/// (upstream's `NonZeroRequested`).
pub fn pod_non_zero_requests(pod: &Pod) -> (i64, i64) {
    let m = pod_request_map(pod, true);
    (
        m.get(CPU).copied().unwrap_or(0),
        m.get(MEMORY).copied().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn containers_are_summed_and_init_containers_take_the_maximum() {
        let p = pod(json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "2", "memory": "3G"}}}
            ],
            "containers": [
                {"name": "c1", "resources": {"requests": {"cpu": "2", "memory": "1G"}}},
                {"name": "c2", "resources": {"requests": {"cpu": "1", "memory": "1G"}}}
            ]
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 3_000_000_000);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_steps() {
        let p = pod(json!({
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "2"}}}
            ],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]
        }));
        // max(1 + 0.5, 2 + 0.5) = 2.5
        assert_eq!(pod_requests(&p).milli_cpu, 2500);
    }

    #[test]
    fn overhead_and_extended_resources_are_counted() {
        let p = pod(json!({
            "overhead": {"cpu": "250m"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "example.com/gpu": "2"}}}]
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 350);
        assert_eq!(r.scalar("example.com/gpu"), 2);
    }

    #[test]
    fn non_zero_requests_default_missing_cpu_and_memory_per_container() {
        let p = pod(json!({"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"requests": {"cpu": "1"}}}
        ]}));
        assert_eq!(
            pod_non_zero_requests(&p),
            (1100, 2 * DEFAULT_MEMORY_REQUEST)
        );
        assert!(pod_requests(&p).milli_cpu == 1000 && pod_requests(&p).memory == 0);
    }

    #[test]
    fn node_lists_parse_with_pods_and_rounding_up() {
        let list: BTreeMap<String, QuantityString> = [
            ("cpu", "1500m"),
            ("memory", "1Gi"),
            ("pods", "110"),
            ("example.com/fpga", "4"),
            ("ephemeral-storage", "0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), QuantityString(v.to_string())))
        .collect();
        let r = Resources::from_list(&list);
        assert_eq!(
            (r.milli_cpu, r.memory, r.pods, r.ephemeral_storage),
            (1500, 1 << 30, 110, 1)
        );
        assert_eq!(r.scalar("example.com/fpga"), 4);
    }
}
