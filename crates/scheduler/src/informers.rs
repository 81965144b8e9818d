//! Watches of pods (all namespaces, terminal pods excluded as upstream does), nodes and
//! namespaces, each parsed into the scheduler's own types off the scheduling loop and sent to
//! it as [`Input`]s. A watch that breaks re-lists (after backoff); the loop reconciles.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use kube::Resource;
use tokio::sync::mpsc;

use crate::binder::BindError;
use crate::labels::Labels;
use crate::nodeinfo::NodeProps;
use crate::podinfo::{pod_key, PodInfo, PodKey};
use crate::workloads::{Kind, WorkloadKey, WorkloadSelector};
use capstan_api::selector::Selector;

/// Whether a pod has finished. Upstream's scheduler watches with the field selector
/// `status.phase!=Succeeded,status.phase!=Failed`; capstan filters here instead, which is the
/// same to the scheduler and spares the API server evaluating a selector on every pod event.
fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// One step of a watch, as the loop consumes it.
#[derive(Debug)]
pub enum Change<T, K> {
    /// A (re-)list begins: objects not applied before `InitDone` are gone.
    Init,
    Apply(T),
    Delete(K),
    InitDone,
}

/// Everything the scheduling loop reacts to.
#[derive(Debug)]
pub enum Input {
    Pod(Change<Arc<PodInfo>, PodKey>),
    Node(Change<(String, NodeProps), String>),
    Namespace(Change<(String, Labels), String>),
    /// Services, ReplicationControllers, ReplicaSets, StatefulSets (for default spreading).
    Workload(Kind, Change<(WorkloadKey, WorkloadSelector), WorkloadKey>),
    /// PersistentVolumeClaims (key `ns/name`), PersistentVolumes and StorageClasses.
    Volume(VolumeObject),
    /// A binding finished.
    Bound {
        key: PodKey,
        node: Arc<str>,
        result: Result<(), BindError>,
        popped: crate::queue::Popped,
    },
}

/// One change to the objects volume binding reads.
#[derive(Debug)]
pub enum VolumeObject {
    Claim(Change<Arc<PersistentVolumeClaim>, String>),
    Volume(Change<Arc<PersistentVolume>, String>),
    Class(Change<Arc<StorageClass>, String>),
}

fn map_event<K, T, D>(
    e: Event<K>,
    apply: impl Fn(&K) -> T,
    delete: impl Fn(&K) -> D,
) -> Change<T, D> {
    match e {
        Event::Init => Change::Init,
        Event::InitApply(o) | Event::Apply(o) => Change::Apply(apply(&o)),
        Event::Delete(o) => Change::Delete(delete(&o)),
        Event::InitDone => Change::InitDone,
    }
}

async fn forward<K, S>(
    what: &'static str,
    mut stream: S,
    tx: mpsc::Sender<Input>,
    wrap: impl Fn(Event<K>) -> Input,
) where
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => {
                if tx.send(wrap(e)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(watch = what, error = %e, "scheduler watch failed; retrying"),
        }
    }
}

/// Starts the three watches on the current runtime.
pub fn start(client: kube::Client, tx: mpsc::Sender<Input>) {
    let pods: Api<Pod> = Api::all(client.clone());
    let stream = watcher::watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let key = |p: &Pod| {
        pod_key(
            p.metadata.namespace.as_deref().unwrap_or("default"),
            p.metadata.name.as_deref().unwrap_or(""),
        )
    };
    tokio::spawn(forward("pods", stream, tx.clone(), move |e| {
        Input::Pod(match e {
            // A finished pod leaves the scheduler's view, as with upstream's field selector.
            Event::Apply(p) | Event::InitApply(p) if finished(&p) => Change::Delete(key(&p)),
            e => map_event(e, |p: &Pod| Arc::new(PodInfo::from_pod(p)), key),
        })
    }));

    let nodes: Api<Node> = Api::all(client.clone());
    let stream = watcher::watcher(nodes, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward("nodes", stream, tx.clone(), |e| {
        Input::Node(map_event(
            e,
            |n: &Node| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    NodeProps::from_node(n),
                )
            },
            |n: &Node| n.metadata.name.clone().unwrap_or_default(),
        ))
    }));

    watch_workloads::<Service>(&client, &tx, Kind::Service, |s| {
        WorkloadSelector::Map(
            s.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default(),
        )
    });
    watch_workloads::<ReplicationController>(&client, &tx, Kind::ReplicationController, |r| {
        WorkloadSelector::Map(
            r.spec
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default(),
        )
    });
    watch_workloads::<ReplicaSet>(&client, &tx, Kind::ReplicaSet, |r| {
        WorkloadSelector::Selector(Selector::from_api(r.spec.as_ref().map(|s| &s.selector)))
    });
    watch_workloads::<StatefulSet>(&client, &tx, Kind::StatefulSet, |r| {
        WorkloadSelector::Selector(Selector::from_api(r.spec.as_ref().map(|s| &s.selector)))
    });

    watch_volume_objects(&client, &tx);

    let namespaces: Api<Namespace> = Api::all(client);
    let stream = watcher::watcher(namespaces, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward("namespaces", stream, tx, |e| {
        Input::Namespace(map_event(
            e,
            |n: &Namespace| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            },
            |n: &Namespace| n.metadata.name.clone().unwrap_or_default(),
        ))
    }));
}

fn workload_key<K: Resource>(kind: Kind, o: &K) -> WorkloadKey {
    let m = o.meta();
    (
        kind,
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// Watches one kind of workload and forwards its selectors.
fn watch_workloads<K>(
    client: &kube::Client,
    tx: &mpsc::Sender<Input>,
    kind: Kind,
    selector: fn(&K) -> WorkloadSelector,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward("workloads", stream, tx.clone(), move |e| {
        Input::Workload(
            kind,
            map_event(
                e,
                |o: &K| (workload_key(kind, o), selector(o)),
                |o: &K| workload_key(kind, o),
            ),
        )
    }));
}

/// Watches claims, volumes and classes for volume binding.
fn watch_volume_objects(client: &kube::Client, tx: &mpsc::Sender<Input>) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let stream = watcher::watcher(claims, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward(
        "persistentvolumeclaims",
        stream,
        tx.clone(),
        move |e| {
            Input::Volume(VolumeObject::Claim(map_event(
                e,
                |c: &PersistentVolumeClaim| Arc::new(c.clone()),
                |c: &PersistentVolumeClaim| {
                    format!(
                        "{}/{}",
                        c.metadata.namespace.as_deref().unwrap_or(""),
                        c.metadata.name.as_deref().unwrap_or("")
                    )
                },
            )))
        },
    ));
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let stream = watcher::watcher(volumes, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward("persistentvolumes", stream, tx.clone(), |e| {
        Input::Volume(VolumeObject::Volume(map_event(
            e,
            |v: &PersistentVolume| Arc::new(v.clone()),
            |v: &PersistentVolume| v.metadata.name.clone().unwrap_or_default(),
        )))
    }));
    let classes: Api<StorageClass> = Api::all(client.clone());
    let stream = watcher::watcher(classes, watcher::Config::default())
        .default_backoff()
        .boxed();
    tokio::spawn(forward("storageclasses", stream, tx.clone(), |e| {
        Input::Volume(VolumeObject::Class(map_event(
            e,
            |c: &StorageClass| Arc::new(c.clone()),
            |c: &StorageClass| c.metadata.name.clone().unwrap_or_default(),
        )))
    }));
}
