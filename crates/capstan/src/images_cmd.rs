//! `capstan images import FILE...`: loads image tarballs (docker-archive or OCI layout) into the
//! node agent's containerd, as k3s's `ctr images import` does, so pods can use them without a
//! registry.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug, Clone)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ImagesCommand {
    /// Import image tarballs into the node's containerd (namespace k8s.io).
    Import {
        /// Tarballs to import.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The agent's data dir (its containerd socket is under agent/containerd/run).
        #[arg(long, env = "CAPSTAN_DATA_DIR", default_value = "/var/lib/capstan")]
        data_dir: PathBuf,
        /// Import through this containerd socket instead.
        #[arg(long, env = "CAPSTAN_CONTAINER_RUNTIME_ENDPOINT")]
        container_runtime_endpoint: Option<PathBuf>,
    },
}

pub async fn run(args: ImagesArgs) -> anyhow::Result<()> {
    match args.command {
        ImagesCommand::Import {
            files,
            data_dir,
            container_runtime_endpoint,
        } => {
            let socket = container_runtime_endpoint
                .unwrap_or_else(|| data_dir.join("agent/containerd/run/containerd.sock"));
            anyhow::ensure!(
                socket.exists(),
                "no containerd socket at {} (is the node agent running?)",
                socket.display()
            );
            for f in files {
                let out = capstan_kubelet::images::import_file("ctr", &socket, &f).await?;
                println!("{}", out.trim());
            }
            Ok(())
        }
    }
}
