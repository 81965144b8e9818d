//! `Index`: what cluster DNS answers from, derived from Services and EndpointSlices as the
//! informers report them. Each object is parsed once, when it changes (addresses, ports,
//! readiness), so a query only looks up two hash maps under a read lock: no store or API read
//! and no parsing per query. Its size follows the cluster's objects, never the queries.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use parking_lot::RwLock;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a Service's own name answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A/AAAA of its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: A/AAAA of its ready endpoints.
    Headless,
    /// A CNAME to this name (lowercase, without the trailing dot).
    ExternalName(String),
}

/// One Service port as SRV records need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// Lowercase port name; empty for an unnamed port (no SRV record, as upstream).
    pub name: String,
    /// Lowercase protocol: tcp, udp or sctp.
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: ServiceKind,
    pub ports: Vec<PortEntry>,
    /// Not-ready endpoints are published too (`spec.publishNotReadyAddresses`).
    pub publish_not_ready: bool,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    pub addresses: Vec<IpAddr>,
    /// Lowercase `hostname` (set for pods with a hostname and a subdomain naming the Service).
    pub hostname: Option<String>,
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEntry {
    pub endpoints: Vec<EndpointEntry>,
    pub ports: Vec<PortEntry>,
}

type Key = (String, String);

#[derive(Default)]
struct Inner {
    services: HashMap<Key, Arc<ServiceEntry>>,
    /// Slices by the Service they serve, then by slice name.
    slices: HashMap<Key, BTreeMap<String, Arc<SliceEntry>>>,
    /// Which Service each slice (namespace, slice name) was filed under, so a relabelled or
    /// deleted slice leaves its old Service.
    slice_service: HashMap<Key, String>,
    /// Services per namespace: a namespace with Services is a name that exists (NODATA, not
    /// NXDOMAIN).
    namespaces: HashMap<String, usize>,
    serial: u32,
}

/// The shared index: one writer (the informers' handlers), many readers (queries).
#[derive(Clone, Default)]
pub struct Index {
    inner: Arc<RwLock<Inner>>,
}

/// A read-only view for one query.
pub struct View<'a> {
    inner: parking_lot::RwLockReadGuard<'a, Inner>,
}

impl View<'_> {
    pub fn service(&self, ns: &str, name: &str) -> Option<&ServiceEntry> {
        self.inner
            .services
            .get(&(ns.to_string(), name.to_string()))
            .map(|s| s.as_ref())
    }

    /// The slices of Service `ns/name`.
    pub fn slices(&self, ns: &str, name: &str) -> impl Iterator<Item = &SliceEntry> {
        self.inner
            .slices
            .get(&(ns.to_string(), name.to_string()))
            .into_iter()
            .flat_map(|m| m.values().map(|s| s.as_ref()))
    }

    /// Every Service as (namespace, name, entry).
    pub fn all_services(&self) -> impl Iterator<Item = (&str, &str, &ServiceEntry)> {
        self.inner
            .services
            .iter()
            .map(|((ns, name), e)| (ns.as_str(), name.as_str(), e.as_ref()))
    }

    pub fn namespace_has_services(&self, ns: &str) -> bool {
        self.inner.namespaces.get(ns).is_some_and(|n| *n > 0)
    }

    /// The SOA serial: the time of the last change, as CoreDNS's kubernetes plugin keeps it.
    pub fn serial(&self) -> u32 {
        self.inner.serial
    }
}

fn now_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

impl Index {
    pub fn new() -> Self {
        let idx = Self::default();
        idx.inner.write().serial = now_serial();
        idx
    }

    pub fn view(&self) -> View<'_> {
        View {
            inner: self.inner.read(),
        }
    }

    /// Number of Services indexed (for logs and tests).
    pub fn services(&self) -> usize {
        self.inner.read().services.len()
    }

    pub fn apply_service(&self, svc: &Service) {
        let Some((ns, name)) = ns_name(&svc.metadata) else {
            return;
        };
        let entry = Arc::new(service_entry(svc));
        let mut inner = self.inner.write();
        let old = inner.services.insert((ns.clone(), name), entry);
        if old.is_none() {
            *inner.namespaces.entry(ns).or_default() += 1;
        }
        inner.serial = now_serial();
    }

    pub fn delete_service(&self, svc: &Service) {
        let Some((ns, name)) = ns_name(&svc.metadata) else {
            return;
        };
        let mut inner = self.inner.write();
        if inner.services.remove(&(ns.clone(), name)).is_some() {
            if let Some(n) = inner.namespaces.get_mut(&ns) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    inner.namespaces.remove(&ns);
                }
            }
        }
        inner.serial = now_serial();
    }

    pub fn apply_slice(&self, slice: &EndpointSlice) {
        let Some((ns, name)) = ns_name(&slice.metadata) else {
            return;
        };
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .cloned();
        let entry = Arc::new(slice_entry(slice));
        let mut inner = self.inner.write();
        remove_slice(&mut inner, &ns, &name);
        if let Some(svc) = service {
            inner
                .slices
                .entry((ns.clone(), svc.clone()))
                .or_default()
                .insert(name.clone(), entry);
            inner.slice_service.insert((ns, name), svc);
        }
        inner.serial = now_serial();
    }

    pub fn delete_slice(&self, slice: &EndpointSlice) {
        let Some((ns, name)) = ns_name(&slice.metadata) else {
            return;
        };
        let mut inner = self.inner.write();
        remove_slice(&mut inner, &ns, &name);
        inner.serial = now_serial();
    }
}

fn remove_slice(inner: &mut Inner, ns: &str, name: &str) {
    let Some(svc) = inner
        .slice_service
        .remove(&(ns.to_string(), name.to_string()))
    else {
        return;
    };
    let key = (ns.to_string(), svc);
    if let Some(m) = inner.slices.get_mut(&key) {
        m.remove(name);
        if m.is_empty() {
            inner.slices.remove(&key);
        }
    }
}

fn ns_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some((m.namespace.clone()?, m.name.clone()?))
}

fn port_entry(name: Option<&str>, protocol: Option<&str>, port: i32) -> Option<PortEntry> {
    Some(PortEntry {
        name: name.unwrap_or_default().to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(port).ok()?,
    })
}

/// What a Service's spec means for DNS.
pub fn service_entry(svc: &Service) -> ServiceEntry {
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec
            .external_name
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        ServiceKind::ExternalName(target)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec
            .cluster_ips
            .unwrap_or_default()
            .iter()
            .chain(spec.cluster_ip.iter())
            .filter_map(|s| s.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        ServiceKind::ClusterIp(ips)
    };
    let ports = spec
        .ports
        .unwrap_or_default()
        .iter()
        .filter_map(|p| port_entry(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect();
    ServiceEntry {
        kind,
        ports,
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    }
}

/// What an EndpointSlice means for DNS: addresses parsed, readiness as upstream reads it (a
/// missing `ready` condition counts as ready).
pub fn slice_entry(slice: &EndpointSlice) -> SliceEntry {
    let endpoints = slice
        .endpoints
        .iter()
        .map(|e| EndpointEntry {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
            ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
        })
        .collect();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port_entry(p.name.as_deref(), p.protocol.as_deref(), p.port?))
        .collect();
    SliceEntry { endpoints, ports }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    #[test]
    fn services_are_indexed_and_removed_with_their_namespace_count() {
        let idx = Index::new();
        let s = svc(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "HTTP", "port": 80}]}}));
        idx.apply_service(&s);
        idx.apply_service(&s);
        {
            let v = idx.view();
            let e = v.service("shop", "web").expect("indexed");
            assert_eq!(
                e.kind,
                ServiceKind::ClusterIp(vec!["10.43.0.20".parse().expect("ip")])
            );
            assert_eq!(e.ports[0].name, "http");
            assert_eq!(e.ports[0].protocol, "tcp");
            assert!(v.namespace_has_services("shop"));
        }
        idx.delete_service(&s);
        let v = idx.view();
        assert!(v.service("shop", "web").is_none());
        assert!(!v.namespace_has_services("shop"));
    }

    #[test]
    fn a_relabelled_slice_moves_to_its_new_service() {
        let idx = Index::new();
        let mk = |svc: &str| {
            slice(json!({"metadata": {"name": "s1", "namespace": "ns",
                "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.42.0.5"], "conditions": {"ready": false}}]}))
        };
        idx.apply_slice(&mk("a"));
        assert_eq!(idx.view().slices("ns", "a").count(), 1);
        idx.apply_slice(&mk("b"));
        assert_eq!(idx.view().slices("ns", "a").count(), 0);
        let v = idx.view();
        let s: Vec<_> = v.slices("ns", "b").collect();
        assert_eq!(s.len(), 1);
        assert!(!s[0].endpoints[0].ready);
        drop(v);
        idx.delete_slice(&mk("b"));
        assert_eq!(idx.view().slices("ns", "b").count(), 0);
    }
}
