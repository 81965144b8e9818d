//! Putting the agent together: [`Agent::run`] registers the node, brings the runtime up
//! (its own containerd with the pod network, or a given CRI endpoint), imports the air-gap
//! images, and runs the node status, lease, log server and pod loops until shutdown.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::containerd::{self, Supervisor};
use crate::cri::{Cri, GrpcCri};
use crate::images::ImageManager;
use crate::metrics::Metrics;
use crate::node::{self, NodeFacts, Readings};
use crate::pods::{self, spec::Dns, Shared};
use crate::registries::Registries;
use crate::{cni, server};

/// Which runtime the agent uses.
#[derive(Clone, Debug)]
pub enum RuntimeEndpoint {
    /// Start and supervise containerd (binaries by name or path).
    Managed {
        containerd: String,
        runc: String,
        ctr: String,
    },
    /// Use the CRI socket of a runtime someone else runs (its network config is its own).
    External(PathBuf),
}

/// The agent's settings (flags of `capstan server` / `capstan agent`).
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    /// `<data-dir>/agent`.
    pub dir: PathBuf,
    pub node_ip: Option<IpAddr>,
    pub runtime: RuntimeEndpoint,
    pub pause_image: String,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub kubelet_port: u16,
    pub max_pods: u32,
    /// The CNI bridge's name.
    pub bridge: String,
    /// The cluster's pod range (every node's podCIDR lies in it): traffic to it keeps the
    /// pod's address; other nodes' podCIDRs in it are routed (crate::podroutes).
    pub cluster_cidr: String,
    pub registries_file: PathBuf,
    /// Image tarballs imported at start (unchanged ones skipped).
    pub images_dir: PathBuf,
    pub node_labels: BTreeMap<String, String>,
    /// A container's log is rotated past this size (upstream's containerLogMaxSize, 10Mi).
    pub container_log_max_size: u64,
    /// Log files kept per container, the live one included (containerLogMaxFiles, 5).
    pub container_log_max_files: usize,
    /// Serving certificate and key for the kubelet port, and the CA that signs API server
    /// client certificates.
    pub tls: Option<server::Tls>,
    /// The built-in ingress's HTTP and HTTPS ports (0 turns one off).
    pub ingress_http_port: u16,
    pub ingress_https_port: u16,
    /// The service proxy's settings; None when another proxy serves this node.
    pub proxy: Option<capstan_proxy::Settings>,
}

/// Fatal start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Node(#[from] node::Error),
    #[error(transparent)]
    Cni(#[from] cni::Error),
    #[error(transparent)]
    Containerd(#[from] containerd::Error),
    #[error(transparent)]
    Registries(#[from] crate::registries::Error),
    #[error(transparent)]
    Server(#[from] server::Error),
    #[error("--cluster-cidr: {0}")]
    ClusterCidr(#[from] capstan_api::net::CidrError),
    #[error("the container runtime is not ready after {0:?}: {1}")]
    RuntimeNotReady(Duration, String),
}

pub struct Agent;

/// The address the host uses for its default route: connecting a UDP socket sends nothing but
/// makes the kernel pick the source address.
pub fn primary_ipv4() -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:80").ok()?;
    match sock.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn free_local_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(10011)
}

/// Waits for RuntimeReady and NetworkReady in the CRI Status.
async fn wait_runtime_ready(cri: &dyn Cri, limit: Duration) -> Result<String, Error> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match cri.status().await {
            Ok(s) => {
                let conds = s.status.map(|s| s.conditions).unwrap_or_default();
                let ok = |t: &str| conds.iter().any(|c| c.r#type == t && c.status);
                if ok("RuntimeReady") && ok("NetworkReady") {
                    return Ok(String::new());
                }
                last = conds
                    .iter()
                    .filter(|c| !c.status)
                    .map(|c| format!("{}: {} {}", c.r#type, c.reason, c.message))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::RuntimeNotReady(limit, last))
}

impl Agent {
    /// Runs the agent until `shutdown` flips.
    pub async fn run(
        cfg: Config,
        client: kube::Client,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let cluster_cidr = capstan_api::net::Cidr::parse(&cfg.cluster_cidr)?;
        let ip = cfg
            .node_ip
            .or_else(|| primary_ipv4().map(IpAddr::V4))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let facts = Arc::new(NodeFacts {
            name: cfg.node_name.clone(),
            internal_ip: ip,
            hostname: host_name(),
            kubelet_port: cfg.kubelet_port,
            max_pods: cfg.max_pods,
            labels: cfg.node_labels.clone(),
            kubelet_version: node::KUBELET_VERSION.to_string(),
        });
        std::fs::create_dir_all(&cfg.dir).map_err(|source| containerd::Error::WriteConfig {
            path: cfg.dir.clone(),
            source,
        })?;
        let node_obj = node::register(&client, &facts, shutdown.clone()).await?;
        let (proxy_metrics, proxy_task) = match &cfg.proxy {
            Some(settings) => {
                let (m, task) = start_proxy(&client, settings, shutdown.clone());
                (Some(m), Some(task))
            }
            None => (None, None),
        };
        let pod_cidr = node_obj
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .unwrap_or_default();

        let (cri, supervisor, ctr, socket): (Arc<dyn Cri>, Option<Supervisor>, String, PathBuf) =
            match &cfg.runtime {
                RuntimeEndpoint::Managed {
                    containerd: bin,
                    runc,
                    ctr,
                } => {
                    let cni_dir = cfg.dir.join("cni");
                    cni::write_config(
                        &cni_dir.join("net.d"),
                        &pod_cidr,
                        &cfg.bridge,
                        &cni_dir.join("ipam"),
                    )?;
                    install_masquerade(&cfg.bridge, &pod_cidr, cluster_cidr);
                    let settings = containerd::Settings {
                        dir: cfg.dir.join("containerd"),
                        pause_image: cfg.pause_image.clone(),
                        cni_bin_dir: containerd::default_cni_bin_dir(),
                        cni_conf_dir: cni_dir.join("net.d"),
                        registries: Registries::load(&cfg.registries_file)?,
                        stream_port: free_local_port(),
                        binary: bin.clone(),
                        runc: runc.clone(),
                    };
                    let socket = settings.socket();
                    let sup = Supervisor::start(settings, shutdown.clone()).await?;
                    (
                        Arc::new(GrpcCri::new(&socket)),
                        Some(sup),
                        ctr.clone(),
                        socket,
                    )
                }
                RuntimeEndpoint::External(sock) => (
                    Arc::new(GrpcCri::new(sock)),
                    None,
                    "ctr".to_string(),
                    sock.clone(),
                ),
            };
        wait_runtime_ready(cri.as_ref(), Duration::from_secs(60)).await?;
        let version = cri
            .version()
            .await
            .map(|v| format!("{}://{}", v.runtime_name, v.runtime_version))
            .unwrap_or_default();
        let imported = crate::images::import_dir(
            &ctr,
            &socket,
            &cfg.images_dir,
            &cfg.dir.join("images.imported"),
        )
        .await;
        let pause_problem = provide_pause_image(&cfg, cri.as_ref(), &ctr, &socket).await;
        tracing::info!(node = %cfg.node_name, pod_cidr = %pod_cidr, runtime = %version, images_imported = imported, ready_in_ms = started.elapsed().as_millis() as u64, "node agent is ready");

        let metrics = Arc::new(Metrics::new());
        if let Some(m) = proxy_metrics {
            metrics.append_registry(m);
        }
        start_ingress(&cfg, ip, &client, &metrics, &shutdown).await;
        crate::localpath::start(
            client.clone(),
            cfg.node_name.clone(),
            crate::localpath::storage_root(&cfg.dir),
            &metrics,
            shutdown.clone(),
        );
        tokio::spawn(crate::podroutes::run(
            client.clone(),
            cfg.node_name.clone(),
            cluster_cidr,
            metrics.clone(),
            shutdown.clone(),
        ));
        let (readings_tx, readings_rx) = watch::channel(Readings {
            runtime_version: version.clone(),
            runtime_ready: true,
            ..Default::default()
        });
        tokio::spawn(watch_runtime(
            cri.clone(),
            version.clone(),
            readings_tx,
            shutdown.clone(),
        ));
        tokio::spawn(node::run_status(
            client.clone(),
            facts.clone(),
            cfg.dir.clone(),
            readings_rx,
            shutdown.clone(),
        ));
        tokio::spawn(node::run_lease(
            client.clone(),
            node_obj.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(rotate_logs(
            cri.clone(),
            cfg.container_log_max_size,
            cfg.container_log_max_files,
            shutdown.clone(),
        ));

        let shared = Arc::new(Shared {
            client: client.clone(),
            cri: cri.clone(),
            images: ImageManager::new(cri.clone()),
            node_name: cfg.node_name.clone(),
            host_ip: ip.to_string(),
            pods_dir: cfg.dir.join("pods"),
            logs_dir: cfg.dir.join("logs"),
            dns: Dns {
                cluster_dns: cfg.cluster_dns.clone(),
                cluster_domain: cfg.cluster_domain.clone(),
                ..Default::default()
            }
            .with_host_resolv(),
            backoff: parking_lot::Mutex::new(crate::backoff::Backoff::new(
                Duration::from_secs(10),
                Duration::from_secs(300),
            )),
            node_cpu_milli: node::cpu_millis(),
            node_memory: node::memory_bytes(),
            metrics: metrics.clone(),
            events: crate::events::Recorder::start(client.clone(), cfg.node_name.clone()),
            services: service_informer(client.clone(), shutdown.clone()),
            pause_problem,
        });
        if let Some(tls) = &cfg.tls {
            let addr =
                std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), cfg.kubelet_port);
            server::spawn(addr, tls, shared.clone(), shutdown.clone()).await?;
        }
        pods::run(shared, shutdown).await;
        if let Some(s) = supervisor {
            s.stopped().await;
        }
        if let Some(task) = proxy_task {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Starts the built-in ingress on this node's ports; its metrics join the agent's. A port
/// that cannot be bound is logged and leaves the node without ingress, not without pods.
async fn start_ingress(
    cfg: &Config,
    ip: IpAddr,
    client: &kube::Client,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) {
    let ingress = capstan_ingress::Config {
        node_ip: ip,
        http_port: cfg.ingress_http_port,
        https_port: cfg.ingress_https_port,
    };
    match capstan_ingress::start(ingress, client.clone(), shutdown.clone()).await {
        Ok(Some(running)) => {
            let m = running.metrics.clone();
            metrics.append(move || m.render());
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "the ingress cannot start; set --ingress-http-port / --ingress-https-port (0 turns one off)")
        }
    }
}

/// Starts the service proxy (it needs only the API: Services work before containerd is up);
/// returns its metrics registry for the kubelet port's `/metrics` and its task, which ends
/// after it removed its table on shutdown.
fn start_proxy(
    client: &kube::Client,
    settings: &capstan_proxy::Settings,
    shutdown: watch::Receiver<bool>,
) -> (
    prometheus_client::registry::Registry,
    tokio::task::JoinHandle<()>,
) {
    let metrics = capstan_proxy::Metrics::default();
    let mut registry = prometheus_client::registry::Registry::with_prefix("capstan_proxy");
    metrics.register(&mut registry);
    let handle = tokio::spawn(capstan_proxy::run(
        client.clone(),
        settings.clone(),
        Arc::new(capstan_proxy::NftCommand::default()),
        metrics,
        shutdown,
    ));
    (registry, handle)
}

/// Source NAT for pods leaving the cluster (see [`crate::masquerade`]). A failure is logged,
/// not fatal: pods still reach each other, only not the outside.
fn install_masquerade(bridge: &str, pod_cidr: &str, cluster_cidr: capstan_api::net::Cidr) {
    let Ok(pod) = capstan_api::net::Cidr::parse(pod_cidr) else {
        return; // cni::write_config has refused it already
    };
    if !cluster_cidr.contains(pod.network()) {
        tracing::warn!(pod_cidr = %pod, cluster_cidr = %cluster_cidr, "the node's podCIDR is outside --cluster-cidr: give the agent the server's --cluster-cidr (all pod traffic leaving this node is masqueraded)");
    }
    match crate::masquerade::install(bridge, pod, cluster_cidr) {
        Ok(table) => {
            tracing::info!(table = %table, pod_cidr = %pod, cluster_cidr = %cluster_cidr, "pods' traffic leaving the cluster is masqueraded")
        }
        Err(e) => tracing::error!(error = %e, "pods cannot reach addresses outside the cluster"),
    }
}

/// Makes the sandbox image available: the built-in one is assembled when containerd lacks it
/// (see [`crate::pause`]); another name is left to containerd, which pulls it with the first
/// sandbox. Returns, for the pods' events, why sandboxes cannot start, after logging it once.
async fn provide_pause_image(
    cfg: &Config,
    cri: &dyn Cri,
    ctr: &str,
    socket: &std::path::Path,
) -> Option<String> {
    if cfg.pause_image != crate::pause::BUILTIN {
        if cri
            .image_status(&cfg.pause_image)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::info!(image = %cfg.pause_image, "the pause image is not present; containerd pulls it for the first pod");
        }
        return None;
    }
    let started = Instant::now();
    match crate::pause::ensure(cri, ctr, socket, &cfg.dir, crate::pause::CANDIDATES).await {
        Ok(crate::pause::Provided::Present) => None,
        Ok(crate::pause::Provided::Imported(binary)) => {
            tracing::info!(image = crate::pause::BUILTIN, binary = %binary.display(), took_ms = started.elapsed().as_millis() as u64, "assembled and imported the built-in pause image");
            None
        }
        Err(e) => {
            tracing::error!("{e}; pods cannot start on this node");
            Some(e.to_string())
        }
    }
}

/// Refreshes runtime readiness and the image list for the node status every 10 s.
async fn watch_runtime(
    cri: Arc<dyn Cri>,
    version: String,
    tx: watch::Sender<Readings>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut r = Readings {
            runtime_version: version.clone(),
            ..Default::default()
        };
        match cri.status().await {
            Ok(s) => {
                let conds = s.status.map(|s| s.conditions).unwrap_or_default();
                let bad: Vec<String> = conds
                    .iter()
                    .filter(|c| !c.status)
                    .map(|c| format!("{}={}", c.r#type, c.reason))
                    .collect();
                r.runtime_ready = bad.is_empty();
                r.runtime_message = bad.join(", ");
            }
            Err(e) => r.runtime_message = e.to_string(),
        }
        if let Ok(imgs) = cri.list_images().await {
            let mut v: Vec<(Vec<String>, u64)> = imgs
                .into_iter()
                .map(|i| {
                    let mut names = i.repo_tags.clone();
                    names.extend(i.repo_digests.clone());
                    (names, i.size)
                })
                .collect();
            v.sort_by_key(|x| std::cmp::Reverse(x.1));
            r.images = v;
        }
        tx.send_if_modified(|old| {
            let changed = old.runtime_ready != r.runtime_ready
                || old.images != r.images
                || old.runtime_message != r.runtime_message;
            *old = r;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = crate::util::stopped(&mut shutdown) => return,
        }
    }
}

/// A reflector over all Services (for service-link env vars), running until shutdown.
fn service_informer(
    client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service> {
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let (reader, writer) = reflector::store();
    let api: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::all(client);
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                ev = stream.next() => if ev.is_none() { return },
                _ = crate::util::stopped(&mut shutdown) => return,
            }
        }
    });
    reader
}

/// Every 10 s, rotates the logs of running containers that grew past `max_size` and asks the
/// runtime to reopen them (upstream's container log manager).
async fn rotate_logs(
    cri: Arc<dyn Cri>,
    max_size: u64,
    max_files: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = crate::util::stopped(&mut shutdown) => return,
        }
        let filter = crate::cri::api::ContainerFilter {
            state: Some(crate::cri::api::ContainerStateValue {
                state: crate::cri::api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        let Ok(list) = cri.list_containers(Some(filter)).await else {
            continue;
        };
        for c in list {
            let Ok(st) = cri.container_status(&c.id).await else {
                continue;
            };
            if st.log_path.is_empty() {
                continue;
            }
            let path = PathBuf::from(&st.log_path);
            match crate::logs::rotate(&path, max_size, max_files) {
                Ok(true) => {
                    if let Err(e) = cri.reopen_container_log(&c.id).await {
                        tracing::warn!(container = %c.id, error = %e, "reopening a rotated log failed");
                    } else {
                        tracing::debug!(log = %path.display(), "rotated container log");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(log = %path.display(), error = %e, "checking a container log failed")
                }
            }
        }
    }
}
