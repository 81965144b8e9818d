//! Services: upstream's defaults, the registry's create/update preparation (cluster IP
//! normalisation, IP family defaults for capstan's IPv4 single-stack service network, values
//! kept across updates), ValidateService, and the `kubectl get services` columns.
//! Cluster IPs and node ports themselves are allocated by the API server.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::checks;
use super::{age_cell, s};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{format_labels, Column, RowContext};
use crate::validation::{validate_labels, NameRule};

/// The family of the service network (capstan's default service CIDR is IPv4).
const CLUSTER_FAMILY: &str = "IPv4";
const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;
const MAX_AFFINITY_TIMEOUT: i32 = 86400;
const KUBELET_PORT: i32 = 10250;

fn type_of(spec: &ServiceSpec) -> &str {
    s(&spec.type_)
}

fn externally_accessible(spec: &ServiceSpec) -> bool {
    matches!(type_of(spec), "LoadBalancer" | "NodePort")
        || (type_of(spec) == "ClusterIP"
            && !spec.external_ips.as_deref().unwrap_or_default().is_empty())
}

fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    type_of(spec) != "ExternalName"
}

fn needs_node_port(spec: &ServiceSpec) -> bool {
    matches!(type_of(spec), "NodePort" | "LoadBalancer")
}

fn needs_health_check(spec: &ServiceSpec) -> bool {
    type_of(spec) == "LoadBalancer" && s(&spec.external_traffic_policy) == "Local"
}

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ips
        .as_deref()
        .and_then(|ips| ips.first())
        .map(String::as_str)
        == Some("None")
}

fn cluster_ips(spec: &ServiceSpec) -> Vec<String> {
    spec.cluster_ips.clone().unwrap_or_default()
}

fn family_of(ip: &str) -> &'static str {
    match checks::parse_ip(ip) {
        Some(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => "IPv6",
        _ => "IPv4",
    }
}

/// Upstream's normalizeClusterIPs: keeps clusterIP and clusterIPs in step.
fn normalize_cluster_ips(new: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    let ip = s(&new.cluster_ip).to_string();
    let Some(old) = old else {
        if !ip.is_empty() && cluster_ips(new).is_empty() {
            new.cluster_ips = Some(vec![ip]);
        }
        return;
    };
    let old_ip = s(&old.cluster_ip).to_string();
    if !cluster_ips(old).is_empty() && cluster_ips(new).is_empty() && old_ip == ip {
        new.cluster_ips = old.cluster_ips.clone();
    }
    if old_ip != ip {
        let same = cluster_ips(old) == cluster_ips(new);
        if !old_ip.is_empty() && ip.is_empty() {
            if same {
                new.cluster_ips = None;
            }
        } else if same {
            new.cluster_ips = Some(vec![ip]);
        }
    }
}

/// Upstream's patchAllocatedValues: what an update left out but the old object had allocated.
fn patch_allocated(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if s(&new.cluster_ip).is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if cluster_ips(new).is_empty() && !cluster_ips(old).is_empty() {
            new.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let used = |spec: &ServiceSpec| -> BTreeSet<i32> {
            spec.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port.filter(|n| *n != 0))
                .collect()
        };
        let used: BTreeSet<i32> = used(old).intersection(&used(new)).copied().collect();
        let by_name: Vec<(String, i32)> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (s(&p.name).to_string(), p.node_port.unwrap_or(0)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                let old_val = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| n == s(&p.name))
                    .map(|(_, v)| *v)
                    .unwrap_or(0);
                if old_val != 0 && !used.contains(&old_val) {
                    p.node_port = Some(old_val);
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && new.health_check_node_port.unwrap_or(0) == 0
    {
        new.health_check_node_port = old.health_check_node_port;
    }
}

/// Upstream's dropTypeDependentFields: values a type change makes meaningless.
fn drop_type_dependent(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if cluster_ips(old) == cluster_ips(new) && old.cluster_ip == new.cluster_ip {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if old.ip_families == new.ip_families {
            new.ip_families = None;
        }
        if old.ip_family_policy == new.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    let node_ports = |spec: &ServiceSpec| -> Vec<i32> {
        spec.ports
            .iter()
            .flatten()
            .map(|p| p.node_port.unwrap_or(0))
            .collect()
    };
    if needs_node_port(old) && !needs_node_port(new) && node_ports(old) == node_ports(new) {
        for p in new.ports.iter_mut().flatten() {
            p.node_port = None;
        }
    }
    if needs_health_check(old)
        && !needs_health_check(new)
        && old.health_check_node_port == new.health_check_node_port
    {
        new.health_check_node_port = None;
    }
    if type_of(old) == "LoadBalancer" && type_of(new) != "LoadBalancer" {
        if new.allocate_load_balancer_node_ports.is_some()
            && old.allocate_load_balancer_node_ports == new.allocate_load_balancer_node_ports
        {
            new.allocate_load_balancer_node_ports = None;
        }
        if old.load_balancer_class == new.load_balancer_class {
            new.load_balancer_class = None;
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && old.external_traffic_policy == new.external_traffic_policy
    {
        new.external_traffic_policy = None;
    }
}

/// Upstream's initIPFamilyFields for a single-stack cluster of [`CLUSTER_FAMILY`].
fn init_ip_families(new: &mut ServiceSpec, old: Option<&ServiceSpec>) {
    if type_of(new) == "ExternalName" {
        return;
    }
    let headless_selectorless =
        s(&new.cluster_ip) == "None" && new.selector.as_ref().is_none_or(|sel| sel.is_empty());
    if new.ip_family_policy.is_none() {
        new.ip_family_policy = Some(match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(p) => p,
            None if headless_selectorless => "RequireDualStack".to_string(),
            None => "SingleStack".to_string(),
        });
    }
    let single = s(&new.ip_family_policy) == "SingleStack";
    if let Some(old) = old {
        if single {
            if cluster_ips(old) == cluster_ips(new) && cluster_ips(new).len() > 1 {
                new.cluster_ips = Some(cluster_ips(new)[..1].to_vec());
            }
            let fams = new.ip_families.clone().unwrap_or_default();
            if old.ip_families == new.ip_families && fams.len() > 1 {
                new.ip_families = Some(fams[..1].to_vec());
            }
        }
    }
    let mut families = new.ip_families.clone().unwrap_or_default();
    for (i, ip) in cluster_ips(new).iter().enumerate() {
        if ip == "None" {
            break;
        }
        if i >= families.len() && checks::parse_ip(ip).is_some() {
            families.push(family_of(ip).to_string());
        }
    }
    if families.is_empty() {
        families.push(CLUSTER_FAMILY.to_string());
    }
    if headless_selectorless && families.len() < 2 && !single {
        let alt = if families[0] == "IPv4" {
            "IPv6"
        } else {
            "IPv4"
        };
        families.push(alt.to_string());
    }
    new.ip_families = Some(families);
}

fn validate_ports_and_types(spec: &ServiceSpec, errs: &mut ErrorList) {
    let sp = Path::new("spec");
    let ports = spec.ports.clone().unwrap_or_default();
    let headless = is_headless(spec);
    let ty = type_of(spec);
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" => {
            for (i, p) in ports.iter().enumerate() {
                if p.port == KUBELET_PORT {
                    errs.push(FieldError::invalid(
                        sp.child("ports").index(i),
                        p.port,
                        format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                    ));
                }
            }
            if headless {
                errs.push(FieldError::invalid(
                    sp.child("clusterIPs").index(0),
                    "None",
                    "may not be set to 'None' for LoadBalancer services",
                ));
            }
        }
        "NodePort" if headless => errs.push(FieldError::invalid(
            sp.child("clusterIPs").index(0),
            "None",
            "may not be set to 'None' for NodePort services",
        )),
        "ExternalName" => {
            if !cluster_ips(spec).is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if !spec.ip_families.as_deref().unwrap_or_default().is_empty() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            let cname = s(&spec.external_name);
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required(sp.child("externalName"), ""));
            } else {
                checks::dns_subdomain(cname, &sp.child("externalName"), errs);
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = sp.child("ports").index(i);
        let name = s(&p.name);
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(pp.child("name"), ""));
        } else if !name.is_empty() {
            checks::dns_label(name, &pp.child("name"), errs);
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(pp.child("name"), name));
            }
        }
        for m in checks::port_num(i64::from(p.port)) {
            errs.push(FieldError::invalid(pp.child("port"), p.port, m));
        }
        match s(&p.protocol) {
            "" => errs.push(FieldError::required(pp.child("protocol"), "")),
            "TCP" | "UDP" | "SCTP" => {}
            other => errs.push(FieldError::not_supported(
                pp.child("protocol"),
                other,
                &["SCTP", "TCP", "UDP"],
            )),
        }
        checks::port_num_or_name(
            p.target_port.as_ref().unwrap_or(&IntOrString::Int(0)),
            &pp.child("targetPort"),
            errs,
        );
        if let Some(ap) = &p.app_protocol {
            checks::qualified(ap, &pp.child("appProtocol"), errs);
        }
    }
    if let Some(sel) = &spec.selector {
        validate_labels(sel, &sp.child("selector"), errs);
    }
    match s(&spec.session_affinity) {
        "" => errs.push(FieldError::required(sp.child("sessionAffinity"), "")),
        "ClientIP" => {
            let cp = sp.child("sessionAffinityConfig");
            let detail = "when session affinity type is ClientIP";
            match spec
                .session_affinity_config
                .as_ref()
                .map(|c| c.client_ip.as_ref())
            {
                None => errs.push(FieldError::required(cp, detail)),
                Some(None) => errs.push(FieldError::required(cp.child("clientIP"), detail)),
                Some(Some(c)) => match c.timeout_seconds {
                    None => errs.push(FieldError::required(
                        cp.child("clientIP").child("timeoutSeconds"),
                        detail,
                    )),
                    Some(t) if t <= 0 || t > MAX_AFFINITY_TIMEOUT => {
                        errs.push(FieldError::invalid(
                            cp.child("clientIP").child("timeoutSeconds"),
                            t,
                            format!("must be greater than 0 and less than {MAX_AFFINITY_TIMEOUT}"),
                        ))
                    }
                    Some(_) => {}
                },
            }
        }
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
}

/// Upstream's ValidateServiceClusterIPsRelatedFields.
fn validate_cluster_ips(spec: &ServiceSpec, errs: &mut ErrorList) {
    if type_of(spec) == "ExternalName" {
        return;
    }
    let sp = Path::new("spec");
    let ips = cluster_ips(spec);
    let ips_json = json!(ips);
    let ip = s(&spec.cluster_ip);
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(sp.child("clusterIPs"), ""));
        } else if ips[0] != ip {
            errs.push(FieldError::invalid(
                sp.child("clusterIPs"),
                ips_json.clone(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            sp.child("clusterIPs"),
            ips_json.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        if f != "IPv4" && f != "IPv6" {
            errs.push(FieldError::not_supported(
                sp.child("ipFamilies").index(i),
                f.as_str(),
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(f.clone()) {
            errs.push(FieldError::duplicate(
                sp.child("ipFamilies").index(i),
                f.as_str(),
            ));
        }
    }
    if let Some(p) = &spec.ip_family_policy {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&p.as_str()) {
            errs.push(FieldError::not_supported(
                sp.child("ipFamilyPolicy"),
                p.as_str(),
                POLICIES,
            ));
        }
    }
    let mut invalid = false;
    for (i, c) in ips.iter().enumerate() {
        if i == 0 && c == "None" {
            if ips.len() > 1 {
                invalid = true;
                errs.push(FieldError::invalid(
                    sp.child("clusterIPs"),
                    ips_json.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        invalid |= !checks::valid_ip(c, &sp.child("clusterIPs").index(i), errs);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            sp.child("clusterIPs"),
            ips_json.clone(),
            "may only hold up to 2 values",
        ));
    }
    if invalid {
        return;
    }
    if ips.len() > 1 && family_of(&ips[0]) == family_of(&ips[1]) {
        errs.push(FieldError::invalid(
            sp.child("clusterIPs"),
            ips_json,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(spec) {
        for (i, (ip, fam)) in ips
            .iter()
            .zip(spec.ip_families.iter().flatten())
            .enumerate()
        {
            if fam == "IPv4" && family_of(ip) == "IPv6" {
                errs.push(FieldError::invalid(
                    sp.child("clusterIPs").index(i),
                    ip.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if fam == "IPv6" && family_of(ip) != "IPv6" {
                errs.push(FieldError::invalid(
                    sp.child("clusterIPs").index(i),
                    ip.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    // What upstream's allocator rejects on a single-stack cluster.
    let headless_selectorless =
        ip == "None" && spec.selector.as_ref().is_none_or(|sel| sel.is_empty());
    let families = spec.ip_families.clone().unwrap_or_default();
    let policy = s(&spec.ip_family_policy);
    if policy == "SingleStack" {
        if ips.len() == 2 {
            errs.push(FieldError::invalid(
                sp.child("ipFamilyPolicy"),
                policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            errs.push(FieldError::invalid(
                sp.child("ipFamilyPolicy"),
                policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    if !headless_selectorless {
        if policy == "RequireDualStack" {
            errs.push(FieldError::invalid(
                sp.child("ipFamilyPolicy"),
                policy,
                "this cluster is not configured for dual-stack services",
            ));
        }
        for (i, f) in families.iter().enumerate() {
            if f != CLUSTER_FAMILY && (f == "IPv4" || f == "IPv6") {
                errs.push(FieldError::invalid(
                    sp.child("ipFamilies").index(i),
                    f.as_str(),
                    "not configured on this cluster",
                ));
            }
        }
    }
}

fn validate_service(svc: &Service, errs: &mut ErrorList) {
    let spec = svc.spec.clone().unwrap_or_default();
    let sp = Path::new("spec");
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    if let (Some(mode), Some(hints)) = (
        annotations.get("service.kubernetes.io/topology-mode"),
        annotations.get("service.kubernetes.io/topology-aware-hints"),
    ) {
        if mode != hints {
            errs.push(FieldError::invalid(
                Path::new("metadata").child("annotations").key("service.kubernetes.io/topology-mode"),
                mode.as_str(),
                "must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified",
            ));
        }
    }
    validate_ports_and_types(&spec, errs);
    validate_cluster_ips(&spec, errs);
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let p = sp.child("externalIPs").index(i);
        if checks::valid_ip(ip, &p, errs) {
            checks::non_special_ip(ip, &p, errs);
        }
    }
    let ty = type_of(&spec);
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if ty.is_empty() {
        errs.push(FieldError::required(sp.child("type"), ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(sp.child("type"), ty, TYPES));
    }
    let ports = spec.ports.clone().unwrap_or_default();
    if ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if p.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p.node_port.unwrap_or(0);
        if np != 0 && !node_ports.insert((s(&p.protocol).to_string(), np)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        if !port_keys.insert((s(&p.protocol).to_string(), p.port)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i),
                json!({"port": p.port, "protocol": s(&p.protocol)}),
            ));
        }
    }
    let ranges = spec.load_balancer_source_ranges.clone().unwrap_or_default();
    if !ranges.is_empty() {
        let p = sp.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            checks::valid_cidr(r.trim(), &p.index(i), errs);
        }
    } else if let Some(v) =
        annotations.get("service.beta.kubernetes.io/load-balancer-source-ranges")
    {
        let p = Path::new("metadata")
            .child("annotations")
            .key("service.beta.kubernetes.io/load-balancer-source-ranges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                &p,
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for r in v.trim().split(',').filter(|_| !v.trim().is_empty()) {
            checks::valid_cidr(r.trim(), &p, errs);
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = &spec.load_balancer_class {
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                sp.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        checks::qualified(class, &sp.child("loadBalancerClass"), errs);
    }
    let etp = s(&spec.external_traffic_policy);
    if !externally_accessible(&spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(sp.child("externalTrafficPolicy"), ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(FieldError::not_supported(
            sp.child("externalTrafficPolicy"),
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(&spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                sp.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        for m in checks::port_num(i64::from(hc)) {
            errs.push(FieldError::invalid(sp.child("healthCheckNodePort"), hc, m));
        }
    }
    match &spec.internal_traffic_policy {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required(sp.child("internalTrafficPolicy"), ""))
        }
        Some(p) if p != "Cluster" && p != "Local" => errs.push(FieldError::not_supported(
            sp.child("internalTrafficPolicy"),
            p.as_str(),
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    if let Some(td) = &spec.traffic_distribution {
        if td != "PreferClose" {
            errs.push(FieldError::not_supported(
                sp.child("trafficDistribution"),
                td.as_str(),
                &["PreferClose"],
            ));
        }
    }
}

fn validate_service_update(new: &ServiceSpec, old: &ServiceSpec, errs: &mut ErrorList) {
    let ext = type_of(new) == "ExternalName" || type_of(old) == "ExternalName";
    let ips_path = Path::new("spec").child("clusterIPs");
    let (new_ips, old_ips) = (cluster_ips(new), cluster_ips(old));
    let new_json = json!(new_ips);
    let both_headless = is_headless(new) && is_headless(old);
    if !ext && !both_headless {
        if old_ips.len() == new_ips.len() {
            for (i, ip) in old_ips.iter().enumerate() {
                if *ip != new_ips[i] {
                    errs.push(FieldError::invalid(
                        ips_path.index(i),
                        new_json.clone(),
                        "may not change once set",
                    ));
                }
            }
        } else if old_ips.len() > new_ips.len() {
            if new_ips.is_empty() {
                errs.push(FieldError::invalid(
                    ips_path.index(0),
                    new_json.clone(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
                errs.push(FieldError::invalid(
                    ips_path.index(0),
                    new_json.clone(),
                    "may not change once set",
                ));
            }
            if new_ips.len() == 1 && s(&new.ip_family_policy) != "SingleStack" {
                errs.push(FieldError::invalid(
                    Path::new("spec").child("ipFamilyPolicy"),
                    new.ip_family_policy
                        .clone()
                        .map_or(Value::Null, Value::String),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(FieldError::invalid(
                ips_path.index(0),
                new_json.clone(),
                "may not change once set",
            ));
        }
    }
    if !ext && is_headless(new) == is_headless(old) && !is_headless(new) {
        let (nf, of) = (
            new.ip_families.clone().unwrap_or_default(),
            old.ip_families.clone().unwrap_or_default(),
        );
        let fp = Path::new("spec").child("ipFamilies");
        if nf.len() == of.len() {
            for (i, f) in of.iter().enumerate() {
                if *f != nf[i] {
                    errs.push(FieldError::invalid(
                        fp.index(0),
                        json!(nf),
                        "may not change once set",
                    ));
                }
            }
        } else if of.len() > nf.len() {
            if nf.is_empty() {
                errs.push(FieldError::invalid(
                    fp.index(0),
                    json!(nf),
                    "primary ipFamily can not be unset",
                ));
            } else if nf[0] != of[0] {
                errs.push(FieldError::invalid(
                    fp.index(0),
                    json!(nf),
                    "may not change once set",
                ));
            }
        } else if !of.is_empty() && nf[0] != of[0] {
            errs.push(FieldError::invalid(
                fp.index(0),
                json!(nf),
                "may not change once set",
            ));
        }
    }
    if type_of(old) == "LoadBalancer"
        && type_of(new) == "LoadBalancer"
        && old.load_balancer_class != new.load_balancer_class
        && old.load_balancer_class.is_some()
    {
        errs.push(FieldError::invalid(
            Path::new("spec").child("loadBalancerClass"),
            new.load_balancer_class
                .clone()
                .map_or(Value::Null, Value::String),
            "may not change once set",
        ));
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && old.health_check_node_port != new.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            Path::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
}

// ---- printing ------------------------------------------------------------------------------

static COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Type", "string", "type determines how the Service is exposed."),
    Column::new("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    Column::new("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    Column::new("Port(s)", "string", "The list of ports that are exposed by this service."),
    Column::age(),
    Column::new("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.").wide(),
];

fn external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external = spec.external_ips.clone().unwrap_or_default();
    match type_of(&spec) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<String> = Vec::new();
            for ing in svc
                .status
                .iter()
                .filter_map(|st| st.load_balancer.as_ref())
                .flat_map(|l| l.ingress.iter().flatten())
            {
                let v = if !s(&ing.ip).is_empty() {
                    s(&ing.ip)
                } else {
                    s(&ing.hostname)
                };
                if !v.is_empty() && !lb.iter().any(|x| x == v) {
                    lb.push(v.to_string());
                }
            }
            if !external.is_empty() {
                lb.extend(external);
                lb.join(",")
            } else if !lb.is_empty() {
                lb.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => s(&spec.external_name).to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn port_string(spec: &ServiceSpec) -> String {
    let pieces: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| match p.node_port.filter(|n| *n > 0) {
            Some(np) => format!("{}:{np}/{}", p.port, s(&p.protocol)),
            None => format!("{}/{}", p.port, s(&p.protocol)),
        })
        .collect();
    if pieces.is_empty() {
        "<none>".to_string()
    } else {
        pieces.join(",")
    }
}

impl KindHooks for Service {
    const NAME_RULE: NameRule = NameRule::Dns1035Label;
    const FIELD_SELECTORS: &'static [&'static str] = &["spec.clusterIP", "spec.type"];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if s(&spec.session_affinity).is_empty() {
            spec.session_affinity = Some("None".to_string());
        }
        match s(&spec.session_affinity) {
            "None" => spec.session_affinity_config = None,
            "ClientIP" => {
                let has_timeout = spec
                    .session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .is_some();
                if !has_timeout {
                    spec.session_affinity_config = Some(SessionAffinityConfig {
                        client_ip: Some(ClientIPConfig {
                            timeout_seconds: Some(DEFAULT_AFFINITY_TIMEOUT),
                        }),
                    });
                }
            }
            _ => {}
        }
        if s(&spec.type_).is_empty() {
            spec.type_ = Some("ClusterIP".to_string());
        }
        for p in spec.ports.iter_mut().flatten() {
            if s(&p.protocol).is_empty() {
                p.protocol = Some("TCP".to_string());
            }
            let unset = match &p.target_port {
                None => true,
                Some(IntOrString::Int(0)) => true,
                Some(IntOrString::String(v)) => v.is_empty(),
                Some(_) => false,
            };
            if unset {
                p.target_port = Some(IntOrString::Int(p.port));
            }
        }
        if externally_accessible(spec) && s(&spec.external_traffic_policy).is_empty() {
            spec.external_traffic_policy = Some("Cluster".to_string());
        }
        if spec.internal_traffic_policy.is_none()
            && matches!(type_of(spec), "NodePort" | "LoadBalancer" | "ClusterIP")
        {
            spec.internal_traffic_policy = Some("Cluster".to_string());
        }
        let lb = type_of(spec) == "LoadBalancer";
        if lb && spec.allocate_load_balancer_node_ports.is_none() {
            spec.allocate_load_balancer_node_ports = Some(true);
        }
        let status = self.status.get_or_insert_with(Default::default);
        let lb_status = status.load_balancer.get_or_insert_with(Default::default);
        if lb {
            for ing in lb_status.ingress.iter_mut().flatten() {
                if !s(&ing.ip).is_empty() && ing.ip_mode.is_none() {
                    ing.ip_mode = Some("VIP".to_string());
                }
            }
        }
    }

    fn prepare_for_create(&mut self) {
        self.status = Some(ServiceStatus {
            load_balancer: Some(Default::default()),
            ..Default::default()
        });
        let spec = self.spec.get_or_insert_with(Default::default);
        normalize_cluster_ips(spec, None);
        init_ip_families(spec, None);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        let old_spec = old.spec.clone().unwrap_or_default();
        let spec = self.spec.get_or_insert_with(Default::default);
        patch_allocated(spec, &old_spec);
        normalize_cluster_ips(spec, Some(&old_spec));
        drop_type_dependent(spec, &old_spec);
        init_ip_families(spec, Some(&old_spec));
        if type_of(spec) != "LoadBalancer" {
            if let Some(st) = self.status.as_mut() {
                st.load_balancer = Some(Default::default());
            }
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_service(self, errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        validate_service_update(
            &self.spec.clone().unwrap_or_default(),
            &old.spec.clone().unwrap_or_default(),
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let cluster_ip = cluster_ips(&spec)
            .first()
            .cloned()
            .unwrap_or_else(|| "<none>".to_string());
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(type_of(&spec)),
            json!(cluster_ip),
            json!(external_ip(self)),
            json!(port_string(&spec)),
            age_cell(&self.metadata, ctx),
            json!(format_labels(spec.selector.as_ref())),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let spec = self.spec.as_ref();
        match field {
            "spec.clusterIP" => Some(spec.map(|sp| s(&sp.cluster_ip)).unwrap_or("").to_string()),
            "spec.type" => Some(spec.map(type_of).unwrap_or("").to_string()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Strategy, Typed};

    fn strategy() -> &'static dyn Strategy {
        &Typed::<Service>::NEW
    }

    fn created(v: Value) -> Value {
        let mut unknown = Vec::new();
        let mut obj = strategy().decode(v, &mut unknown).expect("decodes");
        strategy().apply_defaults(&mut obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
        strategy().prepare_for_create(&mut obj);
        obj
    }

    fn errors(v: Value) -> Vec<String> {
        let obj = created(v);
        let mut errs = Vec::new();
        strategy().validate(&obj, &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_example_service_reads_back_as_upstream_stores_it() {
        // /work/shared/examples/service.yaml, as `kubectl create -f` sends it; the cluster IP
        // is the API server's to allocate.
        let obj = created(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-service", "namespace": "default"},
            "spec": {"selector": {"app": "my-app"}, "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}], "type": "ClusterIP"}}),
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "my-service", "namespace": "default"},
                "spec": {
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                    "selector": {"app": "my-app"},
                    "sessionAffinity": "None",
                    "type": "ClusterIP"
                },
                "status": {"loadBalancer": {}}
            })
        );
        let mut errs = Vec::new();
        strategy().validate(&obj, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn target_port_defaults_to_port_and_node_ports_get_cluster_policy() {
        let obj = created(
            json!({"metadata": {"name": "np", "namespace": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 8080}]}}),
        );
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"port": 8080, "protocol": "TCP", "targetPort": 8080}])
        );
        assert_eq!(obj["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn headless_selectorless_services_require_dual_stack() {
        let obj = created(
            json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"clusterIP": "None"}}),
        );
        assert_eq!(obj["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(obj["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(obj["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
        let mut errs = Vec::new();
        strategy().validate(&obj, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn ports_are_required_for_a_cluster_ip_service() {
        assert_eq!(
            errors(json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {}})),
            vec!["spec.ports: Required value"]
        );
    }

    #[test]
    fn several_ports_need_names() {
        assert_eq!(
            errors(
                json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"port": 80}, {"port": 443}]}})
            ),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value"
            ]
        );
    }

    #[test]
    fn bad_types_and_ports_are_reported() {
        assert_eq!(
            errors(json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "Magic", "ports": [{"port": 0, "protocol": "ICMP"}]}})),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ]
        );
    }

    #[test]
    fn external_name_services_need_a_dns_name() {
        let obj = created(
            json!({"metadata": {"name": "e", "namespace": "d"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(obj["spec"].get("ipFamilies").is_none());
        let mut errs = Vec::new();
        strategy().validate(&obj, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            errors(
                json!({"metadata": {"name": "e", "namespace": "d"}, "spec": {"type": "ExternalName"}})
            ),
            vec!["spec.externalName: Required value"]
        );
    }

    #[test]
    fn cluster_ip_may_not_change() {
        let mut old = created(
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"port": 80}]}}),
        );
        old["spec"]["clusterIP"] = json!("10.43.0.10");
        old["spec"]["clusterIPs"] = json!(["10.43.0.10"]);
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.43.0.11");
        strategy().prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.0.11"]));
        let mut errs = Vec::new();
        strategy().validate_update(&new, &old, &mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["spec.clusterIPs[0]: Invalid value: [\"10.43.0.11\"]: may not change once set"]
        );
    }

    #[test]
    fn an_update_without_cluster_ip_keeps_the_allocated_one() {
        let mut old = created(
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        old["spec"]["clusterIP"] = json!("10.43.0.10");
        old["spec"]["clusterIPs"] = json!(["10.43.0.10"]);
        old["spec"]["ports"][0]["nodePort"] = json!(30080);
        let mut new = created(
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        );
        strategy().prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.43.0.10");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    }

    #[test]
    fn table_rows_show_node_ports_and_selector() {
        let mut obj = created(
            json!({"metadata": {"name": "web", "namespace": "d", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "name": "dns"}]}}),
        );
        obj["spec"]["clusterIP"] = json!("10.43.0.20");
        obj["spec"]["clusterIPs"] = json!(["10.43.0.20"]);
        let ctx = RowContext {
            now: "2024-01-01T00:00:30Z".parse().expect("t"),
        };
        assert_eq!(
            strategy().row(&obj, &ctx),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.20"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("30s"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn a_load_balancer_without_ingress_is_pending() {
        let obj = created(
            json!({"metadata": {"name": "lb", "namespace": "d"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        let ctx = RowContext::now();
        assert_eq!(strategy().row(&obj, &ctx)[3], json!("<pending>"));
        assert_eq!(
            strategy().field_value(&obj, "spec.type").as_deref(),
            Some("LoadBalancer")
        );
        assert_eq!(obj["spec"]["allocateLoadBalancerNodePorts"], true);
    }
}
