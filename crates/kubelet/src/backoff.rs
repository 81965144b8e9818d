//! Upstream's per-key exponential back-off (client-go's `flowcontrol.Backoff`): each key's delay
//! starts at `initial`, doubles at every event up to `max`, and starts over when two events are
//! more than twice `max` apart. Container restarts use it with the container's finish time as
//! the event time (10 s doubling to 5 min, reset after 10 min); image pulls with the failure time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
struct Entry {
    delay: Duration,
    last: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, event: SystemTime, last: SystemTime) -> bool {
        event.duration_since(last).unwrap_or_default() > 2 * self.max
    }

    /// Records an event for `key` at `event`, growing its delay.
    pub fn next(&mut self, key: &str, event: SystemTime) {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(event, e.last) => (e.delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries
            .insert(key.to_string(), Entry { delay, last: event });
    }

    /// Whether `key` must still wait after an event at `event`; if so, until when.
    pub fn waiting_since(
        &self,
        key: &str,
        event: SystemTime,
        now: SystemTime,
    ) -> Option<SystemTime> {
        let e = self.entries.get(key)?;
        if self.expired(event, e.last) {
            return None;
        }
        let until = event + e.delay;
        (now < until).then_some(until)
    }

    /// The current delay of `key` (for messages).
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// When `key`'s last event was.
    pub fn last_event(&self, key: &str) -> Option<SystemTime> {
        self.entries.get(key).map(|e| e.last)
    }

    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops keys whose last event is long past.
    pub fn gc(&mut self, now: SystemTime) {
        let max = self.max;
        self.entries
            .retain(|_, e| now.duration_since(e.last).unwrap_or_default() <= 2 * max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_max_and_reset_after_a_long_quiet_spell() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(
            b.waiting_since("c", t0, t0).is_none(),
            "first crash restarts at once"
        );
        b.next("c", t0);
        assert_eq!(b.delay("c"), Some(Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            b.waiting_since("c", t1, t1),
            Some(t1 + Duration::from_secs(10))
        );
        let mut t = t1;
        for _ in 0..10 {
            b.next("c", t);
            t += Duration::from_secs(1);
        }
        assert_eq!(b.delay("c"), Some(Duration::from_secs(300)));
        let later = t + Duration::from_secs(601);
        assert!(b.waiting_since("c", later, later).is_none());
        b.next("c", later);
        assert_eq!(b.delay("c"), Some(Duration::from_secs(10)));
    }
}
