//! Simulated nodes, a product feature for testing at scale (like kwok): one process registers
//! N Nodes with the configured capacity, labels and taints, keeps their Leases and Ready
//! condition fresh, moves the pods bound to them to Running and Ready with a pod IP (running
//! nothing), and finishes their deletion. Everything goes through the Kubernetes API, so the
//! simulated nodes work against any cluster. Entry point: [`run`].
//!
//! Cost model: one pod watch for all nodes, requests capped at [`Config::concurrency`] in
//! flight, Lease renewals and status reports spread evenly over their periods; 5,000 nodes
//! hold a few megabytes of state.

#![forbid(unsafe_code)]

pub mod config;
pub mod heartbeat;
pub mod ipam;
pub mod objects;
pub mod pods;
pub mod register;
pub mod state;

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};

pub use config::Config;

/// Errors that stop the simulated nodes (all retryable by starting again: the API server was
/// not reachable).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the cluster's nodes: {0}")]
    ListNodes(#[source] kube::Error),
    #[error("the simulated pod range: {0}")]
    PodRange(#[source] capstan_api::net::CidrError),
}

/// Registers the nodes, then keeps them and their pods going until `shutdown` flips. The
/// nodes stay registered afterwards (a restart adopts them).
pub async fn run(
    client: kube::Client,
    cfg: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let started = Instant::now();
    let nodes = register::register_all(&client, &cfg).await?;
    tracing::info!(
        nodes = nodes.len(),
        wanted = cfg.count,
        took_ms = started.elapsed().as_millis() as u64,
        "simulated nodes registered"
    );
    let state = Arc::new(Mutex::new(state::State::new(nodes)));
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    heartbeat::start(
        client.clone(),
        state.clone(),
        cfg.lease_duration,
        cfg.status_report_interval,
        permits.clone(),
        shutdown.clone(),
    );
    pods::run(client, state, cfg.stop_delay, permits, shutdown).await;
    tracing::info!("simulated nodes stopped");
    Ok(())
}
