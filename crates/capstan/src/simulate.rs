//! Flags shared by `capstan server --simulate-nodes N` and `capstan agent --simulate N`, which
//! describe the simulated nodes, and how the binary starts them (capstan-simnode).

use clap::Args;

/// How simulated nodes look. Each flag can also be set by its CAPSTAN_* variable.
#[derive(Args, Debug, Clone, Default)]
pub struct SimulateFlags {
    /// Capacity (and allocatable) of each simulated node, comma-separated key=value; unset
    /// keys keep their defaults: cpu=32,memory=256Gi,pods=110,ephemeral-storage=100Gi.
    #[arg(long, env = "CAPSTAN_SIMULATE_CAPACITY", value_delimiter = ',')]
    pub simulate_capacity: Vec<String>,

    /// Extra labels of each simulated node, comma-separated key=value; `{index}` and
    /// `{index%N}` in a value become the node's index (modulo N), e.g.
    /// topology.kubernetes.io/zone=zone-{index%3}.
    #[arg(long, env = "CAPSTAN_SIMULATE_LABELS", value_delimiter = ',')]
    pub simulate_labels: Vec<String>,

    /// Taints of each simulated node, comma-separated key[=value]:Effect.
    #[arg(long, env = "CAPSTAN_SIMULATE_TAINTS", value_delimiter = ',')]
    pub simulate_taints: Vec<String>,

    /// Simulated node names: this prefix and a zero-padded index.
    #[arg(long, env = "CAPSTAN_SIMULATE_NAME_PREFIX", default_value = "sim-")]
    pub simulate_name_prefix: String,

    /// Range the simulated nodes' /24 podCIDRs come from (kept apart from the real nodes'
    /// cluster CIDR).
    #[arg(long, env = "CAPSTAN_SIMULATE_POD_CIDR", default_value = capstan_simnode::config::DEFAULT_POD_CIDR)]
    pub simulate_pod_cidr: String,
}

impl SimulateFlags {
    /// The simulated nodes' settings for `count` nodes.
    pub fn config(&self, count: usize) -> anyhow::Result<capstan_simnode::Config> {
        let mut cfg = capstan_simnode::Config {
            count,
            name_prefix: self.simulate_name_prefix.clone(),
            ..Default::default()
        };
        cfg.set_capacity(&self.simulate_capacity)?;
        cfg.set_labels(&self.simulate_labels)?;
        cfg.set_taints(&self.simulate_taints)?;
        cfg.set_pod_cidr(&self.simulate_pod_cidr)?;
        Ok(cfg)
    }
}

/// Starts `count` simulated nodes in the background (in `capstan server`); bad flags are
/// logged.
pub fn start(
    client: kube::Client,
    count: usize,
    flags: &SimulateFlags,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let cfg = match flags.config(count) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "simulated nodes not started: bad --simulate-* flags");
            return;
        }
    };
    tokio::spawn(async move {
        if let Err(e) = capstan_simnode::run(client, cfg, shutdown).await {
            tracing::error!(error = %e, "simulated nodes stopped");
        }
    });
}

/// `capstan agent --simulate N`: simulated nodes joined to a remote server the way a real
/// agent joins (the token pins the server's CA, which is fetched and checked unless
/// `--ca-file` gives it); one set of credentials, kept under the data dir, serves all of them.
/// Runs until SIGTERM or Ctrl-C.
pub async fn run_agent(args: &crate::agent::AgentArgs) -> anyhow::Result<()> {
    let identity = format!("{}simulator", args.simulate_flags.simulate_name_prefix);
    let cred_path = args.data_dir.join("agent/cred/simulator.json");
    let local = [std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];
    let creds = crate::node_agent::credentials(args, &cred_path, &identity, &local).await?;
    let client = crate::client::kube_client(&args.server, &creds.ca_cert, &creds.token).await?;
    let cfg = args.simulate_flags.config(args.simulate as usize)?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::signals::terminated().await;
        let _ = tx.send(true);
    });
    tracing::info!(server = %args.server, nodes = cfg.count, "capstan agent: simulating nodes");
    capstan_simnode::run(client, cfg, rx).await?;
    Ok(())
}
