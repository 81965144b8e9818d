//! `start`: the controller manager's life. Campaign for the Lease; while leading, build the
//! shared informers, wire the enabled controllers to them, wait for the caches and run each
//! controller's workers; on losing the lease or on shutdown, stop them all (and on shutdown
//! release the lease so another server can take over at once).

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cronjob::CronJobController;
use crate::daemonset::DaemonSetController;
use crate::deployment::DeploymentController;
use crate::disruption::{DisruptionController, Workloads};
use crate::endpoints::EndpointsController;
use crate::endpointslice::{EndpointSliceController, MANAGED_BY, MANAGED_BY_LABEL};
use crate::ephemeral::EphemeralVolumeController;
use crate::garbagecollector::GarbageCollector;
use crate::job::JobController;
use crate::metrics;
use crate::namespace::NamespaceController;
use crate::podgc::PodGc;
use crate::replicaset::ReplicaController;
use crate::serviceaccount::ServiceAccountController;
use crate::servicelb::ServiceLbController;
use crate::statefulset::StatefulSetController;
use crate::ttlafterfinished::TtlAfterFinishedController;
use crate::volume::VolumeController;
use capstan_runtime::leader::{LeaderElector, RENEW_DEADLINE, RETRY_PERIOD};
use capstan_runtime::{run_workers, sleep_or_shutdown, Informer};

/// Every controller, by the name `--disable-controllers` takes.
pub const CONTROLLERS: &[&str] = &[
    "replicaset",
    "replicationcontroller",
    "deployment",
    "garbagecollector",
    "namespace",
    "endpoints",
    "endpointslice",
    "serviceaccount",
    "servicelb",
    "job",
    "ttl-after-finished",
    "cronjob",
    "disruption",
    "podgc",
    "daemonset",
    "statefulset",
    "persistentvolume-binder",
    "ephemeral-volume",
];

/// Where the lease lives.
pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "capstan-controller-manager";

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Controllers not to run (names from [`CONTROLLERS`]; upstream's `endpoint` is accepted
    /// for `endpoints`).
    pub disabled: HashSet<String>,
    /// This server's identity in the lease (default: host name plus a random suffix).
    pub identity: Option<String>,
    /// Terminated pods kept before pod GC deletes the oldest (0: keep all).
    pub terminated_pod_gc_threshold: usize,
}

impl Config {
    pub fn enabled(&self, name: &str) -> bool {
        !(self.disabled.contains(name)
            || (name == "endpoints" && self.disabled.contains("endpoint")))
    }

    /// Names in `disabled` that are not controllers.
    pub fn unknown(&self) -> Vec<String> {
        self.disabled
            .iter()
            .filter(|d| !CONTROLLERS.contains(&d.as_str()) && d.as_str() != "endpoint")
            .cloned()
            .collect()
    }
}

/// Starts the controller manager; it runs until `shutdown` flips.
pub fn start(client: Client, config: Config, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(lead(client, config, shutdown))
}

async fn lead(client: Client, config: Config, mut shutdown: watch::Receiver<bool>) {
    let identity = config.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}_{}", host.trim(), uuid::Uuid::new_v4())
    });
    let mut elector = LeaderElector::new(client.clone(), LEASE_NAMESPACE, LEASE_NAME, identity);
    let m = metrics::global();
    loop {
        // Campaign.
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(()) => break,
                Err(e) => tracing::debug!(error = %e, "not leading yet"),
            }
            if sleep_or_shutdown(RETRY_PERIOD, &mut shutdown).await {
                return;
            }
        }
        tracing::info!(
            identity = elector.identity(),
            "became the controller-manager leader"
        );
        m.leader.set(1);
        let (term_tx, term_rx) = watch::channel(false);
        let running = tokio::spawn(run_controllers(client.clone(), config.clone(), term_rx));
        // Renew until we cannot or are told to stop.
        let mut renewed = Instant::now();
        let stopping = loop {
            if sleep_or_shutdown(RETRY_PERIOD, &mut shutdown).await {
                break true;
            }
            match elector.try_acquire_or_renew().await {
                Ok(()) => renewed = Instant::now(),
                Err(e) if renewed.elapsed() > RENEW_DEADLINE => {
                    tracing::warn!(error = %e, "lost the controller-manager lease; stopping controllers");
                    break false;
                }
                Err(e) => tracing::debug!(error = %e, "renewing the lease failed; retrying"),
            }
        };
        let _ = term_tx.send(true);
        let _ = running.await;
        m.leader.set(0);
        if stopping {
            elector.release().await;
            return;
        }
    }
}

fn informer<K>(api: Api<K>) -> Informer<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Informer::new(api, watcher::Config::default())
}

/// Starts one controller's workers once the caches are ready.
type Starter = Box<dyn FnOnce(watch::Receiver<bool>) -> JoinHandle<()> + Send>;

/// One leadership term: informers, controllers, workers.
async fn run_controllers(client: Client, config: Config, shutdown: watch::Receiver<bool>) {
    let on = |n: &str| config.enabled(n);
    let mut pods = informer(Api::<Pod>::all(client.clone()));
    let mut rss = informer(Api::<ReplicaSet>::all(client.clone()));
    let mut rcs = informer(Api::<ReplicationController>::all(client.clone()));
    let mut deps = informer(Api::<Deployment>::all(client.clone()));
    let mut svcs = informer(Api::<Service>::all(client.clone()));
    let mut eps = informer(Api::<Endpoints>::all(client.clone()));
    let mut slices = Informer::new(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
    );
    let mut nss = informer(Api::<Namespace>::all(client.clone()));
    let mut sas = informer(Api::<ServiceAccount>::all(client.clone()));
    let mut nodes = informer(Api::<Node>::all(client.clone()));
    let mut jobs = informer(Api::<Job>::all(client.clone()));
    let mut cronjobs = informer(Api::<CronJob>::all(client.clone()));
    let mut pdbs = informer(Api::<PodDisruptionBudget>::all(client.clone()));
    let mut dss = informer(Api::<DaemonSet>::all(client.clone()));
    let mut stss = informer(Api::<StatefulSet>::all(client.clone()));
    let mut revs = informer(Api::<ControllerRevision>::all(client.clone()));
    let mut pvcs = informer(Api::<PersistentVolumeClaim>::all(client.clone()));
    let mut pvs = informer(Api::<PersistentVolume>::all(client.clone()));
    let mut classes = informer(Api::<StorageClass>::all(client.clone()));

    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut starters: Vec<Starter> = Vec::new();
    macro_rules! controller {
        ($name:expr, $n:expr, $make:expr) => {
            if on($name) {
                let (c, q) = $make;
                starters.push(Box::new(move |s| {
                    tokio::spawn(run_workers(c, q, $n, metrics::global(), s))
                }));
            }
        };
    }
    controller!(
        "replicaset",
        5,
        ReplicaController::<ReplicaSet>::new(client.clone(), &mut rss, &mut pods)
    );
    controller!(
        "replicationcontroller",
        5,
        ReplicaController::<ReplicationController>::new(client.clone(), &mut rcs, &mut pods)
    );
    controller!(
        "deployment",
        5,
        DeploymentController::new(client.clone(), &mut deps, &mut rss, &mut pods)
    );
    controller!(
        "endpoints",
        5,
        EndpointsController::new(client.clone(), &mut svcs, &mut pods, &mut eps)
    );
    controller!(
        "endpointslice",
        5,
        EndpointSliceController::new(client.clone(), &mut svcs, &mut pods, &mut slices)
    );
    controller!(
        "namespace",
        2,
        NamespaceController::new(client.clone(), &mut nss)
    );
    controller!(
        "serviceaccount",
        2,
        ServiceAccountController::new(client.clone(), &mut nss, &mut sas)
    );
    controller!(
        "servicelb",
        2,
        ServiceLbController::new(client.clone(), &mut svcs, &mut nodes)
    );
    controller!(
        "job",
        5,
        JobController::new(client.clone(), &mut jobs, &mut pods)
    );
    controller!(
        "ttl-after-finished",
        2,
        TtlAfterFinishedController::new(client.clone(), &mut jobs)
    );

    controller!(
        "cronjob",
        5,
        CronJobController::new(
            client.clone(),
            &mut cronjobs,
            &mut jobs,
            crate::cronjob::system_clock()
        )
    );
    controller!(
        "disruption",
        5,
        DisruptionController::new(
            client.clone(),
            &mut pdbs,
            &mut pods,
            Workloads::watch(&mut rss, &mut deps, &mut rcs)
        )
    );
    controller!(
        "podgc",
        1,
        PodGc::new(
            client.clone(),
            &mut pods,
            &mut nodes,
            config.terminated_pod_gc_threshold
        )
    );
    controller!(
        "daemonset",
        2,
        DaemonSetController::new(client.clone(), &mut dss, &mut pods, &mut nodes, &mut revs)
    );
    controller!(
        "statefulset",
        2,
        StatefulSetController::new(client.clone(), &mut stss, &mut pods, &mut revs, &mut pvcs)
    );
    controller!(
        "persistentvolume-binder",
        2,
        VolumeController::new(
            client.clone(),
            &mut pvcs,
            &mut pvs,
            &mut classes,
            &mut pods,
            &mut nodes
        )
    );
    controller!(
        "ephemeral-volume",
        2,
        EphemeralVolumeController::new(client.clone(), &mut pods, &mut pvcs)
    );

    // Start the informers controllers use, and wait for their first lists.
    let mut ready = Vec::new();
    macro_rules! run {
        ($($inf:ident),*) => {$(
            if $inf.has_handlers() {
            let c = $inf.cache();
            ready.push(Box::pin(async move { c.wait_ready().await }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
            workers.push(tokio::spawn($inf.run(shutdown.clone())));
            }
        )*};
    }
    run!(pods, rss, rcs, deps, svcs, eps, slices, nss, sas, nodes);
    run!(jobs, cronjobs, pdbs, dss, stss, revs, pvcs, pvs, classes);
    let mut s = shutdown.clone();
    tokio::select! {
        _ = futures::future::join_all(ready) => {}
        _ = s.wait_for(|v| *v) => {}
    }
    for start in starters {
        workers.push(start(shutdown.clone()));
    }
    if on("garbagecollector") {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        workers.push(tokio::spawn(async move {
            let mut s = shutdown.clone();
            loop {
                match GarbageCollector::start(client.clone(), shutdown.clone()).await {
                    Ok((gc, q)) => return run_workers(gc, q, 8, metrics::global(), shutdown).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collector cannot start; retrying")
                    }
                }
                if sleep_or_shutdown(Duration::from_secs(5), &mut s).await {
                    return;
                }
            }
        }));
    }
    tracing::info!(controllers = ?CONTROLLERS.iter().filter(|c| on(c)).collect::<Vec<_>>(), "controllers running");
    let _ = futures::future::join_all(workers).await;
}
