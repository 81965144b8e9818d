//! `claim`: upstream's ControllerRefManager for any owned kind (pods, ControllerRevisions):
//! keeps the objects whose controller reference is the owner and that still match its
//! selector, releases those that no longer match, and adopts matching orphans after a fresh
//! read shows the owner still exists and is not being deleted.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::metrics;
use crate::owner::controller_ref;
use capstan_api::selector::Selector;

/// The objects of `candidates` that `owner` controls after adopting and releasing.
pub async fn claim<K, F>(
    api: &Api<K>,
    controller: &'static str,
    candidates: Vec<Arc<K>>,
    owner: &ObjectMeta,
    new_ref: OwnerReference,
    sel: &Selector,
    can_adopt: F,
) -> Result<Vec<Arc<K>>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    F: Future<Output = bool>,
{
    let uid = owner.uid.clone().unwrap_or_default();
    let deleting = owner.deletion_timestamp.is_some();
    let mut owned = Vec::new();
    let mut can_adopt = Some(can_adopt);
    let mut adopt_ok: Option<bool> = None;
    for obj in candidates {
        let matches = sel.matches(&obj.meta().labels.as_ref());
        match controller_ref(obj.meta()) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(obj);
                } else if !deleting {
                    let refs: Vec<OwnerReference> = obj
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    patch_refs(api, controller, obj.as_ref(), refs).await?;
                }
            }
            Some(_) => {}
            None => {
                if deleting || obj.meta().deletion_timestamp.is_some() || !matches {
                    continue;
                }
                if adopt_ok.is_none() {
                    adopt_ok = Some(match can_adopt.take() {
                        Some(f) => f.await,
                        None => false,
                    });
                }
                if adopt_ok != Some(true) {
                    continue;
                }
                let mut refs = obj.owner_references().to_vec();
                refs.push(new_ref.clone());
                if let Some(adopted) = patch_refs(api, controller, obj.as_ref(), refs).await? {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    Ok(owned)
}

/// Writes an object's owner references, conditional on the version we saw. None when it is gone.
async fn patch_refs<K>(
    api: &Api<K>,
    controller: &'static str,
    obj: &K,
    refs: Vec<OwnerReference>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let m = obj.meta();
    let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": m.resource_version, "uid": m.uid}});
    metrics::global().write(controller, "patch", &K::plural(&()));
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// A fresh read of the owner: it exists with this uid and is not being deleted.
pub async fn owner_still_there<K>(api: Api<K>, owner: &ObjectMeta) -> bool
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    match api.get_opt(owner.name.as_deref().unwrap_or("")).await {
        Ok(Some(fresh)) => {
            fresh.meta().uid == owner.uid && fresh.meta().deletion_timestamp.is_none()
        }
        _ => false,
    }
}
