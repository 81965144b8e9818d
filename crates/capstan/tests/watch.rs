//! Watch semantics clients rely on: selector transitions, streaming lists ending with the
//! initial-events-end bookmark, resuming from a resourceVersion, and 410 once history is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::time::Duration;

use capstan_testkit::{watch_lines, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rv(s: &Server) -> String {
    s.raw(CMS)["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string()
}

#[test]
fn a_watch_resumes_after_a_resource_version_and_follows_selector_transitions() {
    let s = Server::start(BIN);
    s.ok(&["create", "cm", "a"]);
    let start = rv(&s);
    s.ok(&["label", "cm", "a", "team=x"]); // enters the selector: ADDED
    s.ok(&["create", "cm", "b"]); // never matches
    s.ok(&["annotate", "cm", "a", "n=1"]); // still matches: MODIFIED
    s.ok(&["label", "cm", "a", "team=y", "--overwrite"]); // leaves: DELETED
    let events = watch_lines(
        &s,
        &format!(
            "{CMS}?watch=true&labelSelector=team%3Dx&resourceVersion={start}&timeoutSeconds=2"
        ),
        5,
    );
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ADDED".into(), "a".into()),
            ("MODIFIED".into(), "a".into()),
            ("DELETED".into(), "a".into())
        ],
        "{events:?}"
    );
}

#[test]
fn a_streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
    let s = Server::start(BIN);
    s.ok(&["create", "cm", "one"]);
    s.ok(&["create", "cm", "two"]);
    let events = watch_lines(
        &s,
        &format!("{CMS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1"),
        4,
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(&types[..3], ["ADDED", "ADDED", "BOOKMARK"], "{events:?}");
    assert_eq!(
        events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[test]
fn watching_from_a_compacted_revision_gets_410_expired() {
    let s = Server::start_with(
        BIN,
        &[
            "--compaction-interval-seconds",
            "1",
            "--compaction-keep-revisions",
            "1",
        ],
    );
    s.ok(&["create", "cm", "old"]);
    let old_rv = rv(&s);
    for i in 0..5 {
        s.ok(&["create", "cm", &format!("new-{i}")]);
    }
    std::thread::sleep(Duration::from_millis(2500));
    let events = watch_lines(
        &s,
        &format!("{CMS}?watch=true&resourceVersion={old_rv}&timeoutSeconds=1"),
        4,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    let (code, body) = capstan_testkit::http(
        &s,
        "GET",
        &format!("{CMS}?resourceVersion={old_rv}&resourceVersionMatch=Exact"),
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 410, "{body}");
}

#[test]
fn paging_with_limit_and_continue_returns_every_object_once() {
    let s = Server::start(BIN);
    for i in 0..7 {
        s.ok(&["create", "cm", &format!("p{i}")]);
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    loop {
        let page = s.raw(&format!(
            "{CMS}?limit=3{}",
            if cont.is_empty() {
                String::new()
            } else {
                format!("&continue={cont}")
            }
        ));
        for item in page["items"].as_array().expect("items") {
            names.push(item["metadata"]["name"].as_str().expect("name").to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(c) => {
                assert!(
                    page["metadata"]["remainingItemCount"].as_u64().is_some(),
                    "{page}"
                );
                cont = c.to_string();
            }
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    // kubectl pages the same way with --chunk-size.
    let out = s.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("configmap/p")).count(),
        7
    );
}

#[test]
fn a_plain_watch_reports_adds_updates_and_deletes_with_their_revisions() {
    let s = Server::start(BIN);
    let start = rv(&s);
    s.ok(&["create", "cm", "w"]);
    s.ok(&["label", "cm", "w", "a=b"]);
    s.ok(&["delete", "cm", "w"]);
    let events = watch_lines(
        &s,
        &format!("{CMS}?watch=true&resourceVersion={start}&timeoutSeconds=2"),
        5,
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{events:?}");
    let revs: Vec<u64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .expect("rv")
                .parse()
                .expect("number")
        })
        .collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions increase: {revs:?}"
    );
    assert_eq!(events[1]["object"]["metadata"]["labels"]["a"], "b");
    assert_eq!(events[2]["object"]["metadata"]["name"], "w");
}
