//! The shared reconcile runtime: informers fill caches and queue keys, workers take keys
//! from a [`Queue`] and call a [`Reconciler`]; failures are retried with exponential backoff,
//! a requeue request comes back after its delay. Controllers are level-triggered: a reconcile
//! looks at the whole current state of its key, never at the event that queued it.

pub mod informer;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use informer::{key_of, split_key, Cache, Change, Informer};
pub use queue::Queue;

use crate::metrics::{self, Metrics};

/// A reconcile failure: logged, counted and retried with backoff.
pub type ReconcileError = Box<dyn std::error::Error + Send + Sync>;

/// One controller's reconcile function.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// The controller's name (logs, metrics, `--disable-controllers`).
    fn name(&self) -> &'static str;

    /// Brings `key` to its desired state. `Ok(Some(d))` asks to look again after `d`
    /// (timers such as minReadySeconds or progress deadlines).
    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError>;
}

/// Runs `workers` workers on `queue` until shutdown; waits for `ready` caches first.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Queue,
    workers: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let m = metrics::global();
    let labels = Metrics::labels(reconciler.name());
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let r = reconciler.clone();
        let q = queue.clone();
        let m = m.clone();
        let labels = labels.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = q.get().await {
                m.queue_depth.get_or_create(&labels).set(q.len() as i64);
                m.reconciles.get_or_create(&labels).inc();
                match r.reconcile(&key).await {
                    Ok(after) => {
                        q.forget(&key);
                        if let Some(d) = after {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        m.errors.get_or_create(&labels).inc();
                        let d = q.add_rate_limited(&key);
                        tracing::debug!(controller = r.name(), key = %key, error = %e, retry_in_ms = d.as_millis() as u64, "reconcile failed");
                    }
                }
                q.done(&key);
            }
        }));
    }
    let _ = shutdown.wait_for(|v| *v).await;
    queue.shut_down();
    for t in tasks {
        let _ = t.await;
    }
}

/// Sleeps `d`, or less if shutdown flips first (returns true then).
pub async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|v| *v) => true,
    };
    stopped || *shutdown.borrow()
}
