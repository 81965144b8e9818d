//! The components that run inside `capstan server` next to the API server: controllers,
//! scheduler, node agent. Each is an ordinary API client started here with one call, and each
//! can be turned off by a flag. They stop when `shutdown` flips.

use std::sync::Arc;

use capstan_apiserver::components::{self as health, ComponentHealth};
use tokio::sync::watch;

/// What every in-process component gets.
#[derive(Clone)]
pub struct Context {
    /// A client of this server's API (in-process credentials).
    pub client: kube::Client,
    /// The configuration behind `client`, to make clients that name themselves ([`Context::client_as`]).
    pub config: kube::Config,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// The server's data dir (components keep their state under it).
    pub data_dir: std::path::PathBuf,
    /// Where components register their health probes (`componentstatuses`).
    pub health: ComponentHealth,
}

impl Context {
    /// A client whose writes are recorded under `agent` (its User-Agent), falling back to the
    /// shared client if the header cannot be built.
    pub fn client_as(&self, agent: &str) -> kube::Client {
        crate::client::client_as(&self.config, agent).unwrap_or_else(|_| self.client.clone())
    }
}

/// Starts the in-process components the flags enable.
pub fn start(ctx: &Context, args: &crate::server::ServerArgs) {
    // Each component: one line, guarded by its flag.
    if !args.disable_controllers.iter().any(|c| c == "all") {
        capstan_apiserver::metrics::add_exposition(|| {
            capstan_controllers::metrics::global().render()
        });
        let manager = capstan_controllers::start(
            ctx.client_as("kube-controller-manager"),
            capstan_controllers::Config {
                disabled: args.disable_controllers.iter().cloned().collect(),
                identity: None,
                terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
            },
            ctx.shutdown.clone(),
        );
        // Healthy while its task runs (campaigning or leading), as upstream's /healthz is.
        ctx.health.register(
            health::CONTROLLER_MANAGER,
            Arc::new(move || {
                if manager.is_finished() {
                    Err("the controller manager has stopped".into())
                } else {
                    Ok(())
                }
            }),
        );
    }
    crate::node_agent::setup_server(ctx);
    tokio::spawn(capstan_controllers::nodeipam::run(
        ctx.client_as("kube-controller-manager"),
        args.cluster_cidr.clone(),
        ctx.shutdown.clone(),
    ));
    if !args.disable_agent {
        crate::node_agent::start_local(ctx, args);
    }
    if !args.disable_scheduler {
        crate::scheduling::start(
            ctx.client_as("kube-scheduler"),
            ctx.shutdown.clone(),
            &ctx.health,
        );
    }
    if args.simulate_nodes > 0 {
        crate::simulate::start(
            ctx.client_as("kubelet"),
            args.simulate_nodes,
            &args.simulate,
            ctx.shutdown.clone(),
        );
    }
    let _ = (ctx, args);
}
