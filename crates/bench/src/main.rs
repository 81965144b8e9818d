//! capstan-bench: starts `capstan server` (fresh data dir, free port) and measures the API
//! server foundation: time to ready and memory, creates through the API, lists, watch
//! delivery latency, and the SQLite store on its own. Run on demand; see BENCHMARKS.md.
//! Progress goes to stderr, the summary table (or `--json`) to stdout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing
#![forbid(unsafe_code)]

mod client;
mod creates;
mod lists;
mod procfs;
mod progress;
mod report;
mod server;
mod stats;
mod store_alone;
mod watches;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::client::Target;
use crate::progress::phase;
use crate::report::{cpu_line, Machine, Memory, Report, RssMb, Startup};
use crate::server::ServerProcess;

/// Where `cargo build --release -p capstan` puts the server (target dir from .cargo/config.toml).
const DEFAULT_SERVER_BIN: &str = "/var/tmp/capstan-target/release/capstan";

/// Namespaces the benchmark creates its objects in.
const CREATE_NAMESPACE: &str = "capstan-bench";
const WATCH_NAMESPACE: &str = "capstan-bench-watch";

#[derive(Parser, Debug)]
#[command(
    name = "capstan-bench",
    about = "Benchmark a capstan server: start-up, memory, creates, lists, watches, and the store alone"
)]
struct Args {
    /// The capstan binary to start (build it with `cargo build --release -p capstan`).
    #[arg(long, default_value = DEFAULT_SERVER_BIN)]
    server_bin: PathBuf,

    /// ConfigMaps to create (and then list).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,

    /// Concurrent creating clients, each on its own connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,

    /// Concurrent watch streams, each on its own connection.
    #[arg(long, default_value_t = 100)]
    watchers: usize,

    /// Writes (creates, then updates) the watch phase's writer makes.
    #[arg(long, default_value_t = 1_000)]
    watch_writes: usize,

    /// Writes per second in the watch phase (0: as fast as one writer can).
    #[arg(long, default_value_t = 100.0)]
    watch_rate: f64,

    /// Times each list is repeated (the best and the median are reported).
    #[arg(long, default_value_t = 5)]
    list_repeats: usize,

    /// Server starts to time, each on a fresh data dir; the last one is benchmarked.
    #[arg(long, default_value_t = 3)]
    start_runs: usize,

    /// Seconds to wait after ready before reading the idle RSS (background work such as
    /// building the OpenAPI documents finishes in this time).
    #[arg(long, default_value_t = 2.0)]
    idle_wait: f64,

    /// Extra flag for `capstan server` (repeatable), e.g. `--server-arg=--disable-controllers=garbagecollector`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,

    /// Speak HTTP/2 instead of HTTP/1.1 (kubectl uses HTTP/2, kube-rs HTTP/1.1).
    #[arg(long)]
    http2: bool,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Resident memory in MB (10^6 bytes), split as /proc reports it.
fn rss_mb(pid: u32) -> anyhow::Result<RssMb> {
    let rss = procfs::rss(pid)?;
    Ok(RssMb {
        total: mb(rss.total),
        anon: mb(rss.anon),
        file: mb(rss.file),
        peak: mb(rss.peak),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary_bytes = std::fs::metadata(&args.server_bin)
        .with_context(|| {
            format!(
                "{} not found: build it with `cargo build --release -p capstan` or pass --server-bin",
                args.server_bin.display()
            )
        })?
        .len();
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_at_start: procfs::load_average(),
        server_binary: args.server_bin.display().to_string(),
        server_binary_bytes: binary_bytes,
        server_args: args.server_args.clone(),
    };

    phase(&format!(
        "start-up: {} runs, each on a fresh data dir",
        args.start_runs
    ));
    let mut runs_ms = Vec::new();
    let mut logged_ms = Vec::new();
    let mut server = None;
    for run in 1..=args.start_runs.max(1) {
        let s = ServerProcess::start(&args.server_bin, &args.server_args).await?;
        let ms = stats::ms(s.ready_in);
        let logged = s.logged_ready_ms().await;
        eprintln!(
            "  run {run}: /readyz 200 after {ms:.1} ms (server's log: {} ms)",
            logged.map_or("?".into(), |v| v.to_string())
        );
        runs_ms.push(ms);
        logged_ms.push(logged);
        if let Some(previous) = server.replace(s) {
            ServerProcess::stop(previous).await?;
        }
    }
    let server = server.context("no server started")?;
    let pid = server.pid();
    let at_ready = rss_mb(pid)?;
    tokio::time::sleep(Duration::from_secs_f64(args.idle_wait)).await;
    let idle = rss_mb(pid)?;
    eprintln!(
        "  RSS {at_ready} at ready, {idle} after {} s idle",
        args.idle_wait
    );
    let startup = Startup {
        best_ms: runs_ms.iter().copied().fold(f64::INFINITY, f64::min),
        runs_ms,
        logged_ms,
    };

    let target = Target::from_ca_file(
        server.port,
        &server.ca_path(),
        Some(server.admin_token()?),
        args.http2,
    )?;
    creates::create_namespace(&target, CREATE_NAMESPACE).await?;
    creates::create_namespace(&target, WATCH_NAMESPACE).await?;

    phase(&format!(
        "creates: {} ConfigMaps from {} clients ({})",
        args.objects,
        args.clients,
        target.protocol()
    ));
    let creates = creates::run(&target, CREATE_NAMESPACE, args.objects, args.clients, pid).await?;
    eprintln!(
        "  {:.0}/s, p50 {:.1} ms, p99 {:.1} ms; {}",
        creates.per_second,
        creates.latency.p50_ms,
        creates.latency.p99_ms,
        cpu_line(&creates.cpu)
    );

    let after_creates = rss_mb(pid)?;
    eprintln!("  RSS after creates: {after_creates}");

    phase(&format!("lists of {} ConfigMaps", args.objects));
    let lists = lists::run(&target, CREATE_NAMESPACE, args.list_repeats).await?;
    let after_lists = rss_mb(pid)?;
    eprintln!("  RSS after lists: {after_lists}");

    phase(&format!(
        "watches: {} watchers, {} writes",
        args.watchers, args.watch_writes
    ));
    let watches = watches::run(
        &target,
        WATCH_NAMESPACE,
        args.watchers,
        args.watch_writes,
        args.watch_rate,
        pid,
    )
    .await?;
    eprintln!(
        "  {} deliveries of {}: p50 {:.1} ms, p99 {:.1} ms; {}",
        watches.deliveries,
        watches.expected_deliveries,
        watches.delivery_latency.p50_ms,
        watches.delivery_latency.p99_ms,
        cpu_line(&watches.cpu)
    );

    let after_load = rss_mb(pid)?;
    eprintln!("  RSS after load: {after_load}");
    server.stop().await?;

    // After the server has stopped, so that the two do not compete for the cores.
    phase(&format!(
        "store alone: {} creates from {} callers into a fresh SQLite store",
        args.objects, args.clients
    ));
    let store = store_alone::run(args.objects, args.clients).await?;
    eprintln!(
        "  {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; without fsync per commit {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        store.per_second,
        store.p50_ms,
        store.p99_ms,
        store.without_fsync.per_second,
        store.without_fsync.p50_ms,
        store.without_fsync.p99_ms
    );

    let report = Report {
        machine,
        startup,
        memory: Memory {
            at_ready,
            idle,
            idle_after_seconds: args.idle_wait,
            after_creates,
            after_lists,
            after_load,
        },
        creates,
        lists,
        watches,
        store,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_table();
    }
    Ok(())
}
