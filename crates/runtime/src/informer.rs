//! `Informer`: one list+watch of a kind (kube-rs `watcher` with backoff) kept in a `Cache`,
//! telling handlers what changed (added, updated with the old object, deleted), as client-go's
//! shared informers. One writer (the informer task), many cheap readers, a readiness signal.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// What happened to one object.
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    let name = m.name.as_deref().unwrap_or("");
    match m.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into namespace and name.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// The objects one informer has seen, by key.
pub struct Cache<K> {
    map: Arc<RwLock<HashMap<String, Arc<K>>>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Cache<K> {
    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.map.read().get(key).cloned()
    }

    pub fn get_in(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        self.get(&format!("{ns}/{name}"))
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.map.read().values().cloned().collect()
    }

    /// The objects in namespace `ns`.
    pub fn list_ns(&self, ns: &str) -> Vec<Arc<K>> {
        let prefix = format!("{ns}/");
        self.map
            .read()
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits for the first complete list.
    pub async fn wait_ready(&self) {
        let mut r = self.ready.clone();
        let _ = r.wait_for(|v| *v).await;
    }
}

/// One kind's list+watch. Register handlers, then `run`.
pub struct Informer<K> {
    api: Api<K>,
    config: watcher::Config,
    map: Arc<RwLock<HashMap<String, Arc<K>>>>,
    ready_tx: watch::Sender<bool>,
    ready_rx: watch::Receiver<bool>,
    handlers: Vec<Handler<K>>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (ready_tx, ready_rx) = watch::channel(false);
        Self {
            api,
            config,
            map: Default::default(),
            ready_tx,
            ready_rx,
            handlers: Vec::new(),
        }
    }

    pub fn cache(&self) -> Cache<K> {
        Cache {
            map: self.map.clone(),
            ready: self.ready_rx.clone(),
        }
    }

    /// True when some controller listens (an informer nobody listens to need not run).
    pub fn has_handlers(&self) -> bool {
        !self.handlers.is_empty()
    }

    /// Adds a handler; handlers run on the informer's task, so they must only queue work.
    pub fn on_change(&mut self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(f));
    }

    /// Lists and watches until `shutdown` flips; watch errors are retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let kind = std::any::type_name::<K>();
        let stream = watcher(self.api.clone(), self.config.clone()).default_backoff();
        futures::pin_mut!(stream);
        let mut listing: Option<HashMap<String, Arc<K>>> = None;
        loop {
            let ev = tokio::select! {
                _ = shutdown.wait_for(|v| *v) => return,
                ev = stream.next() => ev,
            };
            let Some(ev) = ev else { return };
            match ev {
                Ok(Event::Init) => listing = Some(HashMap::new()),
                Ok(Event::InitApply(obj)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(key_of(&obj), Arc::new(obj));
                    }
                }
                Ok(Event::InitDone) => {
                    let fresh = listing.take().unwrap_or_default();
                    self.replace_all(fresh);
                    self.ready_tx.send_replace(true);
                }
                Ok(Event::Apply(obj)) => self.apply(obj),
                Ok(Event::Delete(obj)) => self.delete(obj),
                Err(e) => tracing::debug!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    }

    fn notify(&self, c: Change<K>) {
        for h in &self.handlers {
            h(&c);
        }
    }

    fn apply(&self, obj: K) {
        let key = key_of(&obj);
        let new = Arc::new(obj);
        let old = self.map.write().insert(key, new.clone());
        match old {
            Some(old) => {
                if old.resource_version() == new.resource_version() {
                    return;
                }
                self.notify(Change::Updated { old, new })
            }
            None => self.notify(Change::Added(new)),
        }
    }

    fn delete(&self, obj: K) {
        let key = key_of(&obj);
        let old = self.map.write().remove(&key);
        self.notify(Change::Deleted(old.unwrap_or_else(|| Arc::new(obj))));
    }

    /// A relist: what is missing from it was deleted while we were not watching.
    fn replace_all(&self, fresh: HashMap<String, Arc<K>>) {
        let old = std::mem::replace(&mut *self.map.write(), fresh.clone());
        for (k, new) in &fresh {
            match old.get(k) {
                None => self.notify(Change::Added(new.clone())),
                Some(o) if o.resource_version() != new.resource_version() => {
                    self.notify(Change::Updated {
                        old: o.clone(),
                        new: new.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        for (k, o) in old {
            if !fresh.contains_key(&k) {
                self.notify(Change::Deleted(o));
            }
        }
    }
}

/// The objects a change concerns (old and new for an update).
impl<K> Change<K> {
    pub fn objects(&self) -> Vec<&Arc<K>> {
        match self {
            Change::Added(o) | Change::Deleted(o) => vec![o],
            Change::Updated { old, new } => vec![old, new],
        }
    }

    pub fn latest(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_namespace_and_name() {
        let mut p = k8s_openapi::api::core::v1::Pod::default();
        p.metadata.name = Some("a".into());
        assert_eq!(key_of(&p), "a");
        p.metadata.namespace = Some("ns".into());
        assert_eq!(key_of(&p), "ns/a");
        assert_eq!(split_key("ns/a"), (Some("ns"), "a"));
        assert_eq!(split_key("a"), (None, "a"));
    }
}
