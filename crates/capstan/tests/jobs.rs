//! Jobs on a real node (containerd, busybox) with the real kubectl: completions and
//! parallelism, Indexed Jobs, back-off to BackoffLimitExceeded, podFailurePolicy Ignore and
//! FailJob, suspend and resume, ttlSecondsAfterFinished, cascading deletion, and the 422s
//! of bad Jobs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::time::Duration;

use capstan_testkit::agent::BUSYBOX;
use capstan_testkit::{eventually, Server};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(120);

/// A Job manifest: `spec` lines (2-space indented, under spec:) and a busybox container
/// running `script` with restartPolicy Never.
fn job(name: &str, spec: &str, script: &str, pod_extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {BUSYBOX}\n        command: [sh, -c, {script:?}]\n{pod_extra}"
    )
}

fn wait_condition(s: &Server, job: &str, cond: &str) {
    s.ok(&[
        "wait",
        &format!("--for=condition={cond}"),
        &format!("job/{job}"),
        "--timeout=120s",
    ]);
}

fn pods_of(s: &Server, job: &str) -> Vec<Value> {
    let list = s.get_json(&["pods", "-l", &format!("batch.kubernetes.io/job-name={job}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Reason -> count of the Job's events.
fn events_of(s: &Server, job: &str) -> Vec<(String, String, String)> {
    let list = s.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.kind=Job,involvedObject.name={job}"),
    ]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn ts(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

#[test]
fn a_job_of_five_completions_runs_two_at_a_time_and_completes() {
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&job(
        "five",
        "  completions: 5\n  parallelism: 2\n",
        "echo done",
        "",
    ));
    wait_condition(&s, "five", "complete");
    let j = s.get_json(&["job", "five"]);
    let st = &j["status"];
    assert_eq!(st["succeeded"], 5, "{st}");
    assert!(
        st.get("active").is_none() && st.get("failed").is_none(),
        "{st}"
    );
    assert_eq!(
        (st["ready"].as_i64(), st["terminating"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(st["uncountedTerminatedPods"], serde_json::json!({}), "{st}");
    for c in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&j, c).unwrap_or_else(|| panic!("{c} in {st}"));
        assert_eq!(c["reason"], "CompletionsReached");
        assert_eq!(c["message"], "Reached expected number of succeeded pods");
    }
    assert!(ts(&st["completionTime"]) >= ts(&st["startTime"]));

    // Every pod succeeded, printed "done", and was let go of (no tracking finalizer).
    let pods = eventually(WAIT, "5 pods without the tracking finalizer", || {
        let pods = pods_of(&s, "five");
        let released = pods.iter().all(|p| {
            p["metadata"]
                .get("finalizers")
                .is_none_or(|f| f == &serde_json::json!([]))
        });
        (pods.len() == 5 && released).then_some(pods)
    });
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        let name = p["metadata"]["name"].as_str().unwrap();
        assert_eq!(s.ok(&["logs", name]).trim(), "done");
    }
    // Never more than 2 at once: a pod is active from its creation until its container
    // finished; a replacement is only created after a finish was seen (half-open intervals).
    let spans: Vec<(i64, i64)> = pods
        .iter()
        .map(|p| {
            (
                ts(&p["metadata"]["creationTimestamp"]),
                ts(&p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]),
            )
        })
        .collect();
    for (start, _) in &spans {
        let overlapping = spans
            .iter()
            .filter(|(s2, f2)| s2 <= start && start < f2)
            .count();
        assert!(overlapping <= 2, "more than 2 active at {start}: {spans:?}");
    }

    // Events as upstream's job-controller records them.
    let events = eventually(WAIT, "5 SuccessfulCreate and a Completed event", || {
        let ev = events_of(&s, "five");
        let created = ev.iter().filter(|e| e.1 == "SuccessfulCreate").count();
        let completed = ev
            .iter()
            .any(|e| e == &("Normal".into(), "Completed".into(), "Job completed".into()));
        (created == 5 && completed).then_some(ev)
    });
    assert!(
        events.iter().all(|e| e.0 == "Normal"),
        "no warnings: {events:?}"
    );

    // kubectl get jobs: STATUS, COMPLETIONS and DURATION as upstream prints them.
    let table = s.ok(&["get", "jobs"]);
    let row = table.lines().find(|l| l.starts_with("five")).expect(&table);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..3], ["Complete", "5/5"], "{table}");
    assert!(cells[3].ends_with('s'), "a duration: {table}");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("COMPLETIONS") && table.contains("DURATION"),
        "{table}"
    );

    // Deleting the Job (kubectl's default: background) takes its pods with it.
    s.ok(&["delete", "job", "five"]);
    eventually(WAIT, "the Job's pods to be deleted", || {
        pods_of(&s, "five").is_empty().then_some(())
    });
}

#[test]
fn indexed_jobs_give_each_pod_its_index_and_suspended_jobs_run_nothing_until_resumed() {
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&job(
        "idx",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
        "",
    ));
    // Created suspended: the controller marks it Suspended and starts nothing.
    s.apply(&job("later", "  suspend: true\n", "echo resumed", ""));
    wait_condition(&s, "idx", "complete");
    let j = s.get_json(&["job", "idx"]);
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{}", j["status"]);
    assert_eq!(j["status"]["succeeded"], 3);
    let pods = pods_of(&s, "idx");
    assert_eq!(pods.len(), 3);
    let mut seen = Vec::new();
    for p in &pods {
        let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            index.as_str()
        );
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
        assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
        let log = s.ok(&["logs", name]);
        assert_eq!(log.trim(), format!("index={index} host=idx-{index}"));
        seen.push(index);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    wait_condition(&s, "later", "suspended");
    assert!(pods_of(&s, "later").is_empty());
    let later = s.get_json(&["job", "later"]);
    assert!(later["status"].get("startTime").is_none(), "{later}");
    let c = condition(&later, "Suspended").unwrap();
    assert_eq!(
        (&c["reason"], &c["message"]),
        (&"JobSuspended".into(), &"Job suspended".into())
    );
    s.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_condition(&s, "later", "complete");
    let later = s.get_json(&["job", "later"]);
    let c = later["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("JobResumed"))
    );
    eventually(WAIT, "Suspended and Resumed events", || {
        let ev = events_of(&s, "later");
        (ev.iter().any(|e| e.1 == "Suspended") && ev.iter().any(|e| e.1 == "Resumed")).then_some(())
    });

    // Suspending a running Job stops its pod without counting a failure.
    s.apply(&job("sleepy", "", "sleep 600", ""));
    eventually(WAIT, "the sleepy pod to run", || {
        let pods = pods_of(&s, "sleepy");
        (pods.len() == 1 && pods[0]["status"]["phase"] == "Running").then_some(())
    });
    s.ok(&[
        "patch",
        "job",
        "sleepy",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    wait_condition(&s, "sleepy", "suspended");
    eventually(WAIT, "the sleepy pod to be gone", || {
        pods_of(&s, "sleepy").is_empty().then_some(())
    });
    let st = s.get_json(&["job", "sleepy"])["status"].clone();
    assert!(
        st.get("active").is_none() && st.get("failed").is_none(),
        "{st}"
    );
}

#[test]
fn failing_pods_back_off_until_the_backoff_limit_and_pod_failure_policies_apply() {
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&job("fail", "  backoffLimit: 1\n", "exit 1", ""));
    // Exit 3 is ignored (no back-off, not counted); the retry sees the marker and succeeds.
    let marker = s.data_dir().join("job-marker");
    s.apply(&job(
        "ignore",
        "  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [3]}\n",
        "test -f /m/seen && exit 0; touch /m/seen; exit 3",
        &format!(
            "        volumeMounts: [{{name: m, mountPath: /m}}]\n      volumes:\n      - name: m\n        hostPath: {{path: {}, type: DirectoryOrCreate}}\n",
            marker.display()
        ),
    ));
    s.apply(&job(
        "failjob",
        "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: main, operator: In, values: [42]}\n",
        "exit 42",
        "",
    ));

    s.apply(&job(
        "deadline",
        "  activeDeadlineSeconds: 3\n",
        "sleep 600",
        "",
    ));
    // Index 1 always fails: retried once (backoffLimitPerIndex), then that index alone fails
    // while the others complete.
    s.apply(&job(
        "perindex",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimitPerIndex: 1\n  maxFailedIndexes: 1\n",
        "test $JOB_COMPLETION_INDEX != 1",
        "",
    ));

    wait_condition(&s, "failjob", "failed");
    let j = s.get_json(&["job", "failjob"]);
    let c = condition(&j, "Failed").unwrap_or_else(|| panic!("{}", j["status"]));
    assert_eq!(c["reason"], "PodFailurePolicy");
    let msg = c["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Container main for pod default/failjob-")
            && msg.ends_with("failed with exit code 42 matching FailJob rule at index 0"),
        "{msg}"
    );
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(pods_of(&s, "failjob").len(), 1, "not retried");
    assert_eq!(j["status"]["failed"], 1);

    wait_condition(&s, "ignore", "complete");
    let j = s.get_json(&["job", "ignore"]);
    assert!(j["status"].get("failed").is_none(), "{}", j["status"]);
    assert_eq!(j["status"]["succeeded"], 1);
    assert_eq!(pods_of(&s, "ignore").len(), 2);

    wait_condition(&s, "fail", "failed");
    let j = s.get_json(&["job", "fail"]);
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["message"].as_str()),
        (
            Some("BackoffLimitExceeded"),
            Some("Job has reached the specified backoff limit")
        )
    );
    assert_eq!(j["status"]["failed"], 2);
    let pods = pods_of(&s, "fail");
    assert_eq!(pods.len(), 2, "one try and one retry");
    // The retry waited out the 10 s back-off after the first failure.
    let mut times: Vec<(i64, i64)> = pods
        .iter()
        .map(|p| {
            (
                ts(&p["metadata"]["creationTimestamp"]),
                ts(&p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]),
            )
        })
        .collect();
    times.sort();
    assert!(times[1].0 >= times[0].1 + 9, "back-off of 10 s: {times:?}");
    eventually(WAIT, "a BackoffLimitExceeded warning", || {
        events_of(&s, "fail")
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "BackoffLimitExceeded")
            .then_some(())
    });
    wait_condition(&s, "deadline", "failed");
    let j = s.get_json(&["job", "deadline"]);
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["message"].as_str()),
        (
            Some("DeadlineExceeded"),
            Some("Job was active longer than specified deadline")
        )
    );
    eventually(WAIT, "the deadline Job's pod to be stopped", || {
        pods_of(&s, "deadline").is_empty().then_some(())
    });

    wait_condition(&s, "perindex", "failed");
    let j = s.get_json(&["job", "perindex"]);
    let st = &j["status"];
    assert_eq!(
        (
            st["completedIndexes"].as_str(),
            st["failedIndexes"].as_str()
        ),
        (Some("0,2"), Some("1")),
        "{st}"
    );
    assert_eq!(
        (st["succeeded"].as_i64(), st["failed"].as_i64()),
        (Some(2), Some(2))
    );
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["message"].as_str()),
        (Some("FailedIndexes"), Some("Job has failed indexes"))
    );
    let retries: Vec<String> = pods_of(&s, "perindex")
        .iter()
        .filter(|p| p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1")
        .map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut retries = retries;
    retries.sort();
    assert_eq!(retries, ["0", "1"], "index 1 ran twice");

    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for want in [
        r#"job_controller_jobs_finished_total{completion_mode="NonIndexed",result="failed",reason="BackoffLimitExceeded"} 1"#,
        r#"job_controller_jobs_finished_total{completion_mode="NonIndexed",result="failed",reason="PodFailurePolicy"} 1"#,
        r#"job_controller_jobs_finished_total{completion_mode="NonIndexed",result="succeeded",reason="CompletionsReached"} 1"#,
    ] {
        assert!(metrics.contains(want), "{want} in /metrics");
    }
    let table = s.ok(&["get", "jobs"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("fail "))
        .expect(&table);
    assert_eq!(row.split_whitespace().nth(1), Some("Failed"), "{table}");
}

#[test]
fn a_server_restart_mid_job_neither_misses_nor_double_counts_a_pod() {
    let mut s = Server::start_with_agent(BIN, &[]);
    s.apply(&job(
        "steady",
        "  completions: 6\n  parallelism: 2\n",
        "sleep 2",
        "",
    ));
    eventually(WAIT, "a first success", || {
        let n = s.jsonpath(&["job", "steady"], "{.status.succeeded}");
        (n.parse::<i64>().unwrap_or(0) >= 1).then_some(())
    });
    // The controller manager stops mid-way (pods finishing meanwhile keep their tracking
    // finalizer) and the next one carries on from the Job's status and the pods.
    s.restart();
    s.wait_node_ready();
    wait_condition(&s, "steady", "complete");
    let st = s.get_json(&["job", "steady"])["status"].clone();
    assert_eq!(st["succeeded"], 6, "{st}");
    assert!(st.get("failed").is_none(), "{st}");
    let pods = pods_of(&s, "steady");
    let succeeded = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Succeeded")
        .count();
    assert_eq!((pods.len(), succeeded), (6, 6), "one pod per completion");
}

#[test]
fn ttl_seconds_after_finished_deletes_a_finished_job_and_its_pods() {
    let s = Server::start_with_agent(BIN, &[]);
    s.apply(&job(
        "short",
        "  ttlSecondsAfterFinished: 0\n",
        "echo bye",
        "",
    ));
    eventually(WAIT, "the Job to be deleted after it finished", || {
        let out = s.kubectl(&["get", "job", "short"]);
        let gone = String::from_utf8_lossy(&out.stderr).contains("NotFound");
        gone.then_some(())
    });
    eventually(WAIT, "its pod to be deleted", || {
        pods_of(&s, "short").is_empty().then_some(())
    });
    assert!(
        s.log()
            .contains("deleted job whose ttlSecondsAfterFinished expired"),
        "the TTL controller deleted it"
    );

    // A Job deleted with --cascade=orphan leaves its running pod, let go of: no owner, no
    // tracking finalizer, so deleting it later completes.
    s.apply(&job("keep", "", "sleep 600", ""));
    let pod = eventually(WAIT, "the keep pod to run", || {
        let pods = pods_of(&s, "keep");
        (pods.len() == 1 && pods[0]["status"]["phase"] == "Running")
            .then(|| pods[0]["metadata"]["name"].as_str().unwrap().to_string())
    });
    s.ok(&["delete", "job", "keep", "--cascade=orphan"]);
    eventually(
        WAIT,
        "the orphaned pod to lose its owner and finalizer",
        || {
            let p = s.get_json(&["pod", &pod]);
            let m = &p["metadata"];
            let no_owner = m
                .get("ownerReferences")
                .is_none_or(|r| r == &serde_json::json!([]));
            let no_finalizer = m
                .get("finalizers")
                .is_none_or(|f| f == &serde_json::json!([]));
            (no_owner && no_finalizer).then_some(())
        },
    );
    assert_eq!(s.jsonpath(&["pod", &pod], "{.status.phase}"), "Running");
    s.ok(&["delete", "pod", &pod, "--wait=true", "--timeout=60s"]);
}

#[test]
fn bad_jobs_are_rejected_with_upstreams_messages() {
    let s = Server::start(BIN);
    let cases = [
        (
            job("neg", "  completions: -1\n", "true", ""),
            "spec.completions: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            job("negp", "  parallelism: -2\n", "true", ""),
            "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
        ),
        (
            job(
                "pfp",
                "  podFailurePolicy:\n    rules:\n    - action: Explode\n      onExitCodes: {operator: In, values: [1]}\n",
                "true",
                "",
            ),
            "spec.podFailurePolicy.rules[0].action: Unsupported value: \"Explode\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
        ),
        (
            job(
                "zero",
                "  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onExitCodes: {operator: In, values: [0]}\n",
                "true",
                "",
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
        ),
        (
            job("always", "", "true", "").replace("restartPolicy: Never", "restartPolicy: Always"),
            "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ),
    ];
    for (manifest, want) in cases {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{manifest}");
        assert!(err.contains("is invalid"), "a 422: {err}");
        assert!(err.contains(want), "{err}\nshould contain {want}");
    }
    // The generated selector and labels, as upstream generates them.
    s.apply(&job("gen", "  suspend: true\n", "true", ""));
    let j = s.get_json(&["job", "gen"]);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    let labels = &j["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["controller-uid"], uid);
    assert_eq!(labels["job-name"], "gen");
    assert_eq!(labels["batch.kubernetes.io/job-name"], "gen");
}
