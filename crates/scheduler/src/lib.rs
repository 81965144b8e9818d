//! capstan's scheduler: assigns pending pods (`schedulerName: default-scheduler`, no
//! `nodeName`) to nodes with upstream kube-scheduler's default filter and score plugins, and
//! binds them through `pods/{name}/binding`. It is an ordinary API client; [`start`] is the
//! entry point.
//!
//! The pipeline, in plain sight:
//! watches ([`informers`]) → the scheduling loop ([`core`], its own thread, sole owner of the
//! [`cache::Cache`] and the [`queue::SchedulingQueue`]) → one decision at a time
//! ([`algorithm`], pure, with the [`plugins`]) → assume on the node → bind in the background
//! ([`binder`], many at once) → results back to the loop. Failures become events and the
//! PodScheduled condition ([`recorder`]), worded by [`diagnosis`].
//!
//! Volume binding ([`plugins::volume_binding`]) covers PersistentVolumeClaims. Not done yet:
//! preemption (the FailedScheduling message says what upstream's preemption would find, but
//! nothing is evicted), ImageLocality scoring and the default topology spread constraints
//! upstream applies to pods of Services and ReplicaSets.

#![forbid(unsafe_code)]

pub mod algorithm;
pub mod binder;
pub mod cache;
pub mod core;
pub mod diagnosis;
pub mod fxhash;
pub mod informers;
pub mod labels;
pub mod metrics;
pub mod nodeinfo;
pub mod plugins;
pub mod podinfo;
pub mod queue;
pub mod recorder;
pub mod resources;
pub mod spread_index;
pub mod workloads;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

pub use metrics::Metrics;

/// Inputs waiting for the scheduling loop (watch events and binding results).
const INPUT_QUEUE_SIZE: usize = 4096;

/// The scheduler's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods naming this scheduler are ours.
    pub scheduler_name: String,
    /// Share of nodes to find feasible before scoring (None: upstream's adaptive default).
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Bindings sent at once.
    pub bind_concurrency: usize,
    /// Decisions made ahead of their bindings before the loop waits for results.
    pub max_pending_binds: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: None,
            bind_concurrency: 64,
            max_pending_binds: 1024,
        }
    }
}

/// Errors starting the scheduler (none of them retryable: they are programming or resource
/// errors at start-up).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the scheduling loop's thread: {0}")]
    SpawnLoop(#[source] std::io::Error),
}

/// A running scheduler.
pub struct Scheduler {
    pub metrics: Arc<Metrics>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    /// Whether the scheduling loop is still running (what its health check reports).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits for the scheduling loop to stop (after shutdown).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the scheduler against `client`'s cluster: watches and bindings run on the calling
/// Tokio runtime, decisions on a dedicated thread. It stops when `shutdown` flips to true.
pub fn start(
    client: kube::Client,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<Scheduler, Error> {
    let metrics = Arc::new(Metrics::new());
    let (tx, rx) = mpsc::channel(INPUT_QUEUE_SIZE);
    informers::start(client.clone(), tx.clone());
    let recorder = recorder::Recorder::start(client.clone(), metrics.clone());
    let binder = binder::Binder::new(
        client,
        tokio::runtime::Handle::current(),
        config.bind_concurrency,
    );
    tracing::info!(scheduler = %config.scheduler_name, "scheduler starting");
    let core = core::Core::new(config, metrics.clone(), binder, recorder, tx);
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler: cannot build the loop's runtime");
                    return;
                }
            };
            rt.block_on(core.run(rx, shutdown));
            tracing::info!("scheduler stopped");
        })
        .map_err(Error::SpawnLoop)?;
    Ok(Scheduler {
        metrics,
        thread: Some(thread),
    })
}
