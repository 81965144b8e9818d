//! The agent's Prometheus metrics, served at `/metrics` on the kubelet port.

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Renders another component's metrics (text exposition without `# EOF`).
type Extra = Box<dyn Fn() -> String + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    /// Components running in the agent that append their metrics (the ingress).
    extra: parking_lot::RwLock<Vec<Extra>>,
    pub pods: Gauge,
    pub containers_started: Counter,
    pub status_updates: Counter,
    pub probes: Counter,
    pub sandbox_seconds: Histogram,
    pub pod_start_seconds: Histogram,
    pub pod_routes: Gauge,
    pub pod_route_changes: Counter,
    pub pod_route_errors: Counter,
    /// Open exec and attach sessions (crate::streams).
    pub stream_sessions: Gauge,
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
        let stream_sessions = Gauge::default();
        registry.register(
            "stream_sessions",
            "Open exec and attach sessions",
            stream_sessions.clone(),
        );
        Self {
            registry,
            extra: Default::default(),
            pods,
            containers_started,
            status_updates,
            probes,
            sandbox_seconds,
            pod_start_seconds,
            pod_routes,
            pod_route_changes,
            pod_route_errors,
            stream_sessions,
        }
    }

    /// Serves another component's `registry` (its own prefix) on this `/metrics` too.
    pub fn append_registry(&self, registry: Registry) {
        self.append(move || {
            let mut out = String::new();
            let _ = encode_registry(&mut out, &registry);
            out
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode_registry(&mut out, &self.registry);
        for f in self.extra.read().iter() {
            out.push_str(&f());
        }
        let _ = encode_eof(&mut out);
        out
    }

    /// Adds another component's metrics to the exposition.
    pub fn append(&self, f: impl Fn() -> String + Send + Sync + 'static) {
        self.extra.write().push(Box::new(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_metrics_come_before_the_one_eof_line() {
        let m = Metrics::new();
        m.append(|| "# TYPE other_total counter\nother_total 1\n".to_string());
        let text = m.render();
        assert!(text.contains("capstan_kubelet_running_pods"), "{text}");
        assert!(text.ends_with("other_total 1\n# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
