//! A multi-node test bed on one machine: one `capstan server` plus N `capstan agent`s, each
//! agent in its own network namespace with its own containerd, data dir and node name, all
//! joined by a bridge in the host namespace that carries the test's own /24 (172.31.<octet>.0/24,
//! the octet claimed exclusively as for single-node agents, so parallel beds never meet).
//!
//! ```text
//!   host netns:  server (0.0.0.0:<port>)   bridge cstb<o> 172.31.o.1/24
//!                                             │            │
//!                                         veth cst<o>v1  veth cst<o>v2
//!   netns cst-<o>-1: eth0 172.31.o.11      netns cst-<o>-2: eth0 172.31.o.12   (default via .1)
//!                    agent node-<o>-1                       agent node-<o>-2
//! ```
//!
//! `far_agents` puts more agents on a second subnet (172.30.<octet>.0/24, bridge `cstf<octet>`)
//! that the host routes to: nodes that share no link, reached through VXLAN.
//!
//! Agents enter only the network namespace (`nsenter --net`): they share the host's mounts and
//! cgroups (`ip netns exec` would remount /sys without the cgroup file system runc needs). The
//! namespaces reach each other over the bridge and the server on the bridge address; their
//! default route points at the host, which has no route out for the bed's addresses, so
//! nothing leaves the machine. Bridged traffic passes the host's iptables FORWARD chain
//! (br_netfilter): the bed needs it to accept, as on CI (Docker's DROP policy would cut it).
//! The server listens on 0.0.0.0 (kubectl uses 127.0.0.1, the agents the bridge address).
//! Everything is removed on drop, also after a failed test: agents and what they started,
//! namespaces (and with them the veths, the agents' routes, VXLAN devices and nftables
//! tables), the bridges.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::agent::{claim_network_octet, stop_leftovers, test_images, AgentOpts, TEST_IMAGES};
use crate::{free_port, Server};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    /// `capstan agent`s, each in its own network namespace.
    pub agents: usize,
    /// Whether the server runs its own node agent too (in the host namespace, node IP on the
    /// bridge; its pods are then reachable from the other nodes like theirs).
    pub server_agent: bool,
    /// More `capstan agent`s on a second subnet (172.30.<octet>.0/24 on bridge
    /// `cstf<octet>`), which the host routes to and from the first: the nodes there share no
    /// link with the others (VXLAN). The host's IPv4 forwarding is turned on for them.
    pub far_agents: usize,
    /// More server flags.
    pub server_args: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        Self {
            agents: 2,
            server_agent: false,
            far_agents: 0,
            server_args: Vec::new(),
        }
    }
}

/// One joined node: its namespace, address and agent process.
pub struct Node {
    pub name: String,
    /// The network namespace the agent and its pods live in (`cst-<octet>-<i>`).
    pub netns: String,
    /// The node's address on the bed's bridge (its InternalIP).
    pub ip: Ipv4Addr,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        // Only the network namespace: `ip netns exec` would also give the agent a mount
        // namespace with a fresh /sys, without the cgroup file system runc needs.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .args(&self.args);
        self.child = Some(crate::spawn_logged(
            cmd,
            &self.log_path(),
            "capstan agent in its network namespace",
        ));
    }

    /// SIGTERM (a clean stop: the agent stops its containerd; containers keep running) and
    /// wait; SIGKILL after 30 s.
    fn stop(&mut self) {
        if let Some(c) = self.child.as_ref() {
            signal(c.id(), "TERM");
        }
        self.reap(Duration::from_secs(30));
    }

    /// Waits up to `limit` for the agent to exit, then kills it.
    fn reap(&mut self, limit: Duration) {
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + limit;
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
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The bed's addresses and links in the host namespace; removed on drop.
struct BedNetwork {
    bridges: Vec<String>,
    namespaces: Vec<String>,
}

/// Where one joined node sits: its bridge, that bridge's address and its own.
struct Placement {
    netns: String,
    bridge: String,
    gateway: Ipv4Addr,
    ip: Ipv4Addr,
}

impl BedNetwork {
    fn remove(&self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        for b in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", b]).output();
        }
    }
}

impl Drop for BedNetwork {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `ip ARGS`, panicking with its error output.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server and joined agents in network namespaces. Fields drop in order: agents, then the
/// server, then the network.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub server: Server,
    net: BedNetwork,
    /// The claimed octet: bridge subnet 172.31.<octet>.0/24, cluster CIDR 10.<octet>.0.0/17, Services 10.<octet>.128.0/17 (as [`AgentOpts::for_octet`]).
    pub octet: u32,
}

impl std::ops::Deref for Cluster {
    type Target = Server;
    /// kubectl helpers (`ok`, `apply`, `get_json`...) go to the server.
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Cluster {
    /// Starts a server without its own agent and two joined agents, and waits until every node
    /// is Ready.
    pub fn start(bin: &str) -> Self {
        Self::start_with(bin, ClusterOpts::default())
    }

    pub fn start_with(bin: &str, opts: ClusterOpts) -> Self {
        // The server's agent would make a VXLAN device in the host's namespace for far nodes,
        // which no clean-up could tell from another bed's.
        assert!(
            !(opts.server_agent && opts.far_agents > 0),
            "far_agents need a server without its own agent"
        );
        let octet = claim_network_octet();
        let bridge = format!("cstb{octet}");
        let far_bridge = format!("cstf{octet}");
        let gateway = Self::bridge_ip_of(octet);
        let far_gateway = Ipv4Addr::new(172, 30, octet as u8, 1);
        let placements: Vec<Placement> = (1..=opts.agents + opts.far_agents)
            .map(|i| {
                let far = i > opts.agents;
                Placement {
                    netns: format!("cst-{octet}-{i}"),
                    bridge: if far { &far_bridge } else { &bridge }.clone(),
                    gateway: if far { far_gateway } else { gateway },
                    ip: if far {
                        Ipv4Addr::new(172, 30, octet as u8, 10 + i as u8)
                    } else {
                        Self::node_ip_of(octet, i)
                    },
                }
            })
            .collect();
        let mut bridges = vec![(bridge.clone(), gateway)];
        if opts.far_agents > 0 {
            bridges.push((far_bridge.clone(), far_gateway));
        }
        let net = BedNetwork {
            bridges: bridges.iter().map(|(b, _)| b.clone()).collect(),
            namespaces: placements.iter().map(|p| p.netns.clone()).collect(),
        };
        // A test process killed half-way leaves its links behind; the octet is ours now.
        net.remove();
        for (b, addr) in &bridges {
            ip(&["link", "add", b, "type", "bridge"]);
            ip(&["addr", "add", &format!("{addr}/24"), "dev", b]);
            ip(&["link", "set", b, "up"]);
        }
        if opts.far_agents > 0 {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .expect("turning on IPv4 forwarding between the bed's subnets");
        }
        for (i, p) in placements.iter().enumerate() {
            let ns = p.netns.as_str();
            let veth = format!("cst{octet}v{}", i + 1);
            let _ = Command::new("ip").args(["link", "del", &veth]).output();
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ]);
            ip(&["link", "set", &veth, "master", &p.bridge, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", p.ip),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                &p.gateway.to_string(),
            ]);
        }

        // The bed's networks, ports and proxy table, as a one-node test cluster's.
        let base = AgentOpts::for_octet(octet);
        let cluster_cidr = base.cluster_cidr.clone();
        let gw = gateway.to_string();
        let mut extra: Vec<String> = vec![
            "--advertise-address".into(),
            gw.clone(),
            "--tls-san".into(),
            gw.clone(),
        ];
        let server_agent = opts.server_agent.then(|| AgentOpts {
            node_name: format!("node-{octet}-0"),
            ..base.clone()
        });
        match &server_agent {
            Some(_) => extra.extend(["--node-ip".into(), gw.clone()]),
            None => extra.extend([
                "--cluster-cidr".into(),
                cluster_cidr.clone(),
                "--service-cidr".into(),
                base.service_cidr.clone(),
                "--service-node-port-range".into(),
                base.node_port_range.clone(),
            ]),
        }
        extra.extend(opts.server_args.iter().cloned());
        let mut server = Server {
            bin: PathBuf::from(bin),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            extra_args: extra,
            agent: server_agent,
            // The agents reach the server on the bridge address, kubectl on 127.0.0.1.
            bind_address: "0.0.0.0".into(),
        };
        if server.agent.is_some() {
            link_test_images(&server.data_dir());
        }
        server.spawn();
        let token = std::fs::read_to_string(server.data_dir().join("server/node-token"))
            .expect("the server's node-token")
            .trim()
            .to_string();
        let url = format!("https://{gateway}:{}", server.port);
        let nodes = placements
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let name = format!("node-{octet}-{}", i + 1);
                let ip = p.ip;
                let dir = tempfile::tempdir().expect("tempdir");
                let data = dir.path().join("data");
                link_test_images(&data);
                let args: Vec<String> = vec![
                    bin.to_string(),
                    "agent".into(),
                    "--server".into(),
                    url.clone(),
                    "--token".into(),
                    token.clone(),
                    "--node-name".into(),
                    name.clone(),
                    "--node-ip".into(),
                    ip.to_string(),
                    "--data-dir".into(),
                    data.to_string_lossy().into_owned(),
                    "--cluster-cidr".into(),
                    cluster_cidr.clone(),
                    // Each namespace has its own ports and links: the defaults fit.
                    "--kubelet-port".into(),
                    "10250".into(),
                    "--cni-bridge".into(),
                    "cni0".into(),
                ];
                let mut n = Node {
                    name,
                    netns: p.netns.clone(),
                    ip,
                    dir,
                    args,
                    child: None,
                };
                n.spawn();
                n
            })
            .collect();
        let c = Cluster {
            nodes,
            server,
            net,
            octet,
        };
        c.wait_all_ready();
        c
    }

    /// 172.31.<octet>.1: the bridge, where the namespaces find the server.
    pub fn bridge_ip_of(octet: u32) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, octet as u8, 1)
    }

    /// Node `i`'s (1-based) address: 172.31.<octet>.<10+i>.
    pub fn node_ip_of(octet: u32, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, octet as u8, 10 + i as u8)
    }

    pub fn bridge_ip(&self) -> Ipv4Addr {
        Self::bridge_ip_of(self.octet)
    }

    /// The bridge of the bed's (first) subnet.
    pub fn bridge(&self) -> &str {
        &self.net.bridges[0]
    }

    /// The cluster CIDR nodes' podCIDRs come from.
    pub fn cluster_cidr(&self) -> String {
        AgentOpts::for_octet(self.octet).cluster_cidr
    }

    /// Every node name: the server's own first (when it has an agent), then the joined ones.
    pub fn node_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .server
            .agent
            .iter()
            .map(|a| a.node_name.clone())
            .collect();
        v.extend(self.nodes.iter().map(|n| n.name.clone()));
        v
    }

    /// The joined node called `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no joined node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no joined node {name}"))
    }

    /// Waits (up to 120 s) until every node reports Ready.
    pub fn wait_all_ready(&self) {
        for name in self.node_names() {
            self.wait_node_status(&name, "True", Duration::from_secs(120));
        }
    }

    /// Waits until node `name`'s Ready condition is `status` ("True", "False", "Unknown").
    pub fn wait_node_status(&self, name: &str, status: &str, timeout: Duration) {
        self.eventually(timeout, &format!("node {name} Ready={status}"), || {
            let out = self.server.kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == status).then_some(())
        });
    }

    /// For failure messages: pods, recent events, and the tail of every log.
    pub fn diagnostics(&self) -> String {
        let pods = self.server.kubectl(&["get", "pods", "-A", "-o", "wide"]);
        let events = self
            .server
            .kubectl(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
        let mut out = format!(
            "--- pods ---\n{}\n--- events ---\n{}",
            String::from_utf8_lossy(&pods.stdout),
            crate::tail(&String::from_utf8_lossy(&events.stdout), 20)
        );
        for n in &self.nodes {
            out.push_str(&format!(
                "\n--- agent {} ---\n{}",
                n.name,
                crate::tail(&n.log(), 30)
            ));
        }
        out.push_str(&format!(
            "\n--- server ---\n{}",
            crate::tail(&self.server.log(), 30)
        ));
        out
    }

    /// Polls `f` until it returns Some; panics with [`Cluster::diagnostics`] after `timeout`.
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (90 s) until `pod` (in the default namespace) is Running; returns its IP.
    pub fn pod_ip(&self, pod: &str) -> String {
        self.eventually(
            Duration::from_secs(90),
            &format!("pod {pod} Running with an IP"),
            || {
                let out = self.server.kubectl(&[
                    "get",
                    "pod",
                    pod,
                    "-o",
                    "jsonpath={.status.phase} {.status.podIP}",
                ]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let (phase, ip) = text.split_once(' ')?;
                (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
            },
        )
    }

    /// Waits (60 s) until `kubectl logs POD` contains `needle` (the path from the server to
    /// the pod's node's kubelet); returns the whole log.
    pub fn logs_containing(&self, pod: &str, needle: &str) -> String {
        self.eventually(
            Duration::from_secs(60),
            &format!("{needle:?} in the logs of {pod}"),
            || {
                let out = self.server.kubectl(&["logs", pod]);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.contains(needle).then_some(text)
            },
        )
    }

    /// GET `url` with curl from inside node `name`'s namespace (as a process on that node, not
    /// in a pod); the body when it answered 2xx within 5 s.
    pub fn curl_in(&self, name: &str, url: &str) -> Option<String> {
        let out = self.exec_in(name, &["curl", "-sf", "-m", "5", url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The podCIDR the server assigned to `name`.
    pub fn pod_cidr(&self, name: &str) -> String {
        self.server
            .ok(&["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"])
    }

    /// Runs `cmd` inside node `name`'s network namespace (in the host's file system).
    pub fn exec_in(&self, name: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.node(name).netns])
            .args(cmd)
            .output()
            .expect("ip netns exec")
    }

    /// Like [`Cluster::exec_in`], panicking unless it succeeds; returns stdout.
    pub fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let out = self.exec_in(name, cmd);
        assert!(
            out.status.success(),
            "{} in {name} failed: {}{}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops node `name`'s agent cleanly (SIGTERM): its containers keep running, as after
    /// `systemctl stop` of a kubelet.
    pub fn stop_agent(&mut self, name: &str) {
        self.node_mut(name).stop();
    }

    /// Kills node `name`'s agent with SIGKILL, as a crash would; containerd and the
    /// containers keep running.
    pub fn kill_agent(&mut self, name: &str) {
        let n = self.node_mut(name);
        if let Some(c) = n.child.as_ref() {
            signal(c.id(), "KILL");
        }
        n.reap(Duration::from_secs(10));
    }

    /// Takes node `name` down whole, as a machine that loses power: the agent, its
    /// containerd and every container are killed. Its namespace stays (start it again with
    /// [`Cluster::start_agent`]).
    pub fn power_off(&mut self, name: &str) {
        self.kill_agent(name);
        stop_leftovers(&self.node(name).data_dir());
    }

    /// Starts node `name`'s agent again on the same data dir (its saved credentials).
    pub fn start_agent(&mut self, name: &str) {
        let n = self.node_mut(name);
        assert!(n.child.is_none(), "the agent of {name} is running");
        n.spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM every agent first so they stop side by side.
        for n in &self.nodes {
            if let Some(c) = n.child.as_ref() {
                signal(c.id(), "TERM");
            }
        }
        for n in &mut self.nodes {
            n.reap(Duration::from_secs(30));
            stop_leftovers(&n.data_dir());
        }
        // Then the server (its own Drop, with its agent's clean-up), then the network.
    }
}

/// Links the test images into `data`'s air-gap folder.
fn link_test_images(data: &Path) {
    let images = test_images();
    let air_gap = data.join("agent/images");
    std::fs::create_dir_all(&air_gap).expect("images folder");
    for f in TEST_IMAGES {
        std::os::unix::fs::symlink(images.join(f), air_gap.join(f)).expect("linking a test image");
    }
}
