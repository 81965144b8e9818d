//! The garbage collector: watches every resource type, keeps a graph of owner references,
//! and deletes dependents whose owners are gone (background propagation), deletes dependents
//! first for owners being deleted in the foreground (the `foregroundDeletion` finalizer,
//! honouring blockOwnerDeletion) and strips owner references for orphan deletion (the
//! `orphan` finalizer), removing those finalizers when done, as upstream's garbagecollector.
//!
//! Work items are keys `dep:<uid>` (check a dependent's owners), `fg:<uid>` (an owner waiting
//! for its dependents) and `orphan:<uid>` (an owner orphaning its dependents).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use parking_lot::RwLock;
use serde_json::json;
use tokio::sync::watch;

use crate::discovery::{Resource, Resources};
use crate::metrics;
use capstan_runtime::{Queue, ReconcileError, Reconciler};

const NAME: &str = "garbagecollector";
pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
/// How long to wait for every resource's first list before collecting anyway.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of one work item; all retryable (requeued with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("looking up owner {kind} {name}: {source}")]
    LookupOwner {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating {kind} {name}: {source}")]
    Patch {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What the graph knows about one object.
#[derive(Clone, Debug)]
struct Node {
    res: usize,
    namespace: Option<String>,
    name: String,
    resource_version: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

impl Node {
    fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> dependent uids (owners need not be in `nodes`).
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Records an object; returns the work it causes.
    fn upsert(&mut self, uid: String, node: Node) -> Vec<String> {
        let mut work = Vec::new();
        let old = self.nodes.insert(uid.clone(), node.clone());
        let old_owners: Vec<OwnerReference> =
            old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for r in &old_owners {
            if !node.owners.iter().any(|n| n.uid == r.uid) {
                if let Some(s) = self.dependents.get_mut(&r.uid) {
                    s.remove(&uid);
                }
                // An owner waiting on this dependent may now be free.
                work.push(format!("fg:{}", r.uid));
            }
        }
        for r in &node.owners {
            self.dependents
                .entry(r.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if !node.owners.is_empty()
            && old
                .as_ref()
                .is_none_or(|o| o.owners != node.owners || o.deleting != node.deleting)
        {
            work.push(format!("dep:{uid}"));
        }
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            work.push(format!("orphan:{uid}"));
        }
        if node.waiting_for_dependents() {
            work.push(format!("fg:{uid}"));
            for d in self.dependents.get(&uid).into_iter().flatten() {
                work.push(format!("dep:{d}"));
            }
        }
        work
    }

    /// Forgets a deleted object; its dependents and foreground owners need a look.
    fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut work = Vec::new();
        if let Some(n) = self.nodes.remove(uid) {
            for r in &n.owners {
                if let Some(s) = self.dependents.get_mut(&r.uid) {
                    s.remove(uid);
                    if s.is_empty() {
                        self.dependents.remove(&r.uid);
                    }
                }
                work.push(format!("fg:{}", r.uid));
            }
        }
        for d in self.dependents.get(uid).into_iter().flatten() {
            work.push(format!("dep:{d}"));
        }
        work
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }
}

pub struct GarbageCollector {
    client: Client,
    resources: Resources,
    graph: Arc<RwLock<Graph>>,
}

fn node_of(res: usize, obj: &DynamicObject) -> Node {
    Node {
        res,
        namespace: obj.namespace(),
        name: obj.name_any(),
        resource_version: obj.resource_version().unwrap_or_default(),
        owners: obj.owner_references().to_vec(),
        finalizers: obj.finalizers().to_vec(),
        deleting: obj.metadata.deletion_timestamp.is_some(),
    }
}

impl GarbageCollector {
    /// Discovers the resource types and starts watching all of them; returns the collector
    /// and its queue once every type has been listed (or [`SYNC_TIMEOUT`] passed).
    pub async fn start(
        client: Client,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, Queue), crate::discovery::Error> {
        let resources = Resources::discover(&client).await?;
        let graph = Arc::new(RwLock::new(Graph::default()));
        let queue = Queue::new();
        let mut synced = Vec::new();
        for (i, r) in resources.all.iter().enumerate() {
            if !resources.collectable().any(|c| c.ar == r.ar) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            synced.push(rx);
            tokio::spawn(watch_resource(
                client.clone(),
                i,
                r.clone(),
                graph.clone(),
                queue.clone(),
                tx,
                shutdown.clone(),
            ));
        }
        let all_synced = async {
            for mut rx in synced {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        if tokio::time::timeout(SYNC_TIMEOUT, all_synced)
            .await
            .is_err()
        {
            tracing::warn!("garbage collector: not every resource type listed within {SYNC_TIMEOUT:?}; collecting anyway");
        }
        Ok((
            Arc::new(Self {
                client,
                resources,
                graph,
            }),
            queue,
        ))
    }

    fn api(&self, n: &Node) -> Api<DynamicObject> {
        let r = &self.resources.all[n.res];
        match (&n.namespace, r.namespaced()) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &r.ar),
            _ => Api::all_with(self.client.clone(), &r.ar),
        }
    }

    fn kind(&self, n: &Node) -> String {
        self.resources.all[n.res].ar.kind.clone()
    }

    /// Is the owner there? Some(waiting_for_dependents) if so, None if gone.
    async fn owner_state(
        &self,
        dependent: &Node,
        r: &OwnerReference,
    ) -> Result<Option<bool>, Error> {
        if let Some(o) = self.graph.read().nodes.get(&r.uid) {
            return Ok(Some(o.waiting_for_dependents()));
        }
        // Not in the graph: ask the API (the owner may be newer than our watch).
        let Some(res) = self.resources.for_kind(&r.api_version, &r.kind) else {
            // A kind we cannot resolve: never collect on a guess.
            return Ok(Some(false));
        };
        let api: Api<DynamicObject> = match (&dependent.namespace, res.namespaced()) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &res.ar),
            (None, true) => return Ok(None),
            _ => Api::all_with(self.client.clone(), &res.ar),
        };
        match api.get_opt(&r.name).await {
            Ok(Some(o)) if o.uid().as_deref() == Some(r.uid.as_str()) => Ok(Some(
                o.metadata.deletion_timestamp.is_some()
                    && o.finalizers().iter().any(|f| f == FOREGROUND),
            )),
            Ok(_) => Ok(None),
            Err(e) => Err(Error::LookupOwner {
                kind: r.kind.clone(),
                name: r.name.clone(),
                source: e,
            }),
        }
    }

    async fn delete(&self, uid: &str, n: &Node, policy: PropagationPolicy) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        metrics::global().write(NAME, "delete", &self.resources.all[n.res].ar.plural);
        match self.api(n).delete(&n.name, &dp).await {
            Ok(_) => {
                tracing::info!(kind = %self.kind(n), namespace = n.namespace.as_deref().unwrap_or(""), name = %n.name, policy = ?policy, "garbage collected");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(Error::Delete {
                kind: self.kind(n),
                name: n.name.clone(),
                source: e,
            }),
        }
    }

    /// A metadata merge patch conditional on the version the graph saw.
    async fn patch_meta(&self, n: &Node, meta: serde_json::Value) -> Result<(), Error> {
        let mut m = meta;
        m["resourceVersion"] = json!(n.resource_version);
        metrics::global().write(NAME, "patch", &self.resources.all[n.res].ar.plural);
        match self
            .api(n)
            .patch(
                &n.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": m})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(Error::Patch {
                kind: self.kind(n),
                name: n.name.clone(),
                source: e,
            }),
        }
    }

    async fn remove_finalizer(&self, n: &Node, f: &str) -> Result<(), Error> {
        let rest: Vec<&String> = n.finalizers.iter().filter(|x| *x != f).collect();
        let v = if rest.is_empty() {
            json!(null)
        } else {
            json!(rest)
        };
        self.patch_meta(n, json!({"finalizers": v})).await
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(n) = self.graph.read().nodes.get(uid).cloned() else {
            return Ok(());
        };
        if n.deleting {
            if n.waiting_for_dependents() {
                return self.process_deleting_dependents(uid).await;
            }
            return Ok(());
        }
        let (mut solid, mut gone, mut waiting) = (0, Vec::new(), Vec::new());
        for r in &n.owners {
            match self.owner_state(&n, r).await? {
                Some(true) => waiting.push(r.uid.clone()),
                Some(false) => solid += 1,
                None => gone.push(r.uid.clone()),
            }
        }
        if solid > 0 {
            if gone.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Some owners remain: only drop the references to the others.
            let keep: Vec<&OwnerReference> = n
                .owners
                .iter()
                .filter(|r| !gone.contains(&r.uid) && !waiting.contains(&r.uid))
                .collect();
            return self.patch_meta(&n, json!({"ownerReferences": keep})).await;
        }
        if gone.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let has_dependents = !self.graph.read().dependents_of(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            // Foreground all the way down.
            PropagationPolicy::Foreground
        } else if n.finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if n.finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(uid, &n, policy).await
    }

    /// An owner in foreground deletion: its dependents go first; when none that block it
    /// remain, its finalizer goes.
    async fn process_deleting_dependents(&self, uid: &str) -> Result<(), Error> {
        let (n, deps) = {
            let g = self.graph.read();
            let Some(n) = g.nodes.get(uid).cloned() else {
                return Ok(());
            };
            (n, g.dependents_of(uid))
        };
        if !n.waiting_for_dependents() {
            return Ok(());
        }
        let blocking = deps.iter().any(|(_, d)| {
            d.owners
                .iter()
                .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
        });
        if blocking {
            // Each dependent is queued as `dep:`; their deletion brings us back here.
            return Ok(());
        }
        tracing::info!(kind = %self.kind(&n), namespace = n.namespace.as_deref().unwrap_or(""), name = %n.name, "dependents gone; finishing foreground deletion");
        self.remove_finalizer(&n, FOREGROUND).await
    }

    /// An owner deleted with propagationPolicy=Orphan: strip references to it, then let it go.
    async fn orphan_dependents(&self, uid: &str) -> Result<(), Error> {
        let (n, deps) = {
            let g = self.graph.read();
            let Some(n) = g.nodes.get(uid).cloned() else {
                return Ok(());
            };
            (n, g.dependents_of(uid))
        };
        if !(n.deleting && n.finalizers.iter().any(|f| f == ORPHAN)) {
            return Ok(());
        }
        for (_, d) in &deps {
            let keep: Vec<&OwnerReference> = d.owners.iter().filter(|r| r.uid != uid).collect();
            self.patch_meta(d, json!({"ownerReferences": keep})).await?;
        }
        tracing::info!(kind = %self.kind(&n), namespace = n.namespace.as_deref().unwrap_or(""), name = %n.name, dependents = deps.len(), "orphaned dependents");
        self.remove_finalizer(&n, ORPHAN).await
    }
}

/// Lists and watches one resource type into the graph.
async fn watch_resource(
    client: Client,
    res: usize,
    r: Resource,
    graph: Arc<RwLock<Graph>>,
    queue: Queue,
    synced: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &r.ar);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        let ev = tokio::select! {
            _ = shutdown.wait_for(|v| *v) => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        let work = match ev {
            Ok(Event::Init) => {
                listing = Some(HashSet::new());
                Vec::new()
            }
            Ok(Event::InitApply(o)) | Ok(Event::Apply(o)) => {
                let Some(uid) = o.uid() else { continue };
                if let Some(l) = listing.as_mut() {
                    l.insert(uid.clone());
                }
                seen.insert(uid.clone());
                graph.write().upsert(uid, node_of(res, &o))
            }
            Ok(Event::Delete(o)) => {
                let Some(uid) = o.uid() else { continue };
                seen.remove(&uid);
                graph.write().remove(&uid)
            }
            Ok(Event::InitDone) => {
                let fresh = listing.take().unwrap_or_default();
                let gone: Vec<String> = seen.difference(&fresh).cloned().collect();
                seen = fresh;
                synced.send_replace(true);
                let mut g = graph.write();
                gone.iter().flat_map(|u| g.remove(u)).collect()
            }
            Err(e) => {
                tracing::debug!(resource = %r.ar.plural, error = %e, "garbage collector watch failed; retrying");
                Vec::new()
            }
        };
        for w in work {
            queue.add(w);
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for GarbageCollector {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, ReconcileError> {
        match key.split_once(':') {
            Some(("dep", uid)) => self.attempt_to_delete(uid).await?,
            Some(("fg", uid)) => self.process_deleting_dependents(uid).await?,
            Some(("orphan", uid)) => self.orphan_dependents(uid).await?,
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owners: &[(&str, bool)], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            res: 0,
            namespace: Some("ns".into()),
            name: "x".into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(u, block)| OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: u.to_string(),
                    controller: Some(true),
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
            deleting,
        }
    }

    #[test]
    fn a_dependent_is_checked_when_its_owner_goes() {
        let mut g = Graph::default();
        g.upsert("owner".into(), node(&[], &[], false));
        let w = g.upsert("pod".into(), node(&[("owner", true)], &[], false));
        assert_eq!(w, vec!["dep:pod"]);
        let w = g.remove("owner");
        assert_eq!(w, vec!["dep:pod"]);
    }

    #[test]
    fn foreground_deletion_queues_the_owner_and_every_dependent() {
        let mut g = Graph::default();
        g.upsert("pod".into(), node(&[("rs", true)], &[], false));
        let w = g.upsert("rs".into(), node(&[], &[FOREGROUND], true));
        assert!(
            w.contains(&"fg:rs".to_string()) && w.contains(&"dep:pod".to_string()),
            "{w:?}"
        );
        let w = g.remove("pod");
        assert_eq!(w, vec!["fg:rs"]);
        assert!(g.dependents_of("rs").is_empty());
    }

    #[test]
    fn orphan_deletion_queues_the_orphaning_work() {
        let mut g = Graph::default();
        let w = g.upsert("d".into(), node(&[], &[ORPHAN], true));
        assert_eq!(w, vec!["orphan:d"]);
    }
}
