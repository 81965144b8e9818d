//! Runs `capstan server` under test: [`ServerProcess::start`] launches it on a fresh data dir
//! and a free port and measures the time from process start to `/readyz` answering 200.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::StatusCode;

use crate::client::{self, Conn, Target};

/// How often readiness is probed. Small, so that the figure is not rounded up by the probe.
const POLL: Duration = Duration::from_millis(2);

/// How long a server may take to become ready before the benchmark gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server with its own temporary data dir; killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// From just before the process was spawned to the first 200 from `/readyz`.
    pub ready_in: Duration,
}

/// The log without terminal colour codes (the server colours its log even into a file).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs up to and including its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((client::LOOPBACK, 0))?
        .local_addr()?
        .port())
}

impl ServerProcess {
    /// Starts `bin server` (plus `extra_args`) on a fresh data dir and waits until `/readyz` answers 200.
    pub async fn start(bin: &Path, extra_args: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("capstan-bench-")
            .tempdir_in(std::env::temp_dir())
            .context("creating a data dir")?;
        let port = free_port().context("finding a free port")?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--https-listen-port")
            .arg(port.to_string())
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--disable-agent")
            .args(extra_args)
            .env("CAPSTAN_LOG", "info")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Self {
            child: Some(child),
            dir,
            port,
            ready_in: Duration::ZERO,
        };
        server.ready_in = server.wait_ready(started).await?;
        Ok(server)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir().join("server/tls/ca.crt")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn admin_token(&self) -> anyhow::Result<String> {
        let path = self.data_dir().join("server/cred/admin.token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// The server's own start-up figure from its log (`ready_in_ms=`), as a cross-check. The
    /// server logs it just after it turns ready, so this waits up to a second for the line.
    pub async fn logged_ready_ms(&self) -> Option<u64> {
        for _ in 0..100 {
            if let Some(ms) = self.read_logged_ready_ms() {
                return Some(ms);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    fn read_logged_ready_ms(&self) -> Option<u64> {
        let log = strip_ansi(&std::fs::read_to_string(self.dir.path().join("server.log")).ok()?);
        let at = log.find("ready_in_ms=")? + "ready_in_ms=".len();
        let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The last lines of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("the server exited with {status}:\n{}", self.log_tail());
            }
        }
        Ok(())
    }

    /// Polls every [`POLL`]: first for the CA file (written before the server listens), then
    /// for a connection, then `/readyz` on that one connection until it answers 200.
    async fn wait_ready(&mut self, started: Instant) -> anyhow::Result<Duration> {
        let ca_path = self.ca_path();
        let mut target: Option<Target> = None;
        let mut conn: Option<Conn> = None;
        loop {
            anyhow::ensure!(
                started.elapsed() < READY_TIMEOUT,
                "the server was not ready after {READY_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            self.check_alive()?;
            if target.is_none() {
                // The file may exist but still be empty or half written: retry until it parses.
                if let Ok(ca) = std::fs::read(&ca_path)
                    .map_err(anyhow::Error::from)
                    .and_then(|pem| client::parse_ca(&pem))
                {
                    target = Some(Target::new(self.port, ca, None, false)?);
                }
            }
            if let Some(t) = &target {
                if conn.is_none() {
                    conn = t.connect().await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    match c.call(t.get("/readyz", None)).await {
                        Ok((StatusCode::OK, _)) => return Ok(started.elapsed()),
                        Ok(_) => {}
                        // The connection broke (e.g. accepted during start-up): open another.
                        Err(_) => conn = None,
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // std offers only SIGKILL; the kill(1) command avoids unsafe code for SIGTERM.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_removed_from_the_log() {
        let line = "\u{1b}[3mready_in_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m133 x";
        assert_eq!(strip_ansi(line), "ready_in_ms=133 x");
    }
}
