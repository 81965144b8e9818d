//! What durability costs, on demand (ignored; figures in BENCHMARKS.md, "Hardening: durability"):
//!
//! ```text
//! cargo test --release -p capstan-store --test durability_cost -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The databases go to $TMPDIR (default /tmp): point it at the file system the server's data
//! dir lives on, since the fsync cost is the disk's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_store::sqlite::{SqliteConfig, SqliteStore, Synchronous};

/// The configuration `capstan server` opens its store with (crates/capstan/src/server.rs).
fn server_config(synchronous: Synchronous) -> SqliteConfig {
    SqliteConfig {
        cache_size_kib: 4 * 1024,
        read_connections: 3,
        synchronous,
        ..SqliteConfig::default()
    }
}

async fn creates(synchronous: Synchronous, n: usize, callers: usize) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"), server_config(synchronous)).expect("open"),
    );
    let result = capstan_store::bench::measure_create_throughput(store.clone(), n, callers).await;
    store.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn synchronous_full_against_normal() {
    // Alternating modes, twice each, so that drift in the machine's load hits both alike.
    for (n, callers) in [(20_000, 16), (3_000, 1)] {
        for round in 1..=2 {
            for mode in [Synchronous::Normal, Synchronous::Full] {
                let (per_sec, p50, p99) = creates(mode, n, callers).await;
                println!(
                    "{mode:?}\t{callers} callers\tround {round}\t{per_sec:.0} creates/s\tp50 {:.2} ms\tp99 {:.2} ms",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn opening_a_large_database_and_its_integrity_check() {
    let objects = 300_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let store =
            Arc::new(SqliteStore::open(&path, server_config(Synchronous::Normal)).expect("open"));
        capstan_store::bench::measure_create_throughput(store.clone(), objects, 16).await;
        store.close().await;
    }
    let size_mb = std::fs::metadata(&path).expect("size").len() as f64 / 1e6;
    for round in 1..=2 {
        let started = Instant::now();
        let store = SqliteStore::open(&path, server_config(Synchronous::Full)).expect("reopen");
        let open = started.elapsed();
        store.close().await;
        drop(store);
        let conn = rusqlite::Connection::open(&path).expect("conn");
        let started = Instant::now();
        let quick: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .expect("quick_check");
        let quick_time = started.elapsed();
        let started = Instant::now();
        let full: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        let full_time = started.elapsed();
        assert_eq!((quick.as_str(), full.as_str()), ("ok", "ok"));
        println!(
            "{objects} objects, {size_mb:.0} MB, round {round} (page cache warm from round 2): open with quick_check {:.0} ms; quick_check alone {:.0} ms; integrity_check {:.0} ms",
            open.as_secs_f64() * 1e3,
            quick_time.as_secs_f64() * 1e3,
            full_time.as_secs_f64() * 1e3
        );
    }
}
