//! The store on its own ([`run`]): creates straight into a fresh SQLite backend opened as the
//! server opens it, with no HTTP, TLS, JSON or strategy in the way: the ceiling for creates
//! through the API on this machine.

use std::sync::Arc;

use anyhow::Context;
use capstan_store::sqlite::{SqliteConfig, SqliteStore};
use capstan_store::Store;
use serde::Serialize;

use crate::stats::ms;

#[derive(Debug, Clone, Serialize)]
pub struct StoreAlone {
    pub objects: usize,
    pub concurrency: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The configuration `capstan server` opens its store with (`run` in
/// crates/capstan/src/server.rs, which does not export it); keep the two in step.
fn server_config() -> SqliteConfig {
    SqliteConfig {
        cache_size_kib: 4 * 1024,
        read_connections: 3,
        ..SqliteConfig::default()
    }
}

/// Measures `objects` creates from `concurrency` callers on a new database in a temporary dir
/// (on the same file system as the server's data dir).
pub async fn run(objects: usize, concurrency: usize) -> anyhow::Result<StoreAlone> {
    let dir = tempfile::Builder::new()
        .prefix("capstan-bench-store-")
        .tempdir_in(std::env::temp_dir())?;
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"), server_config())
            .context("opening the store")?,
    );
    let (per_second, p50, p99) =
        capstan_store::bench::measure_create_throughput(store, objects, concurrency).await;
    Ok(StoreAlone {
        objects,
        concurrency,
        per_second,
        p50_ms: ms(p50),
        p99_ms: ms(p99),
    })
}
