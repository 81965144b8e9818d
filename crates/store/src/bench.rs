//! Throughput of a [`Store`] on its own, for benchmark binaries ([`measure_create_throughput`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Store;

/// About the size of a small ConfigMap as the API server stores it.
const VALUE_BYTES: usize = 600;

/// Create `n` new keys from `concurrency` concurrent callers (each waits for its answer before
/// sending the next) and report creates per second, and the median and 99th-percentile latency
/// of one create. Keys go under `/bench/<unique run id>/`, so repeated runs on one store do not
/// collide.
///
/// # Panics
/// If a create fails: a benchmark that silently skips failures would report nonsense.
pub async fn measure_create_throughput(
    store: Arc<dyn Store>,
    n: usize,
    concurrency: usize,
) -> (f64, Duration, Duration) {
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let callers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return latencies;
                    }
                    let key = format!("/bench/{run}/{i:010}");
                    let value = sample_value(&key);
                    let sent = Instant::now();
                    if let Err(err) = store.create(&key, value).await {
                        panic!("benchmark create of {key} failed: {err}");
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(n);
    for caller in callers {
        match caller.await {
            Ok(mut mine) => latencies.append(&mut mine),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let per_sec = latencies.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    (
        per_sec,
        percentile(&latencies, 50),
        percentile(&latencies, 99),
    )
}

/// The `pct`th percentile of sorted samples (zero when there are none).
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = (sorted.len() * pct).div_ceil(100).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

/// A JSON object of about [`VALUE_BYTES`] bytes naming `key`.
fn sample_value(key: &str) -> Vec<u8> {
    let head = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{key}"}},"data":{{"payload":""#
    );
    let tail = r#""}}"#;
    let fill = VALUE_BYTES.saturating_sub(head.len() + tail.len());
    let mut value = head.into_bytes();
    value.extend(std::iter::repeat_n(b'x', fill));
    value.extend_from_slice(tail.as_bytes());
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{SqliteConfig, SqliteStore};

    #[test]
    fn percentiles_pick_the_sample_at_or_above_the_rank() {
        let samples: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn sample_values_are_json_of_the_intended_size() {
        let value = sample_value("/bench/1/0000000001");
        assert_eq!(value.len(), VALUE_BYTES);
        assert!(value.starts_with(b"{") && value.ends_with(b"}"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn measuring_creates_every_key_once() {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_temporary(SqliteConfig::default()).expect("open"));
        let (per_sec, p50, p99) = measure_create_throughput(store.clone(), 200, 8).await;
        assert!(per_sec > 0.0);
        assert!(p50 <= p99);
        let listed = store
            .list("/bench/", Default::default())
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 200);
        assert_eq!(store.current_revision().await.expect("rev"), 200);
    }
}
