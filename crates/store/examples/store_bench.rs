//! The SQLite store alone: create throughput with concurrent callers, and list latency.
//!
//! `cargo run -p capstan-store --release --example store_bench [-- <creates> <callers> [<db path>]]`
//! (defaults: 50000 creates, 16 callers, a temporary database).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_store::bench::measure_create_throughput;
use capstan_store::sqlite::{SqliteConfig, SqliteStore};
use capstan_store::{ListOptions, Store};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let creates: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let callers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let sqlite = Arc::new(
        match args.get(2) {
            Some(path) => SqliteStore::open(path.as_ref(), SqliteConfig::default()),
            None => SqliteStore::open_temporary(SqliteConfig::default()),
        }
        .expect("open the store"),
    );
    let store: Arc<dyn Store> = sqlite.clone();

    // 10,000 keys under one prefix for the list measurement.
    measure_create_throughput(store.clone(), 10_000, callers).await;
    let prefix = first_run_prefix(&store).await;
    let at = store.current_revision().await.expect("revision");
    let current = best_of(5, || list(&store, &prefix, None)).await;
    println!("list 10,000 keys at the current revision: {current:?} (best of 5)");

    let (per_sec, p50, p99) = measure_create_throughput(store.clone(), creates, callers).await;
    println!("{creates} creates from {callers} callers: {per_sec:.0}/s, p50 {p50:?}, p99 {p99:?}");
    let (per_sec, p50, p99) = measure_create_throughput(store.clone(), creates / 10, 1).await;
    println!(
        "{} creates from 1 caller: {per_sec:.0}/s, p50 {p50:?}, p99 {p99:?}",
        creates / 10
    );

    let past = best_of(5, || list(&store, &prefix, Some(at))).await;
    println!("list 10,000 keys at a past revision: {past:?} (best of 5)");
    let started = Instant::now();
    store.compact(at).await.expect("compact");
    println!("compact to revision {at}: {:?}", started.elapsed());
    let size = |suffix: &str| {
        let mut path = sqlite.path().as_os_str().to_owned();
        path.push(suffix);
        std::fs::metadata(path).map_or(0, |m| m.len() / 1024)
    };
    println!("database {} KiB, WAL {} KiB", size(""), size("-wal"));
}

async fn first_run_prefix(store: &Arc<dyn Store>) -> String {
    let listed = store
        .list(
            "/bench/",
            ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    let key = &listed.items.first().expect("a benchmark key").key;
    // "/bench/<run>/<index>" -> "/bench/<run>/"
    let cut = key.rfind('/').map_or(key.len(), |i| i + 1);
    key[..cut].to_owned()
}

async fn list(store: &Arc<dyn Store>, prefix: &str, revision: Option<i64>) -> Duration {
    let started = Instant::now();
    let listed = store
        .list(
            prefix,
            ListOptions {
                revision,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 10_000);
    started.elapsed()
}

async fn best_of<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(f().await);
    }
    best
}
