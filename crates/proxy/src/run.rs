//! [`run`]: the proxy's loop. Informers on Services, EndpointSlices and this Node mark the
//! Services they touch dirty; the loop syncs the dirty ones through the [`Proxier`], at once
//! when it was idle and at most once per `min_sync_interval` under a burst of changes, and
//! deletes the table on a clean stop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_api::net::Cidr;
use capstan_runtime::{Cache, Change, Informer};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::fragment::Fragment;
use crate::metrics::Metrics;
use crate::nft::Netfilter;
use crate::proxier::Proxier;
use crate::rules::{self, NodeContext};

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The wait before a sync after nft rejected one, doubled per failure in a row up to
/// [`RETRY_MAX`] (a host without `nft` must not log every second).
const RETRY_AFTER: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How often an idle proxy checks that its table is still there (someone may have run
/// `capstan agent --cleanup` or `nft flush ruleset`); a missing table is programmed again.
const TABLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The proxy's settings (node agent flags).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The nftables table (`ip <table>`) the proxy owns.
    pub table: String,
    pub node_name: String,
    /// The shortest time between two syncs (bursts of changes are coalesced).
    pub min_sync_interval: Duration,
}

/// What the informers' handlers tell the loop.
#[derive(Default)]
struct Dirty {
    services: HashSet<String>,
    /// Every Service (this Node changed).
    all: bool,
}

/// Service key → the keys of its EndpointSlices, kept by the slice informer's handler.
type SliceIndex = HashMap<String, BTreeSet<String>>;

fn service_of(slice: &EndpointSlice) -> Option<String> {
    let ns = slice.metadata.namespace.as_deref()?;
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!("{ns}/{name}"))
}

/// Keeps `index` in step with one slice change and marks the Services it concerns (before
/// and after: a slice may move to another Service) dirty.
fn index_slice(index: &mut SliceIndex, dirty: &mut HashSet<String>, c: &Change<EndpointSlice>) {
    for obj in c.objects() {
        let slice_key = capstan_runtime::key_of(obj.as_ref());
        if let Some(svc) = service_of(obj) {
            if let Some(set) = index.get_mut(&svc) {
                set.remove(&slice_key);
                if set.is_empty() {
                    index.remove(&svc);
                }
            }
            dirty.insert(svc);
        }
    }
    if let (false, Some(svc)) = (matches!(c, Change::Deleted(_)), service_of(c.latest())) {
        index
            .entry(svc)
            .or_default()
            .insert(capstan_runtime::key_of(c.latest().as_ref()));
    }
}

/// Runs the proxy until `shutdown` flips, then deletes its table.
pub async fn run(
    client: kube::Client,
    settings: Settings,
    nf: Arc<dyn Netfilter>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let dirty = Arc::new(Mutex::new(Dirty::default()));
    let wake = Arc::new(Notify::new());
    let index: Arc<Mutex<SliceIndex>> = Default::default();

    let mut services =
        Informer::<Service>::new(Api::all(client.clone()), watcher::Config::default());
    {
        let (dirty, wake) = (dirty.clone(), wake.clone());
        services.on_change(move |c| {
            dirty
                .lock()
                .services
                .insert(capstan_runtime::key_of(c.latest().as_ref()));
            wake.notify_one();
        });
    }
    let mut slices =
        Informer::<EndpointSlice>::new(Api::all(client.clone()), watcher::Config::default());
    {
        let (dirty, wake, index) = (dirty.clone(), wake.clone(), index.clone());
        slices.on_change(move |c| {
            index_slice(&mut index.lock(), &mut dirty.lock().services, c);
            wake.notify_one();
        });
    }
    let mut nodes = Informer::<Node>::new(
        Api::all(client),
        watcher::Config::default().fields(&format!("metadata.name={}", settings.node_name)),
    );
    {
        let (dirty, wake) = (dirty.clone(), wake.clone());
        nodes.on_change(move |_| {
            dirty.lock().all = true;
            wake.notify_one();
        });
    }
    let (svc_cache, slice_cache, node_cache) = (services.cache(), slices.cache(), nodes.cache());
    tokio::spawn(services.run(shutdown.clone()));
    tokio::spawn(slices.run(shutdown.clone()));
    tokio::spawn(nodes.run(shutdown.clone()));

    let ready = async {
        svc_cache.wait_ready().await;
        slice_cache.wait_ready().await;
        node_cache.wait_ready().await;
    };
    tokio::select! {
        _ = ready => {}
        _ = shutdown.wait_for(|v| *v) => return,
    }
    tracing::info!(table = %settings.table, services = svc_cache.len(), "service proxy caches are ready; programming nftables");

    let view = View {
        services: svc_cache,
        slices: slice_cache,
        nodes: node_cache,
        index,
        node_name: settings.node_name.clone(),
    };
    let mut proxier = Some(Proxier::new(&settings.table, nf.clone(), metrics));
    let mut last_sync: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    let mut retry_delay = RETRY_AFTER;
    let mut node_ctx = view.node_context();
    let mut table_check = tokio::time::interval(TABLE_CHECK_INTERVAL);
    table_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let idle = {
            let d = dirty.lock();
            d.services.is_empty() && !d.all
        } && proxier.as_ref().is_some_and(|p| !p.needs_full_sync());
        if idle {
            let check = tokio::select! {
                _ = wake.notified() => false,
                _ = table_check.tick() => true,
                _ = shutdown.wait_for(|v| *v) => break,
            };
            if check {
                let (nf, table) = (nf.clone(), settings.table.clone());
                let exists = tokio::task::spawn_blocking(move || nf.table_exists(&table)).await;
                if let Ok(Ok(false)) = exists {
                    tracing::warn!(table = %settings.table, "the service proxy's nftables table is gone; programming it again");
                    if let Some(p) = proxier.as_mut() {
                        p.invalidate();
                    }
                }
                continue;
            }
        }
        // Coalesce: at most one sync per interval (a failed one waits RETRY_AFTER).
        let not_before = match (last_sync, retry_at) {
            (_, Some(t)) => Some(t),
            (Some(t), None) => Some(t + settings.min_sync_interval),
            (None, None) => None,
        };
        if let Some(t) = not_before {
            tokio::select! {
                _ = tokio::time::sleep_until(t.into()) => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        let taken = std::mem::take(&mut *dirty.lock());
        let Some(mut p) = proxier.take() else { break };
        let ctx = view.node_context();
        let full = p.needs_full_sync() || (taken.all && ctx != node_ctx);
        node_ctx = ctx;
        let started = Instant::now();
        let count = if full {
            view.services.len()
        } else {
            taken.services.len()
        };
        let work = if full {
            let all: HashMap<String, Fragment> = view
                .services
                .list()
                .iter()
                .map(|s| capstan_runtime::key_of(s.as_ref()))
                .map(|k| {
                    let f = view.fragment(&k, &node_ctx);
                    (k, f)
                })
                .collect();
            Work::All(all)
        } else {
            Work::Changed(
                taken
                    .services
                    .into_iter()
                    .map(|k| {
                        let f = view.fragment(&k, &node_ctx);
                        (k, f)
                    })
                    .collect(),
            )
        };
        let joined = tokio::task::spawn_blocking(move || {
            let res = match work {
                Work::All(all) => p.sync_all(all),
                Work::Changed(c) => p.sync_changed(c),
            };
            (p, res)
        })
        .await;
        let Ok((p, res)) = joined else {
            tracing::error!("the service proxy's sync task panicked; stopping the proxy");
            return;
        };
        last_sync = Some(Instant::now());
        match res {
            Ok(s) => {
                retry_at = None;
                retry_delay = RETRY_AFTER;
                if s.changes > 0 {
                    tracing::info!(
                        table = %p.table(),
                        full = s.full,
                        services = count,
                        changes = s.changes,
                        took_ms = started.elapsed().as_millis() as u64,
                        "service proxy synced"
                    );
                }
                if !s.stale_udp.is_empty() {
                    let nf = nf.clone();
                    let entries = s.stale_udp;
                    let metrics = p.metrics().clone();
                    tokio::task::spawn_blocking(move || {
                        delete_stale(nf.as_ref(), &entries, &metrics)
                    });
                }
            }
            Err(e) => {
                tracing::warn!(table = %p.table(), error = %e, "service proxy sync failed; the table is adopted again in {retry_delay:?}");
                retry_at = Some(Instant::now() + retry_delay);
                retry_delay = (retry_delay * 2).min(RETRY_MAX);
            }
        }
        proxier = Some(p);
    }
    if let Some(mut p) = proxier {
        let table = p.table().to_string();
        match tokio::task::spawn_blocking(move || p.remove_table()).await {
            Ok(Ok(true)) => {
                tracing::info!(table = %table, "service proxy stopped; its nftables table is removed")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(table = %table, error = %e, "removing the service proxy's table failed")
            }
            Err(_) => {}
        }
    }
}

enum Work {
    All(HashMap<String, Fragment>),
    Changed(Vec<(String, Fragment)>),
}

fn delete_stale(nf: &dyn Netfilter, entries: &[Vec<String>], metrics: &Metrics) {
    let mut n = 0;
    for args in entries {
        match nf.conntrack_delete(args) {
            Ok(d) => n += d,
            Err(e) => tracing::warn!(error = %e, "deleting stale UDP conntrack entries failed"),
        }
    }
    metrics.stale_udp_flows_deleted.inc_by(n as u64);
    if n > 0 {
        tracing::info!(
            entries = n,
            "deleted conntrack entries of UDP flows to removed endpoints"
        );
    }
}

/// Reads what the rules are made from.
struct View {
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    nodes: Cache<Node>,
    index: Arc<Mutex<SliceIndex>>,
    node_name: String,
}

impl View {
    fn node_context(&self) -> NodeContext {
        let pod_cidr = self
            .nodes
            .get(&self.node_name)
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
            .and_then(|c| Cidr::parse(&c).ok());
        NodeContext {
            node_name: self.node_name.clone(),
            pod_cidr,
        }
    }

    fn fragment(&self, key: &str, node: &NodeContext) -> Fragment {
        let Some(svc) = self.services.get(key) else {
            return Fragment::default();
        };
        let slice_keys: Vec<String> = self
            .index
            .lock()
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let slices: Vec<Arc<EndpointSlice>> = slice_keys
            .iter()
            .filter_map(|k| self.slices.get(k))
            .collect();
        rules::fragment(&svc, slices.iter().map(|s| s.as_ref()), node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, svc: &str) -> Arc<EndpointSlice> {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some("ns".into());
        s.metadata.name = Some(name.into());
        s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
        Arc::new(s)
    }

    #[test]
    fn the_slice_index_follows_adds_moves_and_deletes() {
        let mut idx = SliceIndex::new();
        let mut dirty = HashSet::new();
        index_slice(&mut idx, &mut dirty, &Change::Added(slice("a-1", "a")));
        index_slice(&mut idx, &mut dirty, &Change::Added(slice("a-2", "a")));
        assert_eq!(idx["ns/a"].len(), 2);
        assert_eq!(dirty, ["ns/a".to_string()].into());
        dirty.clear();
        // A slice relabelled to another Service: both are dirty, the index moves it.
        index_slice(
            &mut idx,
            &mut dirty,
            &Change::Updated {
                old: slice("a-2", "a"),
                new: slice("a-2", "b"),
            },
        );
        assert_eq!(dirty, ["ns/a".to_string(), "ns/b".to_string()].into());
        assert_eq!(idx["ns/a"].iter().collect::<Vec<_>>(), vec!["ns/a-1"]);
        assert_eq!(idx["ns/b"].iter().collect::<Vec<_>>(), vec!["ns/a-2"]);
        index_slice(&mut idx, &mut dirty, &Change::Deleted(slice("a-1", "a")));
        assert!(!idx.contains_key("ns/a"));
    }
}
