//! The pod network across nodes, as flannel's host-gw mode: this node routes every other
//! node's podCIDR via that node's InternalIP, so a pod reaches a pod on another node by its
//! own address (no NAT). That needs the nodes on one link (the next hop must be directly
//! reachable); a node on another subnet is reached through VXLAN instead ([`crate::vxlan`],
//! flannel's vxlan mode). Routes follow a Node informer: added when a node gets its podCIDR
//! and address, replaced when they change, removed when the Node goes. They are programmed over
//! rtnetlink and marked with capstan's own route protocol number; a sync only touches
//! routes with that mark inside the cluster CIDR, so routes of other software, and of other
//! clusters' agents on the same host, are left alone. `desired` decides (pure), `kernel`
//! reads and writes the routing table, [`run`] keeps them in step.

mod desired;
mod kernel;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use capstan_api::net::Cidr;
use capstan_runtime::informer::{Change, Informer};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use rtnetlink::Handle;
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::vxlan::{Peer, Vtep};
pub use desired::{desired, plan, Desired, Local, PodRoute, RouteKey, Unroutable};
use desired::{key, pod_cidr_and_ip, routing_facts};
pub(crate) use kernel::is_errno;
use kernel::{addresses, message, owned_routes};

/// The route protocol number capstan's pod routes carry (`ip route` shows `proto 77`):
/// outside the kernel's own numbers and those iproute2 names in rt_protos.
pub const ROUTE_PROTOCOL: u8 = 77;

/// How often routes are checked even without a Node change (someone may have deleted one).
const RESYNC: Duration = Duration::from_secs(30);
/// How soon a sync that failed is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps the routes in step with the Nodes; remembers what it warned about so each problem
/// is logged once, not at every resync.
struct Syncer {
    handle: Handle,
    client: kube::Client,
    node_name: String,
    cluster_cidr: Cidr,
    metrics: Arc<Metrics>,
    warned: BTreeSet<Unroutable>,
    /// Destinations where a route capstan did not add stands in the way (warned once).
    conflicts: BTreeSet<RouteKey>,
    /// The VXLAN device, once a node on another subnet needed it.
    vtep: Option<Vtep>,
    /// The VXLAN peers programmed, by their podCIDR.
    peers: BTreeMap<RouteKey, (Cidr, Peer)>,
}

impl Syncer {
    /// One pass; returns whether something failed (and a retry is due soon).
    async fn sync(&mut self, nodes: &[Arc<Node>]) -> bool {
        let (addresses, current) = match tokio::try_join!(
            addresses(&self.handle),
            owned_routes(&self.handle, self.cluster_cidr)
        ) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "reading the routing state failed; pod routes not synced");
                self.metrics.pod_route_errors.inc();
                return true;
            }
        };
        let mut local = Local {
            node_name: self.node_name.clone(),
            cluster_cidr: self.cluster_cidr,
            addresses,
            vtep: self.vtep.as_ref().map(|v| v.index),
        };
        let mut want = desired(nodes, &local);
        let mut failed = false;
        let own_known = nodes.iter().any(|n| {
            n.metadata.name.as_deref() == Some(self.node_name.as_str())
                && pod_cidr_and_ip(n).is_some()
        });
        if want.needs_vxlan && self.vtep.is_none() && !own_known {
            failed = true; // this node's first status (its InternalIP) is on its way
        } else if want.needs_vxlan && self.vtep.is_none() {
            match self.setup_vxlan(nodes).await {
                Ok(v) => {
                    local.vtep = Some(v.index);
                    self.vtep = Some(v);
                    want = desired(nodes, &local);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "setting up VXLAN for nodes on other subnets failed");
                    self.metrics.pod_route_errors.inc();
                    failed = true;
                }
            }
        }
        let Desired {
            routes: wanted,
            mut unroutable,
            ..
        } = want;
        if !own_known {
            // Not reportable yet: VXLAN is set up once this node's own address is known.
            unroutable.retain(|u| !matches!(u, Unroutable::OffLink { .. }));
        }
        for u in unroutable.difference(&self.warned) {
            match u {
                // Usual for a moment while a peer starts; a warning if it lasts is not ours.
                Unroutable::NoVxlanMac { .. } => tracing::info!("{u}"),
                _ => tracing::warn!("{u}"),
            }
        }
        self.warned = unroutable;
        let (del, add) = plan(&current, &wanted);
        self.conflicts.retain(|k| wanted.contains_key(k));
        for r in &del {
            match self.handle.route().del(message(r, None)).execute().await {
                Ok(()) => {
                    tracing::info!(pod_cidr = %r.dst, via = %r.via, "removed the route to a node's pods");
                    self.metrics.pod_route_changes.inc();
                }
                // Gone already (someone else deleted it): what this pass wanted.
                Err(e) if is_errno(&e, std::io::ErrorKind::NotFound) => {}
                Err(e) => {
                    tracing::warn!(pod_cidr = %r.dst, via = %r.via, error = %e, "removing a pod route failed");
                    self.metrics.pod_route_errors.inc();
                    failed = true;
                }
            }
        }
        failed |= self.sync_peers(&wanted).await;
        let mut not_added = 0;
        for r in &add {
            let msg = message(r, self.vtep.as_ref());
            match self.handle.route().add(msg).execute().await {
                Ok(()) => {
                    tracing::info!(pod_cidr = %r.dst, via = %r.via, "added a route to a node's pods");
                    self.metrics.pod_route_changes.inc();
                    self.conflicts.remove(&key(&r.dst));
                }
                // A route to that network that capstan did not add (another network plugin's,
                // or the admin's): left alone, reported once; resyncs try again.
                Err(e) if is_errno(&e, std::io::ErrorKind::AlreadyExists) => {
                    if self.conflicts.insert(key(&r.dst)) {
                        tracing::warn!(pod_cidr = %r.dst, via = %r.via, "a route to this podCIDR exists that capstan did not add; leaving it, so that node's pods may be unreachable from here");
                        self.metrics.pod_route_errors.inc();
                    }
                }
                Err(e) => {
                    tracing::warn!(pod_cidr = %r.dst, via = %r.via, error = %e, "adding a pod route failed");
                    self.metrics.pod_route_errors.inc();
                    failed = true;
                    not_added += 1;
                }
            }
        }
        let programmed = wanted
            .len()
            .saturating_sub(self.conflicts.len() + not_added);
        self.metrics.pod_routes.set(programmed as i64);
        failed
    }

    /// The VXLAN device from this node's own address and podCIDR, and its MAC published on
    /// the Node so that the other nodes can reach this one.
    async fn setup_vxlan(&self, nodes: &[Arc<Node>]) -> Result<Vtep, String> {
        let own = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.node_name.as_str()))
            .ok_or("this node is not registered")?;
        let (cidr, ip) =
            pod_cidr_and_ip(own).ok_or("this node has no podCIDR or InternalIP yet")?;
        let cidr = Cidr::parse(&cidr).map_err(|e| e.to_string())?;
        let vtep = crate::vxlan::ensure(&self.handle, ip, cidr)
            .await
            .map_err(|e| format!("creating {}: {e}", crate::vxlan::DEVICE))?;
        let published = own
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::vxlan::MAC_ANNOTATION));
        if published != Some(&vtep.mac) {
            let api: kube::Api<Node> = kube::Api::all(self.client.clone());
            let patch = serde_json::json!({"metadata": {"annotations": {crate::vxlan::MAC_ANNOTATION: vtep.mac}}});
            api.patch(
                &self.node_name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .map_err(|e| format!("publishing the VXLAN MAC on the Node: {e}"))?;
            tracing::info!(mac = %vtep.mac, "published this node's VXLAN address");
        }
        Ok(vtep)
    }

    /// Neighbour and forwarding entries for the VXLAN peers wanted, stale ones removed.
    /// Returns whether something failed.
    async fn sync_peers(&mut self, wanted: &BTreeMap<RouteKey, PodRoute>) -> bool {
        let Some(vtep) = self.vtep.clone() else {
            return false;
        };
        let want: BTreeMap<RouteKey, (Cidr, Peer)> = wanted
            .iter()
            .filter_map(|(k, r)| r.vxlan.clone().map(|p| (*k, (r.dst, p))))
            .collect();
        let stale: Vec<RouteKey> = self
            .peers
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some((cidr, peer)) = self.peers.remove(&k) {
                crate::vxlan::remove_peer(&self.handle, &vtep, cidr, &peer).await;
            }
        }
        let mut failed = false;
        for (k, (cidr, peer)) in want {
            if self.peers.contains_key(&k) {
                continue;
            }
            match crate::vxlan::add_peer(&self.handle, &vtep, cidr, &peer).await {
                Ok(()) => {
                    tracing::info!(pod_cidr = %cidr, node_ip = %peer.node_ip, mac = %crate::vxlan::format_mac(&peer.mac), "VXLAN peer programmed");
                    self.peers.insert(k, (cidr, peer));
                }
                Err(e) => {
                    tracing::warn!(pod_cidr = %cidr, node_ip = %peer.node_ip, error = %e, "programming a VXLAN peer failed");
                    self.metrics.pod_route_errors.inc();
                    failed = true;
                }
            }
        }
        failed
    }
}

/// Turns on IPv4 forwarding in this network namespace: the node routes between its link and
/// its pod bridge. (The bridge plugin does it too, but only once a first pod starts.)
fn enable_forwarding() {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH)
        .map(|s| s.trim() == "1")
        .unwrap_or(false)
    {
        return;
    }
    match std::fs::write(PATH, "1") {
        Ok(()) => tracing::info!("enabled IPv4 forwarding for the pod network"),
        Err(e) => {
            tracing::warn!(error = %e, "enabling IPv4 forwarding failed; pods on other nodes cannot reach this node's pods")
        }
    }
}

/// Runs until `shutdown`: a Node informer and a sync after every change (and every 30 s).
pub async fn run(
    client: kube::Client,
    node_name: String,
    cluster_cidr: Cidr,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (conn, handle, _) = match rtnetlink::new_connection() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no netlink socket: pods on other nodes are unreachable from this node");
            return;
        }
    };
    tokio::spawn(conn);
    enable_forwarding();
    let changed = Arc::new(Notify::new());
    let mut informer =
        Informer::<Node>::new(kube::Api::all(client.clone()), watcher::Config::default());
    let tell = changed.clone();
    // Status heartbeats change nothing routes depend on: only a podCIDR or address does.
    informer.on_change(move |c| {
        let relevant = match c {
            Change::Updated { old, new } => routing_facts(old) != routing_facts(new),
            Change::Added(_) | Change::Deleted(_) => true,
        };
        if relevant {
            tell.notify_one();
        }
    });
    let cache = informer.cache();
    tokio::spawn(informer.run(shutdown.clone()));
    tokio::select! {
        _ = cache.wait_ready() => {}
        _ = crate::util::stopped(&mut shutdown) => return,
    }
    tracing::info!(cluster_cidr = %cluster_cidr, "routing other nodes' pods (host-gw on the node's link, VXLAN beyond it)");
    let mut syncer = Syncer {
        handle,
        client,
        node_name,
        cluster_cidr,
        metrics,
        warned: BTreeSet::new(),
        conflicts: BTreeSet::new(),
        vtep: None,
        peers: BTreeMap::new(),
    };
    loop {
        let failed = syncer.sync(&cache.list()).await;
        let wait = if failed { RETRY } else { RESYNC };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = crate::util::stopped(&mut shutdown) => return,
        }
    }
}
