//! Prometheus metrics of the API server: requests by verb, resource and code, their latency,
//! open watches, and the process's resident memory.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Expositions of in-process components (the controller manager's), appended to `/metrics`
/// so that one scrape covers the whole server.
static EXTRA: parking_lot::RwLock<Vec<fn() -> String>> = parking_lot::RwLock::new(Vec::new());

/// Adds a component's exposition (text format, without `# EOF`) to `/metrics`.
pub fn add_exposition(f: fn() -> String) {
    EXTRA.write().push(f);
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub watchers: Family<ResourceLabels, Gauge>,
    /// Open exec and attach connections relayed to kubelets (crate::pod_streams).
    pub stream_sessions: Gauge,
    rss: Gauge<i64, AtomicI64>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let watchers = Family::<ResourceLabels, Gauge>::default();
        let rss = Gauge::<i64, AtomicI64>::default();
        let stream_sessions = Gauge::default();
        registry.register(
            "apiserver_stream_sessions",
            "Open exec and attach connections relayed to kubelets",
            stream_sessions.clone(),
        );
        registry.register(
            "apiserver_request",
            "Requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches excluded)",
            latency.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Open watches by resource",
            watchers.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            rss.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            watchers,
            stream_sessions,
            rss,
        }
    }

    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                code: code.to_string(),
            })
            .inc();
        if verb != "WATCH" {
            self.latency
                .get_or_create(&LatencyLabels {
                    verb: verb.to_string(),
                    resource: resource.to_string(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.rss.set(resident_memory_bytes().unwrap_or(0));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        let extra = EXTRA.read();
        if !extra.is_empty() {
            let eof = out.ends_with("# EOF\n");
            if eof {
                out.truncate(out.len() - "# EOF\n".len());
            }
            for f in extra.iter() {
                out.push_str(&f());
            }
            if eof {
                out.push_str("# EOF\n");
            }
        }
        out
    }
}

/// Resident set size from /proc/self/statm (Linux).
pub fn resident_memory_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_requests_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.observe("GET", "pods", 200, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("apiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
