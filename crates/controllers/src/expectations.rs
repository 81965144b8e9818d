//! `Expectations`: what a controller has asked the API for and not yet seen in its cache,
//! per owner, as upstream's UIDTrackingControllerExpectations. An owner with outstanding
//! expectations is not scaled again, so a slow cache never makes a controller create or delete
//! twice; expectations older than [`EXPECTATIONS_TIMEOUT`] are given up on.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Upstream's ExpectationsTimeout.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Entry {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Entry>>,
}

impl Expectations {
    /// True when `owner` may be acted on: nothing outstanding, never recorded, or expired.
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.map.lock().get(owner) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.set_at.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Records `n` creations about to be issued (replacing what was recorded).
    pub fn expect_creations(&self, owner: &str, n: usize) {
        self.map.lock().insert(
            owner.to_string(),
            Entry {
                adds: n as i64,
                deletes: HashSet::new(),
                set_at: Instant::now(),
            },
        );
    }

    /// Records deletions of `pods` (keys) about to be issued.
    pub fn expect_deletions(&self, owner: &str, pods: impl IntoIterator<Item = String>) {
        self.map.lock().insert(
            owner.to_string(),
            Entry {
                adds: 0,
                deletes: pods.into_iter().collect(),
                set_at: Instant::now(),
            },
        );
    }

    /// A creation was seen in the cache (or failed, so it never will be).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(e) = self.map.lock().get_mut(owner) {
            e.adds -= 1;
        }
    }

    /// A deletion of `pod` was seen (or failed).
    pub fn deletion_observed(&self, owner: &str, pod: &str) {
        if let Some(e) = self.map.lock().get_mut(owner) {
            e.deletes.remove(pod);
        }
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.map.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn creations_block_until_observed_or_expired() {
        let e = Expectations::default();
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(!e.satisfied("rs"));
        e.creation_observed("rs");
        assert!(e.satisfied("rs"));
        e.expect_creations("rs", 1);
        tokio::time::advance(EXPECTATIONS_TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied("rs"), "expectations time out");
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_are_tracked_by_pod_so_a_repeat_does_not_count_twice() {
        let e = Expectations::default();
        e.expect_deletions("rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("rs", "ns/a");
        e.deletion_observed("rs", "ns/a");
        assert!(!e.satisfied("rs"));
        e.deletion_observed("rs", "ns/b");
        assert!(e.satisfied("rs"));
    }
}
