//! A StatefulSet pod's stable identity (upstream's `stateful_set_utils.go`): the name
//! `<set>-<ordinal>`, the pod-name and pod-index labels, hostname and subdomain, one
//! PersistentVolumeClaim per volumeClaimTemplate named `<claim>-<set>-<ordinal>` with the
//! pod's volumes pointing at them, and the owner references the claim retention policy asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::history::REVISION_HASH_LABEL;
use crate::owner::owner_ref;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod of `set`, if its name is `<set>-<ordinal>` (upstream's
/// `getParentNameAndOrdinal` and `isMemberOf`).
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let (parent, ord) = pod.rsplit_once('-')?;
    if parent != set || ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ord.parse().ok()
}

pub fn claim_name(claim: &str, set: &str, ordinal: i32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The template a revision's data holds (its `spec.template`, less the `$patch` directive).
pub fn template_of_revision(data: &serde_json::Value) -> Option<PodTemplateSpec> {
    let mut t = data.get("spec")?.get("template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// The claims of the pod with `ordinal` (upstream's `getPersistentVolumeClaims`): each
/// template named for the pod, labelled with the template's labels and the set's
/// selector's matchLabels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let name = set.name_any();
    let spec = match set.spec.as_ref() {
        Some(s) => s,
        None => return Vec::new(),
    };
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut c = t.clone();
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = c.metadata.labels.take().unwrap_or_default();
            labels.extend(match_labels.clone());
            c.metadata = ObjectMeta {
                name: Some(claim_name(&tname, &name, ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: c.metadata.annotations.take(),
                ..Default::default()
            };
            c.status = None;
            c
        })
        .collect()
}

/// The pod with `ordinal` from `template` (upstream's `newStatefulSetPod` and
/// `setPodRevision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.name_any();
    let name = pod_name(&set_name, ordinal);
    let tm = template.metadata.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = tm.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Each claim template's volume refers to this pod's claim, replacing a template volume
    // of the same name.
    let claim_volumes: Vec<Volume> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            Volume {
                name: tname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &set_name, ordinal),
                    read_only: Some(false),
                }),
                ..Default::default()
            }
        })
        .collect();
    if !claim_volumes.is_empty() {
        let mut volumes: Vec<Volume> = spec
            .volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claim_volumes.iter().any(|c| c.name == v.name))
            .collect();
        volumes.extend(claim_volumes);
        spec.volumes = Some(volumes);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref("apps/v1", "StatefulSet", &set.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The identity labels a live pod lacks or has wrong (upstream's `identityMatches`).
pub fn missing_identity_labels(pod: &Pod, ordinal: i32) -> BTreeMap<String, String> {
    let name = pod.name_any();
    let empty = BTreeMap::new();
    let have = pod.metadata.labels.as_ref().unwrap_or(&empty);
    [
        (POD_NAME_LABEL, name),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ]
    .into_iter()
    .filter(|(k, v)| have.get(*k) != Some(v))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The retention policy: (whenDeleted is Delete, whenScaled is Delete).
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn plain_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// A claim's owner references as the retention policy wants them (upstream's
/// `updateClaimOwnerRefToSetAndPod`): the set owns it when whenDeleted=Delete; a pod being
/// scaled away (`condemned`) alone owns it when whenScaled=Delete, so the garbage collector
/// deletes the claim with that pod. References to other owners stay. None when nothing
/// changes.
pub fn claim_owner_refs(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: Option<&Pod>,
    condemned: bool,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = retention(set);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.and_then(|p| p.metadata.uid.clone());
    let have = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut want: Vec<OwnerReference> = have
        .iter()
        .filter(|r| r.uid != set_uid && !(r.kind == "Pod" && r.api_version == "v1"))
        .cloned()
        .collect();
    // A claim owned by both would outlive its pod: the garbage collector deletes only what
    // has no owner left. So a scaled-away pod becomes the only owner.
    let scaled_away = when_scaled && condemned && pod_uid.is_some();
    if scaled_away {
        if let Some(p) = pod {
            want.push(plain_ref("v1", "Pod", &p.metadata));
        }
    } else if when_deleted {
        want.push(plain_ref("apps/v1", "StatefulSet", &set.metadata));
    }
    let key = |r: &OwnerReference| (r.uid.clone(), r.kind.clone());
    let mut a: Vec<_> = have.iter().map(key).collect();
    let mut b: Vec<_> = want.iter().map(key).collect();
    a.sort();
    b.sort();
    (a != b).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: serde_json::Value) -> StatefulSet {
        serde_json::from_value(v).expect("sts")
    }

    fn web() -> StatefulSet {
        set(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www", "labels": {"tier": "data"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
    }

    #[test]
    fn ordinals_come_from_names_of_this_set_only() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("my-web", "my-web-3"), Some(3));
        assert_eq!(ordinal_of("web", "my-web-3"), None);
    }

    #[test]
    fn pods_get_stable_identity_and_their_claims() {
        let s = web();
        let t = s
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("template");
        let p = new_pod(&s, &t, 2, "web-abc");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["metadata"]["name"], "web-2");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "nginx", "statefulset.kubernetes.io/pod-name": "web-2", "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"})
        );
        assert_eq!(v["spec"]["hostname"], "web-2");
        assert_eq!(v["spec"]["subdomain"], "nginx");
        assert_eq!(
            v["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2", "readOnly": false}}])
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        let c = claims(&s, 2);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(
            serde_json::to_value(&c[0].metadata.labels).expect("labels"),
            json!({"app": "nginx", "tier": "data"})
        );
    }

    #[test]
    fn identity_labels_are_restored() {
        let s = web();
        let t = s
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("template");
        let mut p = new_pod(&s, &t, 1, "r");
        assert!(missing_identity_labels(&p, 1).is_empty());
        if let Some(l) = p.metadata.labels.as_mut() {
            l.remove(POD_NAME_LABEL);
        }
        let m = missing_identity_labels(&p, 1);
        assert_eq!(m.get(POD_NAME_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn retention_policy_sets_owner_references() {
        let mut s = web();
        let c = claims(&s, 0).remove(0);
        assert_eq!(
            claim_owner_refs(&c, &s, None, false),
            None,
            "Retain/Retain: no owners"
        );
        s.spec
            .as_mut()
            .expect("spec")
            .persistent_volume_claim_retention_policy =
            serde_json::from_value(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}))
                .expect("policy");
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "web-0", "uid": "pod-uid"}}))
                .expect("pod");
        let refs = claim_owner_refs(&c, &s, Some(&pod), false).expect("set ref");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "set-uid");
        let mut owned = c.clone();
        owned.metadata.owner_references = Some(refs);
        assert_eq!(claim_owner_refs(&owned, &s, Some(&pod), false), None);
        let refs = claim_owner_refs(&owned, &s, Some(&pod), true).expect("pod ref");
        assert_eq!(
            refs.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
            ["Pod"]
        );
    }

    #[test]
    fn revision_data_gives_back_the_template() {
        let data = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}, "$patch": "replace"}}});
        let t = template_of_revision(&data).expect("template");
        assert_eq!(
            t.metadata
                .and_then(|m| m.labels)
                .and_then(|l| l.get("a").cloned())
                .as_deref(),
            Some("b")
        );
    }
}
