//! Create throughput through the API ([`run`]): `clients` workers, each on its own connection,
//! POST small ConfigMaps one after another until `objects` exist.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;

use crate::client::Target;
use crate::procfs::{CpuSample, CpuShare};
use crate::progress::Ticker;
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct Creates {
    pub objects: usize,
    pub clients: usize,
    pub protocol: &'static str,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Latency,
    pub cpu: CpuShare,
}

/// The name of the `i`th benchmark ConfigMap.
pub fn name(i: usize) -> String {
    format!("bench-{i:06}")
}

/// A small ConfigMap as a client would send it (about 200 bytes).
fn body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name(i), "labels": {"app": "capstan-bench"}},
        "data": {"index": i.to_string(), "greeting": "hello from capstan-bench", "mode": "benchmark"},
    }))
    .expect("a JSON value serialises")
}

/// Creates `objects` ConfigMaps in `namespace` from `clients` concurrent connections.
pub async fn run(
    target: &Target,
    namespace: &str,
    objects: usize,
    clients: usize,
    server_pid: u32,
) -> anyhow::Result<Creates> {
    // Connections are opened first: the TLS handshakes are not part of the throughput.
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        conns.push(target.connect().await?);
    }
    let path = Arc::new(format!("/api/v1/namespaces/{namespace}/configmaps"));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_before = CpuSample::take(server_pid);
    let ticker = {
        let done = done.clone();
        Ticker::start(move || {
            let n = done.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64();
            format!("created {n}/{objects} ({rate:.0}/s)")
        })
    };
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let (target, path, next, done) =
                (target.clone(), path.clone(), next.clone(), done.clone());
            tokio::spawn(async move {
                let mut latencies: Vec<Duration> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects {
                        return anyhow::Ok(latencies);
                    }
                    let req = target.post_json(&path, body(i));
                    let sent = Instant::now();
                    conn.expect(req, StatusCode::CREATED).await?;
                    latencies.push(sent.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(objects);
    for worker in workers {
        latencies.append(&mut worker.await??);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before.until(&CpuSample::take(server_pid));
    drop(ticker);
    Ok(Creates {
        objects,
        clients,
        protocol: target.protocol(),
        seconds: elapsed.as_secs_f64(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        latency: Latency::of(latencies),
        cpu,
    })
}

/// Creates the namespace the benchmark works in.
pub async fn create_namespace(target: &Target, namespace: &str) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    conn.expect(
        target.post_json("/api/v1/namespaces", serde_json::to_vec(&body)?),
        StatusCode::CREATED,
    )
    .await?;
    Ok(())
}
