//! What a new user hits first on a node, on real containerd with the real kubectl: a fresh data
//! dir with no pause image anywhere runs a pod (the agent assembles its own pause image), a
//! sandbox that cannot be created is told in the pod's events with back-off, and the log
//! written to a file carries no colour codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::time::{Duration, Instant};

use capstan_testkit::agent::BUSYBOX;
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

const ASSEMBLED: &str = "assembled and imported the built-in pause image";

fn busybox_pod(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sleep, '3600']\n"
    )
}

/// The FailedCreatePodSandBox events about `pod`: (summed count, messages).
fn sandbox_events(s: &Server, pod: &str) -> (i64, Vec<String>) {
    let list = s.get_json(&["events"]);
    let mut count = 0;
    let mut messages = Vec::new();
    for e in list["items"].as_array().into_iter().flatten() {
        if e["reason"] == "FailedCreatePodSandBox" && e["involvedObject"]["name"] == pod {
            count += e["count"].as_i64().unwrap_or(1);
            messages.push(e["message"].as_str().unwrap_or_default().to_string());
        }
    }
    (count, messages)
}

fn assert_no_colour_codes(s: &Server) {
    let log = std::fs::read(s.log_path()).expect("server.log");
    assert!(!log.is_empty(), "the server wrote no log");
    assert!(
        !log.contains(&0x1b),
        "ESC bytes in a log written to a file:\n{}",
        String::from_utf8_lossy(&log)
            .lines()
            .find(|l| l.contains('\u{1b}'))
            .unwrap_or_default()
    );
}

#[test]
fn a_fresh_data_dir_runs_a_pod_with_the_pause_image_the_agent_assembles() {
    let mut s = Server::start_with_agent(BIN, &[]);
    let node = s.node_name();
    // Only the test images were put in the air-gap folder; the pause image comes from nowhere
    // but the agent.
    let folder = s.data_dir().join("agent/images");
    let names: Vec<String> = std::fs::read_dir(&folder)
        .expect("images folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("pause")),
        "a pause tarball in {}: {names:?}",
        folder.display()
    );

    s.apply(&busybox_pod("first", &node));
    s.wait_pod_field(
        "first",
        "{.status.phase}",
        "Running",
        Duration::from_secs(60),
    );
    let log = s.log();
    assert_eq!(log.matches(ASSEMBLED).count(), 1, "{log}");
    assert!(!log.contains("FailedCreatePodSandBox"), "{log}");
    // The node lists it among its images, as upstream lists registry.k8s.io/pause.
    eventually(
        Duration::from_secs(30),
        "the pause image in the node's images",
        || {
            s.jsonpath(&["node", &node], "{.status.images[*].names}")
                .contains("capstan.local/pause:3.10")
                .then_some(())
        },
    );
    assert_no_colour_codes(&s);

    // containerd keeps it: the next start finds it and assembles nothing.
    s.restart();
    s.wait_node_ready();
    s.apply(&busybox_pod("second", &node));
    s.wait_pod_field(
        "second",
        "{.status.phase}",
        "Running",
        Duration::from_secs(60),
    );
    let log = s.log();
    assert_eq!(
        log.matches(ASSEMBLED).count(),
        1,
        "assembled again although containerd had it:\n{log}"
    );
    // The sandbox (catatonit -P) stops on TERM: deletion is quick, not the grace period.
    let started = Instant::now();
    s.ok(&["delete", "pod", "second", "--wait=true"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "deleting took {:?}",
        started.elapsed()
    );
    assert_no_colour_codes(&s);
}

#[test]
fn a_sandbox_that_cannot_be_created_is_told_in_events_with_back_off() {
    // Nothing listens on port 1: every pull of this sandbox image fails at once.
    let unpullable = "127.0.0.1:1/nowhere/pause:3.10";
    let s = Server::start_with_agent(BIN, &["--pause-image", unpullable]);
    let node = s.node_name();
    s.apply(&busybox_pod("stuck", &node));

    let first = eventually(
        Duration::from_secs(60),
        "a FailedCreatePodSandBox event",
        || {
            let (count, messages) = sandbox_events(&s, "stuck");
            (count >= 1).then_some(messages)
        },
    );
    let since_first = Instant::now();
    assert!(
        first[0].starts_with("Failed to create pod sandbox: rpc error: code = "),
        "{first:?}"
    );
    assert!(first[0].contains(unpullable), "{first:?}");
    // The pod waits as upstream shows it: Pending, its container ContainerCreating.
    assert_eq!(s.jsonpath(&["pod", "stuck"], "{.status.phase}"), "Pending");
    assert_eq!(
        s.jsonpath(
            &["pod", "stuck"],
            "{.status.containerStatuses[0].state.waiting.reason}"
        ),
        "ContainerCreating"
    );
    assert_eq!(
        s.jsonpath(
            &["pod", "stuck"],
            "{.status.conditions[?(@.type==\"PodReadyToStartContainers\")].status}"
        ),
        "False"
    );
    let table = s.ok(&["get", "pod", "stuck"]);
    assert!(table.contains("ContainerCreating"), "{table}");

    // The second attempt comes after the first back-off step (10 s), not at the 2 s retry pace.
    eventually(
        Duration::from_secs(40),
        "a second FailedCreatePodSandBox",
        || (sandbox_events(&s, "stuck").0 >= 2).then_some(()),
    );
    assert!(
        since_first.elapsed() >= Duration::from_secs(7),
        "retried after {:?}",
        since_first.elapsed()
    );
    // Steps of 10 s then 20 s: about 32 s after the first failure there have been 3 attempts
    // (a 2 s retry would have made 16).
    while since_first.elapsed() < Duration::from_secs(32) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (count, _) = sandbox_events(&s, "stuck");
    let log = s.log();
    let lines = log.matches("creating the pod sandbox failed").count() as i64;
    assert!((2..=4).contains(&count), "{count} events in 32 s");
    assert!(
        (2..=4).contains(&lines),
        "{lines} log lines in 32 s:\n{log}"
    );
    assert!(
        !log.contains(ASSEMBLED),
        "a registry pause image was named: nothing to assemble\n{log}"
    );
    let described = s.ok(&["describe", "pod", "stuck"]);
    assert!(described.contains("FailedCreatePodSandBox"), "{described}");
    assert_no_colour_codes(&s);
}
