//! The EndpointSlice controller: for each Service with a selector, discovery.k8s.io/v1
//! EndpointSlices (IPv4, at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, one set of ports
//! per slice) listing the matching pods with ready/serving/terminating conditions, labelled
//! `kubernetes.io/service-name` and managed-by, owned by the Service (the garbage collector
//! removes them with it), as upstream's endpointslice controller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::endpoints::{
    derived_labels, find_port, pod_ip, pod_ref, publish_not_ready, queue_services_for_pod,
    service_selector,
};
use crate::metrics;
use crate::owner::owner_ref;
use crate::pods;
use capstan_runtime::{key_of, Cache, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "endpointslice";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's default --max-endpoints-per-slice.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// A resolved port: (name, number, protocol).
type PortKey = (Option<String>, i32, String);

/// The desired slices' contents: (ports, endpoints) per slice.
pub fn desired_slices(svc: &Service, matching: &[&Pod]) -> Vec<(Vec<EndpointPort>, Vec<Endpoint>)> {
    let publish = publish_not_ready(svc);
    let sports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<Vec<PortKey>, Vec<Endpoint>> = BTreeMap::new();
    for p in matching {
        let Some(ip) = pod_ip(p) else { continue };
        if pods::is_terminal(p) {
            continue;
        }
        let ports: Vec<PortKey> = sports
            .iter()
            .filter_map(|sp| {
                find_port(p, sp).map(|n| {
                    (
                        sp.name.clone(),
                        n,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    )
                })
            })
            .collect();
        let terminating = p.metadata.deletion_timestamp.is_some();
        let serving = publish || pods::is_ready(p);
        groups.entry(ports).or_default().push(Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(p)),
            ..Default::default()
        });
    }
    let mut out = Vec::new();
    for (ports, eps) in groups {
        let ports: Vec<EndpointPort> = ports
            .into_iter()
            .map(|(name, port, protocol)| EndpointPort {
                name,
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: None,
            })
            .collect();
        for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

pub struct EndpointSliceController {
    client: Client,
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
}

fn slice_service(s: &EndpointSlice) -> Option<String> {
    let l = s.metadata.labels.as_ref()?;
    if l.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    Some(format!(
        "{}/{}",
        s.metadata.namespace.as_deref()?,
        l.get(SERVICE_NAME_LABEL)?
    ))
}

impl EndpointSliceController {
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        pods: &mut Informer<Pod>,
        slices: &mut Informer<EndpointSlice>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        services.on_change(move |c| q.add(key_of(c.latest().as_ref())));
        let (q, sc) = (queue.clone(), services.cache());
        pods.on_change(move |c| queue_services_for_pod(&sc, &q, c));
        let q = queue.clone();
        slices.on_change(move |c| {
            if let Some(k) = slice_service(c.latest()) {
                q.add(k);
            }
        });
        let me = Arc::new(Self {
            client,
            services: services.cache(),
            pods: pods.cache(),
            slices: slices.cache(),
        });
        (me, queue)
    }
}

#[async_trait::async_trait]
impl Reconciler for EndpointSliceController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let (ns, name) = capstan_runtime::split_key(key);
        let ns = ns.unwrap_or("default");
        // A deleted Service's slices go with it (owner reference, garbage collector).
        let Some(svc) = self.services.get(key) else {
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
        let desired = desired_slices(&svc, &matching);
        let mut existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_ns(ns)
            .into_iter()
            .filter(|s| slice_service(s).as_deref() == Some(key))
            .collect();
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut labels = derived_labels(&svc);
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        // A service with no endpoints still gets one (empty) slice, as upstream.
        let desired = if desired.is_empty() {
            vec![(Vec::new(), Vec::new())]
        } else {
            desired
        };
        for i in 0..desired.len().max(existing.len()) {
            match (desired.get(i), existing.get(i)) {
                (Some((ports, eps)), Some(cur)) => {
                    let same = cur.endpoints == *eps
                        && cur.ports.clone().unwrap_or_default() == *ports
                        && cur.metadata.labels.clone().unwrap_or_default() == labels;
                    if same {
                        continue;
                    }
                    let mut s = (**cur).clone();
                    s.endpoints = eps.clone();
                    s.ports = Some(ports.clone());
                    s.metadata.labels = Some(labels.clone());
                    metrics::global().write(NAME, "update", "endpointslices");
                    api.replace(&s.name_any(), &PostParams::default(), &s)
                        .await?;
                }
                (Some((ports, eps)), None) => {
                    let s = EndpointSlice {
                        metadata: ObjectMeta {
                            generate_name: Some(format!("{name}-")),
                            namespace: Some(ns.into()),
                            labels: Some(labels.clone()),
                            owner_references: Some(vec![owner_ref("v1", "Service", &svc.metadata)]),
                            ..Default::default()
                        },
                        address_type: "IPv4".into(),
                        endpoints: eps.clone(),
                        ports: Some(ports.clone()),
                    };
                    metrics::global().write(NAME, "create", "endpointslices");
                    match api.create(&PostParams::default(), &s).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {}
                        Err(e) => return Err(Box::new(e)),
                    }
                }
                (None, Some(cur)) => {
                    metrics::global().write(NAME, "delete", "endpointslices");
                    match api.delete(&cur.name_any(), &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(Box::new(e)),
                    }
                }
                (None, None) => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_carry_ready_serving_and_terminating_and_chunk_at_the_limit() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})).expect("svc");
        let pods: Vec<Pod> = (0..150)
            .map(|i| {
                let mut p: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p{i:03}"), "namespace": "ns", "labels": {"app": "a"}},
                    "spec": {"containers": []},
                    "status": {"podIP": format!("10.42.0.{}", i % 250), "conditions": [{"type": "Ready", "status": if i % 2 == 0 {"True"} else {"False"}}]}
                }))
                .expect("pod");
                if i == 0 {
                    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
                }
                p
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let slices = desired_slices(&svc, &refs);
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].1.len(), 100);
        assert_eq!(slices[0].0[0].port, Some(8080));
        let c0 = slices[0].1[0].conditions.clone().expect("conditions");
        assert_eq!(
            (c0.ready, c0.serving, c0.terminating),
            (Some(false), Some(true), Some(true))
        );
        let c1 = slices[0].1[1].conditions.clone().expect("conditions");
        assert_eq!(c1.ready, Some(false));
        let c2 = slices[0].1[2].conditions.clone().expect("conditions");
        assert_eq!(c2.ready, Some(true));
    }
}
