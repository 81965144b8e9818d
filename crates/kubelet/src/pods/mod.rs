//! The pods on this node: [`run`] watches the pods bound to the node and keeps one worker
//! ([`worker::run`]) per pod, and relists the runtime every second (like upstream's PLEG,
//! since containerd 1.6 has no event stream) to wake the workers whose containers changed and
//! to clean up pods the API no longer has (deleted while the agent was down).

pub mod env;
pub mod handler;
pub mod observe;
pub mod plan;
pub mod probes;
pub mod sandbox_backoff;
pub mod spec;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::Api;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::cri::{api as pb, Cri};
use crate::images::ImageManager;
use crate::metrics::Metrics;
use observe::keys;
use worker::Update;

/// What every pod worker shares.
pub struct Shared {
    pub client: kube::Client,
    pub cri: Arc<dyn Cri>,
    pub images: ImageManager,
    pub node_name: String,
    pub host_ip: String,
    /// `<agent>/pods/<uid>`: volumes, /etc/hosts, termination messages.
    pub pods_dir: PathBuf,
    /// `<agent>/logs/<ns>_<name>_<uid>/<container>/<attempt>.log`.
    pub logs_dir: PathBuf,
    pub dns: spec::Dns,
    /// CrashLoopBackOff delays per container.
    pub backoff: Mutex<Backoff>,
    pub node_cpu_milli: i64,
    pub node_memory: i64,
    pub metrics: Arc<Metrics>,
    pub events: crate::events::Recorder,
    /// Every Service, for service-link env vars (kept current by a reflector).
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
    /// Why the sandbox image could not be provided at start (told with every failed sandbox).
    pub pause_problem: Option<String>,
}

struct Handle {
    tx: watch::Sender<Update>,
    wake: Arc<Notify>,
}

/// How often the runtime is relisted.
const RELIST: Duration = Duration::from_secs(1);

/// A fingerprint of a container or sandbox state, to spot changes between relists.
type Fingerprint = HashMap<String, (String, i32)>;

async fn relist(cri: &dyn Cri) -> Option<Fingerprint> {
    let sandboxes = cri.list_pod_sandbox(None).await.ok()?;
    let containers = cri.list_containers(None).await.ok()?;
    let mut out = Fingerprint::new();
    for s in sandboxes {
        let uid = s.labels.get(keys::POD_UID).cloned().unwrap_or_default();
        out.insert(s.id, (uid, 100 + s.state));
    }
    for c in containers {
        let uid = c.labels.get(keys::POD_UID).cloned().unwrap_or_default();
        out.insert(c.id, (uid, c.state));
    }
    Some(out)
}

/// Runs the pods of `shared.node_name` until `shutdown` flips. Containers keep running when
/// the agent stops; the next start adopts them.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let stream = watcher(api, cfg).boxed();
    tokio::pin!(stream);
    let mut workers: HashMap<String, Handle> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    let mut last: Fingerprint = Fingerprint::new();
    let mut tick = tokio::time::interval(RELIST);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::util::stopped(&mut shutdown) => {
                tracing::info!(pods = workers.len(), "pod manager stopping; containers keep running");
                return;
            }
            ev = stream.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
                    Ok(watcher::Event::InitApply(p)) => {
                        if let (Some(l), Some(uid)) = (listing.as_mut(), p.metadata.uid.clone()) {
                            l.insert(uid);
                        }
                        dispatch(&shared, &mut workers, p);
                    }
                    Ok(watcher::Event::InitDone) => {
                        // Pods this worker set knows but the fresh list lacks are gone.
                        if let Some(l) = listing.take() {
                            for (uid, h) in &workers {
                                if !l.contains(uid) {
                                    let _ = h.tx.send(Update::Gone);
                                }
                            }
                        }
                        synced = true;
                    }
                    Ok(watcher::Event::Apply(p)) => dispatch(&shared, &mut workers, p),
                    Ok(watcher::Event::Delete(p)) => {
                        if let Some(h) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                            let _ = h.tx.send(Update::Gone);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching pods failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            _ = tick.tick() => {
                workers.retain(|_, h| !h.tx.is_closed());
                shared.metrics.pods.set(workers.len() as i64);
                let Some(now) = relist(shared.cri.as_ref()).await else { continue };
                let mut changed: HashSet<String> = HashSet::new();
                for (id, v) in &now {
                    if last.get(id) != Some(v) {
                        changed.insert(v.0.clone());
                    }
                }
                for (id, v) in &last {
                    if !now.contains_key(id) {
                        changed.insert(v.0.clone());
                    }
                }
                for uid in &changed {
                    if let Some(h) = workers.get(uid) {
                        h.wake.notify_one();
                    }
                }
                if synced {
                    // Runtime pods without an API pod: deleted while the agent was away.
                    let orphans: HashSet<String> = now
                        .values()
                        .map(|(uid, _)| uid.clone())
                        .filter(|uid| !uid.is_empty() && !workers.contains_key(uid))
                        .collect();
                    for uid in orphans {
                        tracing::info!(%uid, "found containers of a pod the API no longer has; cleaning up");
                        spawn_worker(&shared, &mut workers, uid, Update::Gone);
                    }
                }
                last = now;
            }
        }
    }
}

fn dispatch(shared: &Arc<Shared>, workers: &mut HashMap<String, Handle>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    match workers.get(&uid) {
        Some(h) if !h.tx.is_closed() => {
            let _ = h.tx.send(Update::Pod(Box::new(pod)));
        }
        _ => {
            // Terminal pods that were never ours to run need no worker once cleaned.
            spawn_worker(shared, workers, uid, Update::Pod(Box::new(pod)));
        }
    }
}

fn spawn_worker(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, Handle>,
    uid: String,
    first: Update,
) {
    let (tx, rx) = watch::channel(first);
    let wake = Arc::new(Notify::new());
    tokio::spawn(worker::run(shared.clone(), uid.clone(), rx, wake.clone()));
    workers.insert(uid, Handle { tx, wake });
}

/// Whether a CRI sandbox state is ready (for callers outside this module).
pub fn sandbox_ready(state: i32) -> bool {
    state == pb::PodSandboxState::SandboxReady as i32
}
