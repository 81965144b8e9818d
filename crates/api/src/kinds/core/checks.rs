//! Value checks shared by the core kinds and pod specs, each worded as upstream's
//! apimachinery/core validation helper of the same purpose: ports, IPs, keys, environment
//! variable names, label selectors, resource names and quantities, relative paths.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::quantity::{self, Quantity};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::validation::{
    dns1123_label, dns1123_subdomain, label_value, qualified_name, validate_labels,
};

/// "must be between 1 and 65535, inclusive" unless `port` is a valid port number.
pub(crate) fn port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range(1, 65535)]
    }
}

pub(crate) fn inclusive_range(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

/// Upstream's IsValidPortName (IANA service names).
pub(crate) fn port_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Checks a port given as number or name (upstream's ValidatePortNumOrName).
pub(crate) fn port_num_or_name(
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
    path: &Path,
    errs: &mut ErrorList,
) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port {
        IntOrString::Int(n) => {
            for msg in port_num(i64::from(*n)) {
                errs.push(FieldError::invalid(path, *n, msg));
            }
        }
        IntOrString::String(s) => {
            for msg in port_name(s) {
                errs.push(FieldError::invalid(path, s.as_str(), msg));
            }
        }
    }
}

/// Parses an IP address as Go's ParseIPSloppy does (IPv4 octets may have leading zeros).
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Upstream's IsValidIP: one Invalid error at `path` when `value` is not an IP address.
pub(crate) fn valid_ip(value: &str, path: &Path, errs: &mut ErrorList) -> bool {
    if parse_ip(value).is_some() {
        true
    } else {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
        false
    }
}

/// Upstream's ValidateNonSpecialIP: no unspecified, loopback or link-local addresses.
pub(crate) fn non_special_ip(value: &str, path: &Path, errs: &mut ErrorList) {
    let Some(ip) = parse_ip(value) else {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a valid IP address",
        ));
        return;
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (
                v4.is_unspecified(),
                v4.is_loopback(),
                o[0] == 169 && o[1] == 254,
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            match v6.to_ipv4_mapped() {
                Some(v4) => {
                    let o = v4.octets();
                    (
                        v4.is_unspecified(),
                        v4.is_loopback(),
                        o[0] == 169 && o[1] == 254,
                        o[0] == 224 && o[1] == 0 && o[2] == 0,
                    )
                }
                None => (
                    v6.is_unspecified(),
                    v6.is_loopback(),
                    (s[0] & 0xffc0) == 0xfe80,
                    (s[0] & 0xff0f) == 0xff02,
                ),
            }
        }
    };
    if unspecified {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("may not be unspecified ({value})"),
        ));
    }
    if loopback {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

/// Upstream's IsValidCIDR.
pub(crate) fn valid_cidr(value: &str, path: &Path, errs: &mut ErrorList) {
    let ok = value
        .split_once('/')
        .and_then(|(ip, bits)| {
            let ip = parse_ip(ip)?;
            let bits: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (bits <= max).then_some(())
        })
        .is_some();
    if !ok {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

/// Upstream's IsConfigMapKey (keys of ConfigMaps and Secrets).
pub(crate) fn config_map_key(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        errs.push("must not be '.'".to_string());
    } else if key == ".." {
        errs.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Upstream's IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation is on in 1.32).
pub(crate) fn env_var_name(name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec!["environment variable name must be non-empty".to_string()];
    }
    if name
        .chars()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
    {
        return vec![
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        ];
    }
    Vec::new()
}

/// Upstream's IsHTTPHeaderName.
pub(crate) fn http_header_name(name: &str) -> Vec<String> {
    if !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        Vec::new()
    } else {
        vec!["a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')".to_string()]
    }
}

/// Upstream's ValidateLabelName: a qualified name.
pub(crate) fn label_name(name: &str, path: &Path, errs: &mut ErrorList) {
    for msg in qualified_name(name) {
        errs.push(FieldError::invalid(path, name, msg));
    }
}

/// Upstream's ValidateQualifiedName.
pub(crate) fn qualified(name: &str, path: &Path, errs: &mut ErrorList) {
    label_name(name, path, errs);
}

/// Upstream's ValidateDNS1123Label.
pub(crate) fn dns_label(value: &str, path: &Path, errs: &mut ErrorList) {
    for msg in dns1123_label(value) {
        errs.push(FieldError::invalid(path, value, msg));
    }
}

/// Upstream's ValidateDNS1123Subdomain (and every NameIsDNSSubdomain name check).
pub(crate) fn dns_subdomain(value: &str, path: &Path, errs: &mut ErrorList) {
    for msg in dns1123_subdomain(value) {
        errs.push(FieldError::invalid(path, value, msg));
    }
}

/// Upstream's metav1 ValidateLabelSelector.
pub(crate) fn label_selector(sel: &LabelSelector, path: &Path, errs: &mut ErrorList) {
    if let Some(ml) = &sel.match_labels {
        validate_labels(ml, &path.child("matchLabels"), errs);
    }
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        p.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        label_name(&expr.key, &p.child("key"), errs);
        for (vi, v) in values.iter().enumerate() {
            for msg in label_value(v) {
                errs.push(FieldError::invalid(
                    p.child("values").index(vi),
                    v.as_str(),
                    msg,
                ));
            }
        }
    }
}

/// Whether a label selector (map form) matches a label set; an empty selector matches all.
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

// ---- resource names ------------------------------------------------------------------------

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// No '/' or a kubernetes.io/ prefix.
pub(crate) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

pub(crate) fn is_extended_resource(name: &str) -> bool {
    if is_native_resource(name) || name.starts_with("requests.") {
        return false;
    }
    qualified_name(&format!("requests.{name}")).is_empty()
}

/// Requests may be below limits (not for hugepages or extended resources).
pub(crate) fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "storage",
    "requests.storage",
    "services.nodeports",
    "services.loadbalancers",
];

const STANDARD_QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

fn is_quota_hugepages(name: &str) -> bool {
    name.starts_with("requests.hugepages-") || name.starts_with("limits.hugepages-")
}

pub(crate) fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || is_extended_resource(name)
}

/// Upstream's validateResourceName: qualified, and standard unless prefixed.
pub(crate) fn resource_name(name: &str, path: &Path, errs: &mut ErrorList) -> bool {
    let before = errs.len();
    label_name(name, path, errs);
    if errs.len() != before {
        return false;
    }
    let standard =
        STANDARD_RESOURCES.contains(&name) || is_hugepages(name) || is_quota_hugepages(name);
    if !name.contains('/') && !standard {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource type or fully qualified",
        ));
        return false;
    }
    true
}

/// Upstream's validateContainerResourceName.
pub(crate) fn container_resource_name(name: &str, path: &Path, errs: &mut ErrorList) {
    resource_name(name, path, errs);
    if !name.contains('/') {
        if !(matches!(name, "cpu" | "memory" | "ephemeral-storage") || is_hugepages(name)) {
            errs.push(FieldError::invalid(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

/// Upstream's IsStandardQuotaResourceName.
pub(crate) fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name) || is_quota_hugepages(name)
}

/// Upstream's ValidateResourceQuotaResourceName.
pub(crate) fn quota_resource_name(name: &str, path: &Path, errs: &mut ErrorList) {
    resource_name(name, path, errs);
    if !name.contains('/') && !is_standard_quota_resource(name) {
        errs.push(FieldError::invalid(
            path,
            name,
            "must be a standard resource for quota",
        ));
    }
}

/// Parses a quantity, reporting a malformed one at `path`.
pub(crate) fn parse_quantity(
    q: &QuantityString,
    path: &Path,
    errs: &mut ErrorList,
) -> Option<Quantity> {
    match quantity::parse(q) {
        Ok(v) => Some(v),
        Err(e) => {
            errs.push(FieldError::invalid(path, q.0.as_str(), e.to_string()));
            None
        }
    }
}

/// The canonical string of a quantity as a JSON value, as upstream renders a bad Quantity.
pub(crate) fn quantity_value(q: &Quantity) -> Value {
    Value::String(q.canonical())
}

/// Upstream's ValidateResourceQuantityValue: not negative, whole for integer resources.
pub(crate) fn resource_quantity_value(name: &str, q: &Quantity, path: &Path, errs: &mut ErrorList) {
    if q.is_negative() {
        errs.push(FieldError::invalid(
            path,
            q.canonical(),
            "must be greater than or equal to 0",
        ));
    }
    if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
        errs.push(FieldError::invalid(
            path,
            quantity_value(q),
            "must be an integer",
        ));
    }
}

/// Parses and checks every quantity of a resource list; returns the parsed values.
pub(crate) fn resource_list(
    list: Option<&BTreeMap<String, QuantityString>>,
    path: &Path,
    mut check_name: impl FnMut(&str, &Path, &mut ErrorList),
    errs: &mut ErrorList,
) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for (k, v) in list.into_iter().flatten() {
        let p = path.key(k);
        check_name(k, &p, errs);
        if let Some(q) = parse_quantity(v, &p, errs) {
            resource_quantity_value(k, &q, &p, errs);
            out.insert(k.clone(), q);
        }
    }
    out
}

// ---- paths ---------------------------------------------------------------------------------

/// Upstream's validatePathNoBacksteps.
pub(crate) fn path_no_backsteps(target: &str, path: &Path, errs: &mut ErrorList) {
    if target.split('/').any(|p| p == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

/// Upstream's validateLocalDescendingPath.
pub(crate) fn local_descending_path(target: &str, path: &Path, errs: &mut ErrorList) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    path_no_backsteps(target, path, errs);
}

/// Upstream's ValidateLocalNonReservedPath.
pub(crate) fn local_non_reserved_path(target: &str, path: &Path, errs: &mut ErrorList) {
    local_descending_path(target, path, errs);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(FieldError::invalid(
            path,
            target,
            "must not start with '..'",
        ));
    }
}

/// Upstream's ValidateNonnegativeField for any integer.
pub(crate) fn non_negative(v: i64, path: &Path, errs: &mut ErrorList) {
    crate::validation::non_negative(v, path, errs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana_rules() {
        assert!(port_name("http").is_empty());
        assert!(port_name("http-alt2").is_empty());
        assert_eq!(
            port_name("80"),
            vec!["must contain at least one letter (a-z)".to_string()]
        );
        assert_eq!(port_name("a--b").len(), 1);
        assert_eq!(port_name("-ab").len(), 1);
        assert_eq!(port_name("HTTP").len(), 2);
        assert_eq!(port_name("abcdefghijklmnop").len(), 1);
    }

    #[test]
    fn config_map_keys_follow_upstream() {
        assert!(config_map_key("app.properties").is_empty());
        assert!(config_map_key("KEY_1-x").is_empty());
        assert_eq!(config_map_key("a/b").len(), 1);
        assert_eq!(config_map_key(".."), vec!["must not be '..'".to_string()]);
        assert_eq!(
            config_map_key("..a"),
            vec!["must not start with '..'".to_string()]
        );
    }

    #[test]
    fn ips_are_parsed_sloppily_like_go() {
        assert!(parse_ip("10.0.0.1").is_some());
        assert!(parse_ip("010.000.0.1").is_some());
        assert!(parse_ip("2001:db8::1").is_some());
        assert!(parse_ip("10.0.0").is_none());
        assert!(parse_ip("host").is_none());
    }

    #[test]
    fn special_ips_are_rejected() {
        let mut errs = Vec::new();
        non_special_ip("127.0.0.1", &Path::new("ip"), &mut errs);
        non_special_ip("169.254.1.1", &Path::new("ip"), &mut errs);
        non_special_ip("0.0.0.0", &Path::new("ip"), &mut errs);
        non_special_ip("10.1.2.3", &Path::new("ip"), &mut errs);
        assert_eq!(errs.len(), 3);
        assert_eq!(
            errs[0].to_string(),
            "ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"
        );
    }

    #[test]
    fn extended_resources_are_recognised() {
        assert!(is_extended_resource("example.com/gpu"));
        assert!(!is_extended_resource("cpu"));
        assert!(!is_extended_resource("kubernetes.io/foo"));
        assert!(is_overcommit_allowed("cpu"));
        assert!(!is_overcommit_allowed("hugepages-2Mi"));
        assert!(!is_overcommit_allowed("example.com/gpu"));
    }
}
