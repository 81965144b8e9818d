//! Starts a real `capstan server` for a test (own data dir, free port, own kubectl cache) and
//! runs the real kubectl against it. Acceptance tests use this; nothing here is mocked.
//! [`Server::start_with_agent`] also runs the node agent with its own containerd (see [`agent`]).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

pub mod agent;
pub mod cluster;
pub mod dns;
pub mod registry;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running server, stopped when dropped.
pub struct Server {
    bin: PathBuf,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub extra_args: Vec<String>,
    /// Set when the server runs its node agent (real containers).
    pub agent: Option<agent::AgentOpts>,
    /// `--bind-address` (127.0.0.1 unless a test bed needs the server on another address).
    pub bind_address: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Starts `cmd` (a capstan process) with its output appended to `log` and CAPSTAN_LOG passed
/// on (info by default).
pub(crate) fn spawn_logged(mut cmd: Command, log: &Path, what: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    cmd.env(
        "CAPSTAN_LOG",
        std::env::var("CAPSTAN_LOG").unwrap_or_else(|_| "info".into()),
    )
    .stdout(Stdio::from(log.try_clone().expect("log")))
    .stderr(Stdio::from(log))
    .spawn()
    .unwrap_or_else(|e| panic!("starting {what}: {e}"))
}

/// `args` (flag-value pairs) without the flags `extra` gives too: a test's own value wins.
fn without_overridden(args: Vec<String>, extra: &[String]) -> Vec<String> {
    args.chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .cloned()
        .collect()
}

impl Server {
    /// Starts `bin server` with a fresh data dir on a free port, without the node agent.
    pub fn start(bin: &str) -> Self {
        Self::start_with(bin, &[])
    }

    /// Like [`Server::start`] with extra server flags.
    pub fn start_with(bin: &str, extra: &[&str]) -> Self {
        Self::start_prepared(bin, extra, |_| ()).0
    }

    /// Like [`Server::start_with`], after `prepare` has run on the (not yet created) data dir,
    /// e.g. to mount a file system there; what it returns is handed back (a guard to unmount it,
    /// say; bind it after the server so that it is dropped first).
    pub fn start_prepared<T>(
        bin: &str,
        extra: &[&str],
        prepare: impl FnOnce(&Path) -> T,
    ) -> (Self, T) {
        let mut s = Server {
            bin: PathBuf::from(bin),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            agent: None,
            bind_address: "127.0.0.1".into(),
        };
        let prepared = prepare(&s.data_dir());
        s.spawn();
        (s, prepared)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        if !self.extra_args.iter().any(|a| a == "--cluster-dns-port") {
            // Test servers share the host's addresses: each gets a DNS port of its own (kept in
            // extra_args, so a restart serves the same one).
            self.extra_args.extend([
                "--cluster-dns-port".into(),
                dns::free_dns_port().to_string(),
            ]);
        }
        let mut child = Command::new(&self.bin);
        child
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            // The server's bind address unless the test passes its own.
            .args(
                (!self.extra_args.iter().any(|a| a == "--bind-address"))
                    .then_some(["--bind-address", self.bind_address.as_str()])
                    .into_iter()
                    .flatten(),
            )
            .args(match &self.agent {
                Some(a) => without_overridden(a.server_args(), &self.extra_args),
                None => vec!["--disable-agent".to_string()],
            })
            .args(&self.extra_args);
        self.child = Some(spawn_logged(child, &self.log_path(), "capstan server"));
        self.wait_ready();
    }

    /// Waits until the kubeconfig exists (written once the server is ready) and kubectl answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("capstan server exited with {status}:\n{}", self.log());
                }
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready after 30s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("server did not stop within 20s of SIGTERM:\n{}", self.log());
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts a stopped or killed server again.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        self.spawn();
    }

    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("kubecache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        c
    }

    /// Runs kubectl and returns its output, whatever the exit code.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("running kubectl")
    }

    /// Runs kubectl with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing stdin");
        child.wait_with_output().expect("kubectl output")
    }

    /// `kubectl get WHAT... -o jsonpath=PATH`'s output; empty when kubectl fails (for polling).
    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        let jp = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &jp]);
        String::from_utf8_lossy(&self.kubectl(&args).stdout).into_owned()
    }

    /// Runs kubectl, panicking with its stderr and the server log if it fails; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        check_ok(args, &out, self);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like [`Server::ok`] with stdin.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, input);
        check_ok(args, &out, self);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a: Vec<&str> = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl output is not JSON ({e}): {out}"))
    }

    /// `kubectl get --raw PATH`, parsed as JSON.
    pub fn raw(&self, path: &str) -> serde_json::Value {
        let out = self.ok(&["get", "--raw", path]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {out}"))
    }

    /// The admin bearer token (for raw HTTP clients).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server/cred/admin.token"))
            .expect("admin token")
            .trim()
            .to_string()
    }

    /// The server's CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir().join("server/tls/ca.crt")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn check_ok(args: &[&str], out: &Output, s: &Server) {
    if !out.status.success() {
        panic!(
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}\nserver log (tail):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&s.log(), 40)
        );
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.agent.is_some() && self.child.is_some() {
            // SIGTERM lets the agent stop its containerd in order.
            self.stop_quietly();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(a) = &self.agent {
            agent::cleanup(&self.data_dir(), a);
        }
    }
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The project's examples folder, found from the working directory (cargo and nextest run
/// tests in the package's folder). The compile-time path is only a fallback: test artifacts in
/// a shared target dir may have been built from another checkout.
pub fn examples_dir() -> PathBuf {
    let mut dir = std::env::current_dir().ok();
    while let Some(d) = dir {
        let candidate = d.join("examples");
        if candidate.join("deployment.yaml").exists() {
            return candidate;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Writes `contents` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("writing test file");
    p
}

/// A raw HTTPS request with the admin token (or none), via curl, for inputs kubectl would not
/// send. Returns the status code and the body (parsed as JSON when it is JSON).
pub fn http(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    content_type: &str,
    authenticated: bool,
) -> (u16, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tmp");
    let out_file = dir.path().join("out");
    let mut c = Command::new("curl");
    c.args(["-s", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(s.ca_file())
        .args(["-X", method, "-H", &format!("Content-Type: {content_type}")]);
    if authenticated {
        c.args(["-H", &format!("Authorization: Bearer {}", s.admin_token())]);
    }
    if let Some(b) = body {
        let f = dir.path().join("body");
        std::fs::write(&f, b).expect("body file");
        c.arg("--data-binary").arg(format!("@{}", f.display()));
    }
    c.arg(format!("{}{path}", s.url()));
    let out = c.output().expect("curl");
    let code: u16 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (code, v)
}

/// Streams a watch with curl for `seconds` and returns the events received (one JSON per line).
pub fn watch_lines(s: &Server, path: &str, seconds: u32) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-s", "-N", "--max-time", &seconds.to_string(), "--cacert"])
        .arg(s.ca_file())
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())])
        .arg(format!("{}{path}", s.url()))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// Polls `f` every 100 ms until it returns true or `timeout` passes; returns whether it did.
pub fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kube-rs client from a kubeconfig (a test server's `kubeconfig()`).
pub async fn kube_client(kubeconfig: impl AsRef<Path>) -> kube::Client {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kc = Kubeconfig::read_from(kubeconfig.as_ref()).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// Asserts that a response is the Kubernetes Status a client mistake should get: the HTTP
/// code, `kind: Status` with the same code, the reason, and a message containing `want_message`.
pub fn assert_status(
    code: u16,
    body: &serde_json::Value,
    want_code: u16,
    want_reason: &str,
    want_message: &str,
) {
    assert_eq!(code, want_code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], want_reason, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(want_message),
        "message {msg:?} should contain {want_message:?}"
    );
}
