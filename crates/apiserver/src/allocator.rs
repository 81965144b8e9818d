//! ClusterIP and NodePort allocation for Services: pick free values, honour requested ones,
//! refuse duplicates, free them on delete. The state is in memory, rebuilt from the stored
//! Services at start; this API server is the only writer, so that is enough for one server.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};

use capstan_api::field_error::FieldError;

/// The service CIDR and NodePort range.
#[derive(Clone, Debug)]
pub struct AllocatorConfig {
    pub service_cidr: (Ipv4Addr, u8),
    pub node_ports: (u16, u16),
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            node_ports: (30000, 32767),
        }
    }
}

impl AllocatorConfig {
    pub fn cidr_string(&self) -> String {
        format!("{}/{}", self.service_cidr.0, self.service_cidr.1)
    }

    /// The nth address of the service CIDR (1 is the `kubernetes` Service, 10 cluster DNS).
    pub fn service_ip(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.0) + n)
    }

    fn range(&self) -> (u32, u32) {
        let base = u32::from(self.service_cidr.0);
        let size = 1u32 << (32 - u32::from(self.service_cidr.1));
        // Network and broadcast addresses are never handed out.
        (base + 1, base + size - 2)
    }
}

#[derive(Default)]
struct State {
    ips: HashSet<u32>,
    ports: HashSet<u16>,
}

pub struct ServiceAllocator {
    config: AllocatorConfig,
    state: Mutex<State>,
}

/// What one allocation took, so a failed write can give it back.
#[derive(Debug, Default, Clone)]
pub struct Taken {
    ips: Vec<u32>,
    ports: Vec<u16>,
}

fn service_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

impl ServiceAllocator {
    pub fn new(config: AllocatorConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    /// Marks the values of an existing Service as used (at start-up).
    pub fn restore(&self, svc: &Value) {
        let mut st = self.state.lock();
        for ip in cluster_ips(svc) {
            if let Ok(a) = ip.parse::<Ipv4Addr>() {
                st.ips.insert(u32::from(a));
            }
        }
        for p in node_ports(svc) {
            st.ports.insert(p);
        }
    }

    /// Frees what a Service holds.
    pub fn release(&self, svc: &Value) {
        let taken = Taken {
            ips: cluster_ips(svc)
                .iter()
                .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
                .map(u32::from)
                .collect(),
            ports: node_ports(svc),
        };
        self.give_back(&taken);
    }

    pub fn give_back(&self, taken: &Taken) {
        let mut st = self.state.lock();
        for ip in &taken.ips {
            st.ips.remove(ip);
        }
        for p in &taken.ports {
            st.ports.remove(p);
        }
    }

    /// Allocates for a new Service (or the parts an update newly needs, given the old one):
    /// fills spec.clusterIP(s) and nodePorts. Errors are field errors for a 422.
    pub fn allocate(&self, svc: &mut Value, old: Option<&Value>) -> Result<Taken, Vec<FieldError>> {
        let mut st = self.state.lock();
        let mut taken = Taken::default();
        let mut errs = Vec::new();
        let (lo, hi) = self.config.range();

        if service_type(svc) != "ExternalName" {
            let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
            let old_ip = old
                .and_then(|o| o["spec"]["clusterIP"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            if requested.is_empty() {
                if let Some(ip) = old_ip {
                    // An update that left clusterIP out keeps the allocated one, as upstream.
                    set_cluster_ip(svc, &ip);
                } else {
                    match self.pick_ip(&st, lo, hi) {
                        Some(ip) => {
                            st.ips.insert(ip);
                            taken.ips.push(ip);
                            set_cluster_ip(svc, &Ipv4Addr::from(ip).to_string());
                        }
                        None => errs.push(FieldError::invalid(
                            "spec.clusterIPs",
                            json!([]),
                            "failed to allocate a serviceIP: range is full",
                        )),
                    }
                }
            } else if requested == "None" {
                set_cluster_ip(svc, "None");
            } else if old_ip.as_deref() == Some(requested.as_str()) {
                set_cluster_ip(svc, &requested);
            } else {
                match requested.parse::<Ipv4Addr>() {
                    Ok(a) => {
                        let n = u32::from(a);
                        if n < lo || n > hi {
                            errs.push(FieldError::invalid(
                                "spec.clusterIPs",
                                json!([requested]),
                                format!(
                                    "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                                    self.config.cidr_string()
                                ),
                            ));
                        } else if st.ips.contains(&n) {
                            errs.push(FieldError::invalid(
                                "spec.clusterIPs",
                                json!([requested]),
                                format!("failed to allocate IP {requested}: provided IP is already allocated"),
                            ));
                        } else {
                            st.ips.insert(n);
                            taken.ips.push(n);
                            set_cluster_ip(svc, &requested);
                        }
                    }
                    Err(_) => errs.push(FieldError::invalid(
                        "spec.clusterIPs[0]",
                        requested.clone(),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )),
                }
            }
        }

        if wants_node_ports(svc) {
            let old_ports: Vec<(i64, String, u16)> = old.map(port_entries).unwrap_or_default();
            let (plo, phi) = self.config.node_ports;
            if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
                for (i, p) in ports.iter_mut().enumerate() {
                    let path = format!("spec.ports[{i}].nodePort");
                    match p["nodePort"].as_i64().filter(|n| *n != 0) {
                        Some(n) => {
                            let kept = old_ports.iter().any(|(_, _, op)| i64::from(*op) == n);
                            if kept {
                                continue;
                            }
                            if n < i64::from(plo) || n > i64::from(phi) {
                                errs.push(FieldError::invalid(
                                    path,
                                    n,
                                    format!("provided port is not in the valid range. The range of valid ports is {plo}-{phi}"),
                                ));
                            } else if st.ports.contains(&(n as u16))
                                || taken.ports.contains(&(n as u16))
                            {
                                errs.push(FieldError::invalid(
                                    path,
                                    n,
                                    "provided port is already allocated",
                                ));
                            } else {
                                st.ports.insert(n as u16);
                                taken.ports.push(n as u16);
                            }
                        }
                        None => {
                            let port = p["port"].as_i64().unwrap_or(0);
                            let proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
                            let reuse = old_ports
                                .iter()
                                .find(|(op, opr, _)| *op == port && *opr == proto)
                                .map(|(_, _, n)| *n);
                            let chosen = reuse.or_else(|| {
                                let n = pick_port(&st, plo, phi)?;
                                st.ports.insert(n);
                                taken.ports.push(n);
                                Some(n)
                            });
                            match chosen {
                                Some(n) => p["nodePort"] = json!(n),
                                None => errs.push(FieldError::invalid(path, 0, "range is full")),
                            }
                        }
                    }
                }
            }
        }
        if !errs.is_empty() {
            drop(st);
            self.give_back(&taken);
            return Err(errs);
        }
        Ok(taken)
    }

    fn pick_ip(&self, st: &State, lo: u32, hi: u32) -> Option<u32> {
        // Dynamic allocations come from above a low band kept for chosen addresses (the
        // kubernetes Service at .1, cluster DNS at .10), as upstream does.
        let size = hi - lo + 1;
        let band = (size / 16).clamp(16, 256).min(size / 2);
        let dyn_lo = lo + band;
        let mut rng = rand::rng();
        for _ in 0..64 {
            let n = rng.random_range(dyn_lo..=hi);
            if !st.ips.contains(&n) {
                return Some(n);
            }
        }
        (dyn_lo..=hi)
            .chain(lo..dyn_lo)
            .find(|n| !st.ips.contains(n))
    }
}

fn pick_port(st: &State, lo: u16, hi: u16) -> Option<u16> {
    let mut rng = rand::rng();
    for _ in 0..64 {
        let n = rng.random_range(lo..=hi);
        if !st.ports.contains(&n) {
            return Some(n);
        }
    }
    (lo..=hi).find(|n| !st.ports.contains(n))
}

fn set_cluster_ip(svc: &mut Value, ip: &str) {
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    let mut out: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
        if !out.iter().any(|o| o == ip) {
            out.push(ip.to_string());
        }
    }
    out.retain(|ip| !ip.is_empty() && ip != "None");
    out
}

fn node_ports(svc: &Value) -> Vec<u16> {
    port_entries(svc).into_iter().map(|(_, _, n)| n).collect()
}

/// (port, protocol, nodePort) of each port that has a nodePort.
fn port_entries(svc: &Value) -> Vec<(i64, String, u16)> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    let n = u16::try_from(p["nodePort"].as_i64()?).ok()?;
                    Some((
                        p["port"].as_i64().unwrap_or(0),
                        p["protocol"].as_str().unwrap_or("TCP").to_string(),
                        n,
                    ))
                })
                .filter(|(_, _, n)| *n != 0)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(t: &str, ip: &str, node_port: Option<u16>) -> Value {
        let mut p = json!({"port": 80, "protocol": "TCP"});
        if let Some(n) = node_port {
            p["nodePort"] = json!(n);
        }
        json!({"spec": {"type": t, "clusterIP": ip, "ports": [p]}})
    }

    #[test]
    fn a_new_service_gets_a_free_ip_from_the_range() {
        let a = ServiceAllocator::new(AllocatorConfig::default());
        let mut s = svc("ClusterIP", "", None);
        a.allocate(&mut s, None).expect("allocates");
        let ip: Ipv4Addr = s["spec"]["clusterIP"]
            .as_str()
            .expect("ip")
            .parse()
            .expect("parses");
        assert_eq!(ip.octets()[..2], [10, 43]);
        assert_eq!(s["spec"]["clusterIPs"][0], s["spec"]["clusterIP"]);
    }

    #[test]
    fn a_requested_ip_in_use_is_refused_until_released() {
        let a = ServiceAllocator::new(AllocatorConfig::default());
        let mut first = svc("ClusterIP", "10.43.0.50", None);
        a.allocate(&mut first, None).expect("first");
        let mut second = svc("ClusterIP", "10.43.0.50", None);
        let errs = a.allocate(&mut second, None).expect_err("duplicate");
        assert!(
            errs[0]
                .to_string()
                .contains("provided IP is already allocated"),
            "{}",
            errs[0]
        );
        a.release(&first);
        a.allocate(&mut second, None).expect("free again");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let a = ServiceAllocator::new(AllocatorConfig::default());
        let errs = a
            .allocate(&mut svc("ClusterIP", "10.44.0.1", None), None)
            .expect_err("range");
        assert!(errs[0].to_string().contains("not in the valid range"));
        let errs = a
            .allocate(&mut svc("NodePort", "", Some(80)), None)
            .expect_err("port range");
        assert_eq!(
            errs[0].to_string(),
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }

    #[test]
    fn node_ports_are_assigned_and_kept_on_update() {
        let a = ServiceAllocator::new(AllocatorConfig::default());
        let mut s = svc("NodePort", "", None);
        a.allocate(&mut s, None).expect("allocates");
        let n = s["spec"]["ports"][0]["nodePort"].as_u64().expect("port");
        assert!((30000..=32767).contains(&n));
        let mut updated = svc("NodePort", "", None);
        a.allocate(&mut updated, Some(&s)).expect("update");
        assert_eq!(updated["spec"]["ports"][0]["nodePort"].as_u64(), Some(n));
        assert_eq!(updated["spec"]["clusterIP"], s["spec"]["clusterIP"]);
        let mut dup = svc("NodePort", "", Some(n as u16));
        assert!(a.allocate(&mut dup, None).is_err());
    }

    #[test]
    fn headless_and_external_name_services_take_nothing() {
        let a = ServiceAllocator::new(AllocatorConfig::default());
        let mut h = svc("ClusterIP", "None", None);
        let t = a.allocate(&mut h, None).expect("ok");
        assert!(t.ips.is_empty());
        let mut e = json!({"spec": {"type": "ExternalName", "externalName": "x.example.com"}});
        a.allocate(&mut e, None).expect("ok");
        assert!(e["spec"].get("clusterIP").is_none());
    }
}
