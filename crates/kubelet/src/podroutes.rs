//! The pod network across nodes, as flannel's host-gw mode: this node routes every other
//! node's podCIDR via that node's InternalIP, so a pod reaches a pod on another node by its
//! own address (no tunnel, no NAT). It works when the nodes share a link (the next hop must
//! be directly reachable); a node on another subnet is reported as unreachable (VXLAN is not
//! implemented). Routes follow a Node informer: added when a node gets its podCIDR and
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
}

/// Routes by destination (network address, prefix length), in address order.
pub type RouteKey = (u32, u8);

fn key(c: &Cidr) -> RouteKey {
    (c.base, c.len)
}

/// Why a node's pods get no route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unroutable {
    /// Its InternalIP is on no subnet this node has an address in.
    OffLink { node: String, ip: Ipv4Addr },
    /// Its podCIDR lies outside this agent's cluster CIDR.
    OutsideCluster { node: String, pod_cidr: String },
}

impl std::fmt::Display for Unroutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unroutable::OffLink { node, ip } => write!(
                f,
                "node {node} ({ip}) is not on a subnet this node is attached to: its pods are \
                 unreachable from here (host-gw routing needs the nodes on one link; VXLAN is \
                 not implemented)"
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

/// The routes this node wants (by destination), and the nodes it cannot route to. Pure.
pub fn desired(
    nodes: &[Arc<Node>],
    local: &Local,
) -> (BTreeMap<RouteKey, PodRoute>, BTreeSet<Unroutable>) {
    let mut routes = BTreeMap::new();
    let mut unroutable = BTreeSet::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if name == local.node_name {
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
        if !local.on_link(ip) {
            unroutable.insert(Unroutable::OffLink { node: name, ip });
            continue;
        }
        routes.insert(key(&dst), PodRoute { dst, via: ip });
    }
    (routes, unroutable)
}

/// What to change: routes to delete (gone, or with another next hop) and routes to add.
pub fn plan(
    current: &[PodRoute],
    wanted: &BTreeMap<RouteKey, PodRoute>,
) -> (Vec<PodRoute>, Vec<PodRoute>) {
    let del: Vec<PodRoute> = current
        .iter()
        .filter(|r| wanted.get(&key(&r.dst)) != Some(r))
        .cloned()
        .collect();
    let add: Vec<PodRoute> = wanted
        .values()
        .filter(|r| !current.contains(r))
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
            out.push(PodRoute { dst, via });
        }
    }
    Ok(out)
}

fn message(r: &PodRoute) -> netlink_packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.network(), r.dst.len)
        .gateway(r.via)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .build()
}

/// Keeps the routes in step with the Nodes; remembers what it warned about so each problem
/// is logged once, not at every resync.
struct Syncer {
    handle: Handle,
    node_name: String,
    cluster_cidr: Cidr,
    metrics: Arc<Metrics>,
    warned: BTreeSet<Unroutable>,
    /// Destinations where a route capstan did not add stands in the way (warned once).
    conflicts: BTreeSet<RouteKey>,
}

/// The kernel's answer was this errno.
fn is_errno(e: &rtnetlink::Error, kind: std::io::ErrorKind) -> bool {
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
        let local = Local {
            node_name: self.node_name.clone(),
            cluster_cidr: self.cluster_cidr,
            addresses,
        };
        let (wanted, unroutable) = desired(nodes, &local);
        for u in unroutable.difference(&self.warned) {
            tracing::warn!("{u}");
        }
        self.warned = unroutable;
        let (del, add) = plan(&current, &wanted);
        let mut failed = false;
        self.conflicts.retain(|k| wanted.contains_key(k));
        for r in &del {
            match self.handle.route().del(message(r)).execute().await {
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
        let mut not_added = 0;
        for r in &add {
            match self.handle.route().add(message(r)).execute().await {
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
    let mut informer = Informer::<Node>::new(kube::Api::all(client), watcher::Config::default());
    let tell = changed.clone();
    // Status heartbeats change nothing routes depend on: only a podCIDR or address does.
    informer.on_change(move |c| {
        let relevant = match c {
            Change::Updated { old, new } => pod_cidr_and_ip(old) != pod_cidr_and_ip(new),
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
    tracing::info!(cluster_cidr = %cluster_cidr, "routing other nodes' pods (host-gw)");
    let mut syncer = Syncer {
        handle,
        node_name,
        cluster_cidr,
        metrics,
        warned: BTreeSet::new(),
        conflicts: BTreeSet::new(),
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
        let (routes, unroutable) = desired(&nodes, &local());
        assert!(unroutable.is_empty(), "{unroutable:?}");
        assert_eq!(
            routes.values().cloned().collect::<Vec<_>>(),
            vec![
                PodRoute {
                    dst: cidr("10.42.1.0/24"),
                    via: Ipv4Addr::new(172, 31, 5, 12)
                },
                PodRoute {
                    dst: cidr("10.42.2.0/24"),
                    via: Ipv4Addr::new(172, 31, 5, 13)
                },
            ]
        );
    }

    #[test]
    fn nodes_off_the_link_or_outside_the_cluster_are_reported_not_routed() {
        let nodes = vec![
            node("far", Some("10.42.1.0/24"), Some("192.168.9.9")),
            node("odd", Some("10.99.1.0/24"), Some("172.31.5.12")),
            node("same-host", Some("10.42.3.0/24"), Some("172.31.5.11")),
        ];
        let (routes, unroutable) = desired(&nodes, &local());
        assert!(routes.is_empty(), "{routes:?}");
        let text: Vec<String> = unroutable.iter().map(|u| u.to_string()).collect();
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
        let r = |c: &str, via: u8| PodRoute {
            dst: cidr(c),
            via: Ipv4Addr::new(172, 31, 5, via),
        };
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
}
