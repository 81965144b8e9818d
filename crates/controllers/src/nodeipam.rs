//! Node IPAM, the server's side of pod networking: [`run`] gives every Node without a podCIDR
//! the lowest free /24 of the cluster CIDR (10.42.0.0/16 by default), like upstream's node-ipam
//! controller. It runs in the server next to the controller manager (not under its Lease, as
//! before it moved here); nodes only read the result.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_api::net::{Blocks, Cidr};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::watch;

/// Assigns podCIDRs until `shutdown` flips. Errors are logged and retried.
pub async fn run(client: kube::Client, cluster_cidr: String, mut shutdown: watch::Receiver<bool>) {
    let blocks = match Cidr::parse(&cluster_cidr).and_then(Blocks::new) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM disabled: bad cluster CIDR");
            return;
        }
    };
    let api: Api<Node> = Api::all(client);
    let mut used: BTreeSet<String> = BTreeSet::new();
    // Nodes already told there is no free block: said once, not on every heartbeat.
    let mut reported_full: std::collections::HashSet<String> = Default::default();
    let stream = watcher(api.clone(), watcher::Config::default()).boxed();
    tokio::pin!(stream);
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = shutdown.wait_for(|v| *v) => return,
        };
        let Some(ev) = ev else { return };
        let nodes: Vec<Node> = match ev {
            Ok(watcher::Event::Apply(n)) | Ok(watcher::Event::InitApply(n)) => vec![n],
            Ok(watcher::Event::Init) => {
                used.clear();
                continue;
            }
            Ok(watcher::Event::InitDone) => continue,
            Ok(watcher::Event::Delete(n)) => {
                if let Some(name) = &n.metadata.name {
                    reported_full.remove(name);
                }
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr) {
                    used.remove(&c);
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching nodes failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for n in nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            match n.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
                Some(c) => {
                    used.insert(c);
                }
                None => {
                    let Some(block) = blocks.first_free(&used) else {
                        if reported_full.insert(name.clone()) {
                            tracing::error!(node = %name, "no free podCIDR left in {cluster_cidr}");
                        }
                        continue;
                    };
                    let patch = json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
                    for attempt in 1..=5u32 {
                        match api
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            Ok(_) => {
                                tracing::info!(node = %name, pod_cidr = %block, "assigned podCIDR");
                                used.insert(block.clone());
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(node = %name, error = %e, attempt, "assigning podCIDR failed");
                                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt)))
                                    .await;
                            }
                        }
                    }
                }
            }
        }
    }
}
