//! How the binary starts the in-process scheduler (capstan-scheduler) and where its metrics go:
//! appended to the server's `/metrics`.

use std::sync::{Arc, OnceLock};

/// The in-process scheduler's metrics, once it runs.
static METRICS: OnceLock<Arc<capstan_scheduler::Metrics>> = OnceLock::new();

/// The scheduler's exposition for `/metrics` (without the closing `# EOF`).
fn render() -> String {
    let text = METRICS.get().map(|m| m.render()).unwrap_or_default();
    match text.strip_suffix("# EOF\n") {
        Some(t) => t.to_string(),
        None => text,
    }
}

/// Starts the scheduler on the current runtime; it stops when `shutdown` flips.
pub fn start(client: kube::Client, shutdown: tokio::sync::watch::Receiver<bool>) {
    match capstan_scheduler::start(client, capstan_scheduler::Config::default(), shutdown) {
        // Dropping the handle detaches the loop's thread, which ends on shutdown.
        Ok(s) => {
            if METRICS.set(s.metrics.clone()).is_ok() {
                capstan_apiserver::metrics::add_exposition(render);
            }
        }
        Err(e) => tracing::error!(error = %e, "the scheduler did not start"),
    }
}
