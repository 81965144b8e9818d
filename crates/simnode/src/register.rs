//! Registering the simulated nodes: list the cluster's nodes once, adopt the ones of ours that
//! exist (a restart), create the others with a free /24 podCIDR, many at a time.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::Config;
use crate::objects;
use crate::state::SimNode;
use crate::Error;
use capstan_api::net::{Blocks, Cidr};

/// How often registering one node is tried before giving up on it.
const ATTEMPTS: u32 = 5;

struct Existing {
    uid: String,
    pod_cidr: Option<String>,
}

/// Registers (or adopts) every configured node; returns the ones that are in place.
pub async fn register_all(client: &kube::Client, cfg: &Config) -> Result<Vec<SimNode>, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::ListNodes)?;
    let mut existing: HashMap<String, Existing> = HashMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for n in list.items {
        let pod_cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.clone());
        if let Some(c) = &pod_cidr {
            used.insert(c.clone());
        }
        if let Some(name) = n.metadata.name.clone() {
            existing.insert(
                name,
                Existing {
                    uid: n.metadata.uid.clone().unwrap_or_default(),
                    pod_cidr,
                },
            );
        }
    }
    let blocks = Mutex::new(Blocks::new(cfg.pod_cidr).map_err(Error::PodRange)?);
    let used = Mutex::new(used);
    let now = objects::time(k8s_openapi::jiff::Timestamp::now());

    let results: Vec<Option<SimNode>> = futures::stream::iter(0..cfg.count)
        .map(|i| {
            let api = api.clone();
            let name = cfg.node_name(i);
            let found = existing.remove(&name);
            let (blocks, used, now) = (&blocks, &used, &now);
            async move {
                let cidr = match found.as_ref().and_then(|e| e.pod_cidr.clone()) {
                    Some(c) => c,
                    None => {
                        let u = used.lock();
                        let b = blocks.lock().allocate(&u);
                        match b {
                            Some(b) => b,
                            None => {
                                tracing::error!(node = %name, "no free /24 left in the simulated pod range");
                                return None;
                            }
                        }
                    }
                };
                used.lock().insert(cidr.clone());
                let parsed = Cidr::parse(&cidr).ok()?;
                let uid = match found {
                    Some(e) => adopt(&api, cfg, &name, &e, &cidr, parsed, now).await.map(|_| e.uid),
                    None => create(&api, cfg, i, &name, &cidr, parsed, now).await,
                };
                match uid {
                    Ok(uid) => Some(SimNode::new(name, uid, parsed, now.clone())),
                    Err(e) => {
                        tracing::error!(node = %name, error = %e, "could not register simulated node");
                        None
                    }
                }
            }
        })
        .buffer_unordered(cfg.concurrency.max(1))
        .collect()
        .await;
    let mut nodes: Vec<SimNode> = results.into_iter().flatten().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

async fn create(
    api: &Api<Node>,
    cfg: &Config,
    i: usize,
    name: &str,
    cidr: &str,
    parsed: Cidr,
    now: &str,
) -> kube::Result<String> {
    let node: Node =
        serde_json::from_value(objects::node(cfg, i, name, cidr, parsed.first_host(), now))
            .map_err(kube::Error::SerdeError)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match api.create(&PostParams::default(), &node).await {
            Ok(n) => return Ok(n.metadata.uid.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Created meanwhile (by an earlier attempt whose answer was lost): adopt it.
                let n = api.get(name).await?;
                return Ok(n.metadata.uid.unwrap_or_default());
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(node = %name, error = %e, attempt, "creating simulated node failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A node of ours from an earlier run: give it a podCIDR if it has none and fresh status.
async fn adopt(
    api: &Api<Node>,
    cfg: &Config,
    name: &str,
    e: &Existing,
    cidr: &str,
    parsed: Cidr,
    now: &str,
) -> kube::Result<()> {
    if e.pod_cidr.is_none() {
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let status = json!({"status": objects::node_status(cfg, name, parsed.first_host(), now, now)});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}
