//! [`PodInfo`]: what the scheduler needs from a pod, parsed once when the pod arrives from the
//! watch (requests, host ports, node selection, tolerations, affinity terms, spread
//! constraints), so that the per-node work of a scheduling cycle never touches JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration};

use crate::labels::Labels;
use crate::resources::{pod_non_zero_requests, pod_requests, Resources};
use capstan_api::selector::{NodeSelector, NodeSelectorTerm, Selector};

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn format_time(t: k8s_openapi::jiff::Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t).unwrap_or_default()
}

/// "namespace/name".
pub type PodKey = Arc<str>;

pub fn pod_key(namespace: &str, name: &str) -> PodKey {
    Arc::from(format!("{namespace}/{name}"))
}

/// A host port a pod asks for (protocol defaults to TCP, IP to 0.0.0.0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

/// A compiled pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityTerm {
    /// The namespaces named by the term (the pod's own when neither a list nor a selector is given).
    pub namespaces: Vec<String>,
    /// Namespaces selected by labels (selects nothing when absent).
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
    /// The topology is the node itself (`kubernetes.io/hostname`): checked on the node alone
    /// when hostnames are unique.
    pub per_host: bool,
}

/// The label whose domains are single nodes.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

impl AffinityTerm {
    fn from_api(pod_ns: &str, pod_labels: &Labels, t: &PodAffinityTerm) -> Self {
        let mut selector = Selector::from_api(t.label_selector.as_ref());
        // matchLabelKeys / mismatchLabelKeys: the pod's own values join the selector.
        if t.label_selector.is_some() {
            for k in t.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.require(k, v, true);
                }
            }
            for k in t.mismatch_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.require(k, v, false);
                }
            }
        }
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(pod_ns.to_string());
        }
        Self {
            namespaces,
            namespace_selector: Selector::from_api(t.namespace_selector.as_ref()),
            selector,
            per_host: t.topology_key == HOSTNAME_LABEL,
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether a pod in `namespace` (whose namespace carries `ns_labels`) with `labels` is
    /// selected by this term.
    pub fn matches(&self, namespace: &str, labels: &Labels, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.iter().any(|n| n == namespace)
            || (!self.namespace_selector.is_nothing()
                && ns_labels.is_some_and(|l| self.namespace_selector.matches(l)));
        ns_ok && self.selector.matches(labels)
    }

    pub fn matches_pod(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        self.matches(&pod.namespace, &pod.labels, ns_labels)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightedAffinityTerm {
    pub weight: i32,
    pub term: AffinityTerm,
}

/// A compiled topology spread constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// DoNotSchedule (a filter) rather than ScheduleAnyway (a score).
    pub hard: bool,
    pub selector: Selector,
    pub min_domains: Option<i32>,
    /// nodeAffinityPolicy: Honor (the default) counts only nodes matching the pod's node affinity.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy: Honor counts only nodes whose taints the pod tolerates (default Ignore).
    pub honor_node_taints: bool,
}

/// Everything about a pod that scheduling decisions read. Two versions of a pod with equal
/// `SchedulingSpec`s schedule the same way, which is how updates that cannot matter (status
/// writes) are told apart from ones that can.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulingSpec {
    pub labels: Labels,
    pub priority: i32,
    pub preemption_never: bool,
    pub scheduler_name: String,
    pub gated: bool,
    pub requests: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    pub node_selector: BTreeMap<String, String>,
    pub required_node_affinity: Option<NodeSelector>,
    pub preferred_node_affinity: Vec<(i32, NodeSelectorTerm)>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    pub spread: Vec<SpreadConstraint>,
    /// The PersistentVolumeClaims its volumes name (volume binding).
    pub claims: Vec<String>,
}

/// The pod's PodScheduled condition as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledCondition {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<String>,
}

/// The pod's controlling owner (for default topology spreading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerRef {
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

/// A parsed pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub key: PodKey,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The node it is bound to ("" while pending).
    pub node_name: String,
    pub terminating: bool,
    pub spec: SchedulingSpec,
    pub scheduled_condition: Option<ScheduledCondition>,
    pub nominated_node: String,
    pub resource_version: String,
    pub controller: Option<ControllerRef>,
}

impl std::ops::Deref for PodInfo {
    type Target = SchedulingSpec;
    fn deref(&self) -> &SchedulingSpec {
        &self.spec
    }
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = meta.name.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.as_ref();

        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                let Some(hp) = p.host_port.filter(|h| *h > 0) else {
                    continue;
                };
                host_ports.push(HostPort {
                    protocol: p
                        .protocol
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "TCP".into()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    port: hp,
                });
            }
        }

        let affinity = spec.affinity.as_ref();
        let node_aff = affinity.and_then(|a| a.node_affinity.as_ref());
        let pod_aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti_aff = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let terms = |list: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            list.into_iter()
                .flatten()
                .map(|t| AffinityTerm::from_api(&namespace, &labels, t))
                .collect()
        };
        let weighted = |list: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            list.into_iter()
                .flatten()
                .map(|w| WeightedAffinityTerm {
                    weight: w.weight,
                    term: AffinityTerm::from_api(&namespace, &labels, &w.pod_affinity_term),
                })
                .collect::<Vec<_>>()
        };

        let spread = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = Selector::from_api(c.label_selector.as_ref());
                if c.label_selector.is_some() {
                    for k in c.match_label_keys.iter().flatten() {
                        if let Some(v) = labels.get(k) {
                            selector.require(k, v, true);
                        }
                    }
                }
                SpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    selector,
                    min_domains: c.min_domains,
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();

        let (non_zero_cpu, non_zero_memory) = pod_non_zero_requests(pod);
        let scheduling = SchedulingSpec {
            priority: spec.priority.unwrap_or(0),
            preemption_never: spec.preemption_policy.as_deref() == Some("Never"),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            requests: pod_requests(pod),
            non_zero_cpu,
            non_zero_memory,
            host_ports,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_aff
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(NodeSelector::from_api),
            preferred_node_affinity: node_aff
                .and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (p.weight, NodeSelectorTerm::from_api(&p.preference)))
                .collect(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            required_affinity: terms(pod_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: terms(anti_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: weighted(pod_aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: weighted(anti_aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            spread,
            labels,
            claims: capstan_api::volume::pod_claims(pod)
                .into_iter()
                .map(|c| c.claim)
                .collect(),
        };
        let scheduled_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .map(|c| ScheduledCondition {
                status: c.status.clone(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                last_transition_time: c.last_transition_time.as_ref().map(|t| format_time(t.0)),
            });
        PodInfo {
            key: pod_key(&namespace, &name),
            uid: meta.uid.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            scheduled_condition,
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            controller: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| ControllerRef {
                    api_group: o
                        .api_version
                        .split_once('/')
                        .map(|(g, _)| g.to_string())
                        .unwrap_or_default(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                }),
            namespace,
            name,
            spec: scheduling,
        }
    }

    /// Whether the pod has any pod affinity or anti-affinity term (scored against others).
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Whether the pod has terms that score other pods: required affinity (counted with
    /// upstream's hard weight) or preferred (anti-)affinity.
    pub fn has_scoring_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// Whether a required anti-affinity term spans more than one node.
    pub fn has_zonal_anti_affinity(&self) -> bool {
        self.required_anti_affinity.iter().any(|t| !t.per_host)
    }

    pub fn is_assigned(&self) -> bool {
        !self.node_name.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(v: serde_json::Value) -> PodInfo {
        let mut v = v;
        if v["metadata"]["namespace"].is_null() {
            v["metadata"]["namespace"] = json!("default");
        }
        if v["spec"]["containers"].is_null() {
            v["spec"]["containers"] = json!([{"name": "c", "image": "i"}]);
        }
        let p: Pod = serde_json::from_value(v).expect("pod");
        PodInfo::from_pod(&p)
    }

    #[test]
    fn host_ports_default_protocol_and_address() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP"}]}
        ]}}));
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                protocol: "TCP".into(),
                ip: "0.0.0.0".into(),
                port: 8080
            }]
        );
    }

    #[test]
    fn affinity_terms_default_to_the_pods_namespace() {
        let p = pod(
            json!({"metadata": {"name": "p", "namespace": "ns1", "labels": {"app": "a"}}, "spec": {"affinity": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]
            }}}}),
        );
        let t = &p.required_anti_affinity[0];
        assert_eq!(t.namespaces, vec!["ns1".to_string()]);
        assert!(t.matches_pod(&p, None));
        let other = pod(
            json!({"metadata": {"name": "q", "namespace": "ns2", "labels": {"app": "a"}}, "spec": {}}),
        );
        assert!(!t.matches_pod(&other, None));
    }

    #[test]
    fn match_label_keys_join_the_spread_selector() {
        let p = pod(
            json!({"metadata": {"name": "p", "labels": {"app": "a", "rev": "2"}}, "spec": {"topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "a"}}, "matchLabelKeys": ["rev"]}
            ]}}),
        );
        let c = &p.spread[0];
        assert!(c.hard && c.honor_node_affinity && !c.honor_node_taints);
        let old =
            pod(json!({"metadata": {"name": "q", "labels": {"app": "a", "rev": "1"}}, "spec": {}}));
        assert!(!c.selector.matches(&old.labels));
        assert!(c.selector.matches(&p.labels));
    }

    #[test]
    fn status_only_changes_leave_the_scheduling_spec_equal() {
        let a = pod(json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {}}));
        let b = pod(
            json!({"metadata": {"name": "p", "resourceVersion": "2"}, "spec": {}, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}),
        );
        assert_eq!(a.spec, b.spec);
        assert_eq!(
            b.scheduled_condition.as_ref().map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
