//! Readings from /proc: a process's resident memory and CPU time, and the whole machine's CPU
//! time, so that each phase can say who used the two cores ([`CpuSample`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every mainstream architecture
/// (it is fixed in the kernel ABI, independent of CONFIG_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory of a process in bytes: the total (VmRSS) and its anonymous part (heap,
/// stacks) and file-backed part (mostly the binary's own pages), and the peak so far (VmHWM).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
    pub peak: u64,
}

/// [`Rss`] of `pid` from /proc/<pid>/status.
pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} line"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{name} is not a number"))?;
        Ok(kib * 1024)
    };
    Ok(Rss {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
        peak: field("VmHWM:")?,
    })
}

/// User plus system CPU time of a process (`self` or a pid), in seconds.
fn process_cpu_seconds(who: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat"))
        .with_context(|| format!("reading /proc/{who}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it start past the last ')'.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// Busy CPU time of the whole machine (all cores, everything but idle and iowait), in seconds.
fn machine_busy_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("malformed /proc/stat")?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Ok(total.saturating_sub(idle) as f64 / TICKS_PER_SECOND)
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU time of the server, of this benchmark and of everything else, at one moment.
#[derive(Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    server: f64,
    bench: f64,
    machine: f64,
}

/// Who used the CPU between two [`CpuSample`]s, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuShare {
    pub wall_seconds: f64,
    pub server_cores: f64,
    pub bench_cores: f64,
    /// Other processes on the machine (other builds, the kernel's own threads).
    pub other_cores: f64,
}

impl CpuSample {
    pub fn take(server_pid: u32) -> Self {
        Self {
            at: Instant::now(),
            server: process_cpu_seconds(&server_pid.to_string()).unwrap_or(f64::NAN),
            bench: process_cpu_seconds("self").unwrap_or(f64::NAN),
            machine: machine_busy_seconds().unwrap_or(f64::NAN),
        }
    }

    /// The use of the CPU from `self` until `later`.
    pub fn until(&self, later: &CpuSample) -> CpuShare {
        let wall = later
            .at
            .duration_since(self.at)
            .max(Duration::from_millis(1));
        let wall = wall.as_secs_f64();
        let server = (later.server - self.server) / wall;
        let bench = (later.bench - self.bench) / wall;
        let machine = (later.machine - self.machine) / wall;
        CpuShare {
            wall_seconds: wall,
            server_cores: server,
            bench_cores: bench,
            other_cores: (machine - server - bench).max(0.0),
        }
    }
}

impl std::fmt::Display for CpuShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {:.2} cores, benchmark client {:.2}, other processes {:.2} (over {:.1} s)",
            self.server_cores, self.bench_cores, self.other_cores, self.wall_seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_size_and_cpu_time() {
        let rss = rss(std::process::id()).expect("rss");
        assert!(rss.total > 0 && rss.anon > 0 && rss.total >= rss.anon);
        assert!(process_cpu_seconds("self").expect("cpu") >= 0.0);
        assert!(machine_busy_seconds().expect("machine") > 0.0);
    }
}
