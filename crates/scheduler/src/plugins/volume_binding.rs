//! Upstream's VolumeBinding plugin for pods with PersistentVolumeClaims. Pre-filter: every
//! claim must exist and not be deleted, and none may be an unbound claim of an Immediate
//! class (the PV controller binds those; the pod waits). Filter, per node: a bound claim's
//! volume must admit the node (its node affinity); an unbound WaitForFirstConsumer claim needs
//! an available volume the node can reach, or a class whose provisioner can make one.
//! [`claims_to_select`] lists the claims whose binding waits for this pod: the binder marks
//! them with the chosen node (`volume.kubernetes.io/selected-node`) before binding the pod,
//! which is what the PV controller and the provisioner wait for.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::{Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use capstan_api::volume::{self as vol, NodeRef};

pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const ERR_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const ERR_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// A class whose volumes are all created by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// The built-in provisioner runs in the node agents...
const LOCAL_PATH: &str = "rancher.io/local-path";
/// ...which simulated nodes do not have (capstan's simnode label): no local-path volume can
/// be made there, so such nodes are filtered out rather than waited for.
const SIMULATED_LABEL: &str = "capstan.io/simulated";

/// Claims, volumes and classes as the watches last saw them (keys: `ns/name`, name, name).
#[derive(Default)]
pub struct Objects {
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
}

impl Objects {
    fn claim(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&format!("{ns}/{name}"))
    }

    fn delayed(&self, claim: &PersistentVolumeClaim) -> bool {
        let class = vol::claim_class(claim);
        !class.is_empty()
            && self
                .classes
                .get(class)
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }
}

/// The pod's claims sorted by what filtering must check.
pub struct State<'a> {
    /// Bound claims and their volumes (None: the volume does not exist).
    bound: Vec<Option<&'a PersistentVolume>>,
    /// Unbound WaitForFirstConsumer claims.
    to_bind: Vec<&'a PersistentVolumeClaim>,
}

/// Pre-filter: None when the pod has no claims (the plugin is skipped).
pub fn pre_filter<'a>(pod: &PodInfo, objects: &'a Objects) -> Option<Result<State<'a>, Rejection>> {
    if pod.claims.is_empty() {
        return None;
    }
    let mut state = State {
        bound: Vec::new(),
        to_bind: Vec::new(),
    };
    let mut unbound_immediate = false;
    for name in &pod.claims {
        let Some(claim) = objects.claim(&pod.namespace, name) else {
            return Some(Err(Rejection::unresolvable(
                Plugin::VolumeBinding,
                format!("persistentvolumeclaim \"{name}\" not found"),
            )));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Some(Err(Rejection::unresolvable(
                Plugin::VolumeBinding,
                format!("persistentvolumeclaim \"{name}\" is being deleted"),
            )));
        }
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        if !volume.is_empty() {
            state
                .bound
                .push(objects.volumes.get(volume).map(|v| v.as_ref()));
        } else if objects.delayed(claim) {
            state.to_bind.push(claim);
        } else {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return Some(Err(Rejection::unresolvable(
            Plugin::VolumeBinding,
            ERR_UNBOUND_IMMEDIATE,
        )));
    }
    Some(Ok(state))
}

/// Filter: whether the pod's volumes can be used (or made) on `node`.
pub fn filter(state: Option<&State>, objects: &Objects, node: &NodeInfo) -> Option<Rejection> {
    let state = state?;
    let labels = node.labels();
    for v in &state.bound {
        match v {
            None => {
                return Some(Rejection::unresolvable(
                    Plugin::VolumeBinding,
                    ERR_PV_NOT_EXIST,
                ))
            }
            Some(v) if !vol::node_affinity_matches(v, &node.name, labels) => {
                return Some(Rejection::unresolvable(
                    Plugin::VolumeBinding,
                    ERR_NODE_CONFLICT,
                ))
            }
            Some(_) => {}
        }
    }
    let here = NodeRef {
        name: &node.name,
        labels,
    };
    for claim in &state.to_bind {
        let static_volume = vol::best_match(
            claim,
            objects.volumes.values().map(|v| v.as_ref()),
            Some(&here),
            true,
        )
        .is_some();
        let simulated = labels.contains_key(SIMULATED_LABEL);
        let provisionable = objects
            .classes
            .get(vol::claim_class(claim))
            .is_some_and(|c| {
                c.provisioner != NO_PROVISIONER && !(c.provisioner == LOCAL_PATH && simulated)
            });
        if !static_volume && !provisionable {
            return Some(Rejection::unresolvable(
                Plugin::VolumeBinding,
                ERR_BIND_CONFLICT,
            ));
        }
    }
    None
}

/// The pod's unbound WaitForFirstConsumer claims (namespace, name): the binder marks them
/// with the chosen node (again, if a retry finds them marked) and waits for them to be bound.
pub fn claims_to_select(pod: &PodInfo, objects: &Objects) -> Vec<(String, String)> {
    pod.claims
        .iter()
        .filter_map(|name| objects.claim(&pod.namespace, name))
        .filter(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("")
                .is_empty()
                && objects.delayed(c)
        })
        .map(|c| {
            (
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    fn objects(claims: &[serde_json::Value], volumes: &[serde_json::Value]) -> Objects {
        let mut o = Objects::default();
        for c in claims {
            let c: PersistentVolumeClaim = serde_json::from_value(c.clone()).expect("pvc");
            o.claims.insert(
                format!("default/{}", c.metadata.name.clone().unwrap_or_default()),
                Arc::new(c),
            );
        }
        for v in volumes {
            let v: PersistentVolume = serde_json::from_value(v.clone()).expect("pv");
            o.volumes
                .insert(v.metadata.name.clone().unwrap_or_default(), Arc::new(v));
        }
        for (name, mode, prov) in [
            ("wait", "WaitForFirstConsumer", "rancher.io/local-path"),
            ("manual", "WaitForFirstConsumer", NO_PROVISIONER),
            ("now", "Immediate", "example.com/x"),
        ] {
            let c: StorageClass = serde_json::from_value(json!({"metadata": {"name": name},
                "provisioner": prov, "volumeBindingMode": mode}))
            .expect("class");
            o.classes.insert(name.into(), Arc::new(c));
        }
        o
    }

    fn claim(name: &str, class: &str, volume: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"storageClassName": class,
            "volumeName": volume, "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn using(claim: &str) -> PodInfo {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [],
            "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}))
    }

    fn node(name: &str) -> NodeInfo {
        let mut n = NodeInfo::new(Arc::from(name));
        n.props = Some(NodeProps {
            labels: [("kubernetes.io/hostname".to_string(), name.to_string())].into(),
            ..Default::default()
        });
        n
    }

    fn reason(r: Rejection) -> String {
        r.reasons.join(",")
    }

    #[test]
    fn missing_and_unbound_immediate_claims_reject_the_pod_before_any_node() {
        let o = objects(&[claim("now", "now", "")], &[]);
        let missing = pre_filter(&using("gone"), &o)
            .expect("has claims")
            .err()
            .expect("rejected");
        assert_eq!(reason(missing), "persistentvolumeclaim \"gone\" not found");
        let unbound = pre_filter(&using("now"), &o)
            .expect("has claims")
            .err()
            .expect("rejected");
        assert_eq!(reason(unbound), ERR_UNBOUND_IMMEDIATE);
        assert!(pre_filter(&pod(json!({"metadata": {"name": "p"}, "spec": {}})), &o).is_none());
    }

    #[test]
    fn a_bound_volume_admits_only_the_nodes_of_its_affinity() {
        let pv = json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/x"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}});
        let o = objects(
            &[claim("data", "wait", "pv"), claim("lost", "wait", "nope")],
            &[pv],
        );
        let p = using("data");
        let state = pre_filter(&p, &o).expect("claims").expect("passes");
        assert!(filter(Some(&state), &o, &node("a")).is_none());
        assert_eq!(
            reason(filter(Some(&state), &o, &node("b")).expect("no")),
            ERR_NODE_CONFLICT
        );
        let p = using("lost");
        let state = pre_filter(&p, &o).expect("claims").expect("passes");
        assert_eq!(
            reason(filter(Some(&state), &o, &node("a")).expect("no")),
            ERR_PV_NOT_EXIST
        );
    }

    #[test]
    fn waiting_claims_need_a_reachable_volume_or_a_provisioner_and_are_marked_with_the_node() {
        let o = objects(
            &[claim("auto", "wait", ""), claim("byhand", "manual", "")],
            &[],
        );
        let p = using("auto");
        let state = pre_filter(&p, &o).expect("claims").expect("passes");
        assert!(filter(Some(&state), &o, &node("a")).is_none());
        assert_eq!(
            claims_to_select(&p, &o),
            vec![("default".to_string(), "auto".to_string())]
        );
        let mut sim = node("s");
        if let Some(p) = sim.props.as_mut() {
            p.labels.insert(SIMULATED_LABEL.into(), "true".into());
        }
        assert_eq!(
            reason(filter(Some(&state), &o, &sim).expect("no")),
            ERR_BIND_CONFLICT
        );
        let p = using("byhand");
        let state = pre_filter(&p, &o).expect("claims").expect("passes");
        assert_eq!(
            reason(filter(Some(&state), &o, &node("a")).expect("no")),
            ERR_BIND_CONFLICT
        );
    }
}
