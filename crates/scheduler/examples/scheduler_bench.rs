//! Scheduling throughput at scale, on demand (not in CI): starts `capstan server` and
//! `capstan agent --simulate N` (release builds), waits for the simulated nodes to be Ready,
//! creates pods and measures how fast they are bound, then reports the processes' memory.
//!
//! Workloads (as upstream's scheduler_perf): `plain` (100m CPU, 500Mi), `anti-affinity`
//! (required pod anti-affinity per hostname within 10 groups of pods), `spread` (topology
//! spread over 3 zones, maxSkew 5, DoNotSchedule). Modes: `streaming` (the server's own
//! scheduler, pods created while it schedules, as scheduler_perf does) and `backlog` (pods
//! created first with the server's scheduler disabled, then a scheduler started in this
//! process binds them all: the scheduler's own ceiling).
//!
//! ```text
//! cargo build --release -p capstan
//! cargo run --release -p capstan-scheduler --example scheduler_bench -- --nodes 5000 --pods 10000
//! ```

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Scheduling throughput with simulated nodes")]
struct Args {
    /// The capstan binary (build it with `cargo build --release -p capstan`).
    #[arg(long, default_value = "/var/tmp/capstan-target/release/capstan")]
    bin: PathBuf,
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Comma-separated: plain, anti-affinity, spread.
    #[arg(
        long,
        default_value = "plain,anti-affinity,spread",
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// Comma-separated: streaming, backlog.
    #[arg(long, default_value = "streaming", value_delimiter = ',')]
    modes: Vec<String>,
    /// Concurrent pod creations.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Keep the data dirs and logs (printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// A shared library to preload into the server and the agent (e.g. another malloc, to
    /// compare allocators: /usr/lib/x86_64-linux-gnu/libjemalloc.so.2).
    #[arg(long)]
    preload: Option<PathBuf>,
    /// Measure only the scheduling decisions, in this process, without an API server: the
    /// scheduler's own ceiling.
    #[arg(long)]
    offline: bool,
}

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (RSS, peak RSS) in MiB and CPU seconds (user + system) of a process.
fn usage(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the ")" field 0 is state; utime and stime are fields 11 and 12.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0, cpu)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Cluster {
    server: Proc,
    agent: Proc,
    client: kube::Client,
    dir: PathBuf,
}

async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(300));
    Ok(kube::Client::try_from(cfg)?)
}

async fn start_cluster(
    args: &Args,
    dir: &Path,
    workload: &str,
    scheduler: bool,
) -> anyhow::Result<Cluster> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let data = dir.join("data");
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(&args.bin);
    cmd.args([
        "server",
        "--bind-address",
        "127.0.0.1",
        "--disable-agent",
        "--https-listen-port",
    ])
    .arg(port.to_string())
    .arg("--data-dir")
    .arg(&data)
    .env("CAPSTAN_LOG", "warn,capstan=info")
    .stdout(Stdio::from(log.try_clone()?))
    .stderr(Stdio::from(log));
    if !scheduler {
        cmd.arg("--disable-scheduler");
    }
    if let Some(p) = &args.preload {
        cmd.env("LD_PRELOAD", p);
    }
    let server = Proc {
        child: cmd.spawn().context("starting capstan server")?,
    };
    let kubeconfig = data.join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            bail!(
                "the server did not start; see {}",
                dir.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client_for(&kubeconfig).await?;
    let token = std::fs::read_to_string(data.join("server/token"))?
        .trim()
        .to_string();
    let alog = std::fs::File::create(dir.join("agent.log"))?;
    let mut acmd = Command::new(&args.bin);
    acmd.args([
        "agent",
        "--server",
        &format!("https://127.0.0.1:{port}"),
        "--token",
        &token,
    ])
    .arg("--ca-file")
    .arg(data.join("server/tls/ca.crt"))
    .arg("--data-dir")
    .arg(dir.join("agent"))
    .args(["--simulate", &args.nodes.to_string()])
    .env("CAPSTAN_LOG", "warn,capstan=info")
    .stdout(Stdio::from(alog.try_clone()?))
    .stderr(Stdio::from(alog));
    if let Some(p) = &args.preload {
        acmd.env("LD_PRELOAD", p);
    }
    if workload == "spread" {
        acmd.args([
            "--simulate-labels",
            "topology.kubernetes.io/zone=moon-{index%3}",
        ]);
    }
    let agent = Proc {
        child: acmd.spawn().context("starting capstan agent --simulate")?,
    };
    Ok(Cluster {
        server,
        agent,
        client,
        dir: dir.to_path_buf(),
    })
}

async fn wait_nodes_ready(client: &kube::Client, n: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let api: Api<Node> = Api::all(client.clone());
    loop {
        let list = api.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("only {ready}/{n} nodes Ready after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pod(workload: &str, i: usize) -> anyhow::Result<Pod> {
    let mut p = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("p-{i:05}"), "labels": {}},
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}},
        }]},
    });
    match workload {
        "plain" => {}
        "anti-affinity" => {
            let group = format!("g{}", i % 10);
            p["metadata"]["labels"]["group"] = json!(group);
            p["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": "kubernetes.io/hostname"}
            ]}});
        }
        "spread" => {
            p["metadata"]["labels"]["color"] = json!("blue");
            p["spec"]["topologySpreadConstraints"] = json!([{
                "maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"color": "blue"}}
            }]);
        }
        other => bail!("unknown workload {other}"),
    }
    Ok(serde_json::from_value(p)?)
}

#[derive(Default)]
struct Times {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Records when each pod of `ns` is first seen bound and first seen Running.
fn watch_pods(
    client: kube::Client,
    ns: &str,
    times: Arc<Mutex<Times>>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Ok(Some(ev)) = stream.try_next().await {
            let pods = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => vec![p],
                _ => continue,
            };
            let now = Instant::now();
            let mut t = times.lock();
            for p in pods {
                let name = p.metadata.name.clone().unwrap_or_default();
                if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                    t.bound.entry(name.clone()).or_insert(now);
                }
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    t.running.entry(name).or_insert(now);
                }
            }
        }
    })
}

async fn create_pods(
    client: &kube::Client,
    ns: &str,
    workload: &str,
    n: usize,
    clients: usize,
) -> anyhow::Result<Duration> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = pod(workload, i)?;
                for attempt in 0..5 {
                    match api.create(&PostParams::default(), &p).await {
                        Ok(_) => return Ok(()),
                        Err(e) if attempt < 4 => {
                            eprintln!("create p-{i:05}: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(start.elapsed())
}

struct Outcome {
    workload: String,
    mode: String,
    nodes_ready: Duration,
    created_in: Duration,
    bound: usize,
    throughput: f64,
    per_second_median: f64,
    all_bound_after: Duration,
    all_running_after: Option<Duration>,
    server: (f64, f64, f64),
    agent: (f64, f64, f64),
}

/// Pods bound per second: the overall rate between the first and the last binding, and the
/// median of one-second samples (upstream samples every second).
fn rates(bound: &[Instant]) -> (f64, f64) {
    if bound.len() < 2 {
        return (0.0, 0.0);
    }
    let first = bound[0];
    let last = bound[bound.len() - 1];
    let span = last.duration_since(first).as_secs_f64().max(0.001);
    let secs = span.ceil() as usize;
    let mut buckets = vec![0usize; secs.max(1)];
    for t in bound {
        let i = (t.duration_since(first).as_secs_f64() as usize).min(buckets.len() - 1);
        buckets[i] += 1;
    }
    let mut full: Vec<usize> = buckets
        .iter()
        .copied()
        .take(buckets.len().saturating_sub(1).max(1))
        .collect();
    full.sort_unstable();
    (bound.len() as f64 / span, full[full.len() / 2] as f64)
}

async fn run_one(args: &Args, workload: &str, mode: &str, base: &Path) -> anyhow::Result<Outcome> {
    let dir = base.join(format!("{workload}-{mode}"));
    let streaming = mode == "streaming";
    let cluster = start_cluster(args, &dir, workload, streaming).await?;
    let client = cluster.client.clone();
    eprintln!(
        "[{workload}/{mode}] waiting for {} simulated nodes",
        args.nodes
    );
    let nodes_ready = wait_nodes_ready(&client, args.nodes).await?;
    eprintln!(
        "[{workload}/{mode}] nodes ready after {:.1}s",
        nodes_ready.as_secs_f64()
    );
    let ns = "bench";
    let nsapi: Api<Namespace> = Api::all(client.clone());
    nsapi
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let times = Arc::new(Mutex::new(Times::default()));
    let watch = watch_pods(client.clone(), ns, times.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let t0 = Instant::now();
    let created_in = create_pods(&client, ns, workload, args.pods, args.clients).await?;
    eprintln!(
        "[{workload}/{mode}] created {} pods in {:.1}s ({:.0}/s)",
        args.pods,
        created_in.as_secs_f64(),
        args.pods as f64 / created_in.as_secs_f64()
    );
    let t_sched = Instant::now();
    let _scheduler = if streaming {
        None
    } else {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let s = capstan_scheduler::start(client.clone(), capstan_scheduler::Config::default(), rx)?;
        Some((s, _tx))
    };
    let start = if streaming { t0 } else { t_sched };
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (b, r) = {
            let t = times.lock();
            (t.bound.len(), t.running.len())
        };
        if b >= args.pods && r >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("[{workload}/{mode}] timed out: {b} bound, {r} running");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();
    if let Ok(text) = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
    {
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_request_total")
                    || l.starts_with("apiserver_request_duration_seconds_sum")
            })
            .collect();
        lines.sort();
        eprintln!("[{workload}/{mode}] server requests:\n{}", lines.join("\n"));
    }
    let t = times.lock();
    let mut bound: Vec<Instant> = t.bound.values().copied().filter(|i| *i >= start).collect();
    bound.sort();
    let (throughput, median) = rates(&bound);
    let all_bound_after = bound
        .last()
        .map(|l| l.duration_since(start))
        .unwrap_or_default();
    let all_running_after = (t.running.len() >= args.pods)
        .then(|| t.running.values().max().map(|m| m.duration_since(start)))
        .flatten();
    let server = usage(cluster.server.child.id());
    let agent = usage(cluster.agent.child.id());
    let out = Outcome {
        workload: workload.into(),
        mode: mode.into(),
        nodes_ready,
        created_in,
        bound: t.bound.len(),
        throughput,
        per_second_median: median,
        all_bound_after,
        all_running_after,
        server,
        agent,
    };
    drop(t);
    eprintln!(
        "[{workload}/{mode}] {} bound, {:.0} pods/s (median 1 s sample {:.0}); logs in {}",
        out.bound,
        out.throughput,
        out.per_second_median,
        cluster.dir.display()
    );
    drop(cluster.agent);
    drop(cluster.server);
    Ok(out)
}

/// Decisions per second of the scheduling algorithm alone: a cache of `nodes` simulated-like
/// nodes, `pods` pods decided and assumed one after the other.
fn offline(args: &Args) -> anyhow::Result<()> {
    use capstan_scheduler::algorithm::schedule_pod;
    use capstan_scheduler::cache::Cache;
    use capstan_scheduler::nodeinfo::NodeProps;
    use capstan_scheduler::podinfo::PodInfo;
    use capstan_scheduler::resources::Resources;
    use rand::SeedableRng;

    println!("| workload | nodes | pods | decisions/s | mean decision |");
    println!("|---|---|---|---|---|");
    for w in &args.workloads {
        let mut cache = Cache::new();
        for i in 0..args.nodes {
            let name = format!("sim-{i:04}");
            let mut labels = std::collections::BTreeMap::new();
            labels.insert("kubernetes.io/hostname".to_string(), name.clone());
            labels.insert(
                "topology.kubernetes.io/zone".to_string(),
                format!("moon-{}", i % 3),
            );
            let allocatable = Resources {
                milli_cpu: 32_000,
                memory: 256 << 30,
                pods: 110,
                ephemeral_storage: 100 << 30,
                scalar: vec![],
            };
            cache.upsert_node(
                &name,
                NodeProps {
                    labels,
                    allocatable,
                    ..Default::default()
                },
            );
        }
        let pods: Vec<PodInfo> = (0..args.pods)
            .map(|i| {
                let mut p = pod(w, i)?;
                p.metadata.namespace = Some("bench".into());
                p.metadata.uid = Some(format!("uid-{i}"));
                Ok(PodInfo::from_pod(&p))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut start_index = 0;
        let started = Instant::now();
        let mut placed = 0;
        for p in &pods {
            cache.prepare_spread(p);
            if let Ok(d) = schedule_pod(&cache, p, &mut start_index, None, &mut rng) {
                cache.assume(p, &d.node);
                placed += 1;
            }
        }
        let took = started.elapsed();
        println!(
            "| {w} | {} | {placed}/{} | {:.0} | {:.0} µs |",
            args.nodes,
            args.pods,
            args.pods as f64 / took.as_secs_f64(),
            took.as_micros() as f64 / args.pods as f64
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.offline {
        return offline(&args);
    }
    if !args.bin.exists() {
        bail!(
            "{} not found: cargo build --release -p capstan",
            args.bin.display()
        );
    }
    let base = tempfile_dir()?;
    let mut outcomes = Vec::new();
    for w in &args.workloads {
        for m in &args.modes {
            outcomes.push(run_one(&args, w, m, &base).await?);
        }
    }
    println!("| workload | mode | nodes Ready after | pods created in | bound | pods/s (first to last bind) | median 1 s sample | all bound after | all Running after | server RSS (peak) | server CPU s | agent RSS (peak) | agent CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {} | {:.0} | {:.0} | {:.1} s | {} | {:.0} MiB ({:.0}) | {:.0} | {:.0} MiB ({:.0}) | {:.0} |",
            o.workload,
            o.mode,
            o.nodes_ready.as_secs_f64(),
            o.created_in.as_secs_f64(),
            o.bound,
            o.throughput,
            o.per_second_median,
            o.all_bound_after.as_secs_f64(),
            o.all_running_after.map(|d| format!("{:.1} s", d.as_secs_f64())).unwrap_or_else(|| "-".into()),
            o.server.0,
            o.server.1,
            o.server.2,
            o.agent.0,
            o.agent.1,
            o.agent.2,
        );
    }
    if args.keep {
        eprintln!("data and logs kept in {}", base.display());
    } else {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("capstan-sched-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
