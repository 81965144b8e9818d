//! [`Fragment`]: everything one Service puts into the table (its chains, its affinity sets, its
//! elements in the shared verdict maps), kept per Service so a sync rewrites only the Services
//! that changed. Chain and set names embed the Service's namespace/name, so fragments of
//! different Services never share an object.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The verdict maps every Service adds elements to (declared in [`crate::ruleset`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapName {
    /// `ip . proto . port : goto chain` for ClusterIPs, externalIPs and load-balancer IPs.
    ServiceIps,
    /// `proto . port : goto chain` for NodePorts on the node's own addresses.
    ServiceNodePorts,
    /// `ip . proto . port : goto reject-chain`: Services without endpoints refuse at once.
    NoEndpointServices,
    /// `proto . port : goto reject-chain` for NodePorts without endpoints.
    NoEndpointNodePorts,
}

impl MapName {
    pub const ALL: [MapName; 4] = [
        MapName::ServiceIps,
        MapName::ServiceNodePorts,
        MapName::NoEndpointServices,
        MapName::NoEndpointNodePorts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MapName::ServiceIps => "service-ips",
            MapName::ServiceNodePorts => "service-nodeports",
            MapName::NoEndpointServices => "no-endpoint-services",
            MapName::NoEndpointNodePorts => "no-endpoint-nodeports",
        }
    }
}

/// Where traffic to a Service port enters: an address and port, or a NodePort on every local
/// address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Frontend {
    Ip(Ipv4Addr, u16),
    NodePort(u16),
}

/// A UDP frontend reaching one endpoint: its conntrack entries must go with the endpoint, or
/// the client keeps sending into a pod that is gone (UDP has no connection to break).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpFlow {
    pub frontend: Frontend,
    pub endpoint: Ipv4Addr,
    pub endpoint_port: u16,
}

/// One Service's share of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Chain name → its rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Set name → its declaration (`{ type ...; }`).
    pub sets: BTreeMap<String, String>,
    /// (map, key) → verdict.
    pub elements: BTreeMap<(MapName, String), String>,
    /// UDP frontend/endpoint pairs this fragment sends traffic along.
    pub udp_flows: BTreeSet<UdpFlow>,
    /// UDP frontends that have endpoints (entries made while they had none are stale).
    pub udp_served: BTreeSet<Frontend>,
}

impl Fragment {
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.sets.is_empty() && self.elements.is_empty()
    }

    /// Rules plus map elements: the size of this Service in the kernel.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum::<usize>() + self.elements.len()
    }
}
