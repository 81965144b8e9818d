//! One CronJob sync as a pure function of the CronJob, its Jobs and the time (upstream's
//! `syncCronJob` and `cleanupFinishedJobs`): the status to write, the events to send, the
//! Jobs to delete (history beyond the limits, or the running ones under Replace) and the Job
//! to create, if a scheduled time is due. The controller only carries the plan out, so tests
//! can run thousands of schedule ticks against a fake clock in milliseconds.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::schedule::{self, Missed};
use crate::owner::owner_ref;

/// The annotation holding the Job's scheduled time.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// An event to record on the CronJob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            warning: false,
            reason,
            message,
        }
    }
    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            warning: true,
            reason,
            message,
        }
    }
}

/// A Job to delete, and whether it is one of the running Jobs Replace supersedes (those must
/// be gone before the new one starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub uid: String,
    pub replaced: bool,
}

/// A Job to start for a scheduled time.
#[derive(Clone, Debug)]
pub struct Start {
    pub scheduled: Timestamp,
    pub job: Job,
}

/// What one sync should do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The status once deletions succeed (a started Job is added by the caller once created).
    pub status: CronJobStatus,
    pub notes: Vec<Note>,
    pub delete: Vec<Deletion>,
    pub start: Option<Start>,
    /// When to look again (the next scheduled time), if ever.
    pub requeue: Option<Duration>,
}

/// Complete or Failed, when the Job has finished (upstream's `getFinishedStatus`).
pub fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| conds.iter().any(|c| c.type_ == *t && c.status == "True"))
}

fn uid(job: &Job) -> &str {
    job.metadata.uid.as_deref().unwrap_or("")
}

fn in_active(status: &CronJobStatus, uid: &str) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == Some(uid))
}

fn remove_active(status: &mut CronJobStatus, uid: &str) {
    if let Some(a) = status.active.as_mut() {
        a.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// Oldest first by start time (Jobs not started last), then by name, as upstream's
/// `byJobStartTime`.
fn by_start_time(a: &&Job, b: &&Job) -> std::cmp::Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.name_any().cmp(&b.name_any()),
    }
}

/// Finished Jobs beyond the history limits, oldest first (upstream's `removeOldestJobs`).
fn history_to_delete<'a>(cj: &CronJob, jobs: &[&'a Job]) -> Vec<&'a Job> {
    let spec = cj.spec.as_ref();
    let mut out = Vec::new();
    for (kind, limit) in [
        (
            "Complete",
            spec.and_then(|s| s.successful_jobs_history_limit),
        ),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(kind))
            .collect();
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        if extra == 0 {
            continue;
        }
        done.sort_by(by_start_time);
        out.extend(done.into_iter().take(extra));
    }
    out
}

/// The Job for a scheduled time (upstream's `getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let template = cj.spec.as_ref().map(|s| &s.job_template);
    let tmeta = template
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        schedule::scheduled_timestamp(cj, scheduled),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(schedule::job_name(&cj.name_any(), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: template.and_then(|t| t.spec.clone()),
        status: None,
    }
}

/// Plans one sync. `jobs` are the Jobs this CronJob controls; `gone` the uids of active Jobs
/// the API confirmed missing.
pub fn plan(cj: &CronJob, jobs: &[&Job], gone: &HashSet<String>, now: Timestamp) -> Plan {
    let mut p = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let status = &mut p.status;

    // History: finished Jobs beyond the limits go first, whatever else happens.
    for j in history_to_delete(cj, jobs) {
        p.delete.push(Deletion {
            name: j.name_any(),
            uid: uid(j).to_string(),
            replaced: false,
        });
        remove_active(status, uid(j));
    }

    // The active list against the Jobs that exist.
    for j in jobs {
        let found = in_active(status, uid(j));
        match finished(j) {
            None if !found => p.notes.push(Note::warning(
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                ),
            )),
            Some(condition) if found => {
                remove_active(status, uid(j));
                p.notes.push(Note::normal(
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {condition}",
                        j.name_any()
                    ),
                ));
            }
            _ => {}
        }
        if finished(j) == Some("Complete") {
            let done = j.status.as_ref().and_then(|s| s.completion_time.as_ref());
            let last = status.last_successful_time.as_ref().map(|t| t.0);
            if let Some(done) = done {
                if last.is_none_or(|l| done.0 > l) {
                    status.last_successful_time = Some(done.clone());
                }
            }
        }
    }
    let existing: HashSet<&str> = jobs.iter().map(|j| uid(j)).collect();
    let missing: Vec<(String, String)> = status
        .active
        .iter()
        .flatten()
        .filter_map(|r| {
            let u = r.uid.clone()?;
            (!existing.contains(u.as_str()) && gone.contains(&u))
                .then(|| (u, r.name.clone().unwrap_or_default()))
        })
        .collect();
    for (u, name) in missing {
        p.notes.push(Note::normal(
            "MissingJob",
            format!("Active job went missing: {name}"),
        ));
        remove_active(status, &u);
    }

    if cj.metadata.deletion_timestamp.is_some() {
        return p;
    }
    let text = cj.spec.as_ref().map_or("", |s| s.schedule.as_str());
    if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
        // Validation refuses these now; objects stored before may still carry one.
        p.notes.push(Note::warning(
            "UnsupportedSchedule",
            format!("CRON_TZ or TZ used in schedule {text:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details"),
        ));
    }
    let sched = match schedule::parse(cj) {
        Ok(s) => s,
        Err(e) => {
            let reason = match e {
                schedule::ScheduleError::UnknownTimeZone { .. } => "UnknownTimeZone",
                _ => "UnparseableSchedule",
            };
            p.notes.push(Note::warning(reason, e.to_string()));
            return p;
        }
    };
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.suspend == Some(true) {
        return p;
    }
    let invalid = |e: schedule::ScheduleError| {
        Note::warning(
            "InvalidSchedule",
            format!("invalid schedule: {} : {e}", spec.schedule),
        )
    };
    let recent = match schedule::most_recent_schedule_time(cj, now, &sched, true) {
        Ok(r) => r,
        Err(e) => {
            p.notes.push(invalid(e));
            return p;
        }
    };
    // From here on the next look is at the next scheduled time after the status we write.
    let with_status = |status: &CronJobStatus| {
        let mut c = cj.clone();
        c.status = Some(status.clone());
        schedule::next_schedule_delay(&c, now, &sched)
    };
    let Some(scheduled) = recent.most_recent.filter(|t| *t <= now) else {
        p.requeue = with_status(&p.status);
        return p;
    };
    if recent.missed == Missed::Many {
        p.notes.push(Note::warning(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        ));
    }
    let too_late = spec.starting_deadline_seconds.is_some_and(|d| {
        scheduled
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(d))
            .is_ok_and(|deadline| deadline < now)
    });
    if too_late {
        p.notes.push(Note::warning(
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
            ),
        ));
        p.requeue = with_status(&p.status);
        return p;
    }
    let name = schedule::job_name(&cj.name_any(), scheduled);
    let already = p
        .status
        .active
        .iter()
        .flatten()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || p.status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if already {
        p.requeue = with_status(&p.status);
        return p;
    }
    let active: Vec<(String, String)> = p
        .status
        .active
        .iter()
        .flatten()
        .map(|r| {
            (
                r.name.clone().unwrap_or_default(),
                r.uid.clone().unwrap_or_default(),
            )
        })
        .collect();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            p.notes.push(Note::normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            p.requeue = with_status(&p.status);
            return p;
        }
        Some("Replace") => {
            for (name, uid) in active {
                remove_active(&mut p.status, &uid);
                p.delete.push(Deletion {
                    name,
                    uid,
                    replaced: true,
                });
            }
        }
        _ => {}
    }
    p.start = Some(Start {
        scheduled,
        job: job_for(cj, scheduled),
    });
    let mut after = p.status.clone();
    after.last_schedule_time = Some(Time(scheduled));
    p.requeue = with_status(&after);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn cron(schedule: &str, policy: &str) -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "schedule": schedule, "concurrencyPolicy": policy, "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}
            }
        }))
        .expect("cronjob")
    }

    /// A fake API: the CronJob and its Jobs, changed only by carrying out plans.
    struct World {
        cj: CronJob,
        jobs: Vec<Job>,
        next_uid: u32,
        created: Vec<String>,
        notes: Vec<Note>,
    }

    impl World {
        fn new(cj: CronJob) -> Self {
            Self {
                cj,
                jobs: vec![],
                next_uid: 0,
                created: vec![],
                notes: vec![],
            }
        }

        /// One sync at `now`, carried out as the controller does; returns the requeue.
        fn sync(&mut self, now: Timestamp) -> Option<Duration> {
            let refs: Vec<&Job> = self.jobs.iter().collect();
            let p = plan(&self.cj, &refs, &HashSet::new(), now);
            self.notes.extend(p.notes.iter().cloned());
            let doomed: HashSet<&str> = p.delete.iter().map(|d| d.uid.as_str()).collect();
            self.jobs.retain(|j| !doomed.contains(uid(j)));
            let mut status = p.status;
            if let Some(start) = p.start {
                let mut job = start.job;
                self.next_uid += 1;
                job.metadata.uid = Some(format!("job-{}", self.next_uid));
                assert!(
                    !self
                        .jobs
                        .iter()
                        .any(|j| j.metadata.name == job.metadata.name),
                    "a Job is never created twice for one scheduled time"
                );
                self.created.push(job.name_any());
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(ObjectReference {
                        name: job.metadata.name.clone(),
                        uid: job.metadata.uid.clone(),
                        ..Default::default()
                    });
                status.last_schedule_time = Some(Time(start.scheduled));
                self.jobs.push(job);
            }
            self.cj.status = Some(status);
            p.requeue
        }

        fn finish(&mut self, name: &str, condition: &str, at: Timestamp) {
            let j = self
                .jobs
                .iter_mut()
                .find(|j| j.name_any() == name)
                .expect("job");
            j.status = Some(
                serde_json::from_value(json!({
                    "startTime": at.to_string(), "completionTime": at.to_string(),
                    "conditions": [{"type": condition, "status": "True"}]
                }))
                .expect("status"),
            );
        }

        fn active(&self) -> usize {
            self.cj
                .status
                .as_ref()
                .and_then(|s| s.active.as_ref())
                .map_or(0, Vec::len)
        }

        fn count(&self, reason: &str) -> usize {
            self.notes.iter().filter(|n| n.reason == reason).count()
        }

        /// Runs syncs as the queue would: at each requeue, for `ticks` syncs.
        fn run(&mut self, mut now: Timestamp, ticks: usize) -> Timestamp {
            for _ in 0..ticks {
                let d = self.sync(now).expect("requeued");
                now = now
                    .checked_add(k8s_openapi::jiff::SignedDuration::try_from(d).expect("d"))
                    .expect("time");
            }
            now
        }
    }

    #[test]
    fn every_minute_starts_one_job_per_minute_named_after_its_time() {
        let mut w = World::new(cron("* * * * *", "Allow"));
        let end = w.run(ts("2024-01-01T00:01:00.5Z"), 120);
        assert_eq!(w.created.len(), 120);
        assert_eq!(
            w.created[0],
            format!("tick-{}", ts("2024-01-01T00:01:00Z").as_second() / 60)
        );
        assert!(end < ts("2024-01-01T02:01:01Z"));
        let job = &w.jobs[0];
        let a = job.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(a[SCHEDULED_TIMESTAMP_ANNOTATION], "2024-01-01T00:01:00Z");
        let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        assert_eq!(job.metadata.labels.as_ref().expect("labels")["app"], "tick");
        assert_eq!(w.count("UnexpectedJob"), 0);
    }

    #[test]
    fn the_requeue_lands_just_after_the_next_time_and_a_resync_does_not_start_twice() {
        let mut w = World::new(cron("*/5 * * * *", "Allow"));
        let d = w.sync(ts("2024-01-01T00:03:00Z")).expect("requeue");
        assert_eq!(d, Duration::from_secs(120) + schedule::NEXT_SCHEDULE_DELTA);
        w.sync(ts("2024-01-01T00:05:00.1Z"));
        w.sync(ts("2024-01-01T00:05:01Z"));
        w.sync(ts("2024-01-01T00:09:59Z"));
        assert_eq!(w.created.len(), 1);
    }

    #[test]
    fn forbid_skips_while_a_job_runs_and_starts_again_once_it_finished() {
        let mut w = World::new(cron("* * * * *", "Forbid"));
        let now = w.run(ts("2024-01-01T00:01:00.5Z"), 10);
        assert_eq!(w.created.len(), 1, "nothing starts while the first runs");
        assert_eq!(w.count("JobAlreadyActive"), 9);
        let first = w.created[0].clone();
        w.finish(&first, "Complete", now);
        w.run(now, 3);
        assert_eq!(
            w.created.len(),
            2,
            "the next starts once the first finished"
        );
        assert_eq!(w.count("SawCompletedJob"), 1);
        assert_eq!(w.active(), 1);
        let last_ok =
            w.cj.status
                .as_ref()
                .and_then(|s| s.last_successful_time.clone());
        assert_eq!(last_ok.map(|t| t.0), Some(now));
    }

    #[test]
    fn replace_deletes_the_running_job_before_starting_the_next() {
        let mut w = World::new(cron("* * * * *", "Replace"));
        w.run(ts("2024-01-01T00:01:00.5Z"), 50);
        assert_eq!(w.created.len(), 50);
        assert_eq!(w.jobs.len(), 1, "only the newest Job is left");
        assert_eq!(w.active(), 1);
    }

    #[test]
    fn allow_runs_jobs_side_by_side() {
        let mut w = World::new(cron("* * * * *", "Allow"));
        w.run(ts("2024-01-01T00:01:00.5Z"), 5);
        assert_eq!(w.active(), 5);
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs_within_the_limits() {
        let mut w = World::new(cron("* * * * *", "Allow"));
        let mut now = ts("2024-01-01T00:01:00.5Z");
        for i in 0..8 {
            now = w.run(now, 1);
            let name = w.created.last().expect("created").clone();
            w.finish(&name, if i % 2 == 0 { "Complete" } else { "Failed" }, now);
        }
        w.run(now, 1);
        let left: Vec<String> = w
            .jobs
            .iter()
            .filter(|j| finished(j).is_some())
            .map(|j| j.name_any())
            .collect();
        // 3 successful (the newest of 4) and 1 failed (the newest of 4).
        let c = &w.created;
        assert_eq!(
            left,
            vec![c[2].clone(), c[4].clone(), c[6].clone(), c[7].clone()]
        );
        assert_eq!(w.count("SawCompletedJob"), 8);
    }

    #[test]
    fn a_suspended_cron_job_starts_nothing_and_is_not_requeued() {
        let mut cj = cron("* * * * *", "Allow");
        cj.spec.as_mut().expect("spec").suspend = Some(true);
        let mut w = World::new(cj);
        assert_eq!(w.sync(ts("2024-01-01T00:10:00Z")), None);
        assert!(w.created.is_empty());
    }

    #[test]
    fn after_a_long_outage_only_the_last_time_starts_with_a_warning() {
        let mut w = World::new(cron("* * * * *", "Allow"));
        // The first sync happens a day after creation (the server was down).
        w.sync(ts("2024-01-02T00:00:30Z"));
        assert_eq!(
            w.created,
            vec![schedule::job_name("tick", ts("2024-01-02T00:00:00Z"))]
        );
        assert_eq!(w.count("TooManyMissedTimes"), 1);
        let m = &w
            .notes
            .iter()
            .find(|n| n.reason == "TooManyMissedTimes")
            .expect("note")
            .message;
        assert_eq!(m, "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
    }

    #[test]
    fn a_time_past_its_starting_deadline_is_missed() {
        let mut cj = cron("0 * * * *", "Allow");
        cj.spec.as_mut().expect("spec").starting_deadline_seconds = Some(10);
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(ts("2023-12-31T23:00:00Z"))),
            ..Default::default()
        });
        let mut w = World::new(cj);
        w.sync(ts("2024-01-01T00:00:30Z"));
        assert!(
            w.created.is_empty(),
            "too late: 30 s after with a 10 s deadline"
        );
        w.sync(ts("2024-01-01T01:00:05Z"));
        assert_eq!(w.created.len(), 1);
    }

    #[test]
    fn a_job_it_did_not_start_is_reported_once_per_sync_and_kept_out_of_active() {
        let mut w = World::new(cron("0 0 1 1 *", "Forbid"));
        let mut manual = job_for(&w.cj, ts("2024-01-01T00:00:00Z"));
        manual.metadata.name = Some("tick-manual".into());
        manual.metadata.uid = Some("m".into());
        w.jobs.push(manual);
        w.sync(ts("2024-01-01T00:10:00Z"));
        assert_eq!(w.count("UnexpectedJob"), 1);
        assert_eq!(w.active(), 0);
    }

    #[test]
    fn a_stored_tz_prefix_still_runs_with_a_warning() {
        let mut w = World::new(cron("TZ=Europe/Paris 0 9 * * *", "Allow"));
        w.sync(ts("2024-01-01T08:00:30Z"));
        assert_eq!(w.count("UnsupportedSchedule"), 1);
        assert_eq!(
            w.created,
            vec![schedule::job_name("tick", ts("2024-01-01T08:00:00Z"))]
        );
    }

    #[test]
    fn an_active_job_confirmed_gone_leaves_the_active_list() {
        let mut cj = cron("0 0 1 1 *", "Allow");
        cj.status = Some(CronJobStatus {
            active: Some(vec![ObjectReference {
                name: Some("tick-1".into()),
                uid: Some("gone".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let p = plan(
            &cj,
            &[],
            &["gone".to_string()].into(),
            ts("2024-06-01T00:00:00Z"),
        );
        assert_eq!(p.status.active.as_deref().map(<[_]>::len), Some(0));
        assert_eq!(p.notes[0].reason, "MissingJob");
    }
}
