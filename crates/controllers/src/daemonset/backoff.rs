//! `FailedPodBackoff`: how soon a DaemonSet may replace a failed daemon pod on a node
//! (upstream's failedPodsBackoff: 1 s doubling to 15 min per DaemonSet and node), so a pod that
//! fails at once is not recreated in a tight loop.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

const INITIAL: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(15 * 60);

#[derive(Default)]
pub struct FailedPodBackoff {
    /// (DaemonSet key, node) -> (current delay, when it was last taken).
    entries: Mutex<HashMap<(String, String), (Duration, Instant)>>,
}

impl FailedPodBackoff {
    /// None when a failed pod on `node` may be replaced now (and records it, doubling the
    /// next delay); otherwise how long to wait.
    pub fn try_take(&self, ds: &str, node: &str) -> Option<Duration> {
        let mut m = self.entries.lock();
        let now = Instant::now();
        let key = (ds.to_string(), node.to_string());
        match m.get(&key) {
            Some((delay, at)) if now < *at + *delay => Some(*at + *delay - now),
            Some((delay, _)) => {
                let next = (*delay * 2).min(MAX);
                m.insert(key, (next, now));
                None
            }
            None => {
                m.insert(key, (INITIAL, now));
                None
            }
        }
    }

    /// Forgets entries idle for longer than the longest delay (upstream's GC of the backoff).
    pub fn gc(&self) {
        let now = Instant::now();
        self.entries
            .lock()
            .retain(|_, (delay, at)| now < *at + *delay + MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_failure_doubles_the_wait_per_node() {
        let b = FailedPodBackoff::default();
        assert_eq!(b.try_take("ds", "n1"), None);
        assert_eq!(b.try_take("ds", "n1"), Some(INITIAL));
        assert_eq!(b.try_take("ds", "n2"), None, "nodes back off apart");
        tokio::time::advance(INITIAL).await;
        assert_eq!(b.try_take("ds", "n1"), None);
        assert_eq!(b.try_take("ds", "n1"), Some(INITIAL * 2));
        tokio::time::advance(MAX * 3).await;
        b.gc();
        assert_eq!(b.try_take("ds", "n1"), None);
        assert_eq!(
            b.try_take("ds", "n1"),
            Some(INITIAL),
            "forgotten after idling"
        );
    }
}
