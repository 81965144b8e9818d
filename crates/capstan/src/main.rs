//! capstan: a Kubernetes-compatible orchestrator in one binary. This file only parses the
//! command line and hands over to the command's module.

mod agent;
mod client;
mod cluster_dns;
mod components;
mod hostinfo;
mod images_cmd;
mod kubeconfig;
mod node_agent;
mod scheduling;
mod server;
mod signals;
mod simulate;

use clap::{Parser, Subcommand};

// glibc's malloc took about a third of the server's CPU under load (scheduler and API benchmarks)
// and kept freed memory in per-thread arenas; mimalloc is faster here and returns memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "capstan", version, about = "A small, fast Kubernetes-compatible orchestrator in one binary", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server: API server, store and (unless disabled) the node agent: a whole one-node cluster.
    Server(server::ServerArgs),
    /// Join a machine to a cluster as a node, or register simulated nodes.
    Agent(agent::AgentArgs),
    /// Manage the node's images (import tarballs into its containerd).
    Images(images_cmd::ImagesArgs),
}

/// Whether log lines get colours: only on a terminal (a file or a pipe gets plain text), and
/// never when NO_COLOR is set to anything (no-color.org).
fn log_colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs go to stderr, as the kubelet's and k3s's do; stdout is for command output.
fn init_logging(debug: bool) {
    use std::io::IsTerminal;
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // hickory-server logs two info lines per DNS query; cluster DNS counts queries in /metrics.
    let quiet_dns = !std::env::var("CAPSTAN_LOG").is_ok_and(|v| v.contains("hickory"));
    let filter = match "hickory_server=warn".parse() {
        Ok(d) if quiet_dns => filter.add_directive(d),
        _ => filter,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            init_logging(args.debug);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("capstan")
                .build()?;
            rt.block_on(server::run(args))
        }
        Command::Agent(args) => {
            init_logging(false);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("capstan-agent")
                .build()?;
            rt.block_on(agent::run(args))
        }
        Command::Images(args) => {
            init_logging(false);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(images_cmd::run(args))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colours;

    #[test]
    fn colours_only_on_a_terminal_and_not_with_no_color() {
        assert!(log_colours(true, None));
        assert!(!log_colours(false, None), "a file or a pipe");
        assert!(!log_colours(true, Some("1".into())));
        assert!(
            log_colours(true, Some("".into())),
            "an empty NO_COLOR does not count"
        );
    }
}
