//! Node IPAM, the server's side of pod networking: [`run`] gives every Node without a podCIDR
//! the lowest free /24 of the cluster CIDR (10.42.0.0/16 by default), like upstream's node-ipam
//! controller. It runs in the server, next to the other controllers; nodes only read the result.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::watch;

/// The /24 blocks of a cluster CIDR.
#[derive(Clone, Debug)]
pub struct Blocks {
    base: u32,
    count: u32,
}

impl Blocks {
    /// `cidr` must be an IPv4 CIDR of /24 or larger.
    pub fn new(cidr: &str) -> Result<Self, crate::cni::Error> {
        let (net, len) = crate::cni::parse_cidr(cidr)?;
        if len > 24 {
            return Err(crate::cni::Error::BadCidr(cidr.to_string()));
        }
        Ok(Self {
            base: u32::from(net),
            count: 1 << (24 - len),
        })
    }

    fn block(&self, i: u32) -> String {
        format!("{}/24", Ipv4Addr::from(self.base + (i << 8)))
    }

    /// The lowest block not in `used`.
    pub fn first_free(&self, used: &BTreeSet<String>) -> Option<String> {
        (0..self.count)
            .map(|i| self.block(i))
            .find(|b| !used.contains(b))
    }
}

/// Assigns podCIDRs until `shutdown` flips. Errors are logged and retried.
pub async fn run(client: kube::Client, cluster_cidr: String, mut shutdown: watch::Receiver<bool>) {
    let blocks = match Blocks::new(&cluster_cidr) {
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
            _ = crate::util::stopped(&mut shutdown) => return,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_lowest_first() {
        let b = Blocks::new("10.42.0.0/16").expect("cidr");
        let mut used = BTreeSet::new();
        assert_eq!(b.first_free(&used).as_deref(), Some("10.42.0.0/24"));
        used.insert("10.42.0.0/24".to_string());
        assert_eq!(b.first_free(&used).as_deref(), Some("10.42.1.0/24"));
        let small = Blocks::new("10.9.0.0/24").expect("cidr");
        assert_eq!(
            small.first_free(&BTreeSet::from(["10.9.0.0/24".to_string()])),
            None
        );
    }
}
