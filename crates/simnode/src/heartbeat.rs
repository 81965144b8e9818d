//! Keeping simulated nodes alive, as a kubelet does: every node's Lease renewed every quarter
//! of its duration (10 s), and its status (conditions with a fresh lastHeartbeatTime) posted
//! every report interval (5 minutes). Both are spread evenly over their period, so 5,000
//! nodes cost a steady trickle of small requests rather than bursts.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::MissedTickBehavior;

use crate::objects::{self, LEASE_NAMESPACE};
use crate::state::State;

/// The spreading loops wake up this often and handle the nodes due in that slice.
const TICK: Duration = Duration::from_millis(100);

/// What one round of a spreading loop does for node `i`.
#[derive(Clone, Copy)]
enum Beat {
    Lease,
    Status,
}

/// Runs `beat` for every node once per `period`, spread over it, until shutdown.
async fn spread(
    client: kube::Client,
    state: Arc<Mutex<State>>,
    beat: Beat,
    period: Duration,
    lease_secs: u64,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let n = state.lock().nodes.len();
    if n == 0 {
        return;
    }
    let ticks_per_period = (period.as_millis() / TICK.as_millis()).max(1) as usize;
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cursor = 0usize;
    let mut owed = 0usize;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        // n nodes over ticks_per_period ticks: carry the remainder so the rate is exact.
        owed += n;
        let due = owed / ticks_per_period;
        owed %= ticks_per_period;
        for _ in 0..due {
            let i = cursor % n;
            cursor += 1;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (name, uid, since, lease_exists, gone) = {
                let s = state.lock();
                let node = &s.nodes[i];
                (
                    node.name.clone(),
                    node.uid.clone(),
                    node.since.clone(),
                    node.lease_exists,
                    node.gone,
                )
            };
            if gone {
                drop(permit);
                continue;
            }
            let client = client.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let result = match beat {
                    Beat::Lease => {
                        match renew_lease(&client, &name, &uid, lease_secs, lease_exists).await {
                            Ok(true) => {
                                if let Some(n) = state.lock().nodes.get_mut(i) {
                                    n.lease_exists = true;
                                }
                                Ok(())
                            }
                            // The Lease went: with its Node (garbage collection), or alone.
                            Ok(false) => {
                                match Api::<Node>::all(client.clone()).get_opt(&name).await {
                                    Ok(None) => {
                                        tracing::info!(node = %name, "simulated node was deleted; no longer simulated");
                                        state.lock().forget_node(i);
                                        Ok(())
                                    }
                                    Ok(Some(_)) => {
                                        if let Some(n) = state.lock().nodes.get_mut(i) {
                                            n.lease_exists = false;
                                        }
                                        Ok(())
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Beat::Status => match post_status(&client, &name, &since).await {
                        // Someone deleted the Node: it is no longer ours to keep alive.
                        Err(kube::Error::Api(s)) if s.code == 404 => {
                            tracing::info!(node = %name, "simulated node was deleted; no longer simulated");
                            state.lock().forget_node(i);
                            Ok(())
                        }
                        other => other,
                    },
                };
                if let Err(e) = result {
                    tracing::debug!(node = %name, error = %e, "simulated node heartbeat failed");
                }
            });
        }
    }
}

/// Renews a node's Lease, creating it the first time; says whether it exists now.
async fn renew_lease(
    client: &kube::Client,
    name: &str,
    uid: &str,
    lease_secs: u64,
    exists: bool,
) -> kube::Result<bool> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = objects::micro_time(Timestamp::now());
    if !exists {
        let lease: Lease = serde_json::from_value(objects::lease(name, uid, lease_secs, &now))
            .map_err(kube::Error::SerdeError)?;
        match api.create(&PostParams::default(), &lease).await {
            Ok(_) => return Ok(true),
            // Left from an earlier run: renew it below.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": lease_secs, "renewTime": now}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        // Deleted meanwhile: create it next time.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Posts a node's conditions with a fresh heartbeat.
async fn post_status(client: &kube::Client, name: &str, since: &str) -> kube::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let now = objects::time(Timestamp::now());
    let patch = json!({"status": {"conditions": objects::node_conditions(since, &now)}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Starts the Lease and status loops.
pub fn start(
    client: kube::Client,
    state: Arc<Mutex<State>>,
    lease_duration: Duration,
    report_interval: Duration,
    permits: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
) {
    let lease_secs = lease_duration.as_secs().max(1);
    let renew = lease_duration / 4;
    tokio::spawn(spread(
        client.clone(),
        state.clone(),
        Beat::Lease,
        renew,
        lease_secs,
        permits.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(spread(
        client,
        state,
        Beat::Status,
        report_interval,
        lease_secs,
        permits,
        shutdown,
    ));
}
