//! `capstan server`: opens the store, creates or reuses the cluster's credentials, writes the
//! admin kubeconfig, bootstraps default objects and serves the API until SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use capstan_apiserver::allocator::{AllocatorConfig, ServiceAllocator};
use capstan_apiserver::auth::{Authenticator, User};
use capstan_apiserver::pki::{private_dir, restrict, write_private, Pki};
use capstan_apiserver::registry::Registry;
use capstan_apiserver::ApiServer;
use capstan_store::sqlite::{SqliteConfig, SqliteStore, Synchronous};
use capstan_store::Store;
use clap::Args;

use crate::{client, components, hostinfo, kubeconfig};

/// Flags are named as k3s names them; each can also be set by its CAPSTAN_* variable.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Folder holding all state: database, certificates, credentials, kubeconfig.
    #[arg(long, env = "CAPSTAN_DATA_DIR", default_value = "/var/lib/capstan")]
    pub data_dir: PathBuf,

    /// Address the API server listens on.
    #[arg(long, env = "CAPSTAN_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Port the API server listens on (HTTPS).
    #[arg(long, env = "CAPSTAN_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,

    /// Address advertised to cluster members and in the `kubernetes` Service's endpoints
    /// (default: the host's primary address).
    #[arg(long, env = "CAPSTAN_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,

    /// Extra host names or IPs for the serving certificate (repeatable).
    #[arg(long = "tls-san", env = "CAPSTAN_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,

    /// Shared secret agents use to join (default: generated once and kept in
    /// <data-dir>/server/token).
    #[arg(long, env = "CAPSTAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Do not run the node agent in this process.
    #[arg(long, env = "CAPSTAN_DISABLE_AGENT")]
    pub disable_agent: bool,

    /// This machine's node name, when the agent runs (default: the host name).
    #[arg(long, env = "CAPSTAN_NODE_NAME")]
    pub node_name: Option<String>,

    /// Pod network range; each node gets a /24 of it as its podCIDR.
    #[arg(long, env = "CAPSTAN_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    #[command(flatten)]
    pub node: crate::node_agent::NodeArgs,

    #[command(flatten)]
    pub dns: crate::cluster_dns::DnsArgs,

    /// Most watches one user may have open at once (429 TooManyRequests beyond); the server's
    /// own components are not counted.
    #[arg(long, env = "CAPSTAN_MAX_WATCHES_PER_USER", default_value_t = capstan_apiserver::watch_limit::DEFAULT_MAX_WATCHES_PER_USER)]
    pub max_watches_per_user: usize,

    /// Controllers not to run, comma-separated: replicaset, replicationcontroller, deployment,
    /// garbagecollector, namespace, endpoints, endpointslice, serviceaccount, servicelb, job,
    /// ttl-after-finished, cronjob, disruption, podgc, daemonset, statefulset,
    /// persistentvolume-binder, ephemeral-volume; `all` for none.
    #[arg(long, env = "CAPSTAN_DISABLE_CONTROLLERS", value_delimiter = ',')]
    pub disable_controllers: Vec<String>,

    /// Terminated pods (Succeeded or Failed) to keep before pod garbage collection deletes the
    /// oldest; 0 keeps them all (upstream kube-controller-manager's flag and default).
    #[arg(long, env = "CAPSTAN_TERMINATED_POD_GC_THRESHOLD", default_value_t = capstan_controllers::podgc::DEFAULT_TERMINATED_POD_THRESHOLD)]
    pub terminated_pod_gc_threshold: usize,

    /// Do not run the scheduler in this process.
    #[arg(long, env = "CAPSTAN_DISABLE_SCHEDULER")]
    pub disable_scheduler: bool,

    /// Register this many simulated nodes (see the --simulate-* flags) in this process.
    #[arg(long, env = "CAPSTAN_SIMULATE_NODES", default_value_t = 0)]
    pub simulate_nodes: usize,

    #[command(flatten)]
    pub simulate: crate::simulate::SimulateFlags,

    /// Service ClusterIP range.
    #[arg(long, env = "CAPSTAN_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: String,

    /// NodePort range.
    #[arg(
        long,
        env = "CAPSTAN_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    pub service_node_port_range: String,

    /// Where to also write the admin kubeconfig (it is always written to <data-dir>/kubeconfig.yaml).
    #[arg(
        long = "write-kubeconfig",
        short = 'o',
        env = "CAPSTAN_KUBECONFIG_OUTPUT"
    )]
    pub write_kubeconfig: Option<PathBuf>,

    /// How often old revisions are compacted away (seconds).
    #[arg(
        long,
        env = "CAPSTAN_COMPACTION_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    pub compaction_interval_seconds: u64,

    /// How many recent revisions compaction keeps (watches and lists can reach back that far).
    #[arg(
        long,
        env = "CAPSTAN_COMPACTION_KEEP_REVISIONS",
        default_value_t = 10_000
    )]
    pub compaction_keep_revisions: i64,

    /// Log at debug level (or set CAPSTAN_LOG, e.g. CAPSTAN_LOG=capstan_apiserver=debug).
    #[arg(long, env = "CAPSTAN_DEBUG")]
    pub debug: bool,

    /// Benchmarks and tests only: commit with SQLite's synchronous=NORMAL (no fsync per commit),
    /// so that the cost of durability can be measured and the power-loss test shown to fail
    /// without it. Acknowledged writes may then be lost in a power cut. See BENCHMARKS.md.
    #[arg(long, env = "CAPSTAN_UNSAFE_NO_FSYNC_PER_COMMIT", hide = true)]
    pub unsafe_no_fsync_per_commit: bool,
}

fn parse_cidr(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let c = capstan_api::net::Cidr::parse_within(s, 8, 30)?;
    Ok((c.network(), c.len))
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .context("expected a port range such as 30000-32767")?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "the port range's start is after its end");
    Ok((a, b))
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a secret from `path`, or writes `fallback()` there on first start.
fn load_or_create_secret(
    path: &Path,
    given: Option<&str>,
    fallback: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    if let Some(g) = given {
        write_private(path, g)?;
        return Ok(g.to_string());
    }
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    restrict(path)?;
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let t = fallback();
            write_private(path, &t)?;
            Ok(t)
        }
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.node.cleanup {
        return args.node.cleanup();
    }
    let started = Instant::now();
    let server_dir = args.data_dir.join("server");
    // Owner-only, whatever the umask: the folders hold the CA key, tokens and the database.
    for dir in [&args.data_dir, &server_dir] {
        private_dir(dir).with_context(|| format!("preparing {}", dir.display()))?;
    }

    let allocator = AllocatorConfig {
        service_cidr: parse_cidr(&args.service_cidr).context("--service-cidr")?,
        node_ports: parse_port_range(&args.service_node_port_range)
            .context("--service-node-port-range")?,
    };
    crate::cluster_dns::validate(&args)?;

    let advertise = args
        .advertise_address
        .or_else(|| capstan_kubelet::agent::primary_ipv4().map(IpAddr::V4))
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut dns_names = vec![
        "localhost".to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        advertise,
        IpAddr::V4(allocator.service_ip(1)),
    ];
    if let Some(h) = hostinfo::hostname() {
        dns_names.push(h);
    }
    ips.extend(hostinfo::local_ipv4_addresses().into_iter().map(IpAddr::V4));
    for san in &args.tls_san {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns_names.push(san.clone()),
        }
    }
    ips.sort();
    ips.dedup();
    let pki = Pki::load_or_create(&server_dir.join("tls"), &dns_names, &ips)
        .context("preparing certificates")?;

    let join_token = load_or_create_secret(
        &server_dir.join("token"),
        args.token.as_deref(),
        random_token,
    )
    .context("preparing the join token")?;
    let admin_token = load_or_create_secret(
        &server_dir.join("cred").join("admin.token"),
        None,
        random_token,
    )
    .context("preparing the admin credentials")?;
    // Node tokens issued by an older build may sit in a folder made under a looser umask.
    restrict(&server_dir.join("cred").join("nodes"))?;

    let db_dir = server_dir.join("db");
    private_dir(&db_dir).with_context(|| format!("preparing {}", db_dir.display()))?;
    let store_config = SqliteConfig {
        // A small page cache per connection keeps idle memory low; the OS caches the file.
        cache_size_kib: 4 * 1024,
        read_connections: 3,
        synchronous: if args.unsafe_no_fsync_per_commit {
            tracing::warn!(
                "commits are not fsynced: acknowledged writes may be lost in a power cut"
            );
            Synchronous::Normal
        } else {
            Synchronous::Full
        },
        ..SqliteConfig::default()
    };
    let sqlite = Arc::new(
        SqliteStore::open(&db_dir.join("state.db"), store_config)
            .context("opening the database")?,
    );
    let store: Arc<dyn Store> = sqlite.clone();
    let _compactor = capstan_store::compactor::spawn_auto_compactor(
        &store,
        capstan_store::compactor::AutoCompaction {
            interval: std::time::Duration::from_secs(args.compaction_interval_seconds.max(1)),
            keep_revisions: args.compaction_keep_revisions.max(1),
        },
    );

    let auth = Authenticator::new();
    auth.add_token(admin_token.clone(), User::admin());
    // In-process components authenticate with a token that lives only as long as this process.
    let internal_token = random_token();
    const INTERNAL_USER: &str = "system:capstan-internal";
    auth.add_token(
        internal_token.clone(),
        User {
            name: INTERNAL_USER.into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        },
    );
    auth.add_token(
        join_token,
        User {
            name: "system:node-bootstrap".into(),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
        },
    );

    // The OpenAPI documents are built on first request (kubectl's first create/apply/explain),
    // not at start: building them runs the schema code of every type, which would keep tens of
    // MB of code and data resident in a server nobody has asked for them yet.

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let registry = Registry::new(store.clone(), ServiceAllocator::new(allocator));
    let port = args.https_listen_port;
    let api = Arc::new(
        ApiServer::new(
            registry,
            auth,
            format!("{advertise}:{port}"),
            shutdown_rx.clone(),
        )
        .with_watch_limit(capstan_apiserver::watch_limit::WatchLimit::new(
            args.max_watches_per_user,
            vec![INTERNAL_USER.into()],
        )),
    );

    let addr = SocketAddr::new(args.bind_address, port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let tls = capstan_apiserver::tls_config(&pki.serving_cert_pem, &pki.serving_key_pem)
        .map_err(anyhow::Error::msg)?;
    let serving = tokio::spawn(capstan_apiserver::serve(
        api.clone(),
        listener,
        tls,
        shutdown_rx.clone(),
    ));

    capstan_apiserver::bootstrap::run(&api.registry, advertise, port)
        .await
        .map_err(|e| anyhow::anyhow!("bootstrapping default objects: {e}"))?;

    let kubeconfig_text = kubeconfig::render(
        &format!("https://127.0.0.1:{port}"),
        &pki.ca_cert_pem,
        &admin_token,
    );
    let kubeconfig_path = args.data_dir.join("kubeconfig.yaml");
    write_private(&kubeconfig_path, &kubeconfig_text)?;
    if let Some(extra) = &args.write_kubeconfig {
        write_private(extra, &kubeconfig_text)?;
    }
    api.set_ready(true);
    let ctx = components::Context {
        client: client::kube_client(
            &format!("https://127.0.0.1:{port}"),
            &pki.ca_cert_pem,
            &internal_token,
        )
        .await?,
        config: client::kube_config(
            &format!("https://127.0.0.1:{port}"),
            &pki.ca_cert_pem,
            &internal_token,
        )
        .await?,
        shutdown: shutdown_rx.clone(),
        data_dir: args.data_dir.clone(),
        health: api.registry.components().clone(),
    };
    components::start(&ctx, &args);
    crate::cluster_dns::start(&ctx, &args, advertise).await;
    tracing::info!(
        address = %addr,
        kubeconfig = %kubeconfig_path.display(),
        ready_in_ms = started.elapsed().as_millis() as u64,
        "capstan server is ready"
    );

    crate::signals::terminated().await;
    tracing::info!("shutting down");
    api.set_ready(false);
    let _ = shutdown_tx.send(true);
    let _ = serving.await;
    crate::node_agent::wait_stopped().await;
    drop(api);
    // Finish the last batch and fold the WAL into the database, so a stopped server leaves one
    // self-contained file (the WAL would have been replayed at the next start otherwise).
    sqlite.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_port_ranges_parse() {
        assert_eq!(
            parse_cidr("10.43.0.0/16").expect("ok"),
            (Ipv4Addr::new(10, 43, 0, 0), 16)
        );
        assert!(parse_cidr("10.43.0.0").is_err());
        assert!(parse_cidr("10.43.0.0/2").is_err());
        assert_eq!(parse_port_range("30000-32767").expect("ok"), (30000, 32767));
        assert!(parse_port_range("3-1").is_err());
    }
}
