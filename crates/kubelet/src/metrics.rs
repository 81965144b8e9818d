//! The agent's Prometheus metrics, served at `/metrics` on the kubelet port.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub pods: Gauge,
    pub containers_started: Counter,
    pub status_updates: Counter,
    pub probes: Counter,
    pub sandbox_seconds: Histogram,
    pub pod_start_seconds: Histogram,
    pub pod_routes: Gauge,
    pub pod_route_changes: Counter,
    pub pod_route_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan_kubelet");
        let pods = Gauge::default();
        let containers_started = Counter::default();
        let status_updates = Counter::default();
        let probes = Counter::default();
        let sandbox_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let pod_start_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register(
            "running_pods",
            "Pods with a worker on this node",
            pods.clone(),
        );
        registry.register(
            "containers_started",
            "Containers started",
            containers_started.clone(),
        );
        registry.register(
            "pod_status_updates",
            "Pod status patches sent",
            status_updates.clone(),
        );
        registry.register("probes", "Probes run", probes.clone());
        registry.register(
            "sandbox_start_seconds",
            "RunPodSandbox latency",
            sandbox_seconds.clone(),
        );
        registry.register(
            "pod_start_seconds",
            "Pod start latency, first sync to all containers started",
            pod_start_seconds.clone(),
        );
        let pod_routes = Gauge::default();
        let pod_route_changes = Counter::default();
        let pod_route_errors = Counter::default();
        registry.register(
            "pod_routes",
            "Routes to other nodes' podCIDRs programmed on this node",
            pod_routes.clone(),
        );
        registry.register(
            "pod_route_changes",
            "Pod routes added or removed",
            pod_route_changes.clone(),
        );
        registry.register(
            "pod_route_errors",
            "Failed reads or changes of the pod routes",
            pod_route_errors.clone(),
        );
        Self {
            registry,
            pods,
            containers_started,
            status_updates,
            probes,
            sandbox_seconds,
            pod_start_seconds,
            pod_routes,
            pod_route_changes,
            pod_route_errors,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
