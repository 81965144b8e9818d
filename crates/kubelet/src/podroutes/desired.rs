//! What routes this node wants, from the Nodes: pure, so the rules (who is on the link, who
//! needs VXLAN, who cannot be routed and why, what changes) are tested without a kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use capstan_api::net::Cidr;
use k8s_openapi::api::core::v1::Node;

use crate::vxlan::Peer;

/// One route to another node's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRoute {
    pub dst: Cidr,
    pub via: Ipv4Addr,
    /// Through the VXLAN device to this peer (`via` is then its podCIDR network address).
    pub vxlan: Option<Peer>,
}

impl PodRoute {
    pub(crate) fn host_gw(dst: Cidr, via: Ipv4Addr) -> Self {
        Self {
            dst,
            via,
            vxlan: None,
        }
    }

    /// The kernel's view of a route is its destination and next hop.
    pub(crate) fn same(&self, other: &PodRoute) -> bool {
        self.dst == other.dst && self.via == other.via
    }
}

/// Routes by destination (network address, prefix length), in address order.
pub type RouteKey = (u32, u8);

pub(crate) fn key(c: &Cidr) -> RouteKey {
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
pub(crate) fn pod_cidr_and_ip(node: &Node) -> Option<(String, Ipv4Addr)> {
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
pub(crate) fn routing_facts(node: &Node) -> (Option<(String, Ipv4Addr)>, Option<&String>) {
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
