//! Watch delivery latency ([`run`]): `watchers` watch streams, each on its own connection, on
//! one namespace's ConfigMaps, while one writer creates and then updates objects at a steady
//! rate, stamping each write with its send time. Every watcher records receive time minus send
//! time for every event it gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Serialize;

use crate::client::Target;
use crate::procfs::{CpuSample, CpuShare};
use crate::progress::Ticker;
use crate::stats::Latency;

/// The annotation carrying a write's send time: nanoseconds since the phase's `epoch`. Writer
/// and watchers share one process, so one monotonic clock serves both.
const SENT: &str = "capstan-bench/sent-ns";

/// Objects the writer creates before it turns to updating them in turn.
const OBJECTS: usize = 100;

/// How long watchers may lag behind the writer's last write before the phase ends anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize)]
pub struct Watches {
    pub watchers: usize,
    pub writes: usize,
    /// Writes per second the writer aimed at (0: as fast as it could).
    pub target_rate: f64,
    /// Writes per second achieved.
    pub write_rate: f64,
    pub write_latency: Latency,
    pub deliveries: usize,
    pub expected_deliveries: usize,
    /// ERROR events received (for example a watcher that fell too far behind).
    pub error_events: usize,
    pub delivery_latency: Latency,
    pub cpu: CpuShare,
}

/// Runs the phase in `namespace` (which should hold no other objects).
pub async fn run(
    target: &Target,
    namespace: &str,
    watchers: usize,
    writes: usize,
    rate: f64,
    server_pid: u32,
) -> anyhow::Result<Watches> {
    let epoch = Instant::now();
    let collection = format!("/api/v1/namespaces/{namespace}/configmaps");
    let mut writer = target.connect().await?;

    // Watch from the list's revision, so that no write can slip in before a watch starts.
    let list = writer
        .expect(
            target.get(&format!("{collection}?limit=1"), None),
            StatusCode::OK,
        )
        .await?;
    let list: serde_json::Value = serde_json::from_slice(&list)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();

    let delivered = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut conn = target.connect().await?;
        let resp = conn
            .send(target.get(&format!("{collection}?watch=1&resourceVersion={rv}"), None))
            .await?;
        anyhow::ensure!(
            resp.status() == StatusCode::OK,
            "watch answered {}",
            resp.status()
        );
        let (delivered, errors, stop) = (delivered.clone(), errors.clone(), stop_rx.clone());
        streams.push(tokio::spawn(async move {
            // The connection must outlive the stream it carries.
            let _conn = conn;
            receive(resp.into_body(), epoch, writes, &delivered, &errors, stop).await
        }));
    }
    eprintln!("  {watchers} watches open; writing {writes} times");

    let expected = writes * watchers;
    let written = Arc::new(AtomicUsize::new(0));
    let ticker = {
        let (written, delivered) = (written.clone(), delivered.clone());
        Ticker::start(move || {
            format!(
                "writes {}/{writes}, deliveries {}/{expected}",
                written.load(Ordering::Relaxed),
                delivered.load(Ordering::Relaxed)
            )
        })
    };
    let cpu_before = CpuSample::take(server_pid);
    let started = Instant::now();
    let mut write_latencies = Vec::with_capacity(writes);
    for i in 0..writes {
        if rate > 0.0 {
            tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let sent = epoch.elapsed().as_nanos().to_string();
        let req = if i < OBJECTS {
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("watched-{i:03}"), "annotations": {SENT: sent}},
                "data": {"index": i.to_string()},
            });
            target.post_json(&collection, serde_json::to_vec(&body)?)
        } else {
            let body = serde_json::json!({"metadata": {"annotations": {SENT: sent}}});
            let name = format!("watched-{:03}", i % OBJECTS);
            target.merge_patch(&format!("{collection}/{name}"), serde_json::to_vec(&body)?)
        };
        let expected_status = if i < OBJECTS {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let t = Instant::now();
        writer.expect(req, expected_status).await?;
        write_latencies.push(t.elapsed());
        written.fetch_add(1, Ordering::Relaxed);
    }
    let write_seconds = started.elapsed().as_secs_f64();

    // Let the watchers catch up, then stop whoever is still missing events.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = cpu_before.until(&CpuSample::take(server_pid));
    let _ = stop_tx.send(true);
    drop(ticker);
    let mut latencies = Vec::with_capacity(expected);
    for stream in streams {
        latencies.append(&mut stream.await??);
    }
    Ok(Watches {
        watchers,
        writes,
        target_rate: rate,
        write_rate: writes as f64 / write_seconds,
        write_latency: Latency::of(write_latencies),
        deliveries: latencies.len(),
        expected_deliveries: expected,
        error_events: errors.load(Ordering::Relaxed),
        delivery_latency: Latency::of(latencies),
        cpu,
    })
}

/// Reads one watch stream until it has seen `wanted` stamped events, it ends, or `stop` flips.
async fn receive(
    mut body: Incoming,
    epoch: Instant,
    wanted: usize,
    delivered: &AtomicUsize,
    errors: &AtomicUsize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(wanted);
    let mut pending: Vec<u8> = Vec::new();
    while latencies.len() < wanted {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => break,
        };
        let Some(frame) = frame else { break };
        // One receive time per frame: its lines all arrived together.
        let received = epoch.elapsed();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + end];
            match sent_at(line) {
                Some(sent) => {
                    latencies.push(received.saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                None if contains(line, br#""type":"ERROR""#) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
            start += end + 1;
        }
        pending.drain(..start);
    }
    Ok(latencies)
}

/// The send time stamped in a watch event's object, found without parsing the whole event
/// (100 watchers parsing every event would load the client more than the server).
fn sent_at(line: &[u8]) -> Option<Duration> {
    let key = format!("\"{SENT}\"");
    let at = find(line, key.as_bytes())? + key.len();
    let rest = &line[at..];
    let rest = &rest[rest.iter().position(|&b| b == b'"')? + 1..];
    let digits = &rest[..rest.iter().position(|&b| b == b'"')?];
    let nanos: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_read_from_the_annotation() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"annotations":{"capstan-bench/sent-ns": "1500"},"name":"x"}}}"#;
        assert_eq!(sent_at(line), Some(Duration::from_nanos(1500)));
        assert_eq!(sent_at(br#"{"type":"ERROR","object":{}}"#), None);
    }
}
