//! `Metrics`: cluster DNS's Prometheus metrics (queries by type and rcode, forwarded queries,
//! latency), in their own registry, appended to the server's `/metrics` by `capstan server`.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// The question's type (A, AAAA, SRV, ...; `other` beyond the common ones, so the label's
    /// values stay few whatever clients send).
    pub qtype: String,
    /// The response code sent (NOERROR, NXDOMAIN, SERVFAIL, ...).
    pub rcode: String,
    /// udp or tcp.
    pub proto: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// ok or error.
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub queries: Family<QueryLabels, Counter>,
    pub forwarded: Family<ForwardLabels, Counter>,
    pub latency: Histogram,
    /// Packets that could not be parsed as a DNS question.
    pub malformed: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let queries = Family::<QueryLabels, Counter>::default();
        let forwarded = Family::<ForwardLabels, Counter>::default();
        // 50 µs .. ~1.6 s: cluster answers take microseconds, forwarded ones milliseconds.
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.00005, 2.0, 16,
        ));
        let malformed = Counter::default();
        registry.register(
            "dns_requests",
            "DNS queries answered, by question type, response code and transport",
            queries.clone(),
        );
        registry.register(
            "dns_forwarded_requests",
            "DNS queries outside the cluster zone forwarded to the host's resolvers",
            forwarded.clone(),
        );
        registry.register(
            "dns_request_duration_seconds",
            "Time from a DNS query's arrival to its answer",
            latency.clone(),
        );
        registry.register(
            "dns_malformed_requests",
            "Packets that were not a DNS question (answered FORMERR or dropped)",
            malformed.clone(),
        );
        Self {
            registry,
            queries,
            forwarded,
            latency,
            malformed,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The process-wide metrics (one cluster DNS per process).
pub fn global() -> Arc<Metrics> {
    static M: OnceLock<Arc<Metrics>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Metrics::new())).clone()
}

/// `render` of the global metrics, for `capstan_apiserver::metrics::add_exposition`.
pub fn render_global() -> String {
    global().render()
}
