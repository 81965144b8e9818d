//! PersistentVolume and claim rules every component reads the same way, written once: the
//! class of a claim or volume, whether a volume is bound (or pre-bound) to a claim, whether a
//! node satisfies a volume's node affinity, and [`best_match`], upstream's
//! `findMatchingVolume`: the volume a claim should bind to. Pure: the PV controller, the
//! scheduler's volume binding and the node agent share it.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::kinds::core::quantity::{self, Quantity};
use crate::selector::{LabelLookup, NodeSelector, Selector};

/// The beta annotation that named a class before `storageClassName` existed.
pub const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// The node a WaitForFirstConsumer claim's first pod was scheduled to (set by the scheduler).
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// The provisioner that should provision a claim (set by the PV controller).
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER_ANNOTATION: &str =
    "volume.beta.kubernetes.io/storage-provisioner";
/// Which provisioner made a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// The PV controller finished binding a claim.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// The PV controller (not the user) made this binding.
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";
/// StorageObjectInUseProtection's finalizers.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";
/// A StorageClass marked as the default for claims naming none.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The claim's class: the beta annotation wins over `storageClassName`, "" for none.
pub fn claim_class(c: &PersistentVolumeClaim) -> &str {
    annotation(&c.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| {
            c.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

/// The volume's class, as [`claim_class`].
pub fn volume_class(v: &PersistentVolume) -> &str {
    annotation(&v.metadata, BETA_CLASS_ANNOTATION)
        .or_else(|| {
            v.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

/// The claim's storage request (zero when it has none).
pub fn claim_request(c: &PersistentVolumeClaim) -> Quantity {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity::parse(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The volume's storage capacity (zero when it has none).
pub fn volume_capacity(v: &PersistentVolume) -> Quantity {
    v.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| quantity::parse(q).ok())
        .unwrap_or(Quantity::ZERO)
}

fn volume_modes(v: &PersistentVolume) -> &[String] {
    v.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

fn claim_modes(c: &PersistentVolumeClaim) -> &[String] {
    c.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

fn mode_of(m: Option<&str>) -> &str {
    m.unwrap_or("Filesystem")
}

/// Whether the volume's claimRef names this claim (by namespace and name, and by uid when
/// the reference has one: a reference without uid is a pre-binding).
pub fn is_bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != c.metadata.name || r.namespace != c.metadata.namespace {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => c.metadata.uid.as_deref() == Some(uid),
    }
}

/// Whether a node with `labels` satisfies the volume's required node affinity (volumes
/// without one are reachable from every node).
pub fn node_affinity_matches(v: &PersistentVolume, node: &str, labels: &impl LabelLookup) -> bool {
    match v
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(req) => NodeSelector::from_api(req).matches(node, labels),
        None => true,
    }
}

/// The node a selected-node annotation names, if any.
pub fn selected_node(c: &PersistentVolumeClaim) -> Option<&str> {
    annotation(&c.metadata, SELECTED_NODE_ANNOTATION).filter(|n| !n.is_empty())
}

/// The node a claim is being matched for: its name and labels.
pub struct NodeRef<'a, L: LabelLookup> {
    pub name: &'a str,
    pub labels: &'a L,
}

/// Upstream's `findMatchingVolume`: the volume `claim` should bind to.
///
/// A volume already bound or pre-bound to this claim wins (unless its node affinity excludes
/// `node`). Otherwise, a volume qualifies when it is Available, not pre-bound elsewhere, not
/// being deleted, holds at least the request, offers every access mode the claim asks for,
/// has the claim's volumeMode and class, matches the claim's label selector and, when a
/// node is given, admits that node. Volumes offering fewer access modes are preferred (as
/// upstream searches its access-mode index from the narrowest set), then the smallest that
/// fits; the name breaks ties. With `delay_binding` (WaitForFirstConsumer) and no node,
/// only volumes bound to the claim qualify: the node is not known yet.
pub fn best_match<'a, L: LabelLookup>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<&NodeRef<'_, L>>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let request = claim_request(claim);
    let wanted_modes = claim_modes(claim);
    let class = claim_class(claim);
    let claim_mode = mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()));
    let selector = claim
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(|s| Selector::from_api(Some(s)));
    let mut best: Option<(usize, Quantity, &str, &PersistentVolume)> = None;
    for v in volumes {
        let capacity = volume_capacity(v);
        if capacity < request {
            continue;
        }
        let spec = v.spec.as_ref();
        if mode_of(spec.and_then(|s| s.volume_mode.as_deref())) != claim_mode {
            continue;
        }
        if v.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let node_ok = node.is_none_or(|n| node_affinity_matches(v, n.name, n.labels));
        if is_bound_to_claim(v, claim) {
            return node_ok.then_some(v);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let phase = v.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Available") || spec.is_some_and(|s| s.claim_ref.is_some()) {
            continue;
        }
        if selector
            .as_ref()
            .is_some_and(|s| !s.matches(&v.metadata.labels.clone().unwrap_or_default()))
        {
            continue;
        }
        if volume_class(v) != class || !node_ok {
            continue;
        }
        let modes = volume_modes(v);
        if !wanted_modes.iter().all(|m| modes.contains(m)) {
            continue;
        }
        let name = v.metadata.name.as_deref().unwrap_or("");
        let rank = (modes.len(), capacity, name);
        let better = match &best {
            None => true,
            Some((n, cap, nm, _)) => rank < (*n, *cap, *nm),
        };
        if better {
            best = Some((rank.0, rank.1, rank.2, v));
        }
    }
    best.map(|(_, _, _, v)| v)
}

/// One pod volume backed by a claim: a `persistentVolumeClaim` volume, or an `ephemeral`
/// one, whose claim is `<pod>-<volume>` (made for the pod by the ephemeral volume controller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodClaim {
    pub volume: String,
    pub claim: String,
    pub ephemeral: bool,
    pub read_only: bool,
}

/// The claims a pod's volumes use, in volume order.
pub fn pod_claims(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<PodClaim> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                return Some(PodClaim {
                    volume: v.name.clone(),
                    claim: c.claim_name.clone(),
                    ephemeral: false,
                    read_only: c.read_only == Some(true),
                });
            }
            v.ephemeral.as_ref().map(|_| PodClaim {
                volume: v.name.clone(),
                claim: format!("{pod_name}-{}", v.name),
                ephemeral: true,
                read_only: false,
            })
        })
        .collect()
}

/// The volume's host directory when it is a hostPath or local volume.
pub fn host_directory(v: &PersistentVolume) -> Option<&str> {
    let spec = v.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| h.path.as_str())
        .or_else(|| spec.local.as_ref().map(|l| l.path.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn pv(name: &str, size: &str, modes: &[&str], extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": size},
            "accessModes": modes, "hostPath": {"path": "/x"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pv")
    }

    fn claim(size: &str, modes: &[&str], extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}, "volumeMode": "Filesystem"}});
        merge(&mut c, extra);
        serde_json::from_value(c).expect("pvc")
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pick<'a>(c: &PersistentVolumeClaim, vs: &'a [PersistentVolume]) -> Option<&'a str> {
        best_match::<BTreeMap<String, String>>(c, vs, None, false)
            .and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn ephemeral_volumes_use_a_claim_named_after_the_pod_and_the_volume() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0"},
            "spec": {"containers": [], "volumes": [
                {"name": "cache", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "shared", "readOnly": true}},
                {"name": "tmp", "emptyDir": {}}]}}))
        .expect("pod");
        let claims: Vec<(String, bool, bool)> = pod_claims(&pod)
            .into_iter()
            .map(|c| (c.claim, c.ephemeral, c.read_only))
            .collect();
        assert_eq!(
            claims,
            vec![
                ("web-0-cache".to_string(), true, false),
                ("shared".to_string(), false, true)
            ]
        );
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vs = [
            pv("big", "10Gi", &["ReadWriteOnce"], json!({})),
            pv("small", "500Mi", &["ReadWriteOnce"], json!({})),
            pv("fits", "2Gi", &["ReadWriteOnce"], json!({})),
        ];
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteOnce"], json!({})), &vs),
            Some("fits")
        );
        assert_eq!(
            pick(&claim("20Gi", &["ReadWriteOnce"], json!({})), &vs),
            None
        );
    }

    #[test]
    fn access_modes_must_all_be_offered_and_fewer_modes_are_preferred() {
        let vs = [
            pv(
                "many",
                "1Gi",
                &["ReadWriteOnce", "ReadWriteMany"],
                json!({}),
            ),
            pv("once", "5Gi", &["ReadWriteOnce"], json!({})),
        ];
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteOnce"], json!({})), &vs),
            Some("once")
        );
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteMany"], json!({})), &vs),
            Some("many")
        );
        assert_eq!(pick(&claim("1Gi", &["ReadOnlyMany"], json!({})), &vs), None);
    }

    #[test]
    fn class_volume_mode_selector_and_phase_must_match() {
        let vs = [
            pv(
                "fast",
                "1Gi",
                &["ReadWriteOnce"],
                json!({"spec": {"storageClassName": "fast"}}),
            ),
            pv(
                "block",
                "1Gi",
                &["ReadWriteOnce"],
                json!({"spec": {"volumeMode": "Block"}}),
            ),
            pv(
                "bound",
                "1Gi",
                &["ReadWriteOnce"],
                json!({"status": {"phase": "Bound"}}),
            ),
            pv(
                "labelled",
                "2Gi",
                &["ReadWriteOnce"],
                json!({"metadata": {"labels": {"tier": "gold"}}}),
            ),
        ];
        assert_eq!(
            pick(
                &claim(
                    "1Gi",
                    &["ReadWriteOnce"],
                    json!({"spec": {"storageClassName": "fast"}})
                ),
                &vs
            ),
            Some("fast")
        );
        assert_eq!(
            pick(
                &claim(
                    "1Gi",
                    &["ReadWriteOnce"],
                    json!({"spec": {"volumeMode": "Block"}})
                ),
                &vs
            ),
            Some("block")
        );
        assert_eq!(
            pick(
                &claim(
                    "1Gi",
                    &["ReadWriteOnce"],
                    json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}})
                ),
                &vs
            ),
            Some("labelled")
        );
        // Without a class only class-less volumes qualify; "bound" is not Available.
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteOnce"], json!({})), &vs),
            Some("labelled")
        );
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_wins_and_others_pre_bound_are_skipped() {
        let vs = [
            pv(
                "other",
                "1Gi",
                &["ReadWriteOnce"],
                json!({"spec": {"claimRef": {"namespace": "default", "name": "someone"}}}),
            ),
            pv(
                "mine",
                "9Gi",
                &["ReadWriteOnce", "ReadWriteMany"],
                json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
            ),
            pv("free", "1Gi", &["ReadWriteOnce"], json!({})),
        ];
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteOnce"], json!({})), &vs),
            Some("mine")
        );
        let stale = [pv(
            "stale",
            "1Gi",
            &["ReadWriteOnce"],
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "old"}}}),
        )];
        assert_eq!(
            pick(&claim("1Gi", &["ReadWriteOnce"], json!({})), &stale),
            None
        );
    }

    #[test]
    fn waiting_for_a_consumer_matches_only_with_a_node_that_the_affinity_admits() {
        let affinity = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}});
        let vs = [pv("local", "1Gi", &["ReadWriteOnce"], affinity)];
        let c = claim("1Gi", &["ReadWriteOnce"], json!({}));
        assert!(best_match::<BTreeMap<String, String>>(&c, &vs, None, true).is_none());
        let n1: BTreeMap<String, String> =
            [("kubernetes.io/hostname".to_string(), "n1".to_string())].into();
        let n2: BTreeMap<String, String> =
            [("kubernetes.io/hostname".to_string(), "n2".to_string())].into();
        let on =
            |name, labels| best_match(&c, &vs, Some(&NodeRef { name, labels }), true).is_some();
        assert!(on("n1", &n1));
        assert!(!on("n2", &n2));
    }
}
