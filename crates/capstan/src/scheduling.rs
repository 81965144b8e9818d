//! How the binary starts the in-process scheduler (capstan-scheduler) and where its metrics go.

use std::sync::{Arc, OnceLock};

/// The in-process scheduler's metrics, once it runs (rendered after the API server's own).
pub static METRICS: OnceLock<Arc<capstan_scheduler::Metrics>> = OnceLock::new();

/// Starts the scheduler on the current runtime; it stops when `shutdown` flips.
pub fn start(client: kube::Client, shutdown: tokio::sync::watch::Receiver<bool>) {
    match capstan_scheduler::start(client, capstan_scheduler::Config::default(), shutdown) {
        // Dropping the handle detaches the loop's thread, which ends on shutdown.
        Ok(s) => {
            let _ = METRICS.set(s.metrics.clone());
        }
        Err(e) => tracing::error!(error = %e, "the scheduler did not start"),
    }
}
