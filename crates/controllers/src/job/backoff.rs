//! The pod-failure back-off, as upstream's `backoff_utils.go`: after the n-th failure since
//! the last success a replacement waits 10 s · 2^(n-1), at most 6 minutes, counted from the
//! last failed pod's finish time. Computed from the pods themselves (finished pods stay in
//! the API until their Job goes), so a restarted controller keeps the same back-off.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream's DefaultJobPodFailureBackOff.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's MaxJobPodFailureBackOff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 60);

/// The back-off for `failures` failures since the last success (0 for none).
pub fn backoff_for(failures: usize) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let mut d = DEFAULT_BACKOFF;
    for _ in 1..failures {
        d = d.saturating_mul(2);
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d.min(MAX_BACKOFF)
}

/// When a finished pod finished: its containers' latest finishedAt, else when it stopped
/// being Ready, else its deletion or creation time.
pub fn finish_time(p: &Pod) -> Option<Timestamp> {
    let st = p.status.as_ref();
    let terminated = st
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    terminated
        .or_else(|| {
            st?.conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")?
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
        })
        .or_else(|| p.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Failures since the last success and the time of the last failure, from finished pods
/// (`(finish time, succeeded)`), as upstream's backoff record.
pub fn record(finished: &[(Option<Timestamp>, bool)]) -> (usize, Option<Timestamp>) {
    let last_success = finished
        .iter()
        .filter(|(_, ok)| *ok)
        .filter_map(|(t, _)| *t)
        .max();
    let after: Vec<Option<Timestamp>> = finished
        .iter()
        .filter(|(t, ok)| !*ok && (last_success.is_none() || *t > last_success))
        .map(|(t, _)| *t)
        .collect();
    (after.len(), after.into_iter().flatten().max())
}

/// How long a replacement must still wait at `now`.
pub fn remaining(failures: usize, last_failure: Option<Timestamp>, now: Timestamp) -> Duration {
    let d = backoff_for(failures);
    let Some(last) = last_failure else {
        return Duration::ZERO;
    };
    let elapsed = now.duration_since(last);
    if elapsed < SignedDuration::ZERO {
        return d;
    }
    d.saturating_sub(elapsed.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn back_off_doubles_from_ten_seconds_and_is_capped_at_six_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(backoff_for(1000), MAX_BACKOFF);
    }

    #[test]
    fn failures_are_counted_after_the_last_success_from_their_finish_times() {
        let pods = [
            (Some(t("2024-01-01T00:00:00Z")), false),
            (Some(t("2024-01-01T00:00:10Z")), true),
            (Some(t("2024-01-01T00:00:20Z")), false),
            (Some(t("2024-01-01T00:00:30Z")), false),
        ];
        let (n, last) = record(&pods);
        assert_eq!((n, last), (2, Some(t("2024-01-01T00:00:30Z"))));
        // 20 s back-off from 00:30, at 00:35: 15 s left; at 00:51: none.
        assert_eq!(
            remaining(n, last, t("2024-01-01T00:00:35Z")),
            Duration::from_secs(15)
        );
        assert_eq!(
            remaining(n, last, t("2024-01-01T00:00:51Z")),
            Duration::ZERO
        );
        assert_eq!(record(&[]), (0, None));
        assert_eq!(
            remaining(0, None, t("2024-01-01T00:00:00Z")),
            Duration::ZERO
        );
    }
}
