//! An answered write survives `kill -9`: a child process (this test binary, re-executed) creates
//! keys from several tasks and prints each acknowledged key; the parent SIGKILLs it mid-burst,
//! reopens the database and finds every acknowledged key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_store::sqlite::{SqliteConfig, SqliteStore};
use capstan_store::{ListOptions, Store};

/// Set (to the database path) in the child's environment.
const CHILD_ENV: &str = "CAPSTAN_STORE_KILL9_DB";
/// The parent kills the child after this many acknowledgements plus up to as many again (varied
/// from run to run, so that the kill lands at different points of the WAL's life).
const KILL_AFTER_ACKS: usize = 3000;
const WRITERS: usize = 8;

/// The child's side: write until killed. A no-op when run as an ordinary test.
#[test]
fn child_writes_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(
            SqliteStore::open(&PathBuf::from(path), SqliteConfig::default()).expect("open"),
        );
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/kill9/{w}/{i:08}");
                        let kv = store
                            .create(&key, key.clone().into_bytes())
                            .await
                            .expect("create");
                        // Not println!: the test harness may capture that. One locked write per line
                        // so lines from different tasks never interleave.
                        let line = format!("ACK {key} {}\n", kv.mod_revision);
                        let mut out = std::io::stdout().lock();
                        out.write_all(line.as_bytes()).expect("stdout");
                        out.flush().expect("flush");
                    }
                })
            })
            .collect();
        for writer in writers {
            let _ = writer.await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_writes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    // Reading is blocking; do it on its own thread and hand lines over.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let kill_after = KILL_AFTER_ACKS
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize % KILL_AFTER_ACKS);
    let mut acked: Vec<(String, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < kill_after {
        assert!(
            Instant::now() < deadline,
            "the child acknowledged only {} writes",
            acked.len()
        );
        match lines_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => acked.extend(parse_ack(&line)),
            Err(err) => panic!(
                "the child stopped writing after {} acks: {err}",
                acked.len()
            ),
        }
    }
    // SIGKILL on Unix: no destructors, no checkpoint, writes possibly mid-transaction.
    child.kill().expect("kill the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed, not finished");
    // Lines already in the pipe were acknowledged before the kill and count too.
    reader.join().expect("reader thread");
    acked.extend(lines_rx.try_iter().filter_map(|line| parse_ack(&line)));

    let store = SqliteStore::open(&path, SqliteConfig::default()).expect("reopen after kill -9");
    let listed = store
        .list("/kill9/", ListOptions::default())
        .await
        .expect("list");
    let stored: std::collections::HashMap<&str, i64> = listed
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    let mut missing = Vec::new();
    for (key, revision) in &acked {
        match stored.get(key.as_str()) {
            Some(stored_rev) => {
                assert_eq!(stored_rev, revision, "{key} has the acknowledged revision")
            }
            None => missing.push(key.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged keys were lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Writes that were in flight may or may not have landed, but the log has no holes.
    let head = store.current_revision().await.expect("rev");
    assert_eq!(
        head as usize,
        listed.items.len(),
        "revisions 1..=head are all creates"
    );
    let mut revisions: Vec<i64> = listed.items.iter().map(|kv| kv.mod_revision).collect();
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (1..=head).collect::<Vec<_>>(),
        "no gaps in the revisions"
    );
    eprintln!(
        "kill -9 after {} acknowledged creates; {} creates found after reopening",
        acked.len(),
        head
    );
    // The reopened store keeps working.
    let next = store
        .create("/kill9/after", b"v".to_vec())
        .await
        .expect("create after reopen");
    assert_eq!(next.mod_revision, head + 1);
}

fn parse_ack(line: &str) -> Option<(String, i64)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let key = parts.next()?.to_owned();
    let revision = parts.next()?.parse().ok()?;
    Some((key, revision))
}
