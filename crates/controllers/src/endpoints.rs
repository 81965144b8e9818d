//! The endpoints controller: for each Service with a selector, an Endpoints object of the
//! same name listing the matching pods with an IP: ready ones in `addresses`, others in
//! `notReadyAddresses` (all ready with publishNotReadyAddresses), ports resolved per pod
//! (named target ports through the pods' container ports), headless services labelled, as
//! upstream's endpoint controller. Endpoints of a deleted Service are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::metrics;
use crate::pods;
use capstan_api::selector::Selector;
use capstan_runtime::{key_of, Cache, Change, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "endpoints";

/// A resolved port: (name, number, protocol, appProtocol).
type PortKey = (Option<String>, i32, String, Option<String>);
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// The service's selector (None: endpoints are managed by hand).
pub fn service_selector(svc: &Service) -> Option<Selector> {
    let m = svc.spec.as_ref()?.selector.as_ref()?;
    (!m.is_empty()).then(|| Selector::from_map(Some(m)))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

pub fn pod_ip(p: &Pod) -> Option<&str> {
    p.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|s| !s.is_empty())
}

/// The pod port a service port reaches (upstream's `FindPort`).
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(if *n == 0 { sp.port } else { *n }),
        Some(IntOrString::String(name)) => {
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto)
                        .then_some(p.container_port)
                })
        }
    }
}

pub fn pod_ref(p: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The labels upstream puts on a Service's Endpoints and slices: the Service's, plus the
/// headless marker.
pub fn derived_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        l.remove(HEADLESS_LABEL);
    }
    l
}

/// The subsets of a Service's Endpoints for these pods (those matching its selector).
pub fn subsets(svc: &Service, matching: &[&Pod]) -> Vec<EndpointSubset> {
    let publish = publish_not_ready(svc);
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // Address (by IP and pod) -> (address, ready, ports).
    let mut by_addr: BTreeMap<(String, String), (EndpointAddress, bool, BTreeSet<PortKey>)> =
        BTreeMap::new();
    for p in matching {
        let Some(ip) = pod_ip(p) else { continue };
        if pods::is_terminal(p) || (!publish && p.metadata.deletion_timestamp.is_some()) {
            continue;
        }
        let mut addr = EndpointAddress {
            ip: ip.into(),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(p)),
            ..Default::default()
        };
        let spec = p.spec.as_ref();
        if let (Some(h), Some(sub)) = (
            spec.and_then(|s| s.hostname.as_ref()),
            spec.and_then(|s| s.subdomain.as_ref()),
        ) {
            if Some(sub) == svc.metadata.name.as_ref() {
                addr.hostname = Some(h.clone());
            }
        }
        let ready = publish || pods::is_ready(p);
        let key = (ip.to_string(), p.metadata.uid.clone().unwrap_or_default());
        let mut set = BTreeSet::new();
        for sp in &ports {
            if let Some(port) = find_port(p, sp) {
                set.insert((
                    sp.name.clone(),
                    port,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    sp.app_protocol.clone(),
                ));
            }
        }
        if ports.is_empty() && !is_headless(svc) {
            continue;
        }
        if !ports.is_empty() && set.is_empty() {
            continue;
        }
        by_addr.insert(key, (addr, ready, set));
    }
    // Repack: addresses with the same ports share a subset (upstream's RepackSubsets).
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for (_, (addr, ready, set)) in by_addr {
        let g = groups.entry(set.into_iter().collect()).or_default();
        if ready {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| EndpointPort {
                        name,
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// Queues the services in a pod's namespace whose selectors match it (before or after).
pub fn queue_services_for_pod(services: &Cache<Service>, q: &Queue, c: &Change<Pod>) {
    let objs = c.objects();
    let ns = objs[0].metadata.namespace.as_deref().unwrap_or("");
    for svc in services.list_ns(ns) {
        let Some(sel) = service_selector(&svc) else {
            continue;
        };
        if objs
            .iter()
            .any(|p| sel.matches(&p.metadata.labels.as_ref()))
        {
            q.add(key_of(svc.as_ref()));
        }
    }
}

pub struct EndpointsController {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
}

impl EndpointsController {
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        pods: &mut Informer<Pod>,
        endpoints: &mut Informer<Endpoints>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        services.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let (q, sc) = (queue.clone(), services.cache());
        pods.on_change(move |c| queue_services_for_pod(&sc, &q, c));
        let q = queue.clone();
        endpoints.on_change(move |c| {
            if let Change::Deleted(e) = c {
                q.add(key_of(e.as_ref()));
            }
        });
        let me = Arc::new(Self {
            client,
            services: services.cache(),
            pods: pods.cache(),
            endpoints: endpoints.cache(),
        });
        (me, queue)
    }
}

#[async_trait::async_trait]
impl Reconciler for EndpointsController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let (ns, name) = capstan_runtime::split_key(key);
        let ns = ns.unwrap_or("default");
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.services.get(key) else {
            if self.endpoints.get(key).is_some() {
                metrics::global().write(NAME, "delete", "endpoints");
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Box::new(e)),
                }
            }
            return Ok(None);
        };
        let Some(sel) = service_selector(&svc) else {
            return Ok(None);
        };
        let all = self.pods.list_ns(ns);
        let mut matching: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| sel.matches(&p.metadata.labels.as_ref()))
            .collect();
        matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let subsets = subsets(&svc, &matching);
        let labels = derived_labels(&svc);
        let current = self.endpoints.get(key);
        if let Some(cur) = &current {
            let cur_subsets = cur.subsets.clone().unwrap_or_default();
            if cur_subsets == subsets && cur.metadata.labels.clone().unwrap_or_default() == labels {
                return Ok(None);
            }
        }
        let mut ep = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            subsets: None,
        });
        ep.metadata.labels = (!labels.is_empty()).then_some(labels);
        ep.subsets = (!subsets.is_empty()).then_some(subsets);
        let r = if current.is_some() {
            metrics::global().write(NAME, "update", "endpoints");
            api.replace(name, &PostParams::default(), &ep).await
        } else {
            metrics::global().write(NAME, "create", "endpoints");
            api.create(&PostParams::default(), &ep).await
        };
        match r {
            Ok(_) => Ok(None),
            // Created meanwhile, or changed under us: the informer brings us back.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(format!("endpoints {key} changed meanwhile").into())
            }
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: Option<&str>, ready: bool, port_name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name, "labels": {"app": "a"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": [{"name": port_name, "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .expect("pod")
    }

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": {"selector": {"app": "a"}, "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}});
        if let (Some(spec), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(e.clone());
        }
        serde_json::from_value(v).expect("svc")
    }

    #[test]
    fn ready_and_not_ready_pods_split_and_named_ports_resolve() {
        let a = pod("a", Some("10.42.0.2"), true, "web");
        let b = pod("b", Some("10.42.0.3"), false, "web");
        let c = pod("c", None, true, "web");
        let d = pod("d", Some("10.42.0.5"), true, "other");
        let s = subsets(&svc(json!({})), &[&a, &b, &c, &d]);
        assert_eq!(s.len(), 1, "{s:?}");
        let ips = |v: &Option<Vec<EndpointAddress>>| {
            v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&s[0].addresses), ["10.42.0.2"]);
        assert_eq!(ips(&s[0].not_ready_addresses), ["10.42.0.3"]);
        let p = &s[0].ports.as_ref().expect("ports")[0];
        assert_eq!((p.name.as_deref(), p.port), (Some("http"), 8080));
        assert_eq!(
            s[0].addresses.as_ref().expect("a")[0]
                .target_ref
                .as_ref()
                .and_then(|r| r.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let b = pod("b", Some("10.42.0.3"), false, "web");
        let s = subsets(&svc(json!({"publishNotReadyAddresses": true})), &[&b]);
        assert_eq!(s[0].addresses.as_ref().map(Vec::len), Some(1));
        assert!(s[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_services_without_ports_list_addresses_and_are_labelled() {
        let a = pod("a", Some("10.42.0.2"), true, "web");
        let mut sv = svc(json!({"clusterIP": "None"}));
        if let Some(s) = sv.spec.as_mut() {
            s.ports = None;
        }
        let s = subsets(&sv, &[&a]);
        assert_eq!(s.len(), 1);
        assert!(s[0].ports.is_none());
        assert!(derived_labels(&sv).contains_key(HEADLESS_LABEL));
    }
}
