//! Which endpoints of a Service port get traffic ([`pick`]), from its EndpointSlices
//! ([`collect`]), as upstream's proxies choose: ready endpoints, else the serving terminating
//! ones (so a rollout or scale-down that leaves only terminating pods loses no connection).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
}

/// The endpoints of the service port named `port_name` (empty for an unnamed port) with
/// `protocol`, from every IPv4 slice of the Service, each address once.
pub fn collect<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port_name: &str,
    protocol: &str,
) -> Vec<Endpoint> {
    let mut by_target: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // Upstream proxies use the first address of an endpoint.
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let c = ep.conditions.as_ref();
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let e = Endpoint {
                ip,
                port,
                ready,
                serving: c.and_then(|c| c.serving).unwrap_or(ready),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                node: ep.node_name.clone(),
            };
            // The same address in two slices (mid-move between slices): ready wins.
            by_target
                .entry((ip, port))
                .and_modify(|old| {
                    if e.ready && !old.ready {
                        *old = e.clone();
                    }
                })
                .or_insert(e);
        }
    }
    by_target.into_values().collect()
}

/// The endpoints that get traffic: the ready ones, or when none is ready the serving ones that
/// are terminating; only those on `local_node` when given (a traffic policy of Local).
pub fn pick<'a>(all: &'a [Endpoint], local_node: Option<&str>) -> Vec<&'a Endpoint> {
    let candidates: Vec<&Endpoint> = all
        .iter()
        .filter(|e| local_node.is_none_or(|n| e.node.as_deref() == Some(n)))
        .collect();
    let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates
        .into_iter()
        .filter(|e| e.serving && e.terminating)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint as Ep, EndpointConditions, EndpointPort};

    fn ep(
        ip: &str,
        ready: Option<bool>,
        serving: Option<bool>,
        term: Option<bool>,
        node: &str,
    ) -> Ep {
        Ep {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating: term,
            }),
            node_name: Some(node.into()),
            ..Default::default()
        }
    }

    fn slice(eps: Vec<Ep>, port_name: Option<&str>, port: i32) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: eps,
            ports: Some(vec![EndpointPort {
                name: port_name.map(str::to_string),
                port: Some(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn ready_endpoints_are_chosen_over_terminating_ones() {
        let s = slice(
            vec![
                ep("10.1.0.2", Some(true), None, None, "a"),
                ep("10.1.0.3", Some(false), Some(true), Some(true), "a"),
            ],
            None,
            8080,
        );
        let all = collect([&s], "", "TCP");
        assert_eq!(all.len(), 2);
        let picked = pick(&all, None);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].ip.to_string(), "10.1.0.2");
        assert_eq!(picked[0].port, 8080);
    }

    #[test]
    fn serving_terminating_endpoints_are_the_fallback_when_none_is_ready() {
        let s = slice(
            vec![
                ep("10.1.0.3", Some(false), Some(true), Some(true), "a"),
                ep("10.1.0.4", Some(false), Some(false), Some(true), "a"),
                ep("10.1.0.5", Some(false), Some(false), Some(false), "a"),
            ],
            None,
            80,
        );
        let all = collect([&s], "", "TCP");
        let picked: Vec<String> = pick(&all, None).iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(picked, vec!["10.1.0.3"]);
    }

    #[test]
    fn local_policy_keeps_only_this_nodes_endpoints() {
        let s = slice(
            vec![
                ep("10.1.0.2", Some(true), None, None, "a"),
                ep("10.2.0.2", Some(true), None, None, "b"),
            ],
            None,
            80,
        );
        let all = collect([&s], "", "TCP");
        let picked: Vec<String> = pick(&all, Some("b"))
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(picked, vec!["10.2.0.2"]);
        assert!(pick(&all, Some("c")).is_empty());
    }

    #[test]
    fn ports_are_matched_by_name_and_protocol_and_ipv6_slices_are_skipped() {
        let named = slice(
            vec![ep("10.1.0.2", None, None, None, "a")],
            Some("http"),
            8080,
        );
        let mut v6 = slice(
            vec![ep("fd00::1", None, None, None, "a")],
            Some("http"),
            8080,
        );
        v6.address_type = "IPv6".into();
        assert_eq!(collect([&named, &v6], "http", "TCP").len(), 1);
        assert!(collect([&named], "", "TCP").is_empty());
        assert!(collect([&named], "http", "UDP").is_empty());
        // A missing ready condition means ready.
        assert!(collect([&named], "http", "TCP")[0].ready);
    }

    #[test]
    fn an_address_in_two_slices_counts_once_and_ready_wins() {
        let a = slice(
            vec![ep("10.1.0.2", Some(false), Some(false), None, "a")],
            None,
            80,
        );
        let b = slice(vec![ep("10.1.0.2", Some(true), None, None, "a")], None, 80);
        let all = collect([&a, &b], "", "TCP");
        assert_eq!(all.len(), 1);
        assert!(all[0].ready);
    }
}
