//! Controller benchmark (on demand, not in CI): time from creating a 1,000-replica Deployment
//! to all its pods created, a rolling update of 100 pods with simulated readiness, and API
//! requests the controllers issue per pod created. See BENCHMARKS.md for how to run it:
//!
//! ```sh
//! cargo build --release -p capstan
//! CAPSTAN_BENCH_BIN=/var/tmp/capstan-target/release/capstan \
//!   cargo test -p capstan --test controllers_bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use capstan_testkit::{kube_client, Server};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use serde_json::json;

/// apiserver_request_total by (verb, resource), from /metrics.
fn requests(s: &Server) -> BTreeMap<(String, String), f64> {
    let text = tokio::task::block_in_place(|| s.ok(&["get", "--raw", "/metrics"]));
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let (labels, v) = line.rsplit_once(' ').unwrap_or((line, "0"));
        let get = |k: &str| {
            labels
                .split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        *out.entry((get("verb"), get("resource"))).or_default() += v.parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn diff(
    a: &BTreeMap<(String, String), f64>,
    b: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
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

/// Counts distinct pods with `app=<name>` until `n` exist; returns when.
async fn wait_for_pods(api: Api<Pod>, name: &str, n: usize) -> Instant {
    let stream = watcher(
        api,
        watcher::Config::default().labels(&format!("app={name}")),
    );
    futures::pin_mut!(stream);
    let mut seen = BTreeSet::new();
    while let Some(ev) = stream.next().await {
        if let Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) = ev {
            seen.insert(p.metadata.name.unwrap_or_default());
            if seen.len() >= n {
                return Instant::now();
            }
        }
    }
    Instant::now()
}

/// Plays the kubelet for `app=<name>`: every new pod becomes Running and Ready at once.
async fn simulate_readiness(api: Api<Pod>, name: String) {
    let stream = watcher(
        api.clone(),
        watcher::Config::default().labels(&format!("app={name}")),
    );
    futures::pin_mut!(stream);
    let mut n = 0u32;
    while let Some(ev) = stream.next().await {
        let (Ok(Event::Apply(p)) | Ok(Event::InitApply(p))) = ev else {
            continue;
        };
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        n += 1;
        let now = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let st = json!({"status": {"phase": "Running", "podIP": format!("10.42.{}.{}", n / 250, n % 250 + 2),
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
        let api = api.clone();
        let pod = p.metadata.name.unwrap_or_default();
        tokio::spawn(async move {
            let _ = api
                .patch_status(&pod, &PatchParams::default(), &Patch::Merge(st))
                .await;
        });
    }
}

async fn rolled_out(api: &Api<Deployment>, name: &str, replicas: i32) {
    loop {
        if let Ok(d) = api.get(name).await {
            let s = d.status.unwrap_or_default();
            if s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(replicas)
                && s.replicas == Some(replicas)
                && s.available_replicas == Some(replicas)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand (see BENCHMARKS.md)"]
async fn controller_benchmark() {
    let bin = std::env::var("CAPSTAN_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_capstan").to_string());
    // No scheduler: pods stay unbound, so what is counted is the controllers' work alone.
    let s = Server::start_with(&bin, &["--disable-scheduler"]);
    let client = kube_client(s.kubeconfig()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // Let the controller manager win its lease and sync.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. A 1,000-replica Deployment: time to all pods created, requests per pod.
    let before = requests(&s);
    let waiter = tokio::spawn(wait_for_pods(pods.clone(), "big", 1000));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    deps.create(&PostParams::default(), &deployment("big", 1000))
        .await
        .expect("create");
    let done = tokio::time::timeout(Duration::from_secs(600), waiter)
        .await
        .expect("1000 pods in time")
        .expect("join");
    let created_in = done - t0;
    // Let status writes settle before counting.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let d = deps.get("big").await.expect("get");
        if d.status.and_then(|s| s.replicas) == Some(1000) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = requests(&s);
    let used = diff(&before, &after);
    // The benchmark's own requests: the create, its watch, the status polls, one metrics read.
    let own: f64 = used
        .iter()
        .filter(|((v, r), _)| {
            ((v == "POST" || v == "GET") && r == "deployments") || r.is_empty() || v == "WATCH"
        })
        .map(|(_, n)| n)
        .sum();
    let total: f64 = used.values().sum();
    println!("\n== 1,000-replica Deployment");
    println!("all pods created in {:.2}s", created_in.as_secs_f64());
    println!(
        "API requests by the controllers: {:.0} ({:.2} per pod created)",
        total - own,
        (total - own) / 1000.0
    );
    for ((verb, res), n) in &used {
        println!("  {verb:7} {res:24} {n:.0}");
    }

    // 2. A rolling update of 100 pods with simulated readiness.
    let sim = tokio::spawn(simulate_readiness(pods.clone(), "roll".into()));
    deps.create(&PostParams::default(), &deployment("roll", 100))
        .await
        .expect("create");
    rolled_out(&deps, "roll", 100).await;
    let t0 = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
    deps.patch("roll", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patch");
    tokio::time::timeout(Duration::from_secs(600), rolled_out(&deps, "roll", 100))
        .await
        .expect("rolled out in time");
    println!(
        "\n== Rolling update of 100 pods (maxSurge 25%, maxUnavailable 25%, readiness at once)"
    );
    println!("rolled out in {:.2}s", t0.elapsed().as_secs_f64());
    sim.abort();
}
