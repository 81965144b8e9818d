//! Endpoints: port protocol defaults, ValidateEndpoints (addresses are real, non-special IPs),
//! and the ENDPOINTS column ("10.42.0.5:80,10.42.0.6:80 + 1 more...").

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use serde_json::{json, Value};

use super::checks;
use super::{age_cell, s};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

fn validate_address(a: &EndpointAddress, path: &Path, errs: &mut ErrorList) {
    let ip_path = path.child("ip");
    checks::valid_ip(&a.ip, &ip_path, errs);
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        checks::dns_label(h, &path.child("hostname"), errs);
    }
    if let Some(n) = &a.node_name {
        checks::dns_subdomain(n, &path.child("nodeName"), errs);
    }
    checks::non_special_ip(&a.ip, &ip_path, errs);
}

/// Upstream's formatEndpoints: up to three `ip:port` entries, then "+ N more...".
fn format_endpoints(ep: &Endpoints) -> String {
    let subsets = ep.subsets.clone().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in &subsets {
        let addresses = ss.addresses.clone().unwrap_or_default();
        let ports = ss.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            count += addresses.len();
            for a in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for port in &ports {
            count += addresses.len();
            for a in &addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let host = if a.ip.contains(':') {
                    format!("[{}]", a.ip)
                } else {
                    a.ip.clone()
                };
                list.push(format!("{host}:{}", port.port));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

static COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    Column::age(),
];

impl KindHooks for Endpoints {
    fn defaults(&mut self) {
        for ss in self.subsets.iter_mut().flatten() {
            for p in ss.ports.iter_mut().flatten() {
                if s(&p.protocol).is_empty() {
                    p.protocol = Some("TCP".to_string());
                }
            }
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let path = Path::new("subsets");
        for (i, ss) in self.subsets.iter().flatten().enumerate() {
            let p = path.index(i);
            let addresses = ss.addresses.clone().unwrap_or_default();
            let not_ready = ss.not_ready_addresses.clone().unwrap_or_default();
            if addresses.is_empty() && not_ready.is_empty() {
                errs.push(FieldError::required(
                    &p,
                    "must specify `addresses` or `notReadyAddresses`",
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                validate_address(a, &p.child("addresses").index(j), errs);
            }
            for (j, a) in not_ready.iter().enumerate() {
                validate_address(a, &p.child("notReadyAddresses").index(j), errs);
            }
            let ports = ss.ports.clone().unwrap_or_default();
            for (j, port) in ports.iter().enumerate() {
                let pp = p.child("ports").index(j);
                let name = s(&port.name);
                if ports.len() > 1 && name.is_empty() {
                    errs.push(FieldError::required(pp.child("name"), ""));
                } else if !name.is_empty() {
                    checks::dns_label(name, &pp.child("name"), errs);
                }
                for m in checks::port_num(i64::from(port.port)) {
                    errs.push(FieldError::invalid(pp.child("port"), port.port, m));
                }
                match s(&port.protocol) {
                    "" => errs.push(FieldError::required(pp.child("protocol"), "")),
                    "TCP" | "UDP" | "SCTP" => {}
                    other => errs.push(FieldError::not_supported(
                        pp.child("protocol"),
                        other,
                        &["SCTP", "TCP", "UDP"],
                    )),
                }
                if let Some(ap) = &port.app_protocol {
                    checks::qualified(ap, &pp.child("appProtocol"), errs);
                }
            }
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(format_endpoints(self)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(v: Value) -> Endpoints {
        serde_json::from_value(v).expect("endpoints")
    }

    #[test]
    fn endpoints_print_three_then_a_count() {
        let e = ep(
            json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [
            {"ip": "10.42.0.1"}, {"ip": "10.42.0.2"}, {"ip": "10.42.0.3"}, {"ip": "10.42.0.4"}], "ports": [{"port": 80}]}]}),
        );
        assert_eq!(
            format_endpoints(&e),
            "10.42.0.1:80,10.42.0.2:80,10.42.0.3:80 + 1 more..."
        );
        assert_eq!(
            format_endpoints(&ep(json!({"metadata": {"name": "x"}}))),
            "<none>"
        );
        let headless = ep(
            json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.42.0.1"}]}]}),
        );
        assert_eq!(format_endpoints(&headless), "10.42.0.1");
    }

    #[test]
    fn addresses_must_be_usable_ips() {
        let mut e = ep(
            json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "pod-a"}, {"ip": "127.0.0.1"}], "ports": [{"port": 80}]}]}),
        );
        e.defaults();
        let mut errs = Vec::new();
        e.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "subsets[0].addresses[0].ip: Invalid value: \"pod-a\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "subsets[0].addresses[0].ip: Invalid value: \"pod-a\": must be a valid IP address",
                "subsets[0].addresses[1].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            ]
        );
        assert_eq!(
            serde_json::to_value(&e.subsets).expect("json")[0]["ports"][0]["protocol"],
            "TCP"
        );
    }
}
