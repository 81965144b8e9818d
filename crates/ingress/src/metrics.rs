//! The ingress proxy's Prometheus metrics, appended to the node agent's `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

pub struct Metrics {
    registry: Registry,
    /// Responses sent to clients, by status code.
    pub requests: Family<CodeLabels, Counter>,
    /// From sending a request upstream to its response head.
    pub upstream_seconds: Histogram,
    /// Requests retried on another endpoint after a connect error.
    pub retries: Counter,
    /// Routing table rebuilds.
    pub rebuilds: Counter,
    /// Ingresses served.
    pub ingresses: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan_ingress");
        let requests = Family::<CodeLabels, Counter>::default();
        let upstream_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let retries = Counter::default();
        let rebuilds = Counter::default();
        let ingresses = Gauge::default();
        registry.register(
            "requests",
            "Requests answered, by status code",
            requests.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Upstream latency: request sent to response head received",
            upstream_seconds.clone(),
        );
        registry.register(
            "retries",
            "Idempotent requests retried on another endpoint after a connect error",
            retries.clone(),
        );
        registry.register("table_rebuilds", "Routing table rebuilds", rebuilds.clone());
        registry.register("ingresses", "Ingresses served", ingresses.clone());
        Self {
            registry,
            requests,
            upstream_seconds,
            retries,
            rebuilds,
            ingresses,
        }
    }

    pub fn count(&self, code: u16) {
        self.requests.get_or_create(&CodeLabels { code }).inc();
    }

    /// The text exposition (without the `# EOF` line, so it can be appended to another).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out.strip_suffix("# EOF\n").unwrap_or(&out).to_string()
    }
}
