//! CronJobs, PodDisruptionBudget status and pod garbage collection against a real server,
//! driven by the real kubectl. The CronJob checks cover what the CronJob controller owns (Jobs
//! created on schedule with their name, owner and annotation; lastScheduleTime and active;
//! Forbid; history pruning over Jobs whose status the test sets; `kubectl create job
//! --from=cronjob/...`; refusals of bad schedules and zones); one test runs the whole chain,
//! CronJob to Job to pods on a simulated node to lastSuccessfulTime.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::time::Duration;

use capstan_testkit::{eventually, Server};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(60);
/// One scheduled minute plus slack for a loaded machine.
const ONE_MINUTE: Duration = Duration::from_secs(80);

fn cron_job(name: &str, schedule: &str, extra_spec: Value) -> String {
    let mut spec = json!({
        "schedule": schedule,
        "jobTemplate": {
            "metadata": {"labels": {"app": name}, "annotations": {"team": "batch"}},
            "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]
            }}}
        }
    });
    for (k, v) in extra_spec.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": "default"}, "spec": spec}).to_string()
}

fn jobs_of(s: &Server, uid: &str) -> Vec<Value> {
    let list = s.get_json(&["jobs"]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|j| {
            j["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
        })
        .collect()
}

fn events_for(s: &Server, name: &str, reason: &str) -> Vec<Value> {
    let list = s.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={name},reason={reason}"),
    ]);
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_cron_job_starts_a_job_on_schedule_and_forbid_skips_while_it_runs() {
    let s = Server::start(BIN);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &cron_job("tick", "* * * * *", json!({"concurrencyPolicy": "Forbid"})),
    );
    let uid = s.jsonpath(&["cronjob", "tick"], "{.metadata.uid}");
    let job = eventually(ONE_MINUTE, "the first scheduled Job", || {
        jobs_of(&s, &uid).into_iter().next()
    });
    let name = job["metadata"]["name"].as_str().unwrap().to_string();
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .expect("scheduled timestamp annotation")
        .to_string();
    let scheduled: Timestamp = stamp.parse().expect("RFC 3339");
    assert_eq!(
        scheduled.as_second() % 60,
        0,
        "on a minute boundary: {stamp}"
    );
    assert_eq!(name, format!("tick-{}", scheduled.as_second() / 60));
    assert_eq!(job["metadata"]["annotations"]["team"], "batch");
    assert_eq!(job["metadata"]["labels"]["app"], "tick");
    let owner = &job["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["controller"],
            &owner["blockOwnerDeletion"]
        ),
        (
            &json!("CronJob"),
            &json!("tick"),
            &json!(true),
            &json!(true)
        )
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["sleep", "3600"])
    );
    let status = eventually(WAIT, "status lists the Job", || {
        let cj = s.get_json(&["cronjob", "tick"]);
        (cj["status"]["active"][0]["name"] == name.as_str()).then_some(cj["status"].clone())
    });
    let last: Timestamp = status["lastScheduleTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(last, scheduled);
    assert_eq!(status["active"][0]["kind"], "Job");
    assert_eq!(events_for(&s, "tick", "SuccessfulCreate").len(), 1);

    // The Job never finishes here: at the next minute, Forbid skips.
    eventually(ONE_MINUTE, "JobAlreadyActive", || {
        let e = events_for(&s, "tick", "JobAlreadyActive");
        (!e.is_empty()).then_some(())
    });
    let e = &events_for(&s, "tick", "JobAlreadyActive")[0];
    assert_eq!(
        e["message"],
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    assert_eq!(jobs_of(&s, &uid).len(), 1, "no second Job under Forbid");
}

/// The whole chain: the CronJob controller starts a Job, the Job controller runs its pod on a
/// simulated node (which completes Job pods), and the CronJob sees the Job finish.
#[test]
fn a_scheduled_job_runs_to_completion_and_sets_last_successful_time() {
    let s = Server::start_with(BIN, &["--simulate-nodes", "1"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &cron_job(
            "chain",
            "* * * * *",
            json!({"successfulJobsHistoryLimit": 1}),
        ),
    );
    let uid = s.jsonpath(&["cronjob", "chain"], "{.metadata.uid}");
    let job = eventually(ONE_MINUTE, "a Job on schedule", || {
        jobs_of(&s, &uid)
            .first()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
    });
    eventually(WAIT, "the Job Complete", || {
        let c = s.jsonpath(
            &["job", &job],
            r#"{.status.conditions[?(@.type=="Complete")].status}"#,
        );
        (c == "True").then_some(())
    });
    eventually(WAIT, "lastSuccessfulTime and no active Job", || {
        let last = s.jsonpath(&["cronjob", "chain"], "{.status.lastSuccessfulTime}");
        let active = s.jsonpath(&["cronjob", "chain"], "{.status.active}");
        (!last.is_empty() && active.is_empty()).then_some(())
    });
    eventually(WAIT, "SawCompletedJob", || {
        (!events_for(&s, "chain", "SawCompletedJob").is_empty()).then_some(())
    });
}

#[test]
fn missed_times_start_only_the_latest_and_replace_supersedes_the_running_job() {
    let s = Server::start(BIN);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &cron_job(
            "swap",
            "* * * * *",
            json!({"concurrencyPolicy": "Replace", "suspend": true, "timeZone": "Asia/Kolkata"}),
        ),
    );
    let uid = s.jsonpath(&["cronjob", "swap"], "{.metadata.uid}");
    // As if the server had been down for three hours since the last scheduled time.
    let minute = (Timestamp::now().as_second() - 3 * 3600) / 60 * 60;
    let stamp = Timestamp::from_second(minute)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    s.ok(&[
        "patch",
        "cronjob",
        "swap",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"lastScheduleTime": stamp}}).to_string(),
    ]);
    s.ok(&[
        "patch",
        "cronjob",
        "swap",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    let first = eventually(WAIT, "one Job for the latest missed time", || {
        jobs_of(&s, &uid).into_iter().next()
    });
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let minute: i64 = first_name.trim_start_matches("swap-").parse().unwrap();
    let now_minute = Timestamp::now().as_second() / 60;
    assert!(
        now_minute - minute <= 1,
        "the latest time, not the oldest: {first_name}"
    );
    // The scheduled time is written in the CronJob's zone.
    let stamp = first["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    assert!(stamp.ends_with("+05:30"), "{stamp}");
    assert_eq!(stamp.parse::<Timestamp>().unwrap().as_second(), minute * 60);
    let warning = eventually(WAIT, "TooManyMissedTimes", || {
        events_for(&s, "swap", "TooManyMissedTimes")
            .into_iter()
            .next()
    });
    assert_eq!(warning["type"], "Warning");
    assert_eq!(
        warning["message"],
        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
    );
    assert_eq!(jobs_of(&s, &uid).len(), 1, "one Job, not 180");
    // At the next minute the running Job is replaced.
    let second = eventually(ONE_MINUTE, "the replacement Job", || {
        let jobs = jobs_of(&s, &uid);
        let names: Vec<String> = jobs
            .iter()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names.len() == 1 && names[0] != first_name).then(|| names[0].clone())
    });
    let deleted = events_for(&s, "swap", "SuccessfulDelete");
    let want = format!("Deleted job {first_name}");
    assert!(
        deleted.iter().any(|e| e["message"] == want.as_str()),
        "{deleted:?}"
    );
    // One active Job, never the replaced one (a slow machine may see a later minute's).
    eventually(WAIT, "status lists only the replacement", || {
        let active = s.jsonpath(&["cronjob", "swap"], "{.status.active[*].name}");
        let names: Vec<&str> = active.split_whitespace().collect();
        (names.len() == 1 && names[0] != first_name && names[0] >= second.as_str()).then_some(())
    });
}

/// A Job's status as the Job controller would write it when it finishes.
fn finish(s: &Server, job: &str, condition: &str, at: &str) {
    let conds = if condition == "Complete" {
        json!([{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": at, "lastProbeTime": at},
               {"type": "Complete", "status": "True", "lastTransitionTime": at, "lastProbeTime": at}])
    } else {
        json!([{"type": "FailureTarget", "status": "True", "lastTransitionTime": at, "lastProbeTime": at},
               {"type": "Failed", "status": "True", "lastTransitionTime": at, "lastProbeTime": at}])
    };
    let mut status = json!({"startTime": at, "conditions": conds});
    if condition == "Complete" {
        status["completionTime"] = json!(at);
        status["succeeded"] = json!(1);
    } else {
        status["failed"] = json!(1);
    }
    s.ok(&[
        "patch",
        "job",
        job,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({ "status": status }).to_string(),
    ]);
}

#[test]
fn history_limits_prune_finished_jobs_and_create_job_from_a_cron_job_works() {
    // The Jobs' status is set by hand here, so the Job controller must not write it too; and
    // without its status writes the CronJob is synced rarely enough that client-go's spam
    // filter (25 events per object) keeps the SuccessfulDelete events this test reads.
    let s = Server::start_with(BIN, &["--disable-controllers", "job"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &cron_job(
            "nightly",
            "0 3 * * *",
            json!({"suspend": true, "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
        ),
    );
    let uid = s.jsonpath(&["cronjob", "nightly"], "{.metadata.uid}");
    for j in ["manual-1", "manual-2", "manual-3", "manual-4"] {
        s.ok(&["create", "job", j, "--from=cronjob/nightly"]);
    }
    let m1 = s.get_json(&["job", "manual-1"]);
    assert_eq!(
        m1["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(m1["metadata"]["ownerReferences"][0]["uid"], uid.as_str());
    assert_eq!(m1["metadata"]["labels"]["app"], "nightly");
    // Jobs it did not start are reported, not adopted into status.active.
    eventually(WAIT, "UnexpectedJob", || {
        (!events_for(&s, "nightly", "UnexpectedJob").is_empty()).then_some(())
    });

    finish(&s, "manual-1", "Complete", "2024-01-01T00:00:00Z");
    finish(&s, "manual-2", "Complete", "2024-01-02T00:00:00Z");
    finish(&s, "manual-3", "Failed", "2024-01-03T00:00:00Z");
    eventually(WAIT, "the older successful Job pruned", || {
        let names: Vec<String> = jobs_of(&s, &uid)
            .iter()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names == ["manual-2", "manual-3", "manual-4"]).then_some(())
    });
    finish(&s, "manual-4", "Failed", "2024-01-04T00:00:00Z");
    eventually(WAIT, "the older failed Job pruned", || {
        let names: Vec<String> = jobs_of(&s, &uid)
            .iter()
            .map(|j| j["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names == ["manual-2", "manual-4"]).then_some(())
    });
    // Events are recorded after the deletes, by the recorder's own task.
    eventually(
        WAIT,
        "SuccessfulDelete events for manual-1 and manual-3",
        || {
            let deleted: Vec<String> = events_for(&s, "nightly", "SuccessfulDelete")
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_string())
                .collect();
            (deleted.contains(&"Deleted job manual-1".to_string())
                && deleted.contains(&"Deleted job manual-3".to_string()))
            .then_some(())
        },
    );
    eventually(WAIT, "lastSuccessfulTime", || {
        let t = s.jsonpath(&["cronjob", "nightly"], "{.status.lastSuccessfulTime}");
        (t == "2024-01-02T00:00:00Z").then_some(())
    });
    // Suspended: nothing was scheduled.
    assert_eq!(
        s.jsonpath(&["cronjob", "nightly"], "{.status.lastScheduleTime}"),
        ""
    );
}

#[test]
fn bad_schedules_and_time_zones_are_refused_with_upstreams_messages() {
    let s = Server::start(BIN);
    let bad_schedule = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &cron_job("bad", "61 * * * *", json!({})),
    );
    assert!(!bad_schedule.status.success());
    let err = String::from_utf8_lossy(&bad_schedule.stderr);
    assert!(
        err.contains("The CronJob \"bad\" is invalid: spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"),
        "{err}"
    );
    let bad_zone = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &cron_job("bad", "0 * * * *", json!({"timeZone": "Mars/Olympus_Mons"})),
    );
    assert!(!bad_zone.status.success());
    let err = String::from_utf8_lossy(&bad_zone.stderr);
    assert!(
        err.contains("spec.timeZone: Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons"),
        "{err}"
    );
    let err = s.fails(&[
        "create",
        "cronjob",
        "bad",
        "--image=busybox",
        "--schedule=* * *",
    ]);
    assert!(
        err.contains("expected exactly 5 fields, found 3: [* * *]"),
        "{err}"
    );
    // A good zone is stored and printed.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &cron_job("paris", "0 9 * * 1-5", json!({"timeZone": "Europe/Paris"})),
    );
    let get = s.ok(&["get", "cronjob", "paris"]);
    assert!(get.contains("Europe/Paris"), "{get}");
}

#[test]
fn a_pdb_reports_allowed_disruptions_for_a_ready_deployment() {
    let s = Server::start_with(BIN, &["--simulate-nodes", "2"]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    s.ok(&[
        "create",
        "pdb",
        "web-min",
        "--selector=app=web",
        "--min-available=2",
    ]);
    s.ok(&[
        "create",
        "pdb",
        "web-max",
        "--selector=app=web",
        "--max-unavailable=50%",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "nobody", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "none"}}, "minAvailable": 1,
                         "unhealthyPodEvictionPolicy": "AlwaysAllow"}})
        .to_string(),
    );
    assert_eq!(
        s.jsonpath(&["pdb", "nobody"], "{.spec.unhealthyPodEvictionPolicy}"),
        "AlwaysAllow"
    );
    let table = eventually(WAIT, "allowed disruptions", || {
        let out = s.ok(&["get", "pdb"]);
        let row = |name: &str| -> Vec<String> {
            out.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        (row("web-min").get(3).map(String::as_str) == Some("1")
            && row("web-max").get(3).map(String::as_str) == Some("2"))
        .then_some(out)
    });
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ]
    );
    let status = s.get_json(&["pdb", "web-max"])["status"].clone();
    assert_eq!(
        (
            &status["currentHealthy"],
            &status["desiredHealthy"],
            &status["expectedPods"]
        ),
        (&json!(3), &json!(1), &json!(3)),
        "{status}"
    );
    assert_eq!(status["observedGeneration"], 1);
    let cond = &status["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &json!("DisruptionAllowed"),
            &json!("True"),
            &json!("SufficientPods")
        )
    );
    let nobody = eventually(WAIT, "the empty budget's status", || {
        let st = s.get_json(&["pdb", "nobody"])["status"].clone();
        (st["conditions"][0]["reason"] == "InsufficientPods").then_some(st)
    });
    assert_eq!(nobody["disruptionsAllowed"], 0);
    // A percentage budget over a pod whose controller has no scale cannot be computed: it
    // fails safe.
    s.ok(&["create", "job", "batch", "--image=busybox"]);
    let job_uid = s.jsonpath(&["job", "batch"], "{.metadata.uid}");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "worker", "namespace": "default", "labels": {"app": "batch"},
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "batch",
                                                  "uid": job_uid, "controller": true}]},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    );
    s.ok(&[
        "create",
        "pdb",
        "batch",
        "--selector=app=batch",
        "--max-unavailable=1",
    ]);
    let failed = eventually(WAIT, "SyncFailed", || {
        let st = s.get_json(&["pdb", "batch"])["status"].clone();
        (st["conditions"][0]["reason"] == "SyncFailed").then_some(st)
    });
    assert_eq!(
        failed["conditions"][0]["message"],
        "found no controllers for pod \"worker\""
    );
    assert_eq!(failed["disruptionsAllowed"], 0);

    // Scaling down to 2 leaves web-min no room.
    s.ok(&["scale", "deployment/web", "--replicas=2"]);
    eventually(WAIT, "no disruptions allowed", || {
        let st = s.get_json(&["pdb", "web-min"])["status"].clone();
        (st["disruptionsAllowed"] == 0
            && st["currentHealthy"] == 2
            && st["conditions"][0]["reason"] == "InsufficientPods")
            .then_some(())
    });
}

fn pod_yaml(name: &str, node: &str) -> String {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}).to_string()
}

fn pod_names(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = s.get_json(&["pods"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn pod_gc_deletes_terminated_pods_beyond_the_threshold_and_pods_of_deleted_nodes() {
    let s = Server::start_with(
        BIN,
        &["--terminated-pod-gc-threshold=2", "--disable-scheduler"],
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost"}}).to_string(),
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("on-ghost", "ghost"));
    for p in ["done-1", "done-2", "done-3", "done-4", "pending"] {
        s.ok_stdin(&["apply", "-f", "-"], &pod_yaml(p, ""));
    }
    for p in ["done-1", "done-2", "done-3", "done-4"] {
        s.ok(&[
            "patch",
            "pod",
            p,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Succeeded"}}"#,
        ]);
    }
    s.ok(&["delete", "node", "ghost"]);
    // A pod terminating on a not-ready Node taken out of service: nobody will finish it.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "broken"},
                "spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]}})
        .to_string(),
    );
    let mut stuck: Value = serde_json::from_str(&pod_yaml("stuck", "broken")).unwrap();
    stuck["spec"]["terminationGracePeriodSeconds"] = json!(3600);
    s.ok_stdin(&["apply", "-f", "-"], &stuck.to_string());
    s.ok(&["delete", "pod", "stuck", "--wait=false"]);
    assert!(
        !s.jsonpath(&["pod", "stuck"], "{.metadata.deletionTimestamp}")
            .is_empty(),
        "the pod waits for its node to finish it"
    );
    // Up to one 20 s period for the terminated pods; the orphan waits out the 40 s quarantine.
    eventually(
        WAIT,
        "the two oldest terminated pods and the stuck pod collected",
        || {
            let names = pod_names(&s);
            (!names.contains(&"done-1".to_string())
                && !names.contains(&"done-2".to_string())
                && !names.contains(&"stuck".to_string()))
            .then_some(())
        },
    );
    eventually(
        Duration::from_secs(100),
        "the orphaned pod collected",
        || (pod_names(&s) == ["done-3", "done-4", "pending"]).then_some(()),
    );
    let log = s.log();
    assert!(
        log.contains("node no longer exists"),
        "the orphan was logged"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("default/stuck") && l.contains("OutOfService")),
        "the stuck pod went for being on an out-of-service node"
    );
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for line in [
        "pod_gc_collector_force_delete_pods_total{reason=\"terminated\"} 2",
        "pod_gc_collector_force_delete_pods_total{reason=\"orphaned\"} 1",
        "pod_gc_collector_force_delete_pods_total{reason=\"out-of-service\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
}
