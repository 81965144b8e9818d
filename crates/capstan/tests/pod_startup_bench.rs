//! Pod startup benchmark (on demand, not in CI): for 30 pods created one after another, the
//! time from the create call to phase Running as seen by a watch, next to the raw floor
//! measured in the same run, alternating pod by pod so both see the same load, straight through
//! CRI (RunPodSandbox + CreateContainer + StartContainer on the agent's containerd); then the node agent's RSS when idle with 10 pods
//! running. The agent runs as a joined `capstan agent` process so its RSS is its own.
//!
//! ```sh
//! cargo build --release -p capstan
//! CAPSTAN_BENCH_BIN=/var/tmp/capstan-target/release/capstan \
//!   cargo test -p capstan --test pod_startup_bench -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::collections::HashMap;
use std::time::{Duration, Instant};

use capstan_kubelet::cri::{api as pb, Cri, GrpcCri};
use capstan_testkit::agent::{JoinedAgent, BUSYBOX};
use capstan_testkit::{eventually, kube_client, Server};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};

const PODS: usize = 30;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let (p50, p99) = (percentile(&v, 50.0), percentile(&v, 99.0));
    println!(
        "{name}: n={} p50={:.0} ms p99={:.0} ms min={:.0} ms max={:.0} ms",
        v.len(),
        p50 * 1000.0,
        p99 * 1000.0,
        v[0] * 1000.0,
        v[v.len() - 1] * 1000.0
    );
    (p50, p99)
}

/// One pod straight through CRI: RunPodSandbox + CreateContainer + StartContainer. Returns the
/// time taken and the sandbox (removed later).
async fn floor_one(cri: &GrpcCri, logs: &std::path::Path, image: &str, i: usize) -> (f64, String) {
    let uid = format!("floor-{i}-{}", std::process::id());
    let sandbox = pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: format!("floor-{i}"),
            uid: uid.clone(),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: format!("floor-{i}"),
        log_directory: logs.join(&uid).to_string_lossy().into_owned(),
        dns_config: Some(pb::DnsConfig {
            servers: vec!["10.43.0.10".into()],
            searches: vec!["bench.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = pb::ContainerConfig {
        metadata: Some(pb::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(pb::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c/0.log".into(),
        linux: Some(pb::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let t = Instant::now();
    let sb = cri
        .run_pod_sandbox(sandbox.clone())
        .await
        .expect("RunPodSandbox");
    let id = cri
        .create_container(&sb, container, sandbox)
        .await
        .expect("CreateContainer");
    cri.start_container(&id).await.expect("StartContainer");
    (t.elapsed().as_secs_f64(), sb)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn pid_of(needle: &str, starts: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let cmd =
            String::from_utf8_lossy(&std::fs::read(p.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        (cmd.starts_with(starts) && cmd.contains(needle))
            .then(|| p.file_name().to_string_lossy().parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on demand (see BENCHMARKS.md)"]
async fn pod_startup_latency_against_the_cri_floor_and_idle_agent_rss() {
    let bin = std::env::var("CAPSTAN_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_capstan").to_string());
    let s = tokio::task::block_in_place(|| {
        Server::start_with(&bin, &["--cluster-cidr", "10.40.0.0/16"])
    });
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token")).expect("token");
    let agent = tokio::task::block_in_place(|| JoinedAgent::start(&bin, &s, token.trim()));
    let node = agent.opts.node_name.clone();
    let client = kube_client(s.kubeconfig()).await;
    tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(60), "the node to be Ready", || {
            let o = s.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&o.stdout) == "True").then_some(())
        })
    });
    let data = agent.dir.path().join("data");
    let cri = GrpcCri::new(&data.join("agent/containerd/run/containerd.sock"));
    let image_id = cri
        .image_status(BUSYBOX)
        .await
        .expect("ImageStatus")
        .expect("busybox present")
        .id;

    // Warm-up: one pod through each path, not counted.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mk = |name: &str| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]}
        }))
        .expect("pod")
    };

    // Running times as the watch sees them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let w = tokio::spawn({
        let pods = pods.clone();
        async move {
            let mut st = watcher(pods, watcher::Config::default()).boxed();
            while let Some(ev) = st.next().await {
                if let Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) = ev {
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                        let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                    }
                }
            }
        }
    });
    let mut running: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut floor_all = Vec::new();
    let mut floor_sandboxes = Vec::new();
    // The two paths alternate pod by pod, so both see the same machine load.
    for i in 0..=PODS {
        let (secs, sb) = floor_one(&cri, &data.join("bench-logs"), &image_id, i).await;
        if i > 0 {
            floor_all.push(secs);
        }
        floor_sandboxes.push(sb);
        let name = format!("bench-{i}");
        let t = Instant::now();
        pods.create(&PostParams::default(), &mk(&name))
            .await
            .expect("create");
        let at = loop {
            if let Some(at) = running.get(&name) {
                break *at;
            }
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("Running within 30s")
                .expect("watch");
            running.entry(n).or_insert(at);
        };
        if i > 0 {
            latencies.push(at.duration_since(t).as_secs_f64());
        }
    }
    w.abort();
    for sb in floor_sandboxes {
        let _ = cri.stop_pod_sandbox(&sb).await;
        let _ = cri.remove_pod_sandbox(&sb).await;
    }
    println!("--- pod startup, {PODS} pods, sequential ---");
    let (k50, k99) = summary("kubelet: create -> Running (watch)", latencies);
    let (f50, f99) = summary(
        "CRI floor: RunPodSandbox+CreateContainer+StartContainer",
        floor_all,
    );
    println!("ratio p50 {:.2}x, p99 {:.2}x", k50 / f50, k99 / f99);

    // Idle RSS with 10 pods running.
    for i in 11..=PODS {
        let _ = pods
            .delete(&format!("bench-{i}"), &DeleteParams::default())
            .await;
    }
    let _ = pods.delete("bench-0", &DeleteParams::default()).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let agent_pid = pid_of(&data.to_string_lossy(), &bin).expect("agent pid");
    let ctd_pid = pid_of(&data.to_string_lossy(), "containerd\0");
    println!(
        "idle with 10 pods: agent RSS {} KiB, containerd RSS {} KiB",
        rss_kib(agent_pid),
        ctd_pid.map(rss_kib).unwrap_or(0)
    );
    for i in 1..=10 {
        let _ = pods
            .delete(&format!("bench-{i}"), &DeleteParams::default())
            .await;
    }
    tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(60), "pods gone", || {
            let o = s.kubectl(&["get", "pods", "-o", "name"]);
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .is_empty()
                .then_some(())
        })
    });
    assert!(k99 < 5.0, "p99 {k99:.2}s is over upstream's 5 s SLO");
}
