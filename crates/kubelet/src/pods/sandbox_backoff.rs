//! Back-off between failed sandbox creations of one pod: a sandbox that cannot be created
//! (its image cannot be pulled, the network plugin fails) is retried after 10 s, then 20 s,
//! 40 s... up to 5 min, as image pulls back off, so the pod's FailedCreatePodSandBox event and
//! the log line come once per step instead of at every retry of the pod's sync.

use std::time::{Duration, SystemTime};

use crate::backoff::Backoff;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

const KEY: &str = "sandbox";

#[derive(Debug, Clone)]
pub struct SandboxBackoff {
    b: Backoff,
}

impl Default for SandboxBackoff {
    fn default() -> Self {
        Self {
            b: Backoff::new(INITIAL, MAX),
        }
    }
}

impl SandboxBackoff {
    /// Until when the next attempt must wait, when it must.
    pub fn wait_until(&self, now: SystemTime) -> Option<SystemTime> {
        let last = self.b.last_event(KEY)?;
        self.b.waiting_since(KEY, last, now)
    }

    /// Records a failed attempt at `now`; returns the wait before the next one.
    pub fn failed(&mut self, now: SystemTime) -> Duration {
        self.b.next(KEY, now);
        self.b.delay(KEY).unwrap_or(INITIAL)
    }

    /// A sandbox was created: the next failure starts over at the initial delay.
    pub fn succeeded(&mut self) {
        self.b.forget(KEY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_wait_longer_each_time_and_success_starts_over() {
        let mut s = SandboxBackoff::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(s.wait_until(t0), None, "the first attempt is at once");

        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let d = s.failed(t);
            waits.push(d.as_secs());
            assert_eq!(s.wait_until(t + d - Duration::from_secs(1)), Some(t + d));
            assert_eq!(s.wait_until(t + d), None, "retried when the wait is over");
            t += d;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);

        s.succeeded();
        assert_eq!(s.wait_until(t), None);
        assert_eq!(s.failed(t), INITIAL);
    }
}
