//! ControllerRevision history, shared by the DaemonSet and StatefulSet controllers (upstream's
//! `controller/history` package and the DaemonSet controller's `controller_history.go`).
//!
//! A revision's `data` is the strategic-merge patch upstream stores:
//! `{"spec":{"template":{...,"$patch":"replace"}}}`. `kubectl rollout history --revision=N`
//! applies it to the owner to show the template, and `kubectl rollout undo` patches the owner
//! with it, so the format is part of the wire contract. Revisions are named
//! `<owner>-<hash>`; a name taken by a revision with other data is a hash collision, which
//! the owner's `status.collisionCount` resolves (it feeds the hash).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::claim::claim;
use crate::metrics;
use capstan_api::selector::Selector;

/// The label on pods (and revisions) naming their revision's hash.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Upstream's default `revisionHistoryLimit` for DaemonSets and StatefulSets.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// The revision data for an owner serialized as JSON: its pod template as a replacing patch.
pub fn template_patch(owner: &Value) -> Value {
    let mut template = owner["spec"]["template"].clone();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    } else {
        template = json!({"$patch": "replace"});
    }
    json!({"spec": {"template": template}})
}

/// FNV-1 (not 1a), 32 bits, as Go's `hash/fnv.New32` that upstream's history uses.
fn fnv32(data: &[u8], h: &mut u32) {
    for b in data {
        *h = h.wrapping_mul(16_777_619);
        *h ^= *b as u32;
    }
}

/// Upstream's `rand.SafeEncodeString`.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// Upstream's `HashControllerRevision`: FNV-32 of the data, then of the collision count in
/// decimal when there is one.
pub fn hash_data(data: &Value, collision_count: Option<i32>) -> String {
    let mut h: u32 = 2_166_136_261;
    fnv32(&serde_json::to_vec(data).unwrap_or_default(), &mut h);
    if let Some(c) = collision_count {
        fnv32(c.to_string().as_bytes(), &mut h);
    }
    safe_encode(&h.to_string())
}

/// Upstream's `ControllerRevisionName`: the owner's name (cut to 223 characters so the whole
/// stays a valid name) and the hash.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The revision number after the highest of `revs` (1 for none).
pub fn next_revision(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Sorts by revision number, then creation time, then name (upstream's `SortControllerRevisions`).
pub fn sort_revisions(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let c =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                c(a).cmp(&c(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

pub fn data_of(r: &ControllerRevision) -> &Value {
    static NULL: Value = Value::Null;
    r.data.as_ref().map(|d| &d.0).unwrap_or(&NULL)
}

/// Indices of the revisions whose data equals `data` (upstream's `FindEqualRevisions`).
pub fn equal_revisions(revs: &[ControllerRevision], data: &Value) -> Vec<usize> {
    (0..revs.len())
        .filter(|&i| data_of(&revs[i]) == data)
        .collect()
}

/// A new revision object (upstream's `NewControllerRevision`): template labels plus the hash
/// label, a controller reference to the owner.
pub fn new_revision(
    name: String,
    hash: &str,
    namespace: Option<String>,
    owner_ref: OwnerReference,
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
    data: Value,
    revision: i64,
) -> ControllerRevision {
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace,
            labels: Some(labels),
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Which revisions to delete to keep at most `limit` that are not live, oldest first
/// (`revs` sorted by [`sort_revisions`]; `live` holds names in use).
pub fn to_prune<'a>(
    revs: &'a [ControllerRevision],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let dead: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let excess = dead.len().saturating_sub(limit.max(0) as usize);
    dead.into_iter().take(excess).collect()
}

/// What creating a revision ended in.
pub enum Created {
    /// Created now, or found with the same data (a retry after our own create).
    Revision(Box<ControllerRevision>),
    /// The name is taken by different data: bump the collision count and try again.
    Collision,
}

/// The owner whose revisions [`History::sync`] settles, with what claiming them needs.
pub struct Owner<'a, F> {
    pub ns: &'a str,
    pub meta: &'a ObjectMeta,
    pub owner_ref: OwnerReference,
    pub selector: &'a Selector,
    /// The uncached check that the owner is still there before adopting orphans.
    pub still_there: F,
}

/// When an existing revision with the current data gets the next number. The two
/// controllers follow their upstream counterparts, which differ only when several revisions
/// share the highest number.
#[derive(Clone, Copy)]
pub enum Renumber {
    /// Upstream's DaemonSet `constructHistory`: when its number is below the highest.
    BelowMax,
    /// Upstream's StatefulSet `getStatefulSetRevisions`: unless it is the last one sorted.
    UnlessLast,
}

/// What [`History::sync`] ended in.
pub enum Synced {
    /// `revs[index]` already has the data (renumbered if it was out of date; `revs` is then
    /// left unsorted).
    Existing {
        revs: Vec<ControllerRevision>,
        index: usize,
    },
    /// `revs[index]` (the last) was created with the data (or found under its name from an
    /// earlier try).
    Created {
        revs: Vec<ControllerRevision>,
        index: usize,
    },
    /// The name is taken by other data: the owner's `status.collisionCount` must become
    /// this, and the sync retried.
    Collision(i32),
}

/// Why [`History::sync`] failed.
pub enum SyncError {
    Claim(kube::Error),
    Write(kube::Error),
}

/// Writes revisions for one controller.
#[derive(Clone)]
pub struct History {
    pub client: kube::Client,
    pub controller: &'static str,
}

impl History {
    fn api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates `rev`; an existing revision of that name with equal data is returned instead.
    pub async fn create(&self, rev: &ControllerRevision) -> Result<Created, kube::Error> {
        let ns = rev.metadata.namespace.clone().unwrap_or_default();
        metrics::global().write(self.controller, "create", "controllerrevisions");
        match self.api(&ns).create(&PostParams::default(), rev).await {
            Ok(r) => Ok(Created::Revision(Box::new(r))),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = self.api(&ns).get(&rev.name_any()).await?;
                let same_owner = existing.owner_references().iter().any(|r| {
                    rev.owner_references()
                        .first()
                        .is_some_and(|o| o.uid == r.uid)
                });
                if same_owner && data_of(&existing) == data_of(rev) {
                    Ok(Created::Revision(Box::new(existing)))
                } else {
                    Ok(Created::Collision)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a revision a new number (a rollback to it makes it the newest).
    pub async fn renumber(
        &self,
        rev: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision, kube::Error> {
        let ns = rev.metadata.namespace.clone().unwrap_or_default();
        metrics::global().write(self.controller, "patch", "controllerrevisions");
        self.api(&ns)
            .patch(
                &rev.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": revision})),
            )
            .await
    }

    /// Claims the owner's revisions, sorts them, and makes sure one holds `data`: the newest
    /// equal one (renumbered per `rule` when out of date) or a new one from `new_rev(data,
    /// number)` (upstream's `constructHistory` / `getStatefulSetRevisions`).
    pub async fn sync<F>(
        &self,
        owner: Owner<'_, F>,
        candidates: Vec<Arc<ControllerRevision>>,
        data: Value,
        collision: Option<i32>,
        rule: Renumber,
        new_rev: impl FnOnce(Value, i64) -> ControllerRevision,
    ) -> Result<Synced, SyncError>
    where
        F: Future<Output = bool>,
    {
        let owned = claim(
            &self.api(owner.ns),
            self.controller,
            candidates,
            owner.meta,
            owner.owner_ref,
            owner.selector,
            owner.still_there,
        )
        .await
        .map_err(SyncError::Claim)?;
        let mut revs: Vec<ControllerRevision> = owned.iter().map(|r| (**r).clone()).collect();
        sort_revisions(&mut revs);
        let next = next_revision(&revs);
        if let Some(&i) = equal_revisions(&revs, &data).last() {
            let stale = match rule {
                Renumber::BelowMax => revs[i].revision < next - 1,
                Renumber::UnlessLast => i + 1 != revs.len(),
            };
            if stale {
                // Back to an older template (rollout undo): that revision becomes the newest.
                revs[i] = self
                    .renumber(&revs[i], next)
                    .await
                    .map_err(SyncError::Write)?;
            }
            return Ok(Synced::Existing { revs, index: i });
        }
        let rev = new_rev(data, next);
        match self.create(&rev).await.map_err(SyncError::Write)? {
            Created::Revision(r) => {
                revs.push(*r);
                let index = revs.len() - 1;
                Ok(Synced::Created { revs, index })
            }
            Created::Collision => Ok(Synced::Collision(collision.unwrap_or(0) + 1)),
        }
    }

    pub async fn delete(&self, rev: &ControllerRevision) -> Result<(), kube::Error> {
        let ns = rev.metadata.namespace.clone().unwrap_or_default();
        metrics::global().write(self.controller, "delete", "controllerrevisions");
        match self
            .api(&ns)
            .delete(&rev.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(name: &str, n: i64, data: Value) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision: n,
        }
    }

    #[test]
    fn the_patch_replaces_the_whole_template() {
        let ds = json!({"metadata": {"name": "x"}, "spec": {"selector": {}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
        let p = template_patch(&ds);
        assert_eq!(
            p,
            json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}, "$patch": "replace"}}})
        );
    }

    #[test]
    fn hashes_are_stable_and_collision_counts_change_them() {
        let d = json!({"spec": {"template": {"$patch": "replace"}}});
        let h = hash_data(&d, None);
        assert_eq!(h, hash_data(&d, None));
        assert_ne!(h, hash_data(&d, Some(1)));
        assert_ne!(hash_data(&d, Some(1)), hash_data(&d, Some(2)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(h, hash_data(&json!({"spec": {}}), None));
    }

    #[test]
    fn go_fnv32_matches_known_vectors() {
        // Go: fnv.New32().Write([]byte("a")).Sum32() == 0x050c5d7e
        let mut h: u32 = 2_166_136_261;
        fnv32(b"a", &mut h);
        assert_eq!(h, 0x050c_5d7e);
    }

    #[test]
    fn names_are_cut_to_fit() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), 225);
    }

    #[test]
    fn pruning_keeps_live_and_the_newest_dead_revisions() {
        let mut revs = vec![
            rev("r3", 3, json!(3)),
            rev("r1", 1, json!(1)),
            rev("r2", 2, json!(2)),
            rev("r4", 4, json!(4)),
        ];
        sort_revisions(&mut revs);
        assert_eq!(next_revision(&revs), 5);
        let live: HashSet<String> = ["r4".to_string(), "r1".to_string()].into();
        let names = |v: Vec<&ControllerRevision>| -> Vec<String> {
            v.iter().map(|r| r.name_any()).collect()
        };
        assert_eq!(names(to_prune(&revs, &live, 1)), ["r2"]);
        assert_eq!(names(to_prune(&revs, &live, 0)), ["r2", "r3"]);
        assert!(to_prune(&revs, &live, 10).is_empty());
        assert_eq!(equal_revisions(&revs, &json!(3)), vec![2]);
    }
}
