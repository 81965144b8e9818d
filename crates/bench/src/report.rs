//! The run's results ([`Report`]) and the final summary table ([`Report::print_table`]): each
//! figure next to its target and the k3s/upstream reference from
//! /work/shared/docs/anchors.md.

use serde::Serialize;

use crate::creates::Creates;
use crate::lists::ListTiming;
use crate::procfs::CpuShare;
use crate::store_alone::StoreAlone;
use crate::watches::Watches;

/// Targets from the issue.
pub const READY_TARGET_MS: f64 = 500.0;
pub const IDLE_RSS_TARGET_MB: f64 = 50.0;
pub const CREATES_TARGET_PER_SECOND: f64 = 2000.0;
pub const CREATE_P99_TARGET_MS: f64 = 50.0;

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub startup: Startup,
    pub memory: Memory,
    pub creates: Creates,
    pub lists: Vec<ListTiming>,
    pub watches: Watches,
    pub store: StoreAlone,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub load_average_at_start: f64,
    pub server_binary: String,
    pub server_binary_bytes: u64,
    /// Flags given to `capstan server` beyond the benchmark's own.
    pub server_args: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Startup {
    /// Process start to the first 200 from /readyz, each run on a fresh data dir.
    pub runs_ms: Vec<f64>,
    pub best_ms: f64,
    /// The server's own `ready_in_ms` log field per run. It is measured from inside the
    /// server's `run` and logged after the in-process components have started, so it can be
    /// larger than the probe's figure.
    pub logged_ms: Vec<Option<u64>>,
}

/// Resident memory of the server in MB (10^6 bytes) as the run goes on.
#[derive(Debug, Serialize)]
pub struct Memory {
    pub at_ready: RssMb,
    /// After the idle wait, before any load.
    pub idle: RssMb,
    pub idle_after_seconds: f64,
    pub after_creates: RssMb,
    pub after_lists: RssMb,
    /// After the watch phase, the last one.
    pub after_load: RssMb,
}

/// VmRSS, its anonymous (heap, stacks) and file-backed (the binary's pages) parts, and the
/// peak so far (VmHWM), in MB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssMb {
    pub total: f64,
    pub anon: f64,
    pub file: f64,
    pub peak: f64,
}

impl std::fmt::Display for RssMb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MB (anonymous {:.1}, file-backed {:.1}; peak so far {:.1})",
            self.total, self.anon, self.file, self.peak
        )
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

impl Report {
    /// Prints the summary table to stdout.
    pub fn print_table(&self) {
        let c = &self.creates;
        let w = &self.watches;
        let mut rows: Vec<[String; 5]> = vec![
            [
                format!(
                    "start to /readyz 200 (best of {})",
                    self.startup.runs_ms.len()
                ),
                format!("{:.0} ms", self.startup.best_ms),
                format!("< {READY_TARGET_MS:.0} ms"),
                verdict(self.startup.best_ms < READY_TARGET_MS).into(),
                "k3s: ~50 s to default pods Ready (k3s#4340)".into(),
            ],
            [
                "RSS idle (before load)".into(),
                format!("{:.1} MB", self.memory.idle.total),
                format!("< {IDLE_RSS_TARGET_MB:.0} MB"),
                verdict(self.memory.idle.total < IDLE_RSS_TARGET_MB).into(),
                "k3s idle: 500-535 MB (k3s#2278, #3536)".into(),
            ],
            [
                "RSS after load".into(),
                format!("{:.1} MB", self.memory.after_load.total),
                "-".into(),
                String::new(),
                "k3s server with workload: 1596 MB p95".into(),
            ],
            [
                format!("creates/s ({} clients, {})", c.clients, c.protocol),
                format!("{:.0}/s", c.per_second),
                format!(">= {CREATES_TARGET_PER_SECOND:.0}/s"),
                verdict(c.per_second >= CREATES_TARGET_PER_SECOND).into(),
                "etcd 3x8 vCPU: 583/s (1 client), 44k/s (1000)".into(),
            ],
            [
                "create latency p50 / p99".into(),
                format!("{:.1} / {:.1} ms", c.latency.p50_ms, c.latency.p99_ms),
                format!("p99 < {CREATE_P99_TARGET_MS:.0} ms"),
                verdict(c.latency.p99_ms < CREATE_P99_TARGET_MS).into(),
                "SLO: mutating calls p99 <= 1 s".into(),
            ],
        ];
        for l in &self.lists {
            rows.push([
                format!("list {} ({})", l.items, l.what),
                format!("{:.0} ms ({:.1} MB)", l.best_ms, l.bytes as f64 / 1e6),
                "-".into(),
                String::new(),
                "SLO: namespace list p99 <= 5 s".into(),
            ]);
        }
        rows.push([
            format!("watch delivery p50 / p99 ({} watchers)", w.watchers),
            format!(
                "{:.1} / {:.1} ms",
                w.delivery_latency.p50_ms, w.delivery_latency.p99_ms
            ),
            "-".into(),
            String::new(),
            "none published (pod start SLO 5 s incl. watch)".into(),
        ]);
        rows.push([
            "watch deliveries received / expected".into(),
            format!("{} / {}", w.deliveries, w.expected_deliveries),
            "all".into(),
            verdict(w.deliveries == w.expected_deliveries && w.error_events == 0).into(),
            String::new(),
        ]);
        rows.push([
            format!(
                "store alone: creates/s ({} callers)",
                self.store.concurrency
            ),
            format!("{:.0}/s", self.store.per_second),
            "(ceiling)".into(),
            String::new(),
            "etcd 3x8 vCPU: 583/s (1 client), 44k/s (1000)".into(),
        ]);
        rows.push([
            "store alone: create p50 / p99".into(),
            format!("{:.1} / {:.1} ms", self.store.p50_ms, self.store.p99_ms),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let n = &self.store.without_fsync;
        rows.push([
            "store alone without fsync per commit (NORMAL): creates/s, p50 / p99".into(),
            format!(
                "{:.0}/s, {:.1} / {:.1} ms",
                n.per_second, n.p50_ms, n.p99_ms
            ),
            "(comparison)".into(),
            String::new(),
            String::new(),
        ]);

        let header = ["figure", "measured", "target", "", "reference"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: [&str; 5]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        println!();
        line(header);
        line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
        for row in &rows {
            line(row.each_ref().map(String::as_str));
        }
        println!();
        println!(
            "machine: {} cores, load average {:.2} at start; server binary {:.1} MB; extra server flags: {}",
            self.machine.cores,
            self.machine.load_average_at_start,
            self.machine.server_binary_bytes as f64 / 1e6,
            if self.machine.server_args.is_empty() { "none".into() } else { self.machine.server_args.join(" ") }
        );
        println!(
            "start-up runs: {} ms (server's own log: {} ms)",
            join(self.startup.runs_ms.iter().map(|v| format!("{v:.0}"))),
            join(self.startup.logged_ms.iter().map(|v| match v {
                Some(v) => v.to_string(),
                None => "?".into(),
            }))
        );
        let m = &self.memory;
        println!("RSS at ready:         {}", m.at_ready);
        println!("RSS {:.0} s later:       {}", m.idle_after_seconds, m.idle);
        println!("RSS after creates:    {}", m.after_creates);
        println!("RSS after lists:      {}", m.after_lists);
        println!("RSS after watches:    {}", m.after_load);
        println!(
            "creates: {} in {:.2} s, max {:.1} ms; CPU: {}",
            c.objects, c.seconds, c.latency.max_ms, c.cpu
        );
        println!(
            "watch: {} writes at {:.0}/s (aimed {}), write p50/p99 {:.1}/{:.1} ms, delivery max {:.1} ms, {} ERROR events; CPU: {}",
            w.writes,
            w.write_rate,
            if w.target_rate > 0.0 { format!("{:.0}/s", w.target_rate) } else { "unpaced".into() },
            w.write_latency.p50_ms,
            w.write_latency.p99_ms,
            w.delivery_latency.max_ms,
            w.error_events,
            w.cpu
        );
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Shown for a phase's CPU use while it runs.
pub fn cpu_line(cpu: &CpuShare) -> String {
    format!("CPU: {cpu}")
}
