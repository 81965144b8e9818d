//! The store on its own ([`run`]): creates straight into a fresh SQLite backend opened as the
//! server opens it, with no HTTP, TLS, JSON or strategy in the way: the ceiling for creates
//! through the API on this machine.

use std::sync::Arc;

use anyhow::Context;
use capstan_store::sqlite::{SqliteConfig, SqliteStore, Synchronous};
use serde::Serialize;

use crate::stats::ms;

#[derive(Debug, Clone, Serialize)]
pub struct StoreAlone {
    pub objects: usize,
    pub concurrency: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The same run with `synchronous=NORMAL` (no fsync per commit), for the cost of durability.
    pub without_fsync: WithoutFsync,
}

#[derive(Debug, Clone, Serialize)]
pub struct WithoutFsync {
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The configuration `capstan server` opens its store with (`run` in
/// crates/capstan/src/server.rs, which does not export it); keep the two in step.
fn server_config(synchronous: Synchronous) -> SqliteConfig {
    SqliteConfig {
        cache_size_kib: 4 * 1024,
        read_connections: 3,
        synchronous,
        ..SqliteConfig::default()
    }
}

/// Measures `objects` creates from `concurrency` callers on a new database in a temporary dir
/// (on the same file system as the server's data dir), as the server commits (fsync per batch)
/// and then without the fsync.
pub async fn run(objects: usize, concurrency: usize) -> anyhow::Result<StoreAlone> {
    let (per_second, p50, p99) = measure(Synchronous::Full, objects, concurrency).await?;
    let (normal_per_second, normal_p50, normal_p99) =
        measure(Synchronous::Normal, objects, concurrency).await?;
    Ok(StoreAlone {
        objects,
        concurrency,
        per_second,
        p50_ms: ms(p50),
        p99_ms: ms(p99),
        without_fsync: WithoutFsync {
            per_second: normal_per_second,
            p50_ms: ms(normal_p50),
            p99_ms: ms(normal_p99),
        },
    })
}

async fn measure(
    synchronous: Synchronous,
    objects: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, std::time::Duration, std::time::Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("capstan-bench-store-")
        .tempdir_in(std::env::temp_dir())?;
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"), server_config(synchronous))
            .context("opening the store")?,
    );
    let result =
        capstan_store::bench::measure_create_throughput(store.clone(), objects, concurrency).await;
    store.close().await;
    Ok(result)
}
