//! Open watches per authenticated user. Every watch holds a task, a store subscription and a
//! buffer of unsent events, so one credential must not be able to open them without bound.
//! kubectl opens one per `--watch`, a controller one per informer, a node agent a handful; the
//! server's own components (one identity serving every controller and simulated node) are
//! exempt.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::ApiError;

/// Default open watches per user: far above what kubectl, client libraries or a node agent
/// use, low enough that one credential cannot hold thousands of streams.
pub const DEFAULT_MAX_WATCHES_PER_USER: usize = 1000;

#[derive(Debug)]
pub struct WatchLimit {
    max: usize,
    exempt: Vec<String>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open watch; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    user: Option<String>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(user) = self.user.take() else {
            return;
        };
        let mut open = self.open.lock();
        if let Some(n) = open.get_mut(&user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&user);
            }
        }
    }
}

impl Default for WatchLimit {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_WATCHES_PER_USER, Vec::new())
    }
}

impl WatchLimit {
    pub fn new(max: usize, exempt: Vec<String>) -> Self {
        Self {
            max,
            exempt,
            open: Arc::default(),
        }
    }

    /// A place for one more watch of `user`, or 429 TooManyRequests.
    pub fn acquire(&self, user: &str) -> Result<Slot, ApiError> {
        if self.exempt.iter().any(|e| e == user) {
            return Ok(Slot {
                user: None,
                open: self.open.clone(),
            });
        }
        let mut open = self.open.lock();
        let n = open.entry(user.to_string()).or_insert(0);
        if *n >= self.max {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                format!(
                    "Too many requests, please try again later: {user:?} already has {} open watches, the most one user may have",
                    self.max
                ),
            )
            .with_details(serde_json::json!({"retryAfterSeconds": 1}));
            e.retry_after = Some(1);
            return Err(e);
        }
        *n += 1;
        Ok(Slot {
            user: Some(user.to_string()),
            open: self.open.clone(),
        })
    }

    /// Open watches of `user` (for tests and metrics).
    pub fn open(&self, user: &str) -> usize {
        self.open.lock().get(user).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_at_most_max_watches_and_places_come_back() {
        let limit = WatchLimit::new(2, vec!["system:capstan-internal".into()]);
        let a = limit.acquire("alice").expect("1");
        let _b = limit.acquire("alice").expect("2");
        let e = limit.acquire("alice").expect_err("3");
        assert_eq!(
            (e.code, e.reason, e.retry_after),
            (429, "TooManyRequests", Some(1))
        );
        assert!(e.message.contains("2 open watches"), "{}", e.message);
        let _other = limit.acquire("bob").expect("users are counted apart");
        drop(a);
        assert_eq!(limit.open("alice"), 1);
        let _c = limit.acquire("alice").expect("a place came back");
        let internal: Vec<Slot> = (0..10)
            .map(|_| limit.acquire("system:capstan-internal").expect("exempt"))
            .collect();
        assert_eq!(internal.len(), 10);
        assert_eq!(limit.open("system:capstan-internal"), 0);
    }
}
