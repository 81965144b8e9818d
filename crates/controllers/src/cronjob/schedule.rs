//! Schedule arithmetic of the CronJob controller, pure and clock-free (upstream's
//! `cronjob/utils.go`): which scheduled time is due now, how many were missed, when to look
//! again, and the Job's name and scheduled-timestamp annotation.

use std::time::Duration;

use capstan_api::kinds::batch::cron::{load_time_zone, Schedule};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// More missed start times than this gives the `TooManyMissedTimes` warning (upstream's 100).
pub const MANY_MISSED: i64 = 100;

/// Requeues land this long after the scheduled time, so the time is due when we look.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// How many scheduled times passed unstarted, as upstream's `missedSchedulesType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// The result of [`most_recent_schedule_time`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recent {
    /// Where the search started: lastScheduleTime, else creation, raised to the deadline.
    pub earliest: Timestamp,
    /// The latest scheduled time at or before now after `earliest`, if any.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

/// Why a CronJob's schedule cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unparseable schedule: {schedule:?} : {message}")]
    Unparseable { schedule: String, message: String },
    #[error("invalid timeZone: {zone:?}: {message}")]
    UnknownTimeZone { zone: String, message: String },
    #[error("time difference between two schedules is less than 1 second")]
    TooClose,
}

/// The CronJob's schedule in its time zone (UTC when unset, the zone this controller runs in).
pub fn parse(cj: &CronJob) -> Result<Schedule, ScheduleError> {
    let spec = cj.spec.as_ref();
    let text = spec.map(|s| s.schedule.as_str()).unwrap_or("");
    let schedule = Schedule::parse(text).map_err(|e| ScheduleError::Unparseable {
        schedule: text.to_string(),
        message: e.0,
    })?;
    match spec.and_then(|s| s.time_zone.as_deref()) {
        None => Ok(schedule),
        Some(zone) => load_time_zone(zone)
            .map(|tz| schedule.in_zone(tz))
            .map_err(|message| ScheduleError::UnknownTimeZone {
                zone: zone.to_string(),
                message,
            }),
    }
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

/// Upstream's `mostRecentScheduleTime`: the most recent scheduled time in (earliest, now],
/// where earliest is lastScheduleTime or the creation time, raised to now minus
/// startingDeadlineSeconds when `with_deadline`. The number missed is estimated from the
/// interval between the first two times, as upstream does (no walk over a year of minutes).
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    with_deadline: bool,
) -> Result<Recent, ScheduleError> {
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map_or(created, |t| t.0);
    if with_deadline {
        if let Some(d) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            if let Ok(deadline) = now.checked_sub(secs(d)) {
                earliest = earliest.max(deadline);
            }
        }
    }
    let none = |earliest| Recent {
        earliest,
        most_recent: None,
        missed: Missed::None,
    };
    let Some(t1) = schedule.next_after(earliest) else {
        return Ok(none(earliest));
    };
    if now < t1 {
        return Ok(none(earliest));
    }
    let Some(t2) = schedule.next_after(t1).filter(|t2| now >= *t2) else {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::Few,
        });
    };
    let between = t2.duration_since(t1).as_secs_f64().round() as i64;
    if between < 1 {
        return Err(ScheduleError::TooClose);
    }
    let elapsed = now.duration_since(t1).as_secs();
    let number_missed = elapsed / between + 1;
    // Step back one interval further than the estimate and let the schedule find the exact
    // times: irregular schedules (`30 6-16/4 * * 1-5`) do not fall on multiples.
    let estimate = t1
        .checked_add(secs((number_missed - 2) * between))
        .unwrap_or(t1)
        .max(t1);
    let walk = |mut from: Timestamp, mut most_recent: Option<Timestamp>| {
        while let Some(t) = schedule.next_after(from).filter(|t| *t <= now) {
            most_recent = Some(t);
            from = t;
        }
        most_recent
    };
    // A schedule with long gaps (weekends) can make the estimate overshoot: then walk from
    // t2, which is known to be due.
    let most_recent = walk(estimate, None).or_else(|| walk(t2, Some(t2)));
    let missed = if number_missed > MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(Recent {
        earliest,
        most_recent,
        missed,
    })
}

/// How long until the next scheduled time after the most recent one (upstream's
/// `nextScheduleTimeDuration`), plus [`NEXT_SCHEDULE_DELTA`]. `None` when the schedule never
/// fires again.
pub fn next_schedule_delay(cj: &CronJob, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let from = match most_recent_schedule_time(cj, now, schedule, false) {
        Err(_) => now,
        Ok(r) => r.most_recent.unwrap_or(r.earliest),
    };
    let next = schedule.next_after(from)?;
    let wait = next.duration_since(now);
    let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
    Some(wait + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: one name per scheduled time, so
/// a Job is never created twice for the same time.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

/// The `batch.kubernetes.io/cronjob-scheduled-timestamp` value: RFC 3339 in the CronJob's zone
/// (Go's format: `Z` for a zero offset).
pub fn scheduled_timestamp(cj: &CronJob, scheduled: Timestamp) -> String {
    let zone = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|z| load_time_zone(z).ok())
        .unwrap_or(k8s_openapi::jiff::tz::TimeZone::UTC);
    let zoned = scheduled.to_zoned(zone);
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn cron(schedule: &str, created: &str, last: Option<&str>, deadline: Option<i64>) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "creationTimestamp": created},
            "spec": {"schedule": schedule, "startingDeadlineSeconds": deadline, "jobTemplate": {}},
            "status": {"lastScheduleTime": last},
        }))
        .expect("cronjob")
    }

    fn recent(cj: &CronJob, now: &str) -> Recent {
        let s = parse(cj).expect("schedule");
        most_recent_schedule_time(cj, ts(now), &s, true).expect("recent")
    }

    #[test]
    fn nothing_is_due_before_the_first_time() {
        let cj = cron("0 * * * *", "2024-01-01T10:05:00Z", None, None);
        let r = recent(&cj, "2024-01-01T10:59:59Z");
        assert_eq!((r.most_recent, r.missed), (None, Missed::None));
    }

    #[test]
    fn the_first_time_is_due_at_once() {
        let cj = cron("0 * * * *", "2024-01-01T10:05:00Z", None, None);
        let r = recent(&cj, "2024-01-01T11:00:00.2Z");
        assert_eq!(r.most_recent, Some(ts("2024-01-01T11:00:00Z")));
    }

    #[test]
    fn after_a_long_outage_only_the_most_recent_time_is_due() {
        let cj = cron(
            "*/5 * * * *",
            "2024-01-01T00:00:00Z",
            Some("2024-01-01T10:00:00Z"),
            None,
        );
        let r = recent(&cj, "2024-01-01T10:23:00Z");
        assert_eq!(r.most_recent, Some(ts("2024-01-01T10:20:00Z")));
        assert_eq!(r.missed, Missed::Few);
        // A day of minutes is more than 100 missed times.
        let cj = cron("* * * * *", "2024-01-01T00:00:00Z", None, None);
        let r = recent(&cj, "2024-01-02T00:00:30Z");
        assert_eq!(r.most_recent, Some(ts("2024-01-02T00:00:00Z")));
        assert_eq!(r.missed, Missed::Many);
    }

    #[test]
    fn irregular_schedules_find_the_exact_most_recent_time() {
        // 06:30, 10:30, 14:30 on weekdays; 2024-01-01 is a Monday.
        let cj = cron("30 6-16/4 * * 1-5", "2023-12-29T00:00:00Z", None, None);
        let r = recent(&cj, "2024-01-02T12:00:00Z");
        assert_eq!(r.most_recent, Some(ts("2024-01-02T10:30:00Z")));
    }

    #[test]
    fn the_starting_deadline_bounds_the_search() {
        let cj = cron(
            "0 * * * *",
            "2024-01-01T00:00:00Z",
            Some("2024-01-01T05:00:00Z"),
            Some(600),
        );
        // 10:00 is more than 600 s ago at 10:30: nothing left in the window.
        assert_eq!(recent(&cj, "2024-01-01T10:30:00Z").most_recent, None);
        assert_eq!(
            recent(&cj, "2024-01-01T10:05:00Z").most_recent,
            Some(ts("2024-01-01T10:00:00Z"))
        );
    }

    #[test]
    fn the_next_look_is_at_the_next_scheduled_time() {
        let cj = cron(
            "*/10 * * * *",
            "2024-01-01T00:00:00Z",
            Some("2024-01-01T10:00:00Z"),
            None,
        );
        let s = parse(&cj).expect("schedule");
        let d = next_schedule_delay(&cj, ts("2024-01-01T10:04:00Z"), &s).expect("fires");
        assert_eq!(d, Duration::from_secs(360) + NEXT_SCHEDULE_DELTA);
    }

    #[test]
    fn job_names_and_annotations_follow_upstream() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T10:00:00Z")),
            "hello-28401720"
        );
        let mut cj = cron("0 * * * *", "2024-01-01T00:00:00Z", None, None);
        assert_eq!(
            scheduled_timestamp(&cj, ts("2024-01-01T10:00:00Z")),
            "2024-01-01T10:00:00Z"
        );
        cj.spec.as_mut().expect("spec").time_zone = Some("Europe/Paris".into());
        assert_eq!(
            scheduled_timestamp(&cj, ts("2024-01-01T10:00:00Z")),
            "2024-01-01T11:00:00+01:00"
        );
    }

    #[test]
    fn bad_zones_and_schedules_are_reported_as_upstream_words_them() {
        let mut cj = cron("0 * * * *", "2024-01-01T00:00:00Z", None, None);
        cj.spec.as_mut().expect("spec").time_zone = Some("Mars/Base".into());
        assert_eq!(
            parse(&cj).expect_err("bad zone").to_string(),
            "invalid timeZone: \"Mars/Base\": unknown time zone Mars/Base"
        );
        let cj = cron("61 * * * *", "2024-01-01T00:00:00Z", None, None);
        assert_eq!(
            parse(&cj).expect_err("bad schedule").to_string(),
            "unparseable schedule: \"61 * * * *\" : end of range (61) above maximum (59): 61"
        );
    }
}
