//! A DaemonSet on thousands of simulated nodes, on demand (not in CI): starts `capstan
//! server` and `capstan agent --simulate N`, waits for the nodes to be Ready, creates one
//! DaemonSet and measures, from a pod watch, when its pods are created, bound and Running
//! on every node, and when the DaemonSet's status reports them all available.
//!
//! ```text
//! cargo build --release -p capstan
//! cargo run --release -p capstan-controllers --example daemonset_bench -- --nodes 5000
//! ```

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "DaemonSet roll-out time over simulated nodes")]
struct Args {
    /// The capstan binary (build it with `cargo build --release -p capstan`).
    #[arg(long, default_value = "/var/tmp/capstan-target/release/capstan")]
    bin: PathBuf,
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Keep the data dir and logs (printed) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

/// A child process stopped (TERM, then KILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (RSS MiB, peak RSS MiB, CPU seconds) of a process.
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
    (
        kib("VmRSS:") / 1024.0,
        kib("VmHWM:") / 1024.0,
        (ticks(11) + ticks(12)) / 100.0,
    )
}

async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    cfg.read_timeout = Some(Duration::from_secs(300));
    Ok(kube::Client::try_from(cfg)?)
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(bin)
        .args(args)
        .env("CAPSTAN_LOG", "warn,capstan=info")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc(child))
}

#[derive(Default)]
struct Seen {
    created: HashSet<String>,
    bound: HashSet<String>,
    running: HashSet<String>,
    all_created: Option<Instant>,
    all_bound: Option<Instant>,
    all_running: Option<Instant>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.bin.exists() {
        bail!(
            "{} not found: cargo build --release -p capstan",
            args.bin.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("capstan-ds-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = dir.join("data");
    let s = |v: &str| v.to_string();
    let server = spawn(
        &args.bin,
        &[
            s("server"),
            s("--bind-address"),
            s("127.0.0.1"),
            s("--disable-agent"),
            s("--https-listen-port"),
            port.to_string(),
            s("--cluster-dns-port"),
            TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
                .to_string(),
            s("--data-dir"),
            data.display().to_string(),
        ],
        &dir.join("server.log"),
    )?;
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
    let agent = spawn(
        &args.bin,
        &[
            s("agent"),
            s("--server"),
            format!("https://127.0.0.1:{port}"),
            s("--token"),
            token,
            s("--ca-file"),
            data.join("server/tls/ca.crt").display().to_string(),
            s("--data-dir"),
            dir.join("agent").display().to_string(),
            s("--simulate"),
            args.nodes.to_string(),
        ],
        &dir.join("agent.log"),
    )?;
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= args.nodes {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {ready}/{} nodes Ready after 10 minutes", args.nodes);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let nodes_ready = started.elapsed();

    let n = args.nodes;
    let seen: Arc<Mutex<Seen>> = Default::default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sw = seen.clone();
    let watch = tokio::spawn(async move {
        let stream = watcher::watcher(pods, watcher::Config::default().labels("app=bench"));
        futures::pin_mut!(stream);
        while let Ok(Some(ev)) = stream.try_next().await {
            let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev else {
                continue;
            };
            let now = Instant::now();
            let mut s = sw.lock();
            let name = p.metadata.name.clone().unwrap_or_default();
            s.created.insert(name.clone());
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                s.bound.insert(name.clone());
            }
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                s.running.insert(name);
            }
            if s.all_created.is_none() && s.created.len() >= n {
                s.all_created = Some(now);
            }
            if s.all_bound.is_none() && s.bound.len() >= n {
                s.all_bound = Some(now);
            }
            if s.all_running.is_none() && s.running.len() >= n {
                s.all_running = Some(now);
            }
        }
    });
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "bench"},
        "spec": {
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "example.test/agent:1"}]}}
        }
    }))?;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let t0 = Instant::now();
    dss.create(&PostParams::default(), &ds).await?;
    let mut status_available = None;
    loop {
        let done = seen.lock().all_running.is_some();
        if status_available.is_none() {
            let d = dss.get("bench").await?;
            if d.status.as_ref().and_then(|s| s.number_available) == Some(n as i32) {
                status_available = Some(t0.elapsed());
            }
        }
        if done && status_available.is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(1200) {
            let s = seen.lock();
            bail!(
                "after 20 minutes: {} created, {} bound, {} running of {n}",
                s.created.len(),
                s.bound.len(),
                s.running.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();
    let s = seen.lock();
    let since = |t: Option<Instant>| {
        t.map(|t| t.duration_since(t0).as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let (srss, speak, scpu) = usage(server.0.id());
    let (arss, apeak, acpu) = usage(agent.0.id());
    println!("| nodes | nodes Ready after | all pods created | all bound | all Running | status numberAvailable = nodes | server RSS (peak) | server CPU s | agent RSS (peak) | agent CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {n} | {:.1} s | {:.1} s | {:.1} s | **{:.1} s** | {:.1} s | {srss:.0} MiB ({speak:.0}) | {scpu:.0} | {arss:.0} MiB ({apeak:.0}) | {acpu:.0} |",
        nodes_ready.as_secs_f64(),
        since(s.all_created),
        since(s.all_bound),
        since(s.all_running),
        status_available.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
    );
    drop(s);
    drop(agent);
    drop(server);
    if args.keep {
        eprintln!("data and logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
