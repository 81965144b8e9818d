//! One Job sync as a pure function, upstream's `syncJob` without the I/O: given the Job, its
//! pods and the time, [`plan`] decides which finished pods to account for (through
//! `uncountedTerminatedPods`, so none is missed or counted twice), which tracking finalizers
//! to remove, which pods to create or delete, the Job's new status and the events to emit.
//! The controller then carries the plan out in that order.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::backoff;
use super::indexes::{index_failure_count, pod_index, IndexSet};
use super::policy::{match_failure, match_success, FailureAction};
use crate::pods::{deletion_order, is_active, is_ready, is_terminal};

/// The finalizer on every pod a Job creates, removed once the pod is accounted for.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// At most this many pods are created or deleted in one sync (upstream's MaxPodCreateDeletePerSync).
pub const MAX_PODS_PER_SYNC: usize = 500;

pub const REASON_BACKOFF_LIMIT: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE: &str = "DeadlineExceeded";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_MAX_FAILED_INDEXES: &str = "MaxFailedIndexesExceeded";
pub const REASON_FAILED_INDEXES: &str = "FailedIndexes";
pub const REASON_SUCCESS_POLICY: &str = "SuccessPolicy";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

/// What one sync sees.
pub struct Input<'a> {
    pub job: &'a Job,
    /// The pods this Job controls (controller reference with its uid).
    pub pods: &'a [&'a Pod],
    pub now: Timestamp,
    /// Pods (by uid) whose tracking finalizer we removed and the cache does not show yet.
    pub removing: &'a HashSet<String>,
    /// No creations or deletions outstanding: pods may be created or deleted.
    pub may_manage: bool,
}

/// A pod the plan refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

/// A pod to create: its completion index (Indexed Jobs) and how many pods of that index
/// failed before it (backoffLimitPerIndex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPod {
    pub index: Option<i32>,
    pub failure_count: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Newly finished pods recorded in `uncountedTerminatedPods` (and indexes): written
    /// before any finalizer is removed, so a crash in between loses no pod.
    pub interim_status: Option<JobStatus>,
    pub remove_finalizers: Vec<PodRef>,
    pub create: Vec<NewPod>,
    pub delete: Vec<PodRef>,
    /// The status once the steps above succeeded.
    pub status: JobStatus,
    pub events: Vec<Event>,
    /// Look again after this long (back-off, activeDeadlineSeconds).
    pub requeue: Option<Duration>,
    /// Set when this sync finishes the Job: (failed, reason).
    pub finished: Option<(bool, String)>,
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: uid(p),
    }
}

/// Whether the pod carries the tracking finalizer (as far as we know: a removal we issued
/// counts as done).
fn tracked(p: &Pod, removing: &HashSet<String>) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
        && !removing.contains(&uid(p))
}

/// Upstream's `isPodFailed`: Failed, or, unless only failed pods are replaced, deleted before
/// succeeding (an orphan that never gets to report Failed).
fn pod_failed(p: &Pod, only_failed: bool) -> bool {
    match phase(p) {
        "Failed" => true,
        "Succeeded" => false,
        _ => !only_failed && p.metadata.deletion_timestamp.is_some(),
    }
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some() && !is_terminal(p)
}

fn seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The condition of `type_` if it is True.
pub fn true_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Complete or Failed: nothing more runs.
pub fn is_finished(status: &JobStatus) -> bool {
    true_condition(status, "Complete").is_some() || true_condition(status, "Failed").is_some()
}

/// Sets a condition's status (upstream's `ensureJobConditionStatus`); true when it changed.
/// A condition that does not exist is only added when True.
fn ensure_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &Time,
) -> bool {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let new = JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let changed = match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value => false,
        Some(c) => {
            *c = new;
            true
        }
        None if value == "True" => {
            conds.push(new);
            true
        }
        None => false,
    };
    if conds.is_empty() {
        status.conditions = None;
    }
    changed
}

/// Restart policy OnFailure: container restarts count against backoffLimit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[&Pod], limit: i32) -> bool {
    let policy = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// How the Job ends, once decided: the interim condition's type, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Finish {
    failed: bool,
    reason: String,
    message: String,
}

impl Finish {
    fn fail(reason: &str, message: &str) -> Self {
        Self {
            failed: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn success(reason: &str, message: &str) -> Self {
        Self {
            failed: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn interim_type(&self) -> &'static str {
        if self.failed {
            "FailureTarget"
        } else {
            "SuccessCriteriaMet"
        }
    }
    fn final_type(&self) -> &'static str {
        if self.failed {
            "Failed"
        } else {
            "Complete"
        }
    }
}

/// One sync of `input.job`.
pub fn plan(input: &Input) -> Plan {
    let job = input.job;
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let now = seconds(input.now);
    let mut plan = Plan::default();
    let removing = input.removing;

    // A finished Job or one being deleted runs nothing: it only lets go of its pods.
    if is_finished(&status) || job.metadata.deletion_timestamp.is_some() {
        plan.remove_finalizers = input
            .pods
            .iter()
            .filter(|p| tracked(p, removing))
            .map(|p| pod_ref(p))
            .collect();
        plan.status = status;
        return plan;
    }

    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(0).max(0);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let per_index = spec.backoff_limit_per_index.filter(|_| indexed);
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let suspended = spec.suspend == Some(true);
    let policy = spec.pod_failure_policy.as_ref();

    // 1. Account for pods that finished since the last sync.
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut uncounted_ok: Vec<String> = uncounted.succeeded.unwrap_or_default();
    let mut uncounted_failed: Vec<String> = uncounted.failed.unwrap_or_default();
    let before = (uncounted_ok.len(), uncounted_failed.len());
    let mut succeeded_idx = IndexSet::parse(status.completed_indexes.as_deref(), completions);
    let mut failed_idx = IndexSet::parse(status.failed_indexes.as_deref(), completions);
    let indexes_before = (succeeded_idx.clone(), failed_idx.clone());
    let mut fail_job_message: Option<String> = None;
    let succeeding = true_condition(&status, "SuccessCriteriaMet").is_some();
    let mut pods: Vec<&Pod> = input.pods.to_vec();
    pods.sort_by_key(|p| backoff::finish_time(p));
    for p in &pods {
        if !tracked(p, removing) {
            continue;
        }
        let u = uid(p);
        if uncounted_ok.contains(&u) || uncounted_failed.contains(&u) {
            plan.remove_finalizers.push(pod_ref(p));
            continue;
        }
        if phase(p) == "Succeeded" {
            // An Indexed Job counts the first success of each index only.
            let counts = !indexed
                || pod_index(p, completions)
                    .is_some_and(|i| !failed_idx.contains(i) && succeeded_idx.insert(i));
            if counts {
                uncounted_ok.push(u);
            }
            plan.remove_finalizers.push(pod_ref(p));
        } else if pod_failed(p, only_failed) {
            let action = if phase(p) == "Failed" {
                match_failure(policy, p)
            } else {
                FailureAction::Count
            };
            // Pods we delete to suspend a Job, or once it succeeded, did not fail.
            let excused = (suspended || succeeding) && phase(p) != "Failed";
            let counted = match &action {
                FailureAction::FailJob(m) => {
                    fail_job_message.get_or_insert_with(|| m.clone());
                    true
                }
                FailureAction::Ignore => false,
                FailureAction::Count | FailureAction::FailIndex => !excused,
            };
            if counted {
                uncounted_failed.push(u);
            }
            if let (Some(limit), Some(i)) = (per_index, pod_index(p, completions)) {
                if action == FailureAction::FailIndex
                    || (counted && index_failure_count(p) >= limit)
                {
                    failed_idx.insert(i);
                }
            }
            plan.remove_finalizers.push(pod_ref(p));
        }
    }
    let write_indexes = |s: &mut JobStatus, ok: &IndexSet, failed: &IndexSet| {
        if indexed {
            s.completed_indexes = Some(ok.format().unwrap_or_default());
            s.failed_indexes = per_index.and(Some(failed.format().unwrap_or_default()));
        }
    };
    if (uncounted_ok.len(), uncounted_failed.len()) != before
        || (succeeded_idx.clone(), failed_idx.clone()) != indexes_before
    {
        let mut interim = status.clone();
        interim.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: (!uncounted_ok.is_empty()).then(|| uncounted_ok.clone()),
            failed: (!uncounted_failed.is_empty()).then(|| uncounted_failed.clone()),
        });
        write_indexes(&mut interim, &succeeded_idx, &failed_idx);
        plan.interim_status = Some(interim);
    }
    // Once the finalizers are off, every uncounted pod is counted.
    let succeeded = status.succeeded.unwrap_or(0) + uncounted_ok.len() as i32;
    let failed = status.failed.unwrap_or(0) + uncounted_failed.len() as i32;
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    write_indexes(&mut status, &succeeded_idx, &failed_idx);

    let active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut terminating = pods.iter().filter(|p| is_terminating(p)).count();
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(now.clone());
    }

    // 2. Has the Job's fate been decided?
    let mut finish: Option<Finish> = None;
    if let Some(c) = true_condition(&status, "FailureTarget") {
        finish = Some(Finish::fail(
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
        ));
    } else if let Some(c) = true_condition(&status, "SuccessCriteriaMet") {
        finish = Some(Finish::success(
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or(""),
        ));
    } else if let Some(m) = &fail_job_message {
        finish = Some(Finish::fail(REASON_POD_FAILURE_POLICY, m));
    }
    let deadline = match (spec.active_deadline_seconds, &status.start_time) {
        (Some(s), Some(start)) if !suspended => start
            .0
            .checked_add(SignedDuration::from_secs(s))
            .ok()
            .map(|at| at.duration_since(input.now)),
        _ => None,
    };
    if finish.is_none() {
        if failed > backoff_limit || past_backoff_limit_on_failure(&spec, &active, backoff_limit) {
            finish = Some(Finish::fail(
                REASON_BACKOFF_LIMIT,
                "Job has reached the specified backoff limit",
            ));
        } else if deadline.is_some_and(|d| d <= SignedDuration::ZERO) {
            finish = Some(Finish::fail(
                REASON_DEADLINE,
                "Job was active longer than specified deadline",
            ));
        } else if let Some(d) = deadline {
            plan.requeue = Some(d.unsigned_abs());
        }
    }
    if indexed && finish.is_none() {
        if per_index.is_some() {
            if spec
                .max_failed_indexes
                .is_some_and(|m| failed_idx.total() > m.max(0) as usize)
            {
                finish = Some(Finish::fail(
                    REASON_MAX_FAILED_INDEXES,
                    "Job has exceeded the specified maximal number of failed indexes",
                ));
            } else if failed_idx.total() > 0
                && failed_idx.total() + succeeded_idx.total() >= completions as usize
            {
                finish = Some(Finish::fail(
                    REASON_FAILED_INDEXES,
                    "Job has failed indexes",
                ));
            }
        }
        if finish.is_none() {
            if let Some(m) =
                match_success(spec.success_policy.as_ref(), completions, &succeeded_idx)
            {
                finish = Some(Finish::success(REASON_SUCCESS_POLICY, &m));
            }
        }
    }

    // 3. Run, stop or suspend pods.
    let mut active_after = active.len();
    if finish.is_some() {
        // Decided: whatever still runs is stopped.
        if input.may_manage {
            plan.delete = active.iter().map(|p| pod_ref(p)).collect();
            active_after = 0;
            terminating += plan.delete.len();
        }
    } else {
        if input.may_manage {
            let ctx = ManageCtx {
                spec: &spec,
                pods: &pods,
                active: &active,
                succeeded,
                succeeded_idx: &succeeded_idx,
                failed_idx: &failed_idx,
                completions,
                parallelism,
                per_index,
                only_failed,
                suspended,
                terminating,
                now: input.now,
            };
            let (create, delete, wait) = manage(&ctx);
            active_after = active.len() + create.len() - delete.len();
            terminating += delete.len();
            plan.create = create;
            plan.delete = delete;
            if let Some(w) = wait {
                plan.requeue = Some(plan.requeue.map_or(w, |r| r.min(w)));
            }
            if suspended {
                if ensure_condition(
                    &mut status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now,
                ) {
                    plan.events.push(Event {
                        warning: false,
                        reason: "Suspended",
                        message: "Job suspended".into(),
                    });
                }
            } else if ensure_condition(
                &mut status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &now,
            ) {
                plan.events.push(Event {
                    warning: false,
                    reason: "Resumed",
                    message: "Job resumed".into(),
                });
                // activeDeadlineSeconds counts continuous activity.
                status.start_time = Some(now.clone());
            }
        }
        let done = if indexed {
            succeeded_idx.total() >= completions as usize
        } else {
            match spec.completions {
                None => succeeded > 0,
                Some(c) => succeeded >= c,
            }
        };
        if done && active_after == 0 {
            finish = Some(Finish::success(
                REASON_COMPLETIONS_REACHED,
                "Reached expected number of succeeded pods",
            ));
        }
    }

    // 4. Conditions: the interim one at once, the final one once no pod is left running.
    if let Some(f) = &finish {
        ensure_condition(
            &mut status,
            f.interim_type(),
            "True",
            &f.reason,
            &f.message,
            &now,
        );
        if active_after == 0 && terminating == 0 {
            ensure_condition(
                &mut status,
                f.final_type(),
                "True",
                &f.reason,
                &f.message,
                &now,
            );
            plan.finished = Some((f.failed, f.reason.clone()));
            if f.failed {
                plan.events.push(Event {
                    warning: true,
                    reason: static_reason(&f.reason),
                    message: f.message.clone(),
                });
            } else {
                status.completion_time = Some(now.clone());
                plan.events.push(Event {
                    warning: false,
                    reason: "Completed",
                    message: "Job completed".into(),
                });
            }
            plan.requeue = None;
        }
    }

    // 5. Counters (zero counts left out as the API's omitempty would; ready and terminating
    // are pointers upstream and always shown).
    let ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    status.active = (active_after > 0).then_some(active_after as i32);
    status.ready = Some(if active_after == 0 { 0 } else { ready });
    status.terminating = Some(terminating as i32);
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    plan.status = status;
    plan
}

/// Event reasons are static strings; a reason from a stored condition maps onto ours.
fn static_reason(reason: &str) -> &'static str {
    [
        REASON_BACKOFF_LIMIT,
        REASON_DEADLINE,
        REASON_POD_FAILURE_POLICY,
        REASON_MAX_FAILED_INDEXES,
        REASON_FAILED_INDEXES,
    ]
    .into_iter()
    .find(|r| *r == reason)
    .unwrap_or("Failed")
}

struct ManageCtx<'a> {
    spec: &'a JobSpec,
    pods: &'a [&'a Pod],
    active: &'a [&'a Pod],
    succeeded: i32,
    succeeded_idx: &'a IndexSet,
    failed_idx: &'a IndexSet,
    completions: i32,
    parallelism: i32,
    per_index: Option<i32>,
    only_failed: bool,
    suspended: bool,
    terminating: usize,
    now: Timestamp,
}

/// Failed pods that count for back-off: (finish time, succeeded) of every finished pod the
/// failure policy does not ignore.
fn finished_for_backoff<'a>(
    ctx: &ManageCtx,
    pods: impl Iterator<Item = &'a &'a Pod>,
) -> Vec<(Option<Timestamp>, bool)> {
    pods.filter(|p| match phase(p) {
        "Succeeded" => true,
        "Failed" => match_failure(ctx.spec.pod_failure_policy.as_ref(), p) != FailureAction::Ignore,
        _ => false,
    })
    .map(|p| (backoff::finish_time(p), phase(p) == "Succeeded"))
    .collect()
}

/// Upstream's `manageJob`: pods to create and to delete, and how long back-off still holds
/// creations back.
fn manage(ctx: &ManageCtx) -> (Vec<NewPod>, Vec<PodRef>, Option<Duration>) {
    if ctx.suspended {
        return (
            Vec::new(),
            ctx.active.iter().map(|p| pod_ref(p)).collect(),
            None,
        );
    }
    let indexed = ctx.spec.completion_mode.as_deref() == Some("Indexed");
    let mut delete: Vec<PodRef> = Vec::new();
    let mut active: Vec<&Pod> = ctx.active.to_vec();
    if indexed {
        // Pods of no valid index, of a finished index, or a second one of an index go.
        let mut seen = HashSet::new();
        active.retain(|p| {
            let keep = pod_index(p, ctx.completions).is_some_and(|i| {
                !ctx.succeeded_idx.contains(i) && !ctx.failed_idx.contains(i) && seen.insert(i)
            });
            if !keep {
                delete.push(pod_ref(p));
            }
            keep
        });
    }
    let done = if indexed {
        ctx.succeeded_idx.total() as i32
    } else {
        ctx.succeeded
    };
    let want = match ctx.spec.completions {
        None if ctx.succeeded > 0 => active.len() as i32,
        None => ctx.parallelism,
        Some(c) => (c - done).clamp(0, ctx.parallelism),
    } as usize;
    if active.len() > want {
        let mut order = active.clone();
        if indexed {
            // Highest indexes first.
            order.sort_by_key(|p| std::cmp::Reverse(pod_index(p, ctx.completions)));
        } else {
            deletion_order(&mut order);
        }
        let extra = (active.len() - want).min(MAX_PODS_PER_SYNC);
        delete.extend(order.iter().take(extra).map(|p| pod_ref(p)));
        return (Vec::new(), delete, None);
    }
    let mut diff = want - active.len();
    if ctx.only_failed {
        diff = diff.saturating_sub(ctx.terminating);
    }
    diff = diff.min(MAX_PODS_PER_SYNC);
    if diff == 0 {
        return (Vec::new(), delete, None);
    }
    // Back-off over the whole Job (unless failures are counted per index).
    if ctx.per_index.is_none() {
        let (failures, last) = backoff::record(&finished_for_backoff(ctx, ctx.pods.iter()));
        let wait = backoff::remaining(failures, last, ctx.now);
        if !wait.is_zero() {
            return (Vec::new(), delete, Some(wait));
        }
    }
    if !indexed {
        let create = (0..diff)
            .map(|_| NewPod {
                index: None,
                failure_count: None,
            })
            .collect();
        return (create, delete, None);
    }
    let busy: HashSet<i32> = ctx
        .pods
        .iter()
        .filter(|p| is_active(p) || (ctx.only_failed && is_terminating(p)))
        .filter_map(|p| pod_index(p, ctx.completions))
        .collect();
    let mut create = Vec::new();
    let mut wait: Option<Duration> = None;
    for i in 0..ctx.completions {
        if create.len() >= diff {
            break;
        }
        if ctx.succeeded_idx.contains(i) || ctx.failed_idx.contains(i) || busy.contains(&i) {
            continue;
        }
        let mut failure_count = None;
        if ctx.per_index.is_some() {
            let of_index: Vec<&&Pod> = ctx
                .pods
                .iter()
                .filter(|p| pod_index(p, ctx.completions) == Some(i))
                .collect();
            let last_failed = of_index
                .iter()
                .filter(|p| phase(p) == "Failed")
                .max_by_key(|p| backoff::finish_time(p));
            let count = last_failed.map_or(0, |p| {
                let ignored =
                    match_failure(ctx.spec.pod_failure_policy.as_ref(), p) == FailureAction::Ignore;
                index_failure_count(p) + i32::from(!ignored)
            });
            let (_, last) = backoff::record(&finished_for_backoff(ctx, of_index.into_iter()));
            let w = backoff::remaining(count.max(0) as usize, last, ctx.now);
            if !w.is_zero() {
                wait = Some(wait.map_or(w, |x| x.min(w)));
                continue;
            }
            failure_count = Some(count);
        }
        create.push(NewPod {
            index: Some(i),
            failure_count,
        });
    }
    (create, delete, wait)
}

#[cfg(test)]
mod tests;
