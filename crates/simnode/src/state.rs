//! The simulated nodes' shared state: per node its name, uid, addresses and pod IPs; per pod
//! the node it runs on, its IP and where it is in its simulated life. One mutex, held only for
//! map updates, never across an API call.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::ipam::PodIps;
use capstan_api::net::Cidr;

/// One registered node.
#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    pub uid: String,
    pub cidr: Cidr,
    pub ips: PodIps,
    /// When the node became Ready (its conditions' lastTransitionTime).
    pub since: String,
    /// Its Lease exists (renewals patch it; until then they create it).
    pub lease_exists: bool,
    /// The Node was deleted by someone: no more heartbeats, no new pods.
    pub gone: bool,
}

impl SimNode {
    pub fn new(name: String, uid: String, cidr: Cidr, since: String) -> Self {
        Self {
            name,
            uid,
            ips: PodIps::new(cidr),
            cidr,
            since,
            lease_exists: false,
            gone: false,
        }
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.cidr.first_host()
    }
}

/// Where a pod on a simulated node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its Running status is being written.
    Starting,
    Running,
    /// Deletion requested; it is "stopping" and will be removed.
    Stopping,
}

#[derive(Debug, Clone)]
pub struct SimPod {
    pub node: usize,
    pub uid: String,
    pub ip: Option<Ipv4Addr>,
    pub phase: Phase,
    /// Seen in the current (re-)list.
    pub seen: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub nodes: Vec<SimNode>,
    pub by_name: HashMap<String, usize>,
    /// Pods on our nodes by "namespace/name".
    pub pods: HashMap<String, SimPod>,
}

impl State {
    pub fn new(nodes: Vec<SimNode>) -> Self {
        let by_name = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Self {
            nodes,
            by_name,
            pods: HashMap::new(),
        }
    }

    /// Stops simulating node `i` (its Node was deleted).
    pub fn forget_node(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.gone = true;
            let name = n.name.clone();
            self.by_name.remove(&name);
        }
    }

    /// Forgets a pod and frees its address.
    pub fn remove_pod(&mut self, key: &str) -> Option<SimPod> {
        let p = self.pods.remove(key)?;
        if let (Some(ip), Some(n)) = (p.ip, self.nodes.get_mut(p.node)) {
            n.ips.release(ip);
        }
        Some(p)
    }
}
