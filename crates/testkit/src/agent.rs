//! Servers with the node agent: real containerd, real containers. Each test cluster gets its
//! own kubelet port, CNI bridge and pod network so several can run side by side, the test
//! images (built once by scripts/build-test-images.sh; the pause image is the agent's own) in
//! its air-gap folder, and a clean-up
//! that stops what it started even when a test fails half-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::{free_port, Server};

/// The busybox test image (sh, httpd, nc, wget, nslookup...).
pub const BUSYBOX: &str = "capstan.test/busybox:1.0";
/// busybox httpd serving "hello from <hostname>" on port 80.
pub const HTTPD: &str = "capstan.test/httpd:1.0";

/// Where one test cluster's node agent lives.
#[derive(Clone, Debug)]
pub struct AgentOpts {
    pub node_name: String,
    pub kubelet_port: u16,
    pub bridge: String,
    pub cluster_cidr: String,
    /// The built-in ingress's ports.
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    /// The cluster's Service range: parallel test clusters share the host's network
    /// namespace, so each one's ClusterIPs must be its own.
    pub service_cidr: String,
    /// The cluster's NodePort range: every test cluster's NodePorts answer on the same host
    /// addresses.
    pub node_port_range: String,
    /// The service proxy's nftables table.
    pub proxy_table: String,
}

impl Default for AgentOpts {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentOpts {
    /// Fresh, unused names, port and network for one more agent.
    pub fn new() -> Self {
        Self::for_octet(claim_network_octet())
    }

    /// The names, ports and networks of the test cluster that claimed `octet`.
    pub fn for_octet(octet: u32) -> Self {
        // 80 NodePorts per octet, 20000-31999: below the kernel's ephemeral ports (32768-).
        let first_node_port = 20_000 + (octet - 100) * 80;
        Self {
            node_name: format!("node-{octet}"),
            kubelet_port: free_port(),
            bridge: format!("cst{octet}"),
            ingress_http_port: free_port(),
            ingress_https_port: free_port(),
            cluster_cidr: format!("10.{octet}.0.0/17"),
            service_cidr: format!("10.{octet}.128.0/17"),
            node_port_range: format!("{first_node_port}-{}", first_node_port + 79),
            proxy_table: format!("capstan{octet}"),
        }
    }

    pub(crate) fn server_args(&self) -> Vec<String> {
        vec![
            "--node-name".into(),
            self.node_name.clone(),
            "--kubelet-port".into(),
            self.kubelet_port.to_string(),
            "--cni-bridge".into(),
            self.bridge.clone(),
            "--cluster-cidr".into(),
            self.cluster_cidr.clone(),
            "--ingress-http-port".into(),
            self.ingress_http_port.to_string(),
            "--ingress-https-port".into(),
            self.ingress_https_port.to_string(),
            "--service-cidr".into(),
            self.service_cidr.clone(),
            "--service-node-port-range".into(),
            self.node_port_range.clone(),
            "--proxy-table".into(),
            self.proxy_table.clone(),
        ]
    }

    /// The `n`th address of the cluster's Service range (1: the `kubernetes` Service).
    pub fn service_ip(&self, n: u32) -> String {
        let base = self
            .service_cidr
            .split('/')
            .next()
            .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
            .map(u32::from)
            .unwrap_or(0);
        std::net::Ipv4Addr::from(base + n).to_string()
    }
}

/// The tarballs every test agent gets in its air-gap folder. No pause image: the agent
/// assembles its own (capstan.local/pause:3.10, from catatonit), so every test runs with it.
pub const TEST_IMAGES: [&str; 2] = ["busybox.tar", "httpd.tar"];

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the test images once per test process; returns their folder.
pub fn test_images() -> PathBuf {
    static BUILD: Once = Once::new();
    let dir = std::env::var("CAPSTAN_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/capstan-images"));
    BUILD.call_once(|| {
        let st = Command::new(repo_dir().join("scripts/build-test-images.sh"))
            .arg(&dir)
            .status()
            .expect("running scripts/build-test-images.sh");
        assert!(st.success(), "building the test images failed");
    });
    dir
}

impl Server {
    /// Starts `bin server` with its node agent (own containerd, pod network and kubelet port),
    /// the test images in its air-gap folder, and waits until the node is Ready.
    pub fn start_with_agent(bin: &str, extra: &[&str]) -> Self {
        let images = test_images();
        let mut s = Server {
            bin: PathBuf::from(bin),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            agent: Some(AgentOpts::new()),
            bind_address: "127.0.0.1".into(),
        };
        let air_gap = s.data_dir().join("agent/images");
        std::fs::create_dir_all(&air_gap).expect("images folder");
        for f in TEST_IMAGES {
            std::os::unix::fs::symlink(images.join(f), air_gap.join(f))
                .expect("linking a test image");
        }
        s.spawn();
        s.wait_node_ready();
        s
    }

    /// The agent's node name.
    pub fn node_name(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| a.node_name.clone())
            .unwrap_or_default()
    }

    /// Waits until the node reports Ready.
    pub fn wait_node_ready(&self) {
        let node = self.node_name();
        crate::eventually(Duration::from_secs(90), "the node to be Ready", || {
            let out = self.kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
    }

    /// SIGTERM and wait, without panicking (for Drop).
    pub(crate) fn stop_quietly(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A pod manifest (YAML) on this server's node, for tests that create pods directly.
    pub fn apply(&self, yaml: &str) -> String {
        self.ok_stdin(&["apply", "-f", "-"], yaml)
    }

    /// Polls `kubectl get pod NAME -o jsonpath=PATH` until it equals `want`.
    pub fn wait_pod_field(&self, pod: &str, path: &str, want: &str, timeout: Duration) {
        crate::eventually(timeout, &format!("pod {pod} {path} == {want}"), || {
            let out = self.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
            (String::from_utf8_lossy(&out.stdout) == want).then_some(())
        });
    }
}

/// Kills what a test cluster's agent left behind (containers, shims, containerd), unmounts
/// its file systems, removes its bridge, its pods' NAT rules and its masquerade table.
/// Processes are found by the data dir in their command line and ended by pid.
pub fn cleanup(data_dir: &Path, a: &AgentOpts) {
    stop_leftovers(data_dir);
    let _ = Command::new("ip").args(["link", "del", &a.bridge]).output();
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &masquerade_table(&a.bridge)])
        .output();
    // A server killed before its clean stop leaves its service proxy's table.
    let _ = Command::new("nft")
        .args(["delete", "table", "ip", &a.proxy_table])
        .output();
}

/// The agent's masquerade table for pods on `bridge` (as `capstan_kubelet::masquerade`
/// names it; the testkit does not link the agent).
pub fn masquerade_table(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("capstan_masq_{safe}")
}

/// The part of [`cleanup`] that does not depend on the network namespace: containers, the
/// processes whose command line names `data_dir`, and mounts under it.
pub fn stop_leftovers(data_dir: &Path) {
    let runc_root = data_dir.join("agent/containerd/state/runc-root/k8s.io");
    if runc_root.exists() {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["list", "-q"])
            .output();
        if let Ok(out) = out {
            // Only whole ids: an empty line would match every rule on the machine.
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|id| id.len() >= 32)
                .map(str::to_string)
                .collect();
            remove_nat_rules_of(&ids);
            for id in &ids {
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["kill", "--all", id, "KILL"])
                    .output();
                let _ = Command::new("runc")
                    .arg("--root")
                    .arg(&runc_root)
                    .args(["delete", "-f", id])
                    .output();
            }
        }
    }
    let needle = data_dir.to_string_lossy().to_string();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let name = p.file_name().to_string_lossy().to_string();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) && pid != std::process::id() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(needle.as_str()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// Removes the NAT rules the CNI bridge (masquerade) and portmap (hostPort DNAT) plugins added
/// for these sandboxes. Killing containers with runc skips CNI DEL, and a leftover hostPort
/// DNAT would capture that port on 127.0.0.1 for every later test that happens to listen on it.
/// The plugins tag each rule with the sandbox id; the per-sandbox chains they jump to are
/// flushed and deleted.
fn remove_nat_rules_of(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let Ok(out) = Command::new("iptables-save").args(["-t", "nat"]).output() else {
        return;
    };
    let saved = String::from_utf8_lossy(&out.stdout);
    let tagged: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A ") && ids.iter().any(|id| l.contains(id.as_str())))
        .collect();
    let shared = [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-MASQ",
        "CNI-HOSTPORT-SETMARK",
    ];
    let chains: std::collections::BTreeSet<&str> = tagged
        .iter()
        .filter_map(|l| {
            l.rsplit_once(" -j ")
                .map(|(_, t)| t.split_whitespace().next().unwrap_or(""))
        })
        .filter(|t| t.starts_with("CNI-") && !shared.contains(t))
        .collect();
    for rule in &tagged {
        let chain = rule.split_whitespace().nth(1).unwrap_or("");
        if chains.contains(chain) {
            continue; // flushed with its chain below
        }
        // iptables-save quotes comments the way sh reads them.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("iptables -w -t nat -D {}", &rule[3..]))
            .output();
    }
    for chain in chains {
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-F", chain])
            .output();
        let _ = Command::new("iptables")
            .args(["-w", "-t", "nat", "-X", chain])
            .output();
    }
}

/// Claims a /16 (10.100-10.249) for one test cluster's pods, Services and bridge, exclusively among the
/// test processes running at the same time: two clusters on the same bridge would hand out the
/// same pod addresses, and one's clean-up would delete the other's bridge. The claim is a lock
/// on a file per octet, held until the process exits.
pub(crate) fn claim_network_octet() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("capstan-test-networks");
    let _ = std::fs::create_dir_all(&dir);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let start = std::process::id().wrapping_mul(7).wrapping_add(n * 13);
    for i in 0..150 {
        let octet = 100 + start.wrapping_add(i) % 150;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{octet}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return octet;
        }
    }
    panic!(
        "all 150 test pod networks are in use (locks in {})",
        dir.display()
    );
}

/// A `capstan agent` process joined to a server, stopped and cleaned up when dropped.
pub struct JoinedAgent {
    child: Option<std::process::Child>,
    pub dir: tempfile::TempDir,
    pub opts: AgentOpts,
}

impl JoinedAgent {
    /// Runs `bin agent --server URL --token TOKEN` with the test images in its air-gap folder.
    pub fn start(bin: &str, server: &Server, token: &str) -> Self {
        let images = test_images();
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = AgentOpts::new();
        let data = dir.path().join("data");
        let air_gap = data.join("agent/images");
        std::fs::create_dir_all(&air_gap).expect("images folder");
        for f in TEST_IMAGES {
            std::os::unix::fs::symlink(images.join(f), air_gap.join(f))
                .expect("linking a test image");
        }
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log");
        let child = Command::new(bin)
            .args([
                "agent",
                "--server",
                &server.url(),
                "--token",
                token,
                "--node-name",
                &opts.node_name,
            ])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--kubelet-port",
                &opts.kubelet_port.to_string(),
                "--cni-bridge",
                &opts.bridge,
                "--ingress-http-port",
                &opts.ingress_http_port.to_string(),
                "--ingress-https-port",
                &opts.ingress_https_port.to_string(),
                "--proxy-table",
                &opts.proxy_table,
            ])
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("starting capstan agent");
        Self {
            child: Some(child),
            dir,
            opts,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        cleanup(&self.dir.path().join("data"), &self.opts);
    }
}
