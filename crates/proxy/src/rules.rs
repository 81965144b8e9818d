//! The rule generator: [`fragment`] turns one Service and its EndpointSlices into the chains,
//! sets and map elements that implement it, with no I/O. The layout follows kube-proxy's
//! nftables mode:
//!
//! - `svc-<ns>/<name>/<proto>/<port>`: spreads new connections over all chosen endpoints
//!   (`numgen random mod N`), after the session-affinity lookups; reached from the ClusterIP.
//! - `local-…`: the same over this node's endpoints only (a traffic policy of Local).
//! - `ext-…`: the entry for NodePorts, externalIPs and load-balancer IPs: marks for masquerade
//!   (or, with externalTrafficPolicy Local, keeps the client address and uses local endpoints).
//! - `ep-…__<ip>/<port>`: one endpoint, only with session affinity: hairpin masquerade,
//!   affinity update, DNAT. Without affinity the Service chain DNATs through a numgen map.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use capstan_api::net::Cidr;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::endpoints::{self, Endpoint};
use crate::fragment::{Fragment, Frontend, MapName, UdpFlow};

/// The chain that refuses connections to Services without endpoints.
pub const REJECT_CHAIN: &str = "reject-chain";
/// The chain that marks a packet for masquerade on its way out.
pub const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
/// upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// What the rules need to know about this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeContext {
    pub node_name: String,
    /// This node's podCIDR: traffic from it is the node's own pods (kube-proxy's
    /// detect-local mode NodeCIDR); unknown means every ClusterIP connection is masqueraded.
    pub pod_cidr: Option<Cidr>,
}

/// One port of a Service, with what every port shares.
struct PortPlan<'a> {
    ns: &'a str,
    name: &'a str,
    proto: &'static str,
    port: u16,
    node_port: Option<u16>,
    cluster_ip: Ipv4Addr,
    external_ips: &'a [Ipv4Addr],
    affinity_seconds: Option<i32>,
    external_local: bool,
    internal_local: bool,
}

/// The fragment of `svc` given its slices; empty for Services the proxy does not program
/// (headless, ExternalName, no IPv4 ClusterIP).
pub fn fragment<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice> + Clone,
    node: &NodeContext,
) -> Fragment {
    let mut out = Fragment::default();
    let (Some(spec), Some(ns), Some(name)) = (
        svc.spec.as_ref(),
        svc.metadata.namespace.as_deref(),
        svc.metadata.name.as_deref(),
    ) else {
        return out;
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    if svc_type == "ExternalName" {
        return out;
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return out; // headless ("None"), not allocated yet, or IPv6
    };
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if svc_type == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
    }
    external_ips.sort();
    external_ips.dedup();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    for p in spec.ports.iter().flatten() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let proto = match protocol {
            "TCP" => "tcp",
            "UDP" => "udp",
            "SCTP" => "sctp",
            _ => continue,
        };
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let plan = PortPlan {
            ns,
            name,
            proto,
            port,
            node_port: p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0 && svc_type != "ClusterIP"),
            cluster_ip,
            external_ips: &external_ips,
            affinity_seconds,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        };
        let eps = endpoints::collect(slices.clone(), p.name.as_deref().unwrap_or(""), protocol);
        add_port(&mut out, &plan, &eps, node);
    }
    out
}

fn add_port(out: &mut Fragment, p: &PortPlan, all: &[Endpoint], node: &NodeContext) {
    let base = format!("{}/{}/{}/{}", p.ns, p.name, p.proto, p.port);
    let svc_chain = format!("svc-{base}");
    let local_chain = format!("local-{base}");
    let ext_chain = format!("ext-{base}");
    let cluster_eps = endpoints::pick(all, None);
    let local_eps = endpoints::pick(all, Some(&node.node_name));
    let needs_local = p.internal_local || p.external_local;
    let masq_off_node = match node.pod_cidr {
        Some(c) => format!(
            "ip daddr {} {} dport {} ip saddr != {c} jump {MARK_MASQ_CHAIN}",
            p.cluster_ip, p.proto, p.port
        ),
        None => format!(
            "ip daddr {} {} dport {} jump {MARK_MASQ_CHAIN}",
            p.cluster_ip, p.proto, p.port
        ),
    };

    let mut used: BTreeMap<(Ipv4Addr, u16), &Endpoint> = BTreeMap::new();
    if !cluster_eps.is_empty() {
        spread(
            out,
            &mut used,
            &svc_chain,
            &base,
            &masq_off_node,
            &cluster_eps,
            p,
        );
    }
    if needs_local && !local_eps.is_empty() {
        spread(
            out,
            &mut used,
            &local_chain,
            &base,
            &masq_off_node,
            &local_eps,
            p,
        );
    }
    // Endpoint chains exist only for session affinity, which must remember per endpoint
    // who went there: without it a Service is one chain, so the table has about as many
    // chains as Service ports and nft (which reads every chain before each transaction)
    // stays fast at 10,000 endpoints.
    if let Some(t) = p.affinity_seconds {
        for e in used.values() {
            let ep_chain = endpoint_chain(&base, e);
            let set = affinity_set(&ep_chain, t);
            out.sets.insert(
                set.clone(),
                format!("{{ type ipv4_addr; flags dynamic,timeout; timeout {t}s; }}"),
            );
            let rules = vec![
                format!("ip saddr {} jump {MARK_MASQ_CHAIN}", e.ip),
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {} dnat to {}:{}", p.proto, e.ip, e.port),
            ];
            out.chains.insert(ep_chain, rules);
        }
    }

    // The ClusterIP.
    let internal = if p.internal_local {
        (!local_eps.is_empty()).then_some(&local_chain)
    } else {
        (!cluster_eps.is_empty()).then_some(&svc_chain)
    };
    let cip_key = format!("{} . {} . {}", p.cluster_ip, p.proto, p.port);
    match internal {
        Some(chain) => {
            out.elements
                .insert((MapName::ServiceIps, cip_key), format!("goto {chain}"));
        }
        None => {
            out.elements.insert(
                (MapName::NoEndpointServices, cip_key),
                format!("goto {REJECT_CHAIN}"),
            );
        }
    }

    // NodePort, externalIPs and load-balancer IPs.
    let has_external = p.node_port.is_some() || !p.external_ips.is_empty();
    let external_ok = !cluster_eps.is_empty();
    if has_external && external_ok {
        let mut rules = Vec::new();
        if p.external_local {
            // Pods and the node itself may use any endpoint; only traffic from outside keeps
            // its client address and must stay on this node.
            if let Some(c) = node.pod_cidr {
                rules.push(format!("ip saddr {c} goto {svc_chain}"));
            }
            rules.push(format!("fib saddr type local jump {MARK_MASQ_CHAIN}"));
            rules.push(format!("fib saddr type local goto {svc_chain}"));
            if local_eps.is_empty() {
                rules.push("drop".to_string());
            } else {
                rules.push(format!("goto {local_chain}"));
            }
        } else {
            rules.push(format!("jump {MARK_MASQ_CHAIN}"));
            rules.push(format!("goto {svc_chain}"));
        }
        out.chains.insert(ext_chain.clone(), rules);
    }
    let verdict = |ok: bool| {
        if ok {
            format!("goto {ext_chain}")
        } else {
            format!("goto {REJECT_CHAIN}")
        }
    };
    for ip in p.external_ips {
        let key = format!("{ip} . {} . {}", p.proto, p.port);
        let map = if external_ok {
            MapName::ServiceIps
        } else {
            MapName::NoEndpointServices
        };
        out.elements.insert((map, key), verdict(external_ok));
    }
    if let Some(np) = p.node_port {
        let key = format!("{} . {np}", p.proto);
        let map = if external_ok {
            MapName::ServiceNodePorts
        } else {
            MapName::NoEndpointNodePorts
        };
        out.elements.insert((map, key), verdict(external_ok));
    }

    if p.proto == "udp" {
        let mut frontends = vec![Frontend::Ip(p.cluster_ip, p.port)];
        frontends.extend(p.external_ips.iter().map(|ip| Frontend::Ip(*ip, p.port)));
        frontends.extend(p.node_port.map(Frontend::NodePort));
        for f in &frontends {
            if !used.is_empty() {
                out.udp_served.insert(f.clone());
            }
            for e in used.values() {
                out.udp_flows.insert(UdpFlow {
                    frontend: f.clone(),
                    endpoint: e.ip,
                    endpoint_port: e.port,
                });
            }
        }
    }
}

/// Writes `chain`: the masquerade rule for off-node clients of the ClusterIP, then a random
/// pick among `eps`; records the endpoints in `used`.
///
/// Without affinity the pick is a DNAT through a numgen map, and every connection from one of
/// the Service's own endpoints is masqueraded (it may land on itself: hairpin; nft cannot
/// compare the source with the chosen destination). With affinity, known clients go to their
/// endpoint's chain first and new ones through a numgen verdict map to the endpoint chains.
fn spread<'e>(
    out: &mut Fragment,
    used: &mut BTreeMap<(Ipv4Addr, u16), &'e Endpoint>,
    chain: &str,
    base: &str,
    masq_off_node: &str,
    eps: &[&'e Endpoint],
    p: &PortPlan,
) {
    let mut rules = vec![masq_off_node.to_string()];
    for e in eps {
        used.insert((e.ip, e.port), e);
    }
    match p.affinity_seconds {
        None => {
            let mut sources: Vec<String> = eps.iter().map(|e| e.ip.to_string()).collect();
            sources.dedup();
            rules.push(format!(
                "ip saddr {{ {} }} jump {MARK_MASQ_CHAIN}",
                sources.join(", ")
            ));
            if let [e] = eps {
                rules.push(format!(
                    "meta l4proto {} dnat to {}:{}",
                    p.proto, e.ip, e.port
                ));
            } else {
                let arms: Vec<String> = eps
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port))
                    .collect();
                rules.push(format!(
                    "meta l4proto {} dnat ip to numgen random mod {} map {{ {} }}",
                    p.proto,
                    eps.len(),
                    arms.join(", ")
                ));
            }
        }
        Some(t) => {
            let targets: Vec<String> = eps.iter().map(|e| endpoint_chain(base, e)).collect();
            for ep_chain in &targets {
                rules.push(format!(
                    "ip saddr @{} goto {ep_chain}",
                    affinity_set(ep_chain, t)
                ));
            }
            let arms: Vec<String> = targets
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{i} : goto {t}"))
                .collect();
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                targets.len(),
                arms.join(", ")
            ));
        }
    }
    out.chains.insert(chain.to_string(), rules);
}

fn endpoint_chain(base: &str, e: &Endpoint) -> String {
    format!("ep-{base}__{}/{}", e.ip, e.port)
}

/// The affinity set of an endpoint chain (`ep-…` → `aff<seconds>-…`). The timeout is part of
/// the name: a new timeout is a new set, so the rules naming it change with it and the old
/// set can be deleted after them in the same transaction.
fn affinity_set(ep_chain: &str, seconds: i32) -> String {
    format!("aff{seconds}-{}", ep_chain.trim_start_matches("ep-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec,
        ServiceStatus, SessionAffinityConfig,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint as Ep, EndpointConditions, EndpointPort};

    fn svc(type_: &str, ports: Vec<ServicePort>) -> Service {
        let mut s = Service::default();
        s.metadata.namespace = Some("default".into());
        s.metadata.name = Some("web".into());
        s.spec = Some(ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: Some("10.43.0.5".into()),
            ports: Some(ports),
            ..Default::default()
        });
        s
    }

    fn port(name: Option<&str>, proto: &str, port: i32, node_port: Option<i32>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            protocol: Some(proto.into()),
            port,
            node_port,
            ..Default::default()
        }
    }

    fn slice(ips: &[(&str, bool, &str)], proto: &str, port: i32) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: ips
                .iter()
                .map(|(ip, ready, node)| Ep {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*ready),
                        terminating: Some(false),
                    }),
                    node_name: Some(node.to_string()),
                    ..Default::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                port: Some(port),
                protocol: Some(proto.into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn node() -> NodeContext {
        NodeContext {
            node_name: "a".into(),
            pod_cidr: Cidr::parse("10.42.0.0/24").ok(),
        }
    }

    #[test]
    fn a_cluster_ip_spreads_randomly_over_ready_endpoints() {
        let s = svc("ClusterIP", vec![port(None, "TCP", 80, None)]);
        let sl = slice(
            &[
                ("10.42.0.2", true, "a"),
                ("10.42.0.3", true, "a"),
                ("10.42.0.4", false, "a"),
            ],
            "TCP",
            8080,
        );
        let f = fragment(&s, [&sl], &node());
        assert_eq!(
            f.elements
                .get(&(MapName::ServiceIps, "10.43.0.5 . tcp . 80".into())),
            Some(&"goto svc-default/web/tcp/80".to_string())
        );
        assert_eq!(
            f.chains["svc-default/web/tcp/80"],
            vec![
                "ip daddr 10.43.0.5 tcp dport 80 ip saddr != 10.42.0.0/24 jump mark-for-masquerade",
                "ip saddr { 10.42.0.2, 10.42.0.3 } jump mark-for-masquerade",
                "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.42.0.2 . 8080, 1 : 10.42.0.3 . 8080 }",
            ]
        );
        assert_eq!(f.chains.len(), 1, "no endpoint chains without affinity");
        assert!(f.sets.is_empty());
    }

    #[test]
    fn a_service_without_endpoints_rejects_on_every_frontend() {
        let mut s = svc("NodePort", vec![port(None, "TCP", 80, Some(30080))]);
        if let Some(spec) = s.spec.as_mut() {
            spec.external_ips = Some(vec!["192.0.2.7".into()]);
        }
        let f = fragment(&s, [], &node());
        assert!(f.chains.is_empty());
        let keys: Vec<_> = f.elements.keys().cloned().collect();
        assert_eq!(
            keys,
            vec![
                (
                    MapName::NoEndpointServices,
                    "10.43.0.5 . tcp . 80".to_string()
                ),
                (
                    MapName::NoEndpointServices,
                    "192.0.2.7 . tcp . 80".to_string()
                ),
                (MapName::NoEndpointNodePorts, "tcp . 30080".to_string()),
            ]
        );
        assert!(f.elements.values().all(|v| v == "goto reject-chain"));
    }

    #[test]
    fn node_ports_masquerade_and_go_to_the_service_chain() {
        let s = svc("NodePort", vec![port(None, "TCP", 80, Some(30080))]);
        let sl = slice(&[("10.42.0.2", true, "a")], "TCP", 80);
        let f = fragment(&s, [&sl], &node());
        assert_eq!(
            f.elements
                .get(&(MapName::ServiceNodePorts, "tcp . 30080".into())),
            Some(&"goto ext-default/web/tcp/80".to_string())
        );
        assert_eq!(
            f.chains["ext-default/web/tcp/80"],
            vec![
                "jump mark-for-masquerade".to_string(),
                "goto svc-default/web/tcp/80".to_string()
            ]
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_outside_traffic_on_local_endpoints() {
        let mut s = svc("LoadBalancer", vec![port(None, "TCP", 80, Some(30080))]);
        if let Some(spec) = s.spec.as_mut() {
            spec.external_traffic_policy = Some("Local".into());
        }
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some("192.0.2.9".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        let sl = slice(
            &[("10.42.0.2", true, "a"), ("10.42.1.2", true, "b")],
            "TCP",
            80,
        );
        let f = fragment(&s, [&sl], &node());
        let ext = &f.chains["ext-default/web/tcp/80"];
        assert_eq!(ext[0], "ip saddr 10.42.0.0/24 goto svc-default/web/tcp/80");
        assert_eq!(
            ext.last().map(String::as_str),
            Some("goto local-default/web/tcp/80")
        );
        assert_eq!(
            f.chains["local-default/web/tcp/80"][2],
            "meta l4proto tcp dnat to 10.42.0.2:80"
        );
        assert!(f
            .elements
            .contains_key(&(MapName::ServiceIps, "192.0.2.9 . tcp . 80".into())));
        // No local endpoint: outside traffic is dropped, the ClusterIP still works.
        let other = NodeContext {
            node_name: "c".into(),
            ..node()
        };
        let f = fragment(&s, [&sl], &other);
        assert_eq!(
            f.chains["ext-default/web/tcp/80"]
                .last()
                .map(String::as_str),
            Some("drop")
        );
        assert!(f
            .elements
            .contains_key(&(MapName::ServiceIps, "10.43.0.5 . tcp . 80".into())));
    }

    #[test]
    fn internal_traffic_policy_local_rejects_when_this_node_has_no_endpoint() {
        let mut s = svc("ClusterIP", vec![port(None, "TCP", 80, None)]);
        if let Some(spec) = s.spec.as_mut() {
            spec.internal_traffic_policy = Some("Local".into());
        }
        let sl = slice(&[("10.42.1.2", true, "b")], "TCP", 80);
        let f = fragment(&s, [&sl], &node());
        assert!(f
            .elements
            .contains_key(&(MapName::NoEndpointServices, "10.43.0.5 . tcp . 80".into())));
        let f = fragment(
            &s,
            [&sl],
            &NodeContext {
                node_name: "b".into(),
                ..node()
            },
        );
        assert_eq!(
            f.elements
                .get(&(MapName::ServiceIps, "10.43.0.5 . tcp . 80".into())),
            Some(&"goto local-default/web/tcp/80".to_string())
        );
    }

    #[test]
    fn client_ip_affinity_uses_a_timed_set_per_endpoint() {
        let mut s = svc("ClusterIP", vec![port(None, "TCP", 80, None)]);
        if let Some(spec) = s.spec.as_mut() {
            spec.session_affinity = Some("ClientIP".into());
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(60),
                }),
            });
        }
        let sl = slice(&[("10.42.0.2", true, "a")], "TCP", 80);
        let f = fragment(&s, [&sl], &node());
        let set = "aff60-default/web/tcp/80__10.42.0.2/80";
        assert_eq!(
            f.sets[set],
            "{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }"
        );
        assert_eq!(
            f.chains["svc-default/web/tcp/80"][1],
            format!("ip saddr @{set} goto ep-default/web/tcp/80__10.42.0.2/80")
        );
        assert_eq!(
            f.chains["ep-default/web/tcp/80__10.42.0.2/80"][1],
            format!("update @{set} {{ ip saddr }}")
        );
    }

    #[test]
    fn udp_ports_record_their_flows_and_named_target_ports_map_per_port() {
        let s = svc(
            "ClusterIP",
            vec![
                port(Some("dns"), "UDP", 53, None),
                port(Some("dns-tcp"), "TCP", 53, None),
            ],
        );
        let mut sl = slice(&[("10.42.0.9", true, "a")], "UDP", 5353);
        sl.ports = Some(vec![
            EndpointPort {
                name: Some("dns".into()),
                port: Some(5353),
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            EndpointPort {
                name: Some("dns-tcp".into()),
                port: Some(5354),
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]);
        let f = fragment(&s, [&sl], &node());
        assert!(f.chains["svc-default/web/udp/53"]
            .contains(&"meta l4proto udp dnat to 10.42.0.9:5353".to_string()));
        assert!(f.chains["svc-default/web/tcp/53"]
            .contains(&"meta l4proto tcp dnat to 10.42.0.9:5354".to_string()));
        assert_eq!(f.udp_flows.len(), 1);
        assert!(f.udp_served.contains(&Frontend::Ip(
            "10.43.0.5".parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            53
        )));
    }

    #[test]
    fn headless_and_external_name_services_are_not_programmed() {
        let mut s = svc("ClusterIP", vec![port(None, "TCP", 80, None)]);
        if let Some(spec) = s.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        assert!(fragment(&s, [], &node()).is_empty());
        let s = svc("ExternalName", vec![]);
        assert!(fragment(&s, [], &node()).is_empty());
    }
}
