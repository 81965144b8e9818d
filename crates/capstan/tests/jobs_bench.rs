//! Job controller benchmark (on demand, not in CI): 1,000 Jobs of one pod each on simulated
//! nodes (whose Job pods exit 0 once running), timed from the first create to all Complete,
//! against the Deployment controller creating a 1,000-replica Deployment's pods in the same
//! run. See BENCHMARKS.md:
//!
//! ```sh
//! cargo test -p capstan --test jobs_bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a failed step is the test failing

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_testkit::{kube_client, Server};
use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

const JOBS: usize = 1000;
const NODES: &str = "20";

fn job(name: &str) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"bench": "jobs"}},
        "spec": {"template": {"metadata": {"labels": {"bench": "jobs"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("job")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .expect("deployment")
}

/// The controller manager's API writes for `controller`, by verb/resource, from /metrics.
fn writes(s: &Server, controller: &str) -> Vec<(String, f64)> {
    let text = tokio::task::block_in_place(|| s.ok(&["get", "--raw", "/metrics"]));
    let want = format!("controller=\"{controller}\"");
    text.lines()
        .filter(|l| l.starts_with("controller_api_writes_total{") && l.contains(&want))
        .filter_map(|l| {
            let (labels, v) = l.rsplit_once(' ')?;
            let get = |k: &str| {
                labels
                    .split(&format!("{k}=\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("")
                    .to_string()
            };
            Some((
                format!("{} {}", get("verb"), get("resource")),
                v.parse().ok()?,
            ))
        })
        .collect()
}

fn complete(j: &Job) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        })
}

/// Watches Jobs labelled bench=jobs until `n` are Complete; returns when.
async fn wait_complete(api: Api<Job>, n: usize) -> Instant {
    let stream = watcher(api, watcher::Config::default().labels("bench=jobs"));
    futures::pin_mut!(stream);
    let mut done = BTreeSet::new();
    while let Some(ev) = stream.next().await {
        if let Ok(Event::Apply(j)) | Ok(Event::InitApply(j)) = ev {
            if complete(&j) {
                done.insert(j.metadata.name.unwrap_or_default());
                if done.len() >= n {
                    return Instant::now();
                }
            }
        }
    }
    Instant::now()
}

/// Watches pods with `labels` until `n` distinct ones exist (and, if `running`, are Running).
async fn wait_pods(api: Api<Pod>, labels: &str, n: usize, running: bool) -> Instant {
    let stream = watcher(api, watcher::Config::default().labels(labels));
    futures::pin_mut!(stream);
    let mut seen = BTreeSet::new();
    while let Some(ev) = stream.next().await {
        if let Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) = ev {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if !running || phase == Some("Running") {
                seen.insert(p.metadata.name.unwrap_or_default());
                if seen.len() >= n {
                    return Instant::now();
                }
            }
        }
    }
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand (see BENCHMARKS.md)"]
async fn job_benchmark() {
    let bin = std::env::var("CAPSTAN_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_capstan").to_string());
    let s = Server::start_with(&bin, &["--simulate-nodes", NODES]);
    let client = kube_client(s.kubeconfig()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    while nodes
        .list(&Default::default())
        .await
        .ok()
        .map(|l| l.items.len())
        != Some(20)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // Let the controller manager win its lease and sync.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. 1,000 Jobs of one pod each, created by 16 clients at once.
    let completed = tokio::spawn(wait_complete(jobs.clone(), JOBS));
    let created = tokio::spawn(wait_pods(pods.clone(), "bench=jobs", JOBS, false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let api = Arc::new(jobs.clone());
    stream::iter(0..JOBS)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &job(&format!("j{i:04}")))
                    .await
                    .expect("create job");
            }
        })
        .await;
    let posted = t0.elapsed();
    let pods_created = tokio::time::timeout(Duration::from_secs(900), created)
        .await
        .expect("all Job pods created in time")
        .expect("join")
        - t0;
    let all_complete = tokio::time::timeout(Duration::from_secs(900), completed)
        .await
        .expect("all Jobs complete in time")
        .expect("join")
        - t0;
    println!("\n== {JOBS} Jobs of one pod each on {NODES} simulated nodes");
    println!("Jobs posted in {:.2}s", posted.as_secs_f64());
    println!(
        "all pods created in {:.2}s ({:.0} pods/s)",
        pods_created.as_secs_f64(),
        JOBS as f64 / pods_created.as_secs_f64()
    );
    println!(
        "all Jobs Complete in {:.2}s ({:.0} Jobs/s)",
        all_complete.as_secs_f64(),
        JOBS as f64 / all_complete.as_secs_f64()
    );

    let per_job: Vec<String> = writes(&s, "job")
        .iter()
        .map(|(k, n)| format!("{k} {:.2}", n / JOBS as f64))
        .collect();
    println!("job controller API writes per Job: {}", per_job.join(", "));

    // 2. The Deployment controller on the same server: a 1,000-replica Deployment.
    let created = tokio::spawn(wait_pods(pods.clone(), "app=big", JOBS, false));
    let running = tokio::spawn(wait_pods(pods.clone(), "app=big", JOBS, true));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    deps.create(&PostParams::default(), &deployment("big", JOBS as i32))
        .await
        .expect("create deployment");
    let pods_created = tokio::time::timeout(Duration::from_secs(900), created)
        .await
        .expect("all Deployment pods created in time")
        .expect("join")
        - t0;
    let pods_running = tokio::time::timeout(Duration::from_secs(900), running)
        .await
        .expect("all Deployment pods running in time")
        .expect("join")
        - t0;
    println!("\n== A {JOBS}-replica Deployment on the same server");
    println!(
        "all pods created in {:.2}s ({:.0} pods/s)",
        pods_created.as_secs_f64(),
        JOBS as f64 / pods_created.as_secs_f64()
    );
    println!(
        "all pods Running in {:.2}s ({:.0} pods/s)",
        pods_running.as_secs_f64(),
        JOBS as f64 / pods_running.as_secs_f64()
    );
}
