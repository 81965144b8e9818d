use super::*;
use crate::job::indexes;
use serde_json::{json, Value};

const NOW: &str = "2024-01-01T00:01:00Z";

fn now() -> Timestamp {
    NOW.parse().expect("ts")
}

fn job(spec: Value, status: Value) -> Job {
    let mut s = json!({
        "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "podReplacementPolicy": "TerminatingOrFailed",
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
    });
    for (k, v) in spec.as_object().expect("spec").clone() {
        s[k] = v;
    }
    serde_json::from_value(json!({
        "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid"},
        "spec": s,
        "status": status,
    }))
    .expect("job")
}

/// A pod of the Job: `phase`, finished at `finished` (seconds after midnight) with `code`,
/// optionally with an index and the tracking finalizer.
fn pod(name: &str, phase: &str, index: Option<i32>, tracked: bool) -> Pod {
    let mut annotations = json!({});
    if let Some(i) = index {
        annotations[indexes::COMPLETION_INDEX] = json!(i.to_string());
    }
    let fin = if tracked {
        json!([TRACKING_FINALIZER])
    } else {
        json!([])
    };
    let code = if phase == "Failed" { 1 } else { 0 };
    let state = if matches!(phase, "Succeeded" | "Failed") {
        json!({"terminated": {"exitCode": code, "finishedAt": "2024-01-01T00:00:30Z"}})
    } else {
        json!({"running": {}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "annotations": annotations, "finalizers": fin,
            "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"containers": [{"name": "main"}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "i", "imageID": "",
            "ready": phase == "Running", "restartCount": 0, "state": state}]},
    }))
    .expect("pod")
}

fn with_code(mut p: Pod, code: i32) -> Pod {
    if let Some(cs) = p
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        if let Some(t) = cs[0].state.as_mut().and_then(|s| s.terminated.as_mut()) {
            t.exit_code = code;
        }
    }
    p
}

fn run(job: &Job, pods: &[Pod]) -> Plan {
    let refs: Vec<&Pod> = pods.iter().collect();
    plan(&Input {
        job,
        pods: &refs,
        now: now(),
        removing: &HashSet::new(),
        may_manage: true,
    })
}

fn conds(s: &JobStatus) -> Vec<(String, String, String)> {
    s.conditions
        .iter()
        .flatten()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_new_job_starts_parallelism_pods_and_its_clock() {
    let j = job(json!({"completions": 5, "parallelism": 2}), json!({}));
    let p = run(&j, &[]);
    assert_eq!(p.create.len(), 2);
    assert_eq!(p.status.active, Some(2));
    assert_eq!(p.status.start_time.as_ref().map(|t| t.0), Some(now()));
    assert!(p.interim_status.is_none());
}

#[test]
fn finished_pods_are_recorded_uncounted_first_then_counted_without_duplicates() {
    let j = job(
        json!({"completions": 3, "parallelism": 2}),
        json!({"startTime": "2024-01-01T00:00:00Z", "succeeded": 1}),
    );
    let pods = [
        pod("a", "Succeeded", None, true),
        pod("b", "Running", None, true),
        pod("old", "Succeeded", None, false),
    ];
    let p = run(&j, &pods);
    let interim = p.interim_status.clone().expect("interim");
    assert_eq!(interim.succeeded, Some(1), "not yet counted");
    assert_eq!(
        interim
            .uncounted_terminated_pods
            .and_then(|u| u.succeeded)
            .unwrap_or_default(),
        ["uid-a"]
    );
    assert_eq!(
        p.remove_finalizers
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(p.status.succeeded, Some(2));
    assert_eq!(p.status.active, Some(1));
    assert!(
        p.create.is_empty(),
        "one more completion, one active: {p:?}"
    );
    // While the removal is in flight the cache still shows the finalizer: not counted again.
    let refs: Vec<&Pod> = pods.iter().collect();
    let removing: HashSet<String> = ["uid-a".to_string()].into();
    let mut j2 = j.clone();
    j2.status = Some(p.status.clone());
    let again = plan(&Input {
        job: &j2,
        pods: &refs,
        now: now(),
        removing: &removing,
        may_manage: true,
    });
    assert!(again.interim_status.is_none());
    assert_eq!(again.status.succeeded, Some(2));
}

#[test]
fn completion_sets_success_criteria_then_complete_with_completion_time() {
    let j = job(
        json!({"completions": 2}),
        json!({"startTime": "2024-01-01T00:00:00Z", "succeeded": 1}),
    );
    let p = run(&j, &[pod("a", "Succeeded", None, true)]);
    assert_eq!(
        conds(&p.status),
        [
            (
                "SuccessCriteriaMet".into(),
                "True".into(),
                REASON_COMPLETIONS_REACHED.into()
            ),
            (
                "Complete".into(),
                "True".into(),
                REASON_COMPLETIONS_REACHED.into()
            )
        ]
    );
    assert_eq!(p.status.completion_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(p.events[0].reason, "Completed");
    assert_eq!(
        p.finished,
        Some((false, REASON_COMPLETIONS_REACHED.to_string()))
    );
    assert_eq!(p.status.succeeded, Some(2));
}

#[test]
fn failures_back_off_and_then_exceed_the_backoff_limit() {
    // First failure at 00:30: a replacement waits 10 s from then, so at 01:00 it may start.
    let j = job(
        json!({"completions": 1, "backoffLimit": 2}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(&j, &[pod("a", "Failed", None, true)]);
    assert_eq!(p.create.len(), 1);
    assert_eq!(p.status.failed, Some(1));
    // Two failures, the last at 00:50: 20 s back-off, 10 s left at 01:00.
    let mut late = pod("b", "Failed", None, true);
    if let Some(cs) = late
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        cs[0].state = serde_json::from_value(
            json!({"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:00:50Z"}}),
        )
        .expect("state");
    }
    let p = run(&j, &[pod("a", "Failed", None, false), late.clone()]);
    assert!(p.create.is_empty());
    assert_eq!(p.requeue, Some(Duration::from_secs(10)));
    // A third failure: over the limit of 2 (the first is counted already).
    let j = job(
        json!({"completions": 1, "backoffLimit": 2}),
        json!({"startTime": "2024-01-01T00:00:00Z", "failed": 1}),
    );
    let p = run(
        &j,
        &[
            pod("a", "Failed", None, false),
            late,
            pod("c", "Failed", None, true),
        ],
    );
    assert_eq!(p.status.failed, Some(3));
    assert_eq!(
        conds(&p.status),
        [
            (
                "FailureTarget".into(),
                "True".into(),
                REASON_BACKOFF_LIMIT.into()
            ),
            ("Failed".into(), "True".into(), REASON_BACKOFF_LIMIT.into())
        ]
    );
    assert!(p.events[0].warning && p.events[0].reason == REASON_BACKOFF_LIMIT);
    assert_eq!(p.finished, Some((true, REASON_BACKOFF_LIMIT.to_string())));
    assert!(p.status.completion_time.is_none());
}

#[test]
fn failing_stops_running_pods_and_waits_for_them_before_the_final_condition() {
    let j = job(
        json!({"completions": 2, "parallelism": 2, "backoffLimit": 0}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(
        &j,
        &[
            pod("a", "Failed", None, true),
            pod("b", "Running", None, true),
        ],
    );
    assert_eq!(
        p.delete.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(
        conds(&p.status),
        [(
            "FailureTarget".into(),
            "True".into(),
            REASON_BACKOFF_LIMIT.into()
        )]
    );
    assert_eq!(p.status.terminating, Some(1));
    assert!(p.events.is_empty() && p.finished.is_none());
}

#[test]
fn active_deadline_fails_the_job_and_otherwise_requeues_for_it() {
    let j = job(
        json!({"completions": 1, "activeDeadlineSeconds": 30}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(&j, &[pod("a", "Running", None, true)]);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(conds(&p.status)[0].2, REASON_DEADLINE);
    let j = job(
        json!({"completions": 1, "activeDeadlineSeconds": 90}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(&j, &[pod("a", "Running", None, true)]);
    assert_eq!(p.requeue, Some(Duration::from_secs(30)));
}

#[test]
fn pod_failure_policy_ignore_does_not_count_and_fail_job_ends_the_job() {
    let policy = json!({"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
    ]});
    let j = job(
        json!({"completions": 1, "backoffLimit": 0, "podFailurePolicy": policy, "podReplacementPolicy": "Failed"}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(&j, &[with_code(pod("a", "Failed", None, true), 3)]);
    assert_eq!(p.status.failed, None, "ignored");
    assert_eq!(p.remove_finalizers.len(), 1);
    assert_eq!(p.create.len(), 1, "replaced without back-off");
    assert!(p.status.conditions.is_none());
    let p = run(&j, &[with_code(pod("a", "Failed", None, true), 42)]);
    assert_eq!(p.status.failed, Some(1));
    let c = conds(&p.status);
    assert_eq!(c[0].2, REASON_POD_FAILURE_POLICY);
    assert_eq!(c[1].0, "Failed");
    assert!(p.events[0]
        .message
        .contains("exit code 42 matching FailJob rule at index 1"));
}

#[test]
fn indexed_jobs_create_the_lowest_missing_indexes_and_count_each_index_once() {
    let j = job(
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        json!({"startTime": "2024-01-01T00:00:00Z", "completedIndexes": "0"}),
    );
    let pods = [
        pod("a", "Succeeded", Some(1), true),
        pod("dup", "Succeeded", Some(1), true),
        pod("c", "Running", Some(3), true),
        pod("c2", "Running", Some(3), true),
    ];
    let p = run(&j, &pods);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-1"));
    assert_eq!(
        p.status.succeeded,
        Some(1),
        "the duplicate success is not counted"
    );
    assert_eq!(p.remove_finalizers.len(), 2);
    assert_eq!(p.delete.len(), 1, "a second pod of index 3 goes");
    assert_eq!(
        p.create,
        [NewPod {
            index: Some(2),
            failure_count: None
        }]
    );
}

#[test]
fn backoff_limit_per_index_fails_an_index_and_max_failed_indexes_the_job() {
    let j = job(
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
               "backoffLimitPerIndex": 1, "maxFailedIndexes": 0, "backoffLimit": 2147483647}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    // First failure of index 0: retried (after back-off) with a failure count of 1.
    let p = run(
        &j,
        &[
            pod("a", "Failed", Some(0), true),
            pod("b", "Running", Some(1), true),
            pod("c", "Running", Some(2), true),
        ],
    );
    assert!(p.status.failed_indexes.as_deref() == Some(""));
    assert_eq!(
        p.create,
        [NewPod {
            index: Some(0),
            failure_count: Some(1)
        }]
    );
    // Its retry fails too: index 0 failed, over maxFailedIndexes 0.
    let mut retry = pod("a2", "Failed", Some(0), true);
    retry
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(indexes::INDEX_FAILURE_COUNT.into(), "1".into());
    let p = run(
        &j,
        &[
            pod("a", "Failed", Some(0), false),
            retry,
            pod("b", "Running", Some(1), true),
            pod("c", "Running", Some(2), true),
        ],
    );
    assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(conds(&p.status)[0].2, REASON_MAX_FAILED_INDEXES);
    assert_eq!(p.delete.len(), 2);
}

#[test]
fn a_success_policy_ends_an_indexed_job_early() {
    let j = job(
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
               "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(
        &j,
        &[
            pod("a", "Succeeded", Some(0), true),
            pod("b", "Running", Some(1), true),
        ],
    );
    assert_eq!(
        conds(&p.status),
        [(
            "SuccessCriteriaMet".into(),
            "True".into(),
            REASON_SUCCESS_POLICY.into()
        )]
    );
    assert_eq!(p.delete.len(), 1);
    assert!(p.create.is_empty());
}

#[test]
fn suspending_deletes_pods_without_counting_them_and_resuming_restarts_the_clock() {
    let j = job(
        json!({"completions": 2, "parallelism": 2, "suspend": true}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let p = run(&j, &[pod("a", "Running", None, true)]);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(
        conds(&p.status),
        [("Suspended".into(), "True".into(), "JobSuspended".into())]
    );
    assert_eq!(p.events[0].reason, "Suspended");
    let mut deleted = pod("a", "Running", None, true);
    deleted.metadata.deletion_timestamp = Some(Time(now()));
    let mut suspended = j.clone();
    suspended.status = Some(p.status.clone());
    let p = run(&suspended, &[deleted]);
    assert_eq!(p.status.failed, None, "deleted for suspension, not failed");
    assert_eq!(p.remove_finalizers.len(), 1);
    // Resume.
    if let Some(s) = suspended.spec.as_mut() {
        s.suspend = Some(false);
    }
    suspended.status = Some(p.status.clone());
    let p = run(&suspended, &[]);
    assert_eq!(p.create.len(), 2);
    assert_eq!(
        conds(&p.status),
        [("Suspended".into(), "False".into(), "JobResumed".into())]
    );
    assert_eq!(p.status.start_time.as_ref().map(|t| t.0), Some(now()));
    assert_eq!(p.events[0].reason, "Resumed");
}

#[test]
fn a_finished_job_only_lets_go_of_its_pods() {
    let j = job(
        json!({"completions": 1}),
        json!({"conditions": [{"type": "Complete", "status": "True"}]}),
    );
    let p = run(
        &j,
        &[
            pod("a", "Succeeded", None, true),
            pod("b", "Succeeded", None, false),
        ],
    );
    assert_eq!(p.remove_finalizers.len(), 1);
    assert!(p.create.is_empty() && p.delete.is_empty() && p.interim_status.is_none());
}

#[test]
fn on_failure_restarts_count_against_the_backoff_limit() {
    let j = job(
        json!({"completions": 1, "backoffLimit": 2,
               "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main"}]}}}),
        json!({"startTime": "2024-01-01T00:00:00Z"}),
    );
    let mut p1 = pod("a", "Running", None, true);
    if let Some(cs) = p1
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
    {
        cs[0].restart_count = 2;
    }
    let p = run(&j, &[p1]);
    assert_eq!(conds(&p.status)[0].2, REASON_BACKOFF_LIMIT);
}
