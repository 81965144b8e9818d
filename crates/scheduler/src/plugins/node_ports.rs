//! NodePorts: two pods may not bind the same host port and protocol on one node (an address of
//! 0.0.0.0 conflicts with every address).

use super::{Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::{HostPort, PodInfo};

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

fn conflicts(want: &HostPort, used: &HostPort) -> bool {
    want.port == used.port
        && want.protocol == used.protocol
        && (want.ip == "0.0.0.0" || used.ip == "0.0.0.0" || want.ip == used.ip)
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    let clash = pod
        .host_ports
        .iter()
        .any(|w| node.used_ports.iter().any(|u| conflicts(w, u)));
    clash.then(|| Rejection::unschedulable(Plugin::NodePorts, ERR_REASON))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn with_port(name: &str, port: i32, ip: Option<&str>, protocol: Option<&str>) -> PodInfo {
        let mut p = json!({"containerPort": port, "hostPort": port});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        if let Some(pr) = protocol {
            p["protocol"] = json!(pr);
        }
        pod(
            json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i", "ports": [p]}]}}),
        )
    }

    #[test]
    fn the_same_port_and_protocol_conflict_across_wildcard_addresses() {
        let mut n = NodeInfo::with_props("n", Default::default());
        n.add_pod(Arc::new(with_port("a", 8080, Some("10.0.0.1"), None)));
        assert!(filter(&with_port("b", 8080, None, None), &n).is_some());
        assert!(filter(&with_port("b", 8080, Some("10.0.0.1"), None), &n).is_some());
        assert!(filter(&with_port("b", 8080, Some("10.0.0.2"), None), &n).is_none());
        assert!(filter(&with_port("b", 8080, None, Some("UDP")), &n).is_none());
        assert!(filter(&with_port("b", 9090, None, None), &n).is_none());
    }
}
