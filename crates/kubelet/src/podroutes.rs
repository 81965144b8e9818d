//! The pod network across nodes, as flannel's host-gw mode: this node routes every other
//! node's podCIDR via that node's InternalIP, so a pod reaches a pod on another node by its
//! own address (no NAT). That needs the nodes on one link (the next hop must be directly
//! reachable); a node on another subnet is reached through VXLAN instead ([`crate::vxlan`],
//! flannel's vxlan mode), with the same routing rules. Routes follow a Node informer: added when a node gets its podCIDR and
//! address, replaced when they change, removed when the Node goes. They are programmed over
//! rtnetlink and marked with capstan's own route protocol number; a sync only touches
//! routes with that mark inside the cluster CIDR, so routes of other software, and of other
//! clusters' agents on the same host, are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use capstan_api::net::Cidr;
use capstan_runtime::informer::{Change, Informer};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::vxlan::{Peer, Vtep};

/// The route protocol number capstan's pod routes carry (`ip route` shows `proto 77`):
/// outside the kernel's own numbers and those iproute2 names in rt_protos.
pub const ROUTE_PROTOCOL: u8 = 77;

/// How often routes are checked even without a Node change (someone may have deleted one).
const RESYNC: Duration = Duration::from_secs(30);
/// How soon a sync that failed is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// One route to another node's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRoute {
    pub dst: Cidr,
    pub via: Ipv4Addr,
    /// Through the VXLAN device to this peer (`via` is then its podCIDR network address).
    pub vxlan: Option<Peer>,
}

impl PodRoute {
    fn host_gw(dst: Cidr, via: Ipv4Addr) -> Self {
        Self {
            dst,
            via,
            vxlan: None,
        }
    }

    /// The kernel's view of a route is its destination and next hop.
    fn same(&self, other: &PodRoute) -> bool {
        self.dst == other.dst && self.via == other.via
    }
}

/// Routes by destination (network address, prefix length), in address order.
pub type RouteKey = (u32, u8);

fn key(c: &Cidr) -> RouteKey {
    (c.base, c.len)
}

/// Why a node's pods get no route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unroutable {
    /// Its InternalIP is on no subnet this node has an address in, and there is no VXLAN
    /// device to reach it through.
    OffLink { node: String, ip: Ipv4Addr },
    /// It is on another subnet and has not published its VXLAN device's MAC.
    NoVxlanMac { node: String, ip: Ipv4Addr },
    /// Its podCIDR lies outside this agent's cluster CIDR.
    OutsideCluster { node: String, pod_cidr: String },
}

impl std::fmt::Display for Unroutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unroutable::OffLink { node, ip } => write!(
                f,
                "node {node} ({ip}) is not on a subnet this node is attached to and this node \
                 has no VXLAN device: its pods are unreachable from here"
            ),
            Unroutable::NoVxlanMac { node, ip } => write!(
                f,
                "node {node} ({ip}) is on another subnet and has not published its VXLAN \
                 address (annotation {}): its pods are unreachable from here until it does",
                crate::vxlan::MAC_ANNOTATION
            ),
            Unroutable::OutsideCluster { node, pod_cidr } => write!(
                f,
                "node {node}'s podCIDR {pod_cidr} is outside this agent's --cluster-cidr: no \
                 route to its pods (give the agent the server's --cluster-cidr)"
            ),
        }
    }
}

/// What this node knows about itself.
#[derive(Clone, Debug)]
pub struct Local {
    pub node_name: String,
    pub cluster_cidr: Cidr,
    /// This host's IPv4 addresses with their prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// This node's VXLAN device, once one exists.
    pub vtep: Option<u32>,
}

impl Local {
    /// The node's next hop is on one of our links (and is not one of our own addresses).
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addresses.iter().any(|(a, len)| {
            *len < 32
                && Cidr::parse_within(&format!("{a}/{len}"), 0, 31)
                    .map(|c| c.contains(ip))
                    .unwrap_or(false)
        })
    }

    fn is_own_address(&self, ip: Ipv4Addr) -> bool {
        self.addresses.iter().any(|(a, _)| *a == ip)
    }
}

/// The node's podCIDR and first IPv4 InternalIP, when it has both.
fn pod_cidr_and_ip(node: &Node) -> Option<(String, Ipv4Addr)> {
    let cidr = node.spec.as_ref()?.pod_cidr.clone()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())?;
    Some((cidr, ip))
}

/// What [`desired`] found.
#[derive(Debug, Default)]
pub struct Desired {
    pub routes: BTreeMap<RouteKey, PodRoute>,
    pub unroutable: BTreeSet<Unroutable>,
    /// Some node is on another subnet: a VXLAN device is needed.
    pub needs_vxlan: bool,
}

/// Simulated nodes (capstan_simnode's `capstan.io/simulated` label) have made-up addresses
/// and no pods on any network.
fn is_simulated(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("capstan.io/simulated"))
        .is_some_and(|v| v == "true")
}

/// What routes to a node depend on: its podCIDR, address and VXLAN MAC.
fn routing_facts(node: &Node) -> (Option<(String, Ipv4Addr)>, Option<&String>) {
    let mac = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::vxlan::MAC_ANNOTATION));
    (pod_cidr_and_ip(node), mac)
}

/// The routes this node wants (by destination), and the nodes it cannot route to. Pure.
pub fn desired(nodes: &[Arc<Node>], local: &Local) -> Desired {
    let mut routes = BTreeMap::new();
    let mut unroutable = BTreeSet::new();
    let mut needs_vxlan = false;
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if name == local.node_name || is_simulated(node) {
            continue;
        }
        let Some((cidr_text, ip)) = pod_cidr_and_ip(node) else {
            continue; // not registered far enough yet; its next update brings them
        };
        // Another agent on this very host (a test cluster, or a second agent by mistake):
        // its pods are on a local bridge already.
        if local.is_own_address(ip) {
            continue;
        }
        let dst = match Cidr::parse(&cidr_text) {
            Ok(c)
                if local.cluster_cidr.contains(c.network()) && c.len >= local.cluster_cidr.len =>
            {
                c
            }
            _ => {
                unroutable.insert(Unroutable::OutsideCluster {
                    node: name,
                    pod_cidr: cidr_text,
                });
                continue;
            }
        };
        if local.on_link(ip) {
            routes.insert(key(&dst), PodRoute::host_gw(dst, ip));
            continue;
        }
        needs_vxlan = true;
        if local.vtep.is_none() {
            unroutable.insert(Unroutable::OffLink { node: name, ip });
            continue;
        }
        let mac = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::vxlan::MAC_ANNOTATION))
            .and_then(|m| crate::vxlan::parse_mac(m));
        let Some(mac) = mac else {
            unroutable.insert(Unroutable::NoVxlanMac { node: name, ip });
            continue;
        };
        routes.insert(
            key(&dst),
            PodRoute {
                dst,
                via: dst.network(),
                vxlan: Some(Peer { node_ip: ip, mac }),
            },
        );
    }
    Desired {
        routes,
        unroutable,
        needs_vxlan,
    }
}

/// What to change: routes to delete (gone, or with another next hop) and routes to add.
pub fn plan(
    current: &[PodRoute],
    wanted: &BTreeMap<RouteKey, PodRoute>,
) -> (Vec<PodRoute>, Vec<PodRoute>) {
    let del: Vec<PodRoute> = current
        .iter()
        .filter(|r| !wanted.get(&key(&r.dst)).is_some_and(|w| w.same(r)))
        .cloned()
        .collect();
    let add: Vec<PodRoute> = wanted
        .values()
        .filter(|r| !current.iter().any(|c| c.same(r)))
        .cloned()
        .collect();
    (del, add)
}

/// A netlink failure with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NetlinkError {
    what: String,
    #[source]
    source: rtnetlink::Error,
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

/// The host's IPv4 addresses with prefix lengths.
async fn addresses(handle: &Handle) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses"))?;
    let mut out = Vec::new();
    for m in msgs {
        let local = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(addr) {
            out.push((ip, m.header.prefix_len));
        }
    }
    Ok(out)
}

/// The routes with capstan's mark inside `cluster` in the main table.
async fn owned_routes(handle: &Handle, cluster: Cidr) -> Result<Vec<PodRoute>, NetlinkError> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let msgs: Vec<_> = handle
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
            continue;
        }
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let via = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
            _ => None,
        });
        let (Some(dst), Some(via)) = (dst, via) else {
            continue;
        };
        let Ok(dst) = Cidr::parse_within(
            &format!("{dst}/{}", m.header.destination_prefix_length),
            0,
            32,
        ) else {
            continue;
        };
        if cluster.contains(dst.network()) {
            out.push(PodRoute::host_gw(dst, via));
        }
    }
    Ok(out)
}

fn message(r: &PodRoute, vtep: Option<&Vtep>) -> netlink_packet_route::route::RouteMessage {
    let b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.network(), r.dst.len)
        .gateway(r.via)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    match (&r.vxlan, vtep) {
        // The peer's podCIDR address is on no link: the device is the link.
        (Some(_), Some(v)) => b.output_interface(v.index).onlink().build(),
        _ => b.build(),
    }
}

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

/// The kernel's answer was this errno.
pub(crate) fn is_errno(e: &rtnetlink::Error, kind: std::io::ErrorKind) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.to_io().kind() == kind)
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Arc<Node> {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n.spec = Some(NodeSpec {
            pod_cidr: cidr.map(String::from),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            addresses: ip.map(|ip| {
                vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]
            }),
            ..Default::default()
        });
        Arc::new(n)
    }

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).expect("cidr")
    }

    fn local() -> Local {
        Local {
            node_name: "a".into(),
            cluster_cidr: cidr("10.42.0.0/16"),
            addresses: vec![
                (Ipv4Addr::new(127, 0, 0, 1), 8),
                (Ipv4Addr::new(172, 31, 5, 11), 24),
                (Ipv4Addr::new(10, 42, 0, 1), 24),
            ],
            vtep: None,
        }
    }

    #[test]
    fn other_nodes_on_the_link_get_a_route_via_their_address() {
        let nodes = vec![
            node("a", Some("10.42.0.0/24"), Some("172.31.5.11")),
            node("b", Some("10.42.1.0/24"), Some("172.31.5.12")),
            node("c", Some("10.42.2.0/24"), Some("172.31.5.13")),
            node("new", None, Some("172.31.5.14")),
            node("starting", Some("10.42.4.0/24"), None),
        ];
        let d = desired(&nodes, &local());
        assert!(d.unroutable.is_empty(), "{:?}", d.unroutable);
        assert!(!d.needs_vxlan);
        assert_eq!(
            d.routes.values().cloned().collect::<Vec<_>>(),
            vec![
                PodRoute::host_gw(cidr("10.42.1.0/24"), Ipv4Addr::new(172, 31, 5, 12)),
                PodRoute::host_gw(cidr("10.42.2.0/24"), Ipv4Addr::new(172, 31, 5, 13)),
            ]
        );
    }

    #[test]
    fn nodes_off_the_link_or_outside_the_cluster_are_reported_not_routed() {
        let mut sim = node("sim-0001", Some("10.42.9.0/24"), Some("10.42.9.1"));
        Arc::make_mut(&mut sim).metadata.labels =
            Some([("capstan.io/simulated".to_string(), "true".to_string())].into());
        let nodes = vec![
            sim,
            node("far", Some("10.42.1.0/24"), Some("192.168.9.9")),
            node("odd", Some("10.99.1.0/24"), Some("172.31.5.12")),
            node("same-host", Some("10.42.3.0/24"), Some("172.31.5.11")),
        ];
        let d = desired(&nodes, &local());
        assert!(d.routes.is_empty(), "{:?}", d.routes);
        assert!(d.needs_vxlan);
        let text: Vec<String> = d.unroutable.iter().map(|u| u.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("node far (192.168.9.9) is not on a subnet"),
            "{text:?}"
        );
        assert!(
            text[1].contains("podCIDR 10.99.1.0/24 is outside"),
            "{text:?}"
        );
    }

    #[test]
    fn a_changed_or_gone_node_is_deleted_before_the_new_route_is_added() {
        let r = |c: &str, via: u8| PodRoute::host_gw(cidr(c), Ipv4Addr::new(172, 31, 5, via));
        let current = vec![
            r("10.42.1.0/24", 12),
            r("10.42.2.0/24", 13),
            r("10.42.3.0/24", 14),
        ];
        let wanted: BTreeMap<RouteKey, PodRoute> = [
            r("10.42.1.0/24", 12),
            r("10.42.2.0/24", 20),
            r("10.42.5.0/24", 15),
        ]
        .into_iter()
        .map(|x| (key(&x.dst), x))
        .collect();
        let (del, add) = plan(&current, &wanted);
        assert_eq!(del, vec![r("10.42.2.0/24", 13), r("10.42.3.0/24", 14)]);
        assert_eq!(add, vec![r("10.42.2.0/24", 20), r("10.42.5.0/24", 15)]);
    }

    #[test]
    fn nodes_on_another_subnet_go_through_vxlan_once_they_published_their_mac() {
        let mut far = node("far", Some("10.42.1.0/24"), Some("192.168.9.9"));
        let silent = node("silent", Some("10.42.2.0/24"), Some("192.168.9.10"));
        Arc::make_mut(&mut far).metadata.annotations = Some(
            [(
                crate::vxlan::MAC_ANNOTATION.to_string(),
                "0a:00:00:00:00:01".to_string(),
            )]
            .into(),
        );
        let mut l = local();
        l.vtep = Some(7);
        let d = desired(&[far, silent], &l);
        assert_eq!(
            d.routes.values().cloned().collect::<Vec<_>>(),
            vec![PodRoute {
                dst: cidr("10.42.1.0/24"),
                via: Ipv4Addr::new(10, 42, 1, 0),
                vxlan: Some(Peer {
                    node_ip: Ipv4Addr::new(192, 168, 9, 9),
                    mac: [0x0a, 0, 0, 0, 0, 1],
                }),
            }]
        );
        let text: Vec<String> = d.unroutable.iter().map(|u| u.to_string()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(
            text[0]
                .contains("node silent (192.168.9.10) is on another subnet and has not published"),
            "{text:?}"
        );
    }
}
