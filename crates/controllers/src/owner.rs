//! Owner references as controllers read and write them. (Label selectors are the shared
//! `capstan_api::selector::Selector`.)

use capstan_api::selector::Selector;
use capstan_runtime::{key_of, Cache, Queue};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

/// The owner reference with controller=true, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference to an owner, with blockOwnerDeletion as upstream sets it.
pub fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The key of the `kind` owner an object's controller reference points at, if the cache
/// holds it with that uid (a same-named replacement is not the owner).
pub fn owner_key<K: Resource>(owners: &Cache<K>, kind: &str, meta: &ObjectMeta) -> Option<String> {
    let r = controller_ref(meta)?;
    if r.kind != kind {
        return None;
    }
    let owner = owners.get_in(meta.namespace.as_deref()?, &r.name)?;
    (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then(|| key_of(owner.as_ref()))
}

/// Queues every owner in the pod's namespace whose selector matches it (an orphan that one
/// of them may adopt).
pub fn queue_matching<K: Resource>(
    owners: &Cache<K>,
    selector: impl Fn(&K) -> Selector,
    q: &Queue,
    p: &Pod,
) {
    for o in owners.list_ns(p.metadata.namespace.as_deref().unwrap_or("")) {
        if selector(&o).matches(&p.metadata.labels.as_ref()) {
            q.add(key_of(o.as_ref()));
        }
    }
}
