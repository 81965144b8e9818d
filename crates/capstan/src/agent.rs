//! `capstan agent`: joins a machine to a cluster as a node (real containers through containerd),
//! or registers simulated nodes (`--simulate N`) for testing at scale.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server to join, e.g. https://10.0.0.1:6443.
    #[arg(
        long,
        env = "CAPSTAN_URL",
        required_unless_present = "cleanup",
        default_value = "",
        hide_default_value = true
    )]
    pub server: String,

    /// The cluster's join token (the server keeps it in <data-dir>/server/token).
    #[arg(
        long,
        env = "CAPSTAN_TOKEN",
        hide_env_values = true,
        required_unless_present = "cleanup",
        default_value = "",
        hide_default_value = true
    )]
    pub token: String,

    /// Folder for the agent's state.
    #[arg(long, env = "CAPSTAN_DATA_DIR", default_value = "/var/lib/capstan")]
    pub data_dir: PathBuf,

    /// Node name (default: the host name).
    #[arg(long, env = "CAPSTAN_NODE_NAME")]
    pub node_name: Option<String>,

    /// The cluster's pod range, as the server's --cluster-cidr: pod traffic to it is not
    /// masqueraded, and other nodes' podCIDRs in it are routed via their InternalIP.
    #[arg(long, env = "CAPSTAN_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// Register this many simulated nodes instead of running containers.
    #[arg(long, env = "CAPSTAN_SIMULATE", default_value_t = 0)]
    pub simulate: u32,

    /// The server's CA certificate (default: fetched from the server and checked against the
    /// hash the token pins).
    #[arg(long, env = "CAPSTAN_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    #[command(flatten)]
    pub simulate_flags: crate::simulate::SimulateFlags,

    #[command(flatten)]
    pub node: crate::node_agent::NodeArgs,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.node.cleanup {
        return args.node.cleanup();
    }
    if args.simulate > 0 {
        return crate::simulate::run_agent(&args).await;
    }
    crate::node_agent::run_joined(&args).await
}
