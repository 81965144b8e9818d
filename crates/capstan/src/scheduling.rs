//! How the binary starts the in-process scheduler (capstan-scheduler) and where its metrics go:
//! appended to the server's `/metrics`.

use std::sync::{Arc, OnceLock};

use capstan_apiserver::components::{self, ComponentHealth};

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

/// Starts the scheduler on the current runtime; it stops when `shutdown` flips. Its health
/// (whether its loop still runs) is reported in `componentstatuses`.
pub fn start(
    client: kube::Client,
    shutdown: tokio::sync::watch::Receiver<bool>,
    health: &ComponentHealth,
) {
    match capstan_scheduler::start(client, capstan_scheduler::Config::default(), shutdown) {
        Ok(s) => {
            if METRICS.set(s.metrics.clone()).is_ok() {
                capstan_apiserver::metrics::add_exposition(render);
            }
            // The probe owns the handle; dropping it detaches the loop's thread, which ends
            // on shutdown.
            health.register(
                components::SCHEDULER,
                Arc::new(move || {
                    if s.is_running() {
                        Ok(())
                    } else {
                        Err("the scheduling loop has stopped".into())
                    }
                }),
            );
        }
        Err(e) => tracing::error!(error = %e, "the scheduler did not start"),
    }
}
