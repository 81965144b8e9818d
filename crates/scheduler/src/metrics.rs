//! The scheduler's Prometheus metrics, named as upstream's: scheduling attempts by result and
//! their duration, end-to-end scheduling latency (first attempt to bound), the queue's depth
//! per part, and events dropped under load. They live in their own registry
//! ([`Metrics::render`] gives the text format); the binary decides where to serve it.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::queue::Depths;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// "scheduled", "unschedulable" or "error".
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// "active", "backoff", "unschedulable" or "gated".
    pub queue: &'static str,
}

pub struct Metrics {
    registry: Registry,
    attempts: Family<ResultLabels, Counter>,
    attempt_duration: Family<ResultLabels, Histogram>,
    e2e: Histogram,
    pending: Family<QueueLabels, Gauge>,
    events_dropped: Counter<u64, AtomicU64>,
    bind_failures: Counter<u64, AtomicU64>,
}

fn attempt_buckets() -> Histogram {
    // 0.1 ms .. ~3 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<ResultLabels, Counter>::default();
        let attempt_duration = Family::<ResultLabels, Histogram>::new_with_constructor(
            attempt_buckets as fn() -> Histogram,
        );
        let e2e = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let pending = Family::<QueueLabels, Gauge>::default();
        let events_dropped = Counter::default();
        let bind_failures = Counter::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Scheduling attempts by result",
            attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Duration of one scheduling decision by result (filtering and scoring)",
            attempt_duration.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "From a pod's first scheduling attempt to its successful binding",
            e2e.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Pending pods by queue",
            pending.clone(),
        );
        registry.register(
            "scheduler_events_dropped",
            "Events not recorded: a queue was full, or the spam filter or rate limit held them back",
            events_dropped.clone(),
        );
        registry.register(
            "scheduler_binding_failures",
            "Bindings the API server refused or failed",
            bind_failures.clone(),
        );
        Self {
            registry,
            attempts,
            attempt_duration,
            e2e,
            pending,
            events_dropped,
            bind_failures,
        }
    }

    pub fn attempt(&self, result: &'static str, took: Duration) {
        let l = ResultLabels { result };
        self.attempts.get_or_create(&l).inc();
        self.attempt_duration
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    pub fn bound(&self, since_first_attempt: Duration) {
        self.e2e.observe(since_first_attempt.as_secs_f64());
    }

    pub fn queue_depths(&self, d: Depths) {
        for (queue, n) in [
            ("active", d.active),
            ("backoff", d.backoff),
            ("unschedulable", d.unschedulable),
            ("gated", d.gated),
        ] {
            self.pending
                .get_or_create(&QueueLabels { queue })
                .set(n as i64);
        }
    }

    /// The dropped-events counter, for the event recorder to count into.
    pub fn events_dropped_counter(&self) -> Counter<u64, AtomicU64> {
        self.events_dropped.clone()
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn bind_failed(&self) {
        self.bind_failures.inc();
    }

    /// Attempts counted so far with `result` (tests and benchmarks).
    pub fn attempts(&self, result: &'static str) -> u64 {
        self.attempts.get_or_create(&ResultLabels { result }).get()
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_depths_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.attempt("scheduled", Duration::from_micros(300));
        m.queue_depths(Depths {
            active: 2,
            backoff: 1,
            unschedulable: 3,
            gated: 0,
        });
        let text = m.render();
        assert!(
            text.contains("scheduler_schedule_attempts_total{result=\"scheduled\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scheduler_pending_pods{queue=\"unschedulable\"} 3"),
            "{text}"
        );
        assert_eq!(m.attempts("scheduled"), 1);
    }
}
