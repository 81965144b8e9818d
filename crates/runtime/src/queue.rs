//! `Queue`: a work queue of object keys, as client-go's rate-limited work queue. A key waits
//! in the queue at most once (dedup), is handed to one worker at a time (a key added while it
//! is being processed is queued again when the worker calls `done`), and failures come back
//! after an exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// The first retry waits this long; each further failure doubles it (upstream: 5ms).
pub const BACKOFF_BASE: Duration = Duration::from_millis(5);
/// Retries never wait longer than this (upstream: 1000s; a shorter cap keeps a broken object
/// from going unnoticed for a quarter of an hour).
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The exponential backoff after `failures` consecutive failures (1 is the first).
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(30);
    BACKOFF_BASE
        .checked_mul(1u32 << shift)
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
    shut_down: bool,
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
}

/// A cheap handle to one controller's queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
            }),
        }
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.inner.state.lock();
        if s.shut_down || s.dirty.contains(&key) {
            return;
        }
        s.dirty.insert(key.clone());
        if s.processing.contains(&key) {
            // `done` puts it back: one worker per key at a time.
            return;
        }
        s.queue.push_back(key);
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(key);
        });
    }

    /// Queues `key` after its next backoff step.
    pub fn add_rate_limited(&self, key: &str) -> Duration {
        let n = {
            let mut s = self.inner.state.lock();
            let n = s.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let d = backoff(n);
        self.add_after(key, d);
        d
    }

    /// Resets `key`'s backoff (after a success).
    pub fn forget(&self, key: &str) {
        self.inner.state.lock().failures.remove(key);
    }

    /// The next key to process, or None once shut down. Pair with [`Queue::done`].
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.inner.state.lock();
                if s.shut_down {
                    return None;
                }
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Wake another worker for the rest.
                        self.inner.notify.notify_one();
                    }
                    return Some(k);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let mut s = self.inner.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) && !s.shut_down {
            s.queue.push_back(key.to_string());
            drop(s);
            self.inner.notify.notify_one();
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.inner.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every worker and makes `get` return None.
    pub fn shut_down(&self) {
        self.inner.state.lock().shut_down = true;
        self.inner.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_handed_out_once() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await.as_deref(), Some("a"));
        assert_eq!(q.get().await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = Queue::new();
        q.add("a");
        let k = q.get().await.expect("key");
        q.add("a");
        assert!(
            q.is_empty(),
            "not handed to a second worker while the first has it"
        );
        q.done(&k);
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_forget_resets() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), BACKOFF_MAX);
        let q = Queue::new();
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(5));
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(10));
        q.forget("a");
        assert_eq!(q.add_rate_limited("a"), Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn shut_down_releases_waiting_workers() {
        let q = Queue::new();
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(w.await.expect("join"), None);
    }
}
