//! The proxy's Prometheus metrics (`capstan_proxy_*`), registered into the node agent's
//! registry and served on its `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub syncs: Counter,
    pub sync_failures: Counter,
    pub sync_seconds: Histogram,
    pub services_programmed: Gauge,
    pub rules_programmed: Gauge,
    pub changes_applied: Counter,
    pub stale_udp_flows_deleted: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            syncs: Counter::default(),
            sync_failures: Counter::default(),
            // 0.5 ms .. ~16 s
            sync_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            services_programmed: Gauge::default(),
            rules_programmed: Gauge::default(),
            changes_applied: Counter::default(),
            stale_udp_flows_deleted: Counter::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry` (the agent gives it the `capstan_proxy` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("syncs", "nftables transactions applied", self.syncs.clone());
        r.register(
            "sync_failures",
            "nftables transactions nft rejected (the next sync rebuilds the table)",
            self.sync_failures.clone(),
        );
        r.register(
            "sync_duration_seconds",
            "Time of one sync: rules generated, diffed and applied by nft",
            self.sync_seconds.clone(),
        );
        r.register(
            "services_programmed",
            "Services with rules in the table",
            self.services_programmed.clone(),
        );
        r.register(
            "rules_programmed",
            "Rules and map elements in the table for Services",
            self.rules_programmed.clone(),
        );
        r.register(
            "changes_applied",
            "Statements (chains, rules, elements, sets) written by syncs",
            self.changes_applied.clone(),
        );
        r.register(
            "stale_udp_flows_deleted",
            "Conntrack entries of UDP flows to removed endpoints deleted",
            self.stale_udp_flows_deleted.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn the_metrics_are_served_under_the_registry_prefix() {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("capstan_proxy");
        m.register(&mut r);
        m.syncs.inc();
        m.sync_seconds.observe(0.01);
        m.services_programmed.set(3);
        let mut out = String::new();
        encode(&mut out, &r).expect("encodes");
        assert!(out.contains("capstan_proxy_syncs_total 1"), "{out}");
        assert!(
            out.contains("capstan_proxy_sync_duration_seconds_count 1"),
            "{out}"
        );
        assert!(out.contains("capstan_proxy_services_programmed 3"), "{out}");
    }
}
