//! The service load-balancer controller (k3s's ServiceLB without its DaemonSet): every
//! LoadBalancer Service without a `loadBalancerClass` gets the InternalIPs of the Ready nodes
//! as `status.loadBalancer.ingress`, where every node's service proxy answers its ports.
//! It runs once per cluster, under the controller manager's Lease: one writer per status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::metrics;
use capstan_runtime::{split_key, Cache, Informer, Queue, ReconcileError, Reconciler};

const NAME: &str = "servicelb";

pub struct ServiceLbController {
    client: Client,
    services: Cache<Service>,
    nodes: Cache<Node>,
}

impl ServiceLbController {
    pub fn new(
        client: Client,
        services: &mut Informer<Service>,
        nodes: &mut Informer<Node>,
    ) -> (Arc<Self>, Queue) {
        let queue = Queue::new();
        let q = queue.clone();
        services.on_change(move |c| q.add(capstan_runtime::key_of(c.latest().as_ref())));
        let q = queue.clone();
        let svc_cache = services.cache();
        nodes.on_change(move |_| {
            for s in svc_cache.list() {
                if is_load_balancer(&s) {
                    q.add(capstan_runtime::key_of(s.as_ref()));
                }
            }
        });
        let me = Arc::new(Self {
            client,
            services: services.cache(),
            nodes: nodes.cache(),
        });
        (me, queue)
    }
}

fn is_load_balancer(s: &Service) -> bool {
    s.spec.as_ref().is_some_and(|spec| {
        spec.type_.as_deref() == Some("LoadBalancer") && spec.load_balancer_class.is_none()
    })
}

/// The InternalIPs of the Ready nodes (of every node when none is Ready yet), sorted.
pub fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let internal = |n: &Node| -> Vec<String> {
        n.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address.clone())
            .collect()
    };
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let mut out: BTreeSet<String> = nodes
        .iter()
        .filter(|n| ready(n))
        .flat_map(|n| internal(n))
        .collect();
    if out.is_empty() {
        out = nodes.iter().flat_map(|n| internal(n)).collect();
    }
    out.into_iter().collect()
}

fn current_ingress(s: &Service) -> Vec<String> {
    s.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

#[async_trait::async_trait]
impl Reconciler for ServiceLbController {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        let Some(svc) = self.services.get(key) else {
            return Ok(None);
        };
        let (ns, name) = split_key(key);
        let want: Vec<String> = if is_load_balancer(&svc) {
            node_addresses(&self.nodes.list())
        } else if svc
            .spec
            .as_ref()
            .is_some_and(|s| s.load_balancer_class.is_none())
        {
            // No longer a LoadBalancer: the addresses we gave it go.
            Vec::new()
        } else {
            return Ok(None);
        };
        if current_ingress(&svc) == want {
            return Ok(None);
        }
        let ingress: Vec<_> = want
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": if ingress.is_empty() { serde_json::Value::Null } else { json!(ingress) }}}});
        metrics::global().write(NAME, "patch", "services/status");
        Api::<Service>::namespaced(self.client.clone(), ns.unwrap_or_default())
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                ReconcileError::from(format!(
                    "setting the load-balancer status of {}: {e}",
                    svc.name_any()
                ))
            })?;
        tracing::info!(service = key, ingress = ?want, "load-balancer ingress set to the nodes' addresses");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus};

    fn node(ip: &str, ready: &str) -> Arc<Node> {
        Arc::new(Node {
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn ready_nodes_give_their_addresses_and_all_nodes_when_none_is_ready() {
        let nodes = vec![node("10.0.0.2", "True"), node("10.0.0.1", "False")];
        assert_eq!(node_addresses(&nodes), vec!["10.0.0.2"]);
        let nodes = vec![node("10.0.0.2", "Unknown"), node("10.0.0.1", "False")];
        assert_eq!(node_addresses(&nodes), vec!["10.0.0.1", "10.0.0.2"]);
    }
}
