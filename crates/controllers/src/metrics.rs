//! `Metrics`: the controller manager's Prometheus metrics (reconciles, errors, queue depth,
//! API writes), in their own registry rendered by [`Metrics::render`] and appended to the
//! server's `/metrics` (see `capstan::components`).

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Upstream's job_controller_jobs_finished labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobFinishedLabels {
    pub completion_mode: String,
    pub result: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub controller: String,
    pub verb: String,
    pub resource: String,
}

/// Why pod GC deleted a pod (upstream's podgc reasons).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodGcLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ControllerLabels, Counter>,
    pub queue_depth: Family<ControllerLabels, Gauge>,
    pub writes: Family<WriteLabels, Counter>,
    pub leader: Gauge,
    pub jobs_finished: Family<JobFinishedLabels, Counter>,
    pub pod_gc_deleted: Family<PodGcLabels, Counter>,
    pub pod_gc_errors: Family<PodGcLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ControllerLabels, Counter>::default();
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        let writes = Family::<WriteLabels, Counter>::default();
        let leader = Gauge::default();
        let jobs_finished = Family::<JobFinishedLabels, Counter>::default();
        let pod_gc_deleted = Family::<PodGcLabels, Counter>::default();
        let pod_gc_errors = Family::<PodGcLabels, Counter>::default();
        registry.register(
            "pod_gc_collector_force_delete_pods",
            "Pods pod garbage collection deleted, by reason",
            pod_gc_deleted.clone(),
        );
        registry.register(
            "pod_gc_collector_force_delete_pod_errors",
            "Pod deletions by pod garbage collection that failed, by reason",
            pod_gc_errors.clone(),
        );
        registry.register(
            "controller_reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "controller_reconcile_errors",
            "Reconciles that failed and were requeued with backoff",
            errors.clone(),
        );
        registry.register(
            "controller_queue_depth",
            "Keys waiting in each controller's work queue",
            queue_depth.clone(),
        );
        registry.register(
            "controller_api_writes",
            "API writes controllers issued (create, update, patch, delete)",
            writes.clone(),
        );
        registry.register(
            "controller_manager_leader",
            "1 while this server holds the controller-manager Lease",
            leader.clone(),
        );
        registry.register(
            "job_controller_jobs_finished",
            "Jobs the job controller finished, by completion mode, result and reason",
            jobs_finished.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            queue_depth,
            writes,
            leader,
            jobs_finished,
            pod_gc_deleted,
            pod_gc_errors,
        }
    }

    /// Counts one API write.
    pub fn write(&self, controller: &str, verb: &str, resource: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                controller: controller.into(),
                verb: verb.into(),
                resource: resource.into(),
            })
            .inc();
    }

    pub fn labels(controller: &str) -> ControllerLabels {
        ControllerLabels {
            controller: controller.into(),
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

impl capstan_runtime::WorkerObserver for Metrics {
    fn reconciling(&self, controller: &'static str, queue_depth: usize) {
        let labels = Self::labels(controller);
        self.queue_depth
            .get_or_create(&labels)
            .set(queue_depth as i64);
        self.reconciles.get_or_create(&labels).inc();
    }

    fn failed(&self, controller: &'static str) {
        self.errors.get_or_create(&Self::labels(controller)).inc();
    }
}

/// The process-wide metrics (one controller manager per process).
pub fn global() -> Arc<Metrics> {
    static M: OnceLock<Arc<Metrics>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Metrics::new())).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_reconciles_show_up_in_the_exposition() {
        let m = global();
        m.reconciles
            .get_or_create(&Metrics::labels("replicaset"))
            .inc();
        let text = m.render();
        assert!(
            text.contains("controller_reconciles_total{controller=\"replicaset\"}"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "appendable to another exposition: {text}"
        );
    }
}
