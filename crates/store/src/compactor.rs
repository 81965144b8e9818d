//! Periodic compaction for any [`Store`] ([`spawn_auto_compactor`]), so history (and the
//! database) does not grow without bound. Kubernetes compacts etcd every five minutes the same way.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::{Revision, Store};

/// When and how much to compact.
#[derive(Clone, Debug)]
pub struct AutoCompaction {
    /// Time between compactions (Kubernetes: five minutes).
    pub interval: Duration,
    /// Revisions of history kept behind the current one. Watchers further behind than this
    /// after a compaction get `Compacted` and re-list.
    pub keep_revisions: Revision,
}

impl Default for AutoCompaction {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5 * 60),
            keep_revisions: 10_000,
        }
    }
}

/// The revision to compact to, if compacting would forget anything.
pub fn compaction_target(
    current: Revision,
    compacted: Revision,
    keep: Revision,
) -> Option<Revision> {
    let target = current.saturating_sub(keep.max(0));
    (target > compacted).then_some(target)
}

/// Compact `store` every `policy.interval`, keeping `policy.keep_revisions` of history. The task
/// holds only a weak reference and ends when the store is dropped; abort the handle to stop it
/// sooner. Failures are logged and retried at the next interval.
pub fn spawn_auto_compactor<S>(
    store: &Arc<S>,
    policy: AutoCompaction,
) -> tokio::task::JoinHandle<()>
where
    S: Store + ?Sized,
{
    let store: Weak<S> = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(policy.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; a store that was just opened has nothing new to forget.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else { return };
            let current = match store.current_revision().await {
                Ok(current) => current,
                Err(err) => {
                    tracing::warn!(error = %err, "auto compaction: cannot read the current revision");
                    continue;
                }
            };
            let Some(target) =
                compaction_target(current, store.compacted_revision(), policy.keep_revisions)
            else {
                continue;
            };
            match store.compact(target).await {
                Ok(()) => tracing::info!(revision = target, "auto compaction done"),
                Err(err) => {
                    tracing::warn!(error = %err, revision = target, "auto compaction failed")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_keeps_the_requested_number_of_revisions() {
        assert_eq!(compaction_target(100, 0, 10), Some(90));
        assert_eq!(compaction_target(100, 50, 10), Some(90));
    }

    #[test]
    fn nothing_is_compacted_when_the_history_is_short_or_already_compacted() {
        assert_eq!(compaction_target(5, 0, 10), None);
        assert_eq!(compaction_target(100, 90, 10), None);
        assert_eq!(compaction_target(0, 0, 0), None);
    }

    #[test]
    fn a_negative_keep_counts_as_zero() {
        assert_eq!(compaction_target(7, 0, -3), Some(7));
    }
}
