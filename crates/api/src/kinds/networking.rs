//! networking.k8s.io/v1 kinds (Ingress, IngressClass, NetworkPolicy) and discovery.k8s.io/v1
//! EndpointSlice, with upstream's defaults, strategies, validation
//! (pkg/apis/networking/validation, pkg/apis/discovery/validation) and printers.

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::*;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::apps::selector::{format_label_selector, validate_label_selector};
use super::apps::{age_cell, name_cell, validate_domain_prefixed_path};
use crate::field_error::{ErrorList, FieldError, FieldErrorType, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{
    dns1035_label, dns1123_label, dns1123_subdomain, immutable_field, path_segment_name,
    qualified_name, validate_labels, DNS1123_SUBDOMAIN_MAX,
};

const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const MAX_INGRESS_CLASS_CONTROLLER: usize = 250;
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

// ---------------------------------------------------------------------------------------------
// Shared value checks

/// An IP address as Go's `ParseIPSloppy` reads it (IPv4 octets may have leading zeros).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut out = [0u8; 4];
    for (o, text) in out.iter_mut().zip(&octets) {
        if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = text.parse().ok()?;
    }
    Some(IpAddr::from(out))
}

/// A CIDR as `ParseCIDRSloppy` reads it: the address and the prefix length.
pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip = parse_ip(ip)?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn masked(ip: IpAddr, bits: u8) -> u128 {
    let (v, width) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let host_bits = u32::from(width - bits);
    if host_bits >= 128 {
        0
    } else {
        (v >> host_bits) << host_bits
    }
}

/// Upstream's `IsValidPortNum`.
fn port_num(p: i32) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".to_string()]
    }
}

/// Upstream's `IsValidPortName` (an IANA service name).
fn port_name(p: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if p.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if p.is_empty()
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !p.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if p.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if p.starts_with('-') || p.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Upstream's `IsWildcardDNS1123Subdomain`.
fn wildcard_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = s
        .strip_prefix("*.")
        .is_some_and(|rest| dns1123_subdomain(rest).is_empty());
    if !ok {
        errs.push("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    FieldError::new(
        FieldErrorType::TooMany,
        path,
        Some(json!(actual)),
        format!("must have at most {max} items"),
    )
}

// ---------------------------------------------------------------------------------------------
// Ingress

const INGRESS_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    Column::new(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    Column::new(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    Column::new("Ports", "string", "Ports of TLS configurations that open"),
    Column::age(),
];

fn validate_typed_local_ref(
    api_group: Option<&str>,
    kind: &str,
    name: &str,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(g) = api_group {
        for msg in dns1123_subdomain(g) {
            errs.push(FieldError::invalid(path.child("apiGroup"), g, msg));
        }
    }
    for (field, v, required) in [
        ("kind", kind, "kind is required"),
        ("name", name, "name is required"),
    ] {
        if v.is_empty() {
            errs.push(FieldError::required(path.child(field), required));
        } else {
            for msg in path_segment_name(v) {
                errs.push(FieldError::invalid(path.child(field), v, msg));
            }
        }
    }
}

fn validate_backend(b: &IngressBackend, path: &Path, errs: &mut ErrorList) {
    match (&b.resource, &b.service) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => validate_typed_local_ref(
            r.api_group.as_deref(),
            &r.kind,
            &r.name,
            &path.child("resource"),
            errs,
        ),
        (None, Some(s)) => {
            let np = path.child("service").child("name");
            if s.name.is_empty() {
                errs.push(FieldError::required(np, ""));
            } else {
                for msg in dns1035_label(&s.name) {
                    errs.push(FieldError::invalid(&np, s.name.as_str(), msg));
                }
            }
            let port = s.port.clone().unwrap_or_default();
            let name = port.name.unwrap_or_default();
            let number = port.number.unwrap_or(0);
            let pp = path.child("service").child("port");
            if !name.is_empty() && number != 0 {
                errs.push(FieldError::invalid(
                    path,
                    "",
                    "cannot set both port name & port number",
                ));
            } else if !name.is_empty() {
                for msg in port_name(&name) {
                    errs.push(FieldError::invalid(pp.child("name"), name.as_str(), msg));
                }
            } else if number != 0 {
                for msg in port_num(number) {
                    errs.push(FieldError::invalid(pp.child("number"), number, msg));
                }
            } else {
                errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                ));
            }
        }
        (None, None) => errs.push(FieldError::invalid(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

fn validate_http_path(p: &HTTPIngressPath, path: &Path, errs: &mut ErrorList) {
    if p.path_type.is_empty() {
        errs.push(FieldError::required(
            path.child("pathType"),
            "pathType must be specified",
        ));
        return;
    }
    let value = p.path.as_deref().unwrap_or("");
    let pp = path.child("path");
    match p.path_type.as_str() {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(&pp, value, "must be an absolute path"));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES {
                    if value.contains(seq) {
                        errs.push(FieldError::invalid(
                            &pp,
                            value,
                            format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if value.ends_with(suffix) {
                        errs.push(FieldError::invalid(
                            &pp,
                            value,
                            format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(&pp, value, "must be an absolute path"));
            }
        }
        other => errs.push(FieldError::not_supported(
            path.child("pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    validate_backend(&p.backend, &path.child("backend"), errs);
}

fn validate_ingress_spec(spec: &IngressSpec, errs: &mut ErrorList) {
    let path = Path::new("spec");
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid(
            &path,
            serde_json::to_value(&spec.rules).unwrap_or(Value::Null),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = &spec.default_backend {
        validate_backend(b, &path.child("defaultBackend"), errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = path.child("rules").index(i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let hp = rp.child("host");
            if parse_ip(host).is_some() {
                errs.push(FieldError::invalid(
                    &hp,
                    host,
                    "must be a DNS name, not an IP address",
                ));
            }
            let msgs = if host.contains('*') {
                wildcard_dns1123_subdomain(host)
            } else {
                dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(FieldError::invalid(&hp, host, msg));
            }
        }
        if let Some(http) = &rule.http {
            let hp = rp.child("http");
            if http.paths.is_empty() {
                errs.push(FieldError::required(hp.child("paths"), ""));
            }
            for (j, p) in http.paths.iter().enumerate() {
                validate_http_path(p, &hp.child("paths").index(j), errs);
            }
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let tp = path.child("tls").index(i);
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            let msgs = if host.contains('*') {
                wildcard_dns1123_subdomain(host)
            } else {
                dns1123_subdomain(host)
            };
            for msg in msgs {
                errs.push(FieldError::invalid(
                    tp.child("hosts").index(j),
                    host.as_str(),
                    msg,
                ));
            }
        }
        if let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
            for msg in dns1123_subdomain(secret) {
                errs.push(FieldError::invalid(tp.child("secretName"), secret, msg));
            }
        }
    }
    if let Some(class) = &spec.ingress_class_name {
        for msg in dns1123_subdomain(class) {
            errs.push(FieldError::invalid(
                path.child("ingressClassName"),
                class.as_str(),
                msg,
            ));
        }
    }
}

/// Upstream's `formatHosts`: the first three hosts, `*` when none.
fn format_hosts(rules: &[IngressRule]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        if let Some(h) = rule.host.as_deref().filter(|h| !more && !h.is_empty()) {
            list.push(h);
        }
    }
    if list.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", list.join(","), rules.len() - MAX)
    } else {
        list.join(",")
    }
}

impl KindHooks for Ingress {
    fn prepare_for_create(&mut self) {
        self.status = Some(IngressStatus {
            load_balancer: Some(Default::default()),
        });
    }

    fn prepare_for_update(&mut self, _old: &Self) {
        self.status
            .get_or_insert_with(Default::default)
            .load_balancer
            .get_or_insert_with(Default::default);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = IngressSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        validate_ingress_spec(spec, errs);
        let annotation = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION));
        if let (Some(a), Some(class)) = (annotation, &spec.ingress_class_name) {
            if a != class {
                errs.push(FieldError::invalid(
                    Path::new("annotations").child(INGRESS_CLASS_ANNOTATION),
                    a.as_str(),
                    "must match `ingressClassName` when both are specified",
                ));
            }
        }
    }

    fn columns() -> &'static [Column] {
        INGRESS_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = IngressSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let mut addresses: Vec<String> = Vec::new();
        let lbs = self
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref());
        for lb in lbs.into_iter().flatten() {
            let a = lb
                .ip
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| lb.hostname.clone().filter(|s| !s.is_empty()));
            if let Some(a) = a.filter(|a| !addresses.contains(a)) {
                addresses.push(a);
            }
        }
        let ports = if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
            "80, 443"
        } else {
            "80"
        };
        vec![
            name_cell(&self.metadata),
            json!(spec
                .ingress_class_name
                .clone()
                .unwrap_or_else(|| "<none>".to_string())),
            json!(format_hosts(spec.rules.as_deref().unwrap_or(&[]))),
            json!(addresses.join(",")),
            json!(ports),
            age_cell(&self.metadata, ctx),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// IngressClass

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    Column::new(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    Column::age(),
];

impl KindHooks for IngressClass {
    fn defaults(&mut self) {
        if let Some(p) = self.spec.as_mut().and_then(|s| s.parameters.as_mut()) {
            p.scope.get_or_insert_with(|| "Cluster".into());
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = IngressClassSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        let controller = spec.controller.as_deref().unwrap_or("");
        if controller.len() > MAX_INGRESS_CLASS_CONTROLLER {
            errs.push(FieldError::too_long(
                path.child("controller"),
                MAX_INGRESS_CLASS_CONTROLLER,
            ));
        }
        validate_domain_prefixed_path(controller, &path.child("controller"), errs);
        if let Some(p) = &spec.parameters {
            let pp = path.child("parameters");
            validate_typed_local_ref(p.api_group.as_deref(), &p.kind, &p.name, &pp, errs);
            match p.scope.as_deref() {
                None => errs.push(FieldError::required(pp.child("scope"), "")),
                Some("Namespace") => match &p.namespace {
                    None => errs.push(FieldError::required(
                        pp.child("namespace"),
                        "`parameters.scope` is set to 'Namespace'",
                    )),
                    Some(ns) => {
                        for msg in dns1123_label(ns) {
                            errs.push(FieldError::invalid(pp.child("namespace"), ns.as_str(), msg));
                        }
                    }
                },
                Some("Cluster") => {
                    if p.namespace.is_some() {
                        errs.push(FieldError::forbidden(
                            pp.child("namespace"),
                            "`parameters.scope` is set to 'Cluster'",
                        ));
                    }
                }
                Some(other) => errs.push(FieldError::not_supported(
                    pp.child("scope"),
                    other,
                    &["Cluster", "Namespace"],
                )),
            }
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_c = self.spec.as_ref().and_then(|s| s.controller.clone());
        let old_c = old.spec.as_ref().and_then(|s| s.controller.clone());
        immutable_field(
            &new_c.unwrap_or_default(),
            &old_c.unwrap_or_default(),
            "spec.controller",
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        INGRESS_CLASS_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = IngressClassSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let params = spec.parameters.as_ref().map_or_else(
            || "<none>".to_string(),
            |p| match &p.api_group {
                Some(g) => format!("{}.{g}/{}", p.kind, p.name),
                None => format!("{}/{}", p.kind, p.name),
            },
        );
        vec![
            name_cell(&self.metadata),
            json!(spec.controller.clone().unwrap_or_default()),
            json!(params),
            age_cell(&self.metadata, ctx),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// NetworkPolicy

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace."),
    Column::age(),
];

fn validate_policy_port(port: &NetworkPolicyPort, path: &Path, errs: &mut ErrorList) {
    if let Some(p) = port.protocol.as_deref() {
        if !["TCP", "UDP", "SCTP"].contains(&p) {
            errs.push(FieldError::not_supported(
                path.child("protocol"),
                p,
                &["TCP", "UDP", "SCTP"],
            ));
        }
    }
    match &port.port {
        Some(IntOrString::Int(n)) => {
            for msg in port_num(*n) {
                errs.push(FieldError::invalid(path.child("port"), *n, msg));
            }
            if let Some(end) = port.end_port {
                if end < *n {
                    errs.push(FieldError::invalid(
                        path.child("endPort"),
                        *n,
                        "must be greater than or equal to `port`",
                    ));
                }
                for msg in port_num(end) {
                    errs.push(FieldError::invalid(path.child("endPort"), end, msg));
                }
            }
        }
        Some(IntOrString::String(name)) => {
            if let Some(end) = port.end_port {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in port_name(name) {
                errs.push(FieldError::invalid(path.child("port"), name.as_str(), msg));
            }
        }
        None => {
            if let Some(end) = port.end_port {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn validate_ip_block(b: &IPBlock, path: &Path, errs: &mut ErrorList) {
    if b.cidr.is_empty() {
        errs.push(FieldError::required(path.child("cidr"), ""));
        return;
    }
    let bad_cidr = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
    let Some((ip, bits)) = parse_cidr(&b.cidr) else {
        errs.push(FieldError::invalid(
            path.child("cidr"),
            b.cidr.as_str(),
            bad_cidr,
        ));
        return;
    };
    for (i, except) in b.except.iter().flatten().enumerate() {
        let ep = path.child("except").index(i);
        let Some((eip, ebits)) = parse_cidr(except) else {
            errs.push(FieldError::invalid(&ep, except.as_str(), bad_cidr));
            continue;
        };
        let contained = ip.is_ipv4() == eip.is_ipv4() && masked(eip, bits) == masked(ip, bits);
        if !contained || bits >= ebits {
            errs.push(FieldError::invalid(
                &ep,
                except.as_str(),
                "must be a strict subset of `cidr`",
            ));
        }
    }
}

fn validate_peer(peer: &NetworkPolicyPeer, path: &Path, errs: &mut ErrorList) {
    let mut n = 0;
    if let Some(s) = &peer.pod_selector {
        n += 1;
        validate_label_selector(s, &path.child("podSelector"), errs);
    }
    if let Some(s) = &peer.namespace_selector {
        n += 1;
        validate_label_selector(s, &path.child("namespaceSelector"), errs);
    }
    if let Some(b) = &peer.ip_block {
        n += 1;
        validate_ip_block(b, &path.child("ipBlock"), errs);
    }
    if n == 0 {
        errs.push(FieldError::required(path, "must specify a peer"));
    } else if n > 1 && peer.ip_block.is_some() {
        errs.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

impl KindHooks for NetworkPolicy {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.pod_selector.get_or_insert_with(Default::default);
        if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
            let mut types = vec!["Ingress".to_string()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push("Egress".to_string());
            }
            spec.policy_types = Some(types);
        }
        let ports = spec
            .ingress
            .iter_mut()
            .flatten()
            .flat_map(|r| r.ports.iter_mut().flatten())
            .chain(
                spec.egress
                    .iter_mut()
                    .flatten()
                    .flat_map(|r| r.ports.iter_mut().flatten()),
            );
        for p in ports {
            p.protocol.get_or_insert_with(|| "TCP".into());
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = NetworkPolicySpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        if let Some(s) = &spec.pod_selector {
            validate_label_selector(s, &path.child("podSelector"), errs);
        }
        for (i, rule) in spec.ingress.iter().flatten().enumerate() {
            let rp = path.child("ingress").index(i);
            for (j, p) in rule.ports.iter().flatten().enumerate() {
                validate_policy_port(p, &rp.child("ports").index(j), errs);
            }
            for (j, peer) in rule.from.iter().flatten().enumerate() {
                validate_peer(peer, &rp.child("from").index(j), errs);
            }
        }
        for (i, rule) in spec.egress.iter().flatten().enumerate() {
            let rp = path.child("egress").index(i);
            for (j, p) in rule.ports.iter().flatten().enumerate() {
                validate_policy_port(p, &rp.child("ports").index(j), errs);
            }
            for (j, peer) in rule.to.iter().flatten().enumerate() {
                validate_peer(peer, &rp.child("to").index(j), errs);
            }
        }
        let types = spec.policy_types.as_deref().unwrap_or(&[]);
        if types.len() > 2 {
            errs.push(FieldError::invalid(
                path.child("policyTypes"),
                json!(types),
                "may not specify more than two policyTypes",
            ));
            return;
        }
        for (i, t) in types.iter().enumerate() {
            if t != "Ingress" && t != "Egress" {
                errs.push(FieldError::not_supported(
                    path.child("policyTypes").index(i),
                    t.as_str(),
                    &["Ingress", "Egress"],
                ));
            }
        }
    }

    fn columns() -> &'static [Column] {
        NETWORK_POLICY_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let selector = self.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
        vec![
            name_cell(&self.metadata),
            json!(format_label_selector(
                Some(selector.cloned().unwrap_or_default()).as_ref()
            )),
            age_cell(&self.metadata, ctx),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// EndpointSlice

const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const MAX_TOPOLOGY_LABELS: usize = 16;
const MAX_ZONE_HINTS: usize = 8;

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type."),
    Column::new("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice."),
    Column::new("Endpoints", "string", "endpoints is a list of unique endpoints in this slice."),
    Column::age(),
];

/// Upstream's `ValidateNonSpecialIP`.
fn non_special_ip(ip: IpAddr, value: &str, path: &Path, errs: &mut ErrorList) {
    let detail = match ip {
        _ if ip.is_unspecified() => Some("may not be unspecified (0.0.0.0)"),
        _ if ip.is_loopback() => Some("may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        IpAddr::V4(a) if a.is_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        IpAddr::V4(a) if a.octets()[..3] == [224, 0, 0] => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xff00 && a.segments()[0] & 0x000f == 2 => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        _ => None,
    };
    if let Some(d) = detail {
        errs.push(FieldError::invalid(path, value, d));
    }
}

/// Upstream's `IsFullyQualifiedDomainName`.
fn fqdn(name: &str, path: &Path, errs: &mut ErrorList) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let e = dns1123_subdomain(name);
    if !e.is_empty() {
        errs.push(FieldError::invalid(path, name, e.join(",")));
        return;
    }
    if name.split('.').count() < 2 {
        errs.push(FieldError::invalid(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        ));
        return;
    }
    for label in name.split('.') {
        let e = dns1123_label(label);
        if !e.is_empty() {
            errs.push(FieldError::invalid(path, label, e.join(",")));
            return;
        }
    }
}

fn validate_endpoint(e: &Endpoint, address_type: &str, path: &Path, errs: &mut ErrorList) {
    let ap = path.child("addresses");
    if e.addresses.is_empty() {
        errs.push(FieldError::required(&ap, "must contain at least 1 address"));
    } else if e.addresses.len() > MAX_ADDRESSES {
        errs.push(too_many(&ap, e.addresses.len(), MAX_ADDRESSES));
    }
    for (i, a) in e.addresses.iter().enumerate() {
        let p = ap.index(i);
        match address_type {
            "IPv4" | "IPv6" => {
                let want_v4 = address_type == "IPv4";
                match parse_ip(a).filter(|ip| ip.is_ipv4() == want_v4) {
                    Some(ip) => non_special_ip(ip, a, &p, errs),
                    None => errs.push(FieldError::invalid(
                        &p,
                        a.as_str(),
                        format!("must be a valid {address_type} address"),
                    )),
                }
            }
            "FQDN" => fqdn(a, &p, errs),
            _ => {}
        }
    }
    if let Some(node) = &e.node_name {
        for msg in dns1123_subdomain(node) {
            errs.push(FieldError::invalid(
                path.child("nodeName"),
                node.as_str(),
                msg,
            ));
        }
    }
    if let Some(topology) = &e.deprecated_topology {
        let tp = path.child("deprecatedTopology");
        if topology.len() > MAX_TOPOLOGY_LABELS {
            errs.push(too_many(&tp, topology.len(), MAX_TOPOLOGY_LABELS));
        }
        validate_labels(topology, &tp, errs);
    }
    if let Some(h) = &e.hostname {
        for msg in dns1123_label(h) {
            errs.push(FieldError::invalid(path.child("hostname"), h.as_str(), msg));
        }
    }
    if let Some(zones) = e.hints.as_ref().and_then(|h| h.for_zones.as_ref()) {
        let zp = path.child("hints").child("forZones");
        if zones.len() > MAX_ZONE_HINTS {
            errs.push(too_many(&zp, zones.len(), MAX_ZONE_HINTS));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, z) in zones.iter().enumerate() {
            if seen.contains(&z.name.as_str()) {
                errs.push(FieldError::duplicate(
                    zp.index(i).child("name"),
                    z.name.as_str(),
                ));
            } else {
                seen.push(&z.name);
            }
        }
    }
}

fn validate_endpoint_ports(ports: &[EndpointPort], errs: &mut ErrorList) {
    let path = Path::new("ports");
    if ports.len() > MAX_PORTS {
        errs.push(too_many(&path, ports.len(), MAX_PORTS));
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let ip = path.index(i);
        let name = p.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            for msg in dns1123_label(name) {
                errs.push(FieldError::invalid(ip.child("name"), name, msg));
            }
        }
        if names.contains(&name) {
            errs.push(FieldError::duplicate(ip.child("name"), name));
        } else {
            names.push(name);
        }
        match p.protocol.as_deref() {
            None => errs.push(FieldError::required(ip.child("protocol"), "")),
            Some("TCP" | "UDP" | "SCTP") => {}
            Some(other) => errs.push(FieldError::not_supported(
                ip.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
        if let Some(ap) = &p.app_protocol {
            for msg in qualified_name(ap) {
                errs.push(FieldError::invalid(
                    ip.child("appProtocol"),
                    ap.as_str(),
                    msg,
                ));
            }
        }
    }
}

/// Upstream's `listWithMoreString`: three items, then `+ N more...`; `<unset>` when empty.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.len() > MAX {
        return format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX);
    }
    if items.is_empty() {
        "<unset>".to_string()
    } else {
        items.join(",")
    }
}

impl KindHooks for EndpointSlice {
    fn defaults(&mut self) {
        for p in self.ports.iter_mut().flatten() {
            p.name.get_or_insert_with(String::new);
            p.protocol.get_or_insert_with(|| "TCP".into());
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        match self.address_type.as_str() {
            "" => errs.push(FieldError::required("addressType", "")),
            "IPv4" | "IPv6" | "FQDN" => {}
            other => errs.push(FieldError::not_supported(
                "addressType",
                other,
                &["FQDN", "IPv4", "IPv6"],
            )),
        }
        let path = Path::new("endpoints");
        if self.endpoints.len() > MAX_ENDPOINTS {
            errs.push(too_many(&path, self.endpoints.len(), MAX_ENDPOINTS));
        } else {
            for (i, e) in self.endpoints.iter().enumerate() {
                validate_endpoint(e, &self.address_type, &path.index(i), errs);
            }
        }
        validate_endpoint_ports(self.ports.as_deref().unwrap_or(&[]), errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        immutable_field(&self.address_type, &old.address_type, "addressType", errs);
    }

    fn columns() -> &'static [Column] {
        ENDPOINT_SLICE_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let ports: Vec<String> = self
            .ports
            .iter()
            .flatten()
            .map(|p| match (p.port, &p.name) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.clone(),
                (None, None) => "*".to_string(),
            })
            .collect();
        let addresses: Vec<String> = self
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        vec![
            name_cell(&self.metadata),
            json!(self.address_type),
            json!(list_with_more(ports)),
            json!(list_with_more(addresses)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update};
    use super::*;

    fn example_ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "my-ingress", "namespace": "default"},
            "spec": {"rules": [{"host": "myapp.example.com", "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "my-service", "port": {"number": 80}}}
            }]}}]}
        })
    }

    #[test]
    fn the_example_ingress_stores_its_spec_as_given_and_an_empty_load_balancer() {
        let given = example_ingress();
        let i = create::<Ingress>(given.clone());
        assert_eq!(i["spec"], given["spec"]);
        assert_eq!(i["status"], json!({"loadBalancer": {}}));
        assert!(
            errors::<Ingress>(&i).is_empty(),
            "{:?}",
            errors::<Ingress>(&i)
        );
    }

    #[test]
    fn ingress_paths_need_a_type_and_absolute_paths() {
        let mut i = example_ingress();
        i["spec"]["rules"][0]["http"]["paths"] = json!([
            {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
            {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
            {"path": "/", "pathType": "Regex", "backend": {"service": {"name": "s", "port": {"name": "http"}}}}
        ]);
        let errs = errors::<Ingress>(&create::<Ingress>(i));
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].path: Invalid value: \"api\": must be an absolute path",
                "spec.rules[0].http.paths[2].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
            ]
        );
    }

    #[test]
    fn ingress_backends_need_a_service_name_and_port() {
        let mut i = example_ingress();
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"] = json!({"service": {"name": ""}});
        let errs = errors::<Ingress>(&create::<Ingress>(i));
        assert_eq!(
            errs,
            vec![
                "spec.rules[0].http.paths[0].backend.service.name: Required value",
                "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
            ]
        );
    }

    #[test]
    fn ingress_hosts_may_be_wildcards_but_not_ips() {
        let mut i = example_ingress();
        i["spec"]["rules"][0]["host"] = json!("*.example.com");
        assert!(errors::<Ingress>(&create::<Ingress>(i.clone())).is_empty());
        i["spec"]["rules"][0]["host"] = json!("10.0.0.1");
        let errs = errors::<Ingress>(&create::<Ingress>(i.clone()));
        assert_eq!(errs, vec!["spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"]);
        i["spec"]["rules"][0]["host"] = json!("a.*.com");
        let errs = errors::<Ingress>(&create::<Ingress>(i));
        assert!(
            errs[0].starts_with(
                "spec.rules[0].host: Invalid value: \"a.*.com\": a wildcard DNS-1123 subdomain"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn an_ingress_prints_class_hosts_address_and_ports() {
        let mut i = example_ingress();
        i["spec"]["ingressClassName"] = json!("capstan");
        i["spec"]["tls"] = json!([{"hosts": ["myapp.example.com"], "secretName": "tls"}]);
        let mut i = create::<Ingress>(i);
        i["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}});
        assert_eq!(
            row::<Ingress>(&i),
            vec![
                json!("my-ingress"),
                json!("capstan"),
                json!("myapp.example.com"),
                json!("192.168.1.10"),
                json!("80, 443"),
                json!("60m"),
            ]
        );
    }

    #[test]
    fn ingress_hosts_are_summarised_like_kubectl() {
        let rules: Vec<IngressRule> = ["a.io", "", "b.io", "c.io", "d.io"]
            .iter()
            .map(|h| IngressRule {
                host: Some(h.to_string()),
                http: None,
            })
            .collect();
        assert_eq!(format_hosts(&rules), "a.io,b.io,c.io + 2 more...");
        assert_eq!(format_hosts(&rules[..4]), "a.io,b.io,c.io");
        assert_eq!(format_hosts(&rules[1..2]), "*");
    }

    #[test]
    fn ingress_classes_default_their_parameter_scope_and_keep_their_controller() {
        let c = create::<IngressClass>(json!({
            "metadata": {"name": "capstan"},
            "spec": {"controller": "capstan.io/ingress", "parameters": {"kind": "Config", "name": "c", "apiGroup": "capstan.io"}}
        }));
        assert_eq!(c["spec"]["parameters"]["scope"], "Cluster");
        assert!(errors::<IngressClass>(&c).is_empty());
        assert_eq!(
            row::<IngressClass>(&c),
            vec![
                json!("capstan"),
                json!("capstan.io/ingress"),
                json!("Config.capstan.io/c"),
                json!("60m")
            ]
        );
        let mut new = c.clone();
        new["spec"]["controller"] = json!("other.io/ingress");
        let (_, errs) = update::<IngressClass>(new, &c);
        assert_eq!(
            errs,
            vec!["spec.controller: Invalid value: \"other.io/ingress\": field is immutable"]
        );
        let bad = create::<IngressClass>(
            json!({"metadata": {"name": "x"}, "spec": {"controller": "nginx"}}),
        );
        assert_eq!(
            errors::<IngressClass>(&bad),
            vec!["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
    }

    #[test]
    fn network_policies_default_their_policy_types_and_protocols() {
        let np = create::<NetworkPolicy>(json!({
            "metadata": {"name": "np", "namespace": "default"},
            "spec": {"egress": [{"ports": [{"port": 53}]}]}
        }));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["podSelector"], json!({}));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert!(errors::<NetworkPolicy>(&np).is_empty());
        assert_eq!(
            row::<NetworkPolicy>(&np),
            vec![json!("np"), json!("<none>"), json!("60m")]
        );
    }

    #[test]
    fn network_policy_peers_and_blocks_are_checked() {
        let np = create::<NetworkPolicy>(json!({
            "metadata": {"name": "np", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [
                {},
                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}, "podSelector": {}}
            ], "ports": [{"port": 70000}]}]}
        }));
        assert_eq!(
            errors::<NetworkPolicy>(&np),
            vec![
                "spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ingress[0].from[0]: Required value: must specify a peer",
                "spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
                "spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer",
            ]
        );
        assert_eq!(row::<NetworkPolicy>(&np)[1], json!("app=db"));
    }

    fn slice() -> Value {
        json!({
            "metadata": {"name": "web-abc", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}],
            "ports": [{"port": 80}]
        })
    }

    #[test]
    fn endpoint_slices_default_port_names_and_protocols() {
        let s = create::<EndpointSlice>(slice());
        assert_eq!(
            s["ports"],
            json!([{"name": "", "port": 80, "protocol": "TCP"}])
        );
        assert!(errors::<EndpointSlice>(&s).is_empty());
        assert_eq!(
            row::<EndpointSlice>(&s),
            vec![
                json!("web-abc"),
                json!("IPv4"),
                json!("80"),
                json!("10.42.0.5,10.42.0.6"),
                json!("60m")
            ]
        );
    }

    #[test]
    fn endpoint_slice_addresses_must_fit_the_address_type() {
        let mut s = slice();
        s["endpoints"] =
            json!([{"addresses": ["fe80::1"]}, {"addresses": ["127.0.0.1"]}, {"addresses": []}]);
        s["addressType"] = json!("IPv4");
        let errs = errors::<EndpointSlice>(&create::<EndpointSlice>(s.clone()));
        assert_eq!(
            errs,
            vec![
                "endpoints[0].addresses[0]: Invalid value: \"fe80::1\": must be a valid IPv4 address",
                "endpoints[1].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "endpoints[2].addresses: Required value: must contain at least 1 address",
            ]
        );
        s["addressType"] = json!("IP");
        let errs = errors::<EndpointSlice>(&create::<EndpointSlice>(s));
        assert_eq!(errs[0], "addressType: Unsupported value: \"IP\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"");
    }

    #[test]
    fn endpoint_slice_address_types_are_immutable() {
        let old = create::<EndpointSlice>(slice());
        let mut new = slice();
        new["addressType"] = json!("FQDN");
        new["endpoints"] = json!([{"addresses": ["web.example.com"]}]);
        let (_, errs) = update::<EndpointSlice>(new, &old);
        assert_eq!(
            errs,
            vec!["addressType: Invalid value: \"FQDN\": field is immutable"]
        );
    }
}
