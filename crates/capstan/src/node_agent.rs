//! The node agent's flags (shared by `capstan server` and `capstan agent`) and how the binary
//! starts the agent ([`spawn`]): settings from flags, a kube client, the kubelet port's TLS.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use capstan_kubelet::{Agent, Config, RuntimeEndpoint};
use clap::Args;
use tokio::sync::watch;

/// Node agent flags, named as k3s and the kubelet name them.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// CRI socket of an existing container runtime; by default the agent runs its own
    /// containerd under <data-dir>/agent/containerd.
    #[arg(long, env = "CAPSTAN_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<PathBuf>,

    /// The node's address (default: the host's primary address).
    #[arg(long, env = "CAPSTAN_NODE_IP")]
    pub node_ip: Option<IpAddr>,

    /// The pod sandbox image. The default is built in: the agent assembles it from catatonit
    /// when containerd lacks it. Any other name is pulled (or imported) like a pod's image.
    #[arg(
        long,
        env = "CAPSTAN_PAUSE_IMAGE",
        default_value = "capstan.local/pause:3.10"
    )]
    pub pause_image: String,

    /// The cluster DNS server pods with dnsPolicy ClusterFirst use (default: the server's, the
    /// 10th address of its --service-cidr; a joined agent learns it from its server).
    #[arg(long, env = "CAPSTAN_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,

    /// The cluster's DNS domain, served by the server's cluster DNS (default cluster.local; a
    /// joined agent learns it from its server).
    #[arg(long, env = "CAPSTAN_CLUSTER_DOMAIN")]
    pub cluster_domain: Option<String>,

    /// The kubelet port (logs for `kubectl logs`, metrics).
    #[arg(long, env = "CAPSTAN_KUBELET_PORT", default_value_t = 10250)]
    pub kubelet_port: u16,

    /// Most pods this node runs.
    #[arg(long, env = "CAPSTAN_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,

    /// Name of the CNI bridge for pods.
    #[arg(long, env = "CAPSTAN_CNI_BRIDGE", default_value = "cni0")]
    pub cni_bridge: String,

    /// Registry mirrors and credentials (k3s's registries.yaml format; default
    /// <data-dir>/registries.yaml).
    #[arg(long, env = "CAPSTAN_PRIVATE_REGISTRY")]
    pub private_registry: Option<PathBuf>,

    /// Folder of image tarballs imported at start (default <data-dir>/agent/images).
    #[arg(long, env = "CAPSTAN_IMAGES")]
    pub images: Option<PathBuf>,

    /// A container's log is rotated when it grows past this size (a quantity, e.g. 10Mi).
    #[arg(long, env = "CAPSTAN_CONTAINER_LOG_MAX_SIZE", default_value = "10Mi")]
    pub container_log_max_size: String,

    /// Log files kept per container, the live one included.
    #[arg(long, env = "CAPSTAN_CONTAINER_LOG_MAX_FILES", default_value_t = 5)]
    pub container_log_max_files: usize,

    /// Labels for the Node (repeatable, key=value).
    #[arg(long = "node-label", env = "CAPSTAN_NODE_LABEL", value_delimiter = ',')]
    pub node_labels: Vec<String>,

    /// Port the built-in ingress serves plain HTTP (and h2c) on; 0 turns it off.
    #[arg(long, env = "CAPSTAN_INGRESS_HTTP_PORT", default_value_t = 80)]
    pub ingress_http_port: u16,

    /// Port the built-in ingress serves HTTPS (TLS from the Ingresses' Secrets by SNI, HTTP/2
    /// by ALPN) on; 0 turns it off.
    #[arg(long, env = "CAPSTAN_INGRESS_HTTPS_PORT", default_value_t = 443)]
    pub ingress_https_port: u16,
    /// The nftables table (`ip <name>`) the service proxy owns; clusters sharing one host
    /// need one each.
    #[arg(long, env = "CAPSTAN_PROXY_TABLE", default_value = capstan_proxy::DEFAULT_TABLE)]
    pub proxy_table: String,

    /// Do not run the service proxy on this node (another proxy serves its Services).
    #[arg(long, env = "CAPSTAN_DISABLE_PROXY")]
    pub disable_proxy: bool,

    /// Delete the service proxy's nftables table (see --proxy-table) and the pods' masquerade
    /// table of --cni-bridge, and exit. Pod routes and the VXLAN device are left.
    #[arg(long)]
    pub cleanup: bool,
}

impl NodeArgs {
    /// The agent's settings for a node called `name` keeping state in `data_dir`, in a
    /// cluster whose pods are in `cluster_cidr`.
    pub fn config(
        &self,
        name: &str,
        data_dir: &Path,
        cluster_cidr: &str,
        extra_labels: &[(&str, &str)],
        tls: Option<capstan_kubelet::server::Tls>,
    ) -> Config {
        let mut labels: BTreeMap<String, String> = self
            .node_labels
            .iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        for (k, v) in extra_labels {
            labels.insert(k.to_string(), v.to_string());
        }
        let dir = data_dir.join("agent");
        Config {
            node_name: name.to_string(),
            node_ip: self.node_ip,
            runtime: match &self.container_runtime_endpoint {
                Some(p) => RuntimeEndpoint::External(p.clone()),
                None => RuntimeEndpoint::Managed {
                    containerd: "containerd".into(),
                    runc: which("runc").unwrap_or_else(|| "/usr/sbin/runc".into()),
                    ctr: "ctr".into(),
                },
            },
            pause_image: self.pause_image.clone(),
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self
                .cluster_domain
                .clone()
                .unwrap_or_else(|| crate::cluster_dns::DEFAULT_DOMAIN.into()),
            kubelet_port: self.kubelet_port,
            max_pods: self.max_pods,
            bridge: self.cni_bridge.clone(),
            cluster_cidr: cluster_cidr.to_string(),
            registries_file: self
                .private_registry
                .clone()
                .unwrap_or_else(|| data_dir.join("registries.yaml")),
            images_dir: self.images.clone().unwrap_or_else(|| dir.join("images")),
            node_labels: labels,
            container_log_max_size: capstan_api::kinds::core::quantity::value_of(
                &self.container_log_max_size,
            )
            .filter(|b| *b > 0)
            .unwrap_or(10 * 1024 * 1024) as u64,
            container_log_max_files: self.container_log_max_files.max(2),
            dir,
            tls,
            ingress_http_port: self.ingress_http_port,
            ingress_https_port: self.ingress_https_port,
            proxy: (!self.disable_proxy).then(|| capstan_proxy::Settings {
                table: self.proxy_table.clone(),
                node_name: name.to_string(),
                min_sync_interval: PROXY_MIN_SYNC_INTERVAL,
            }),
        }
    }

    /// `--cleanup`: deletes the service proxy's table.
    pub fn cleanup(&self) -> anyhow::Result<()> {
        // The proxy's table, and the pods' masquerade table of this node's bridge.
        let masquerade = capstan_kubelet::masquerade::table_name(&self.cni_bridge);
        for (table, what) in [
            (self.proxy_table.as_str(), "the service proxy's"),
            (masquerade.as_str(), "the pods' masquerade"),
        ] {
            match capstan_proxy::cleanup(table) {
                Ok(true) => tracing::info!(table, "deleted {what} nftables table"),
                Ok(false) => tracing::info!(table, "no nftables table of {what} to delete"),
                Err(e) => anyhow::bail!("deleting nftables table ip {table}: {e}"),
            }
        }
        Ok(())
    }
}

/// The service proxy syncs at most this often; a change after a quiet spell is synced at once.
const PROXY_MIN_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

fn which(bin: &str) -> Option<String> {
    for d in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(d).join(bin);
        if p.exists() {
            return Some(p.to_string_lossy().into_owned());
        }
    }
    None
}

/// Runs the agent in a task; a start-up failure is logged (the server keeps serving).
pub fn spawn(
    cfg: Config,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = Agent::run(cfg, client, shutdown).await {
            tracing::error!(error = %e, "the node agent stopped");
        }
    })
}

static RUNNING: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Starts the agent for this machine inside `capstan server`.
pub fn start_local(ctx: &crate::components::Context, args: &crate::server::ServerArgs) {
    let name = args
        .node_name
        .clone()
        .or_else(crate::hostinfo::hostname)
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase();
    let tls = match local_tls(ctx, &name, args.node.node_ip) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "no certificate for the kubelet port; `kubectl logs` will not work");
            None
        }
    };
    let mut cfg = args.node.config(
        &name,
        &ctx.data_dir,
        &args.cluster_cidr,
        &[("node-role.kubernetes.io/control-plane", "true")],
        tls,
    );
    if cfg.cluster_dns.is_empty() {
        cfg.cluster_dns = crate::cluster_dns::cluster_ip(&args.service_cidr)
            .map(IpAddr::V4)
            .into_iter()
            .collect();
    }
    let h = spawn(cfg, ctx.client.clone(), ctx.shutdown.clone());
    if let Ok(mut v) = RUNNING.lock() {
        v.push(h);
    }
}

/// Waits (up to 30 s) for agents started here to stop after shutdown: each stops its
/// containerd; containers keep running.
pub async fn wait_stopped() {
    let handles: Vec<_> = RUNNING
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for h in handles {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), h).await;
    }
}

/// Server side: the join endpoints, the pinned join token in `<data-dir>/server/node-token`
/// (what `capstan agent --token` takes), and the API server's client certificate for kubelets
/// (for pods/log).
pub fn setup_server(ctx: &crate::components::Context) {
    let server_dir = ctx.data_dir.join("server");
    capstan_apiserver::node_join::install(&server_dir);
    if let (Ok(secret), Ok(ca)) = (
        std::fs::read_to_string(server_dir.join("token")),
        std::fs::read_to_string(server_dir.join("tls/ca.crt")),
    ) {
        let full = capstan_kubelet::join::full_token(&ca, secret.trim());
        if let Err(e) = capstan_apiserver::pki::write_private(&server_dir.join("node-token"), &full)
        {
            tracing::warn!(error = %e, "writing the node join token failed");
        }
    }
    let res = capstan_apiserver::node_certs::NodeIssuer::load(&ctx.data_dir.join("server/tls"))
        .and_then(|issuer| {
            let c = issuer.apiserver_kubelet_client()?;
            Ok((issuer.ca_cert_pem.clone(), c))
        });
    match res {
        Ok((ca, c)) => {
            if let Err(e) = capstan_apiserver::node_proxy::install(&ca, &c.cert_pem, &c.key_pem) {
                tracing::warn!(error = %e, "kubelet client credentials not usable");
            }
        }
        Err(e) => tracing::warn!(error = %e, "issuing the kubelet client certificate failed"),
    }
}

/// The in-process agent's kubelet-port certificate, issued directly by the server's CA.
fn local_tls(
    ctx: &crate::components::Context,
    name: &str,
    node_ip: Option<IpAddr>,
) -> anyhow::Result<capstan_kubelet::server::Tls> {
    let issuer = capstan_apiserver::node_certs::NodeIssuer::load(&ctx.data_dir.join("server/tls"))?;
    let mut ips: Vec<IpAddr> = vec![IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];
    ips.extend(node_ip.or_else(|| capstan_kubelet::agent::primary_ipv4().map(IpAddr::V4)));
    let c = issuer.kubelet_serving(name, &ips)?;
    Ok(capstan_kubelet::server::Tls {
        cert_pem: c.cert_pem,
        key_pem: c.key_pem,
        client_ca_pem: issuer.ca_cert_pem,
    })
}

/// The credentials saved at `path` by an earlier join as `identity`, or those of a new join
/// (the token pins the server's CA, fetched and checked unless `--ca-file` gives it), saved.
pub async fn credentials(
    args: &crate::agent::AgentArgs,
    path: &std::path::Path,
    identity: &str,
    ips: &[IpAddr],
) -> anyhow::Result<capstan_kubelet::join::Credentials> {
    use anyhow::Context as _;
    use capstan_apiserver::pki::expiry;
    let saved = capstan_kubelet::join::Credentials::load(path).filter(|c| c.node_name == identity);
    // Renewed at start once it expires within 90 days, as k3s does: joining again issues a new
    // kubelet certificate from the same CA.
    if let Some(c) = saved
        .as_ref()
        .filter(|c| !expiry::expires_within(&c.kubelet_cert, expiry::RENEW_BEFORE))
    {
        return Ok(c.clone());
    }
    if saved.is_some() {
        tracing::info!(
            path = %path.display(),
            "renewing the node's credentials: its kubelet certificate expires within 90 days"
        );
    }
    let token = capstan_kubelet::join::Token::parse(&args.token);
    let ca = match &args.ca_file {
        Some(f) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
        }
        None => None,
    };
    let c = match capstan_kubelet::join::join(&args.server, &token, ca, identity, ips).await {
        Ok(c) => c,
        // A renewal that cannot reach the server yet must not stop a node whose certificate
        // still works; the next start tries again.
        Err(e) => match saved
            .filter(|c| !expiry::expires_within(&c.kubelet_cert, std::time::Duration::ZERO))
        {
            Some(old) => {
                tracing::warn!(error = %e, "renewing the node's credentials failed; using the current ones");
                return Ok(old);
            }
            None => return Err(e).context("joining the cluster"),
        },
    };
    c.save(path)?;
    Ok(c)
}

/// `capstan agent --server URL --token TOKEN`: joins (or reuses the credentials of an earlier
/// join) and runs the agent until SIGTERM.
pub async fn run_joined(args: &crate::agent::AgentArgs) -> anyhow::Result<()> {
    let name = args
        .node_name
        .clone()
        .or_else(crate::hostinfo::hostname)
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase();
    let cred_path = args.data_dir.join("agent/cred/node.json");
    let ip = args
        .node
        .node_ip
        .or_else(|| capstan_kubelet::agent::primary_ipv4().map(IpAddr::V4))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let ips = [ip, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];
    let creds = credentials(args, &cred_path, &name, &ips).await?;
    let client = crate::client::kube_client(&args.server, &creds.ca_cert, &creds.token).await?;
    let tls = capstan_kubelet::server::Tls {
        cert_pem: creds.kubelet_cert.clone(),
        key_pem: creds.kubelet_key.clone(),
        client_ca_pem: creds.ca_cert.clone(),
    };
    let mut cfg = args
        .node
        .config(&name, &args.data_dir, &args.cluster_cidr, &[], Some(tls));
    (cfg.cluster_dns, cfg.cluster_domain) = crate::cluster_dns::learn(&client, &args.node).await;
    let (tx, rx) = watch::channel(false);
    let mut task = spawn(cfg, client, rx);
    tokio::select! {
        _ = crate::signals::terminated() => {}
        _ = &mut task => anyhow::bail!("the node agent stopped"),
    }
    tracing::info!("shutting down the node agent");
    let _ = tx.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), task).await;
    Ok(())
}
