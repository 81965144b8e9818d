//! Workers: informers fill caches and queue keys, workers take keys
//! from a [`Queue`] and call a [`Reconciler`]; failures are retried with exponential backoff,
//! a requeue request comes back after its delay. Controllers are level-triggered: a reconcile
//! looks at the whole current state of its key, never at the event that queued it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::queue::Queue;

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

/// What a pool of workers reports as it goes; its owner decides where it is counted.
pub trait WorkerObserver: Send + Sync + 'static {
    /// A reconcile of `controller` starts, with `queue_depth` keys still waiting.
    fn reconciling(&self, controller: &'static str, queue_depth: usize);
    /// A reconcile of `controller` failed and its key was requeued with backoff.
    fn failed(&self, controller: &'static str);
}

/// Runs `workers` workers on `queue` until shutdown.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: Queue,
    workers: usize,
    observer: Arc<dyn WorkerObserver>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let r = reconciler.clone();
        let q = queue.clone();
        let observer = observer.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = q.get().await {
                observer.reconciling(r.name(), q.len());
                match r.reconcile(&key).await {
                    Ok(after) => {
                        q.forget(&key);
                        if let Some(d) = after {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        observer.failed(r.name());
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
