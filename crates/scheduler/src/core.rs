//! The scheduling loop: the single owner of the [`Cache`] and the [`SchedulingQueue`]. It
//! applies watch events and binding results as they arrive and, in between, takes the next
//! pod from the queue and decides on it (synchronously, on its own thread), assumes the pod on
//! the chosen node and hands the binding to the [`Binder`]. Nothing else writes its state, so
//! it needs no locks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, watch};

use crate::algorithm::{self, Failure, NO_NODES_AVAILABLE};
use crate::binder::{BindError, Binder};
use crate::cache::{Cache, NodeChange};
use crate::informers::{Change, Input, VolumeObject};
use crate::metrics::Metrics;
use crate::nodeinfo::NodeProps;
use crate::plugins::PluginSet;
use crate::podinfo::{PodInfo, PodKey};
use crate::queue::{ClusterEvent, Popped, SchedulingQueue};
use crate::recorder::{ConditionUpdate, PodRef, Record, Recorder};
use crate::workloads::{Kind, WorkloadKey, WorkloadSelector};
use crate::Config;

/// Services, ReplicationControllers, ReplicaSets, StatefulSets.
const WORKLOAD_KINDS: usize = 4;

/// Claims, volumes, classes.
const VOLUME_KINDS: usize = 3;

/// How often pods stuck in the unschedulable set are checked for the 5-minute retry.
const LEFTOVER_FLUSH_INTERVAL: Duration = Duration::from_secs(30);
/// How often the queue-depth gauges are refreshed.
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Which watches have finished their first list (no decisions before all have).
#[derive(Default)]
struct Synced {
    pods: bool,
    nodes: bool,
    namespaces: bool,
    workloads: HashSet<Kind>,
    /// Claims, volumes and classes (volume binding), by watch.
    volume_kinds: HashSet<&'static str>,
}

/// Keys seen during a re-list, to drop what the list no longer has.
#[derive(Default)]
struct Relist {
    pods: Option<HashSet<PodKey>>,
    nodes: Option<HashSet<String>>,
    namespaces: Option<HashSet<String>>,
    workloads: HashMap<Kind, HashSet<WorkloadKey>>,
    volume_kinds: HashMap<&'static str, HashSet<String>>,
}

pub struct Core {
    config: Config,
    cache: Cache,
    queue: SchedulingQueue,
    metrics: Arc<Metrics>,
    binder: Binder,
    recorder: Recorder,
    results: mpsc::Sender<Input>,
    rng: StdRng,
    next_start: usize,
    synced: Synced,
    relist: Relist,
    inflight_binds: usize,
    /// The last PodScheduled=False message written per pod (avoids rewriting it every attempt).
    reported: HashMap<PodKey, String>,
}

impl Core {
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        binder: Binder,
        recorder: Recorder,
        results: mpsc::Sender<Input>,
    ) -> Self {
        Self {
            config,
            cache: Cache::new(),
            queue: SchedulingQueue::new(),
            metrics,
            binder,
            recorder,
            results,
            rng: StdRng::from_os_rng(),
            next_start: 0,
            synced: Synced::default(),
            relist: Relist::default(),
            inflight_binds: 0,
            reported: HashMap::new(),
        }
    }

    fn ready(&self) -> bool {
        self.synced.pods
            && self.synced.nodes
            && self.synced.namespaces
            && self.synced.workloads.len() == WORKLOAD_KINDS
            && self.synced.volume_kinds.len() == VOLUME_KINDS
    }

    /// Runs until `shutdown` flips or the inputs close.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut next_flush = Instant::now() + LEFTOVER_FLUSH_INTERVAL;
        let mut next_metrics = Instant::now();
        loop {
            while let Ok(input) = inputs.try_recv() {
                self.apply(input);
            }
            if *shutdown.borrow() {
                return;
            }
            let now = Instant::now();
            if now >= next_flush {
                self.queue.flush_unschedulable_leftovers(now);
                next_flush = now + LEFTOVER_FLUSH_INTERVAL;
            }
            if now >= next_metrics {
                self.metrics.queue_depths(self.queue.depths());
                next_metrics = now + METRICS_INTERVAL;
            }
            if self.ready() && self.inflight_binds < self.config.max_pending_binds {
                if let Some(p) = self.queue.pop(now) {
                    self.schedule_one(p);
                    continue;
                }
            }
            let mut wake = next_flush.min(next_metrics);
            if let Some(t) = self.queue.next_backoff_expiry() {
                wake = wake.min(t);
            }
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(i) => self.apply(i),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn apply(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Pod(c) => self.apply_pod(c, now),
            Input::Node(c) => self.apply_node(c, now),
            Input::Namespace(c) => self.apply_namespace(c, now),
            Input::Workload(kind, c) => self.apply_workload(kind, c),
            Input::Volume(v) => self.apply_volume_object(v, now),
            Input::Bound {
                key,
                node,
                result,
                popped,
            } => self.bound(key, node, result, popped, now),
        }
    }

    fn apply_pod(&mut self, change: Change<Arc<PodInfo>, PodKey>, now: Instant) {
        match change {
            Change::Init => self.relist.pods = Some(HashSet::new()),
            Change::InitDone => {
                if let Some(seen) = self.relist.pods.take() {
                    let mut gone: HashSet<PodKey> = self.queue.keys().into_iter().collect();
                    gone.extend(self.cache.pod_keys());
                    for k in gone.difference(&seen) {
                        self.delete_pod(k, now);
                    }
                }
                if !self.synced.pods {
                    tracing::info!(
                        pods = self.cache.num_pods(),
                        pending = self.queue.keys().len(),
                        "scheduler: pods synced"
                    );
                }
                self.synced.pods = true;
            }
            Change::Apply(pod) => {
                if let Some(seen) = self.relist.pods.as_mut() {
                    seen.insert(pod.key.clone());
                }
                self.upsert_pod(pod, now);
            }
            Change::Delete(key) => self.delete_pod(&key, now),
        }
    }

    fn upsert_pod(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if pod.is_assigned() {
            // Every bound pod uses its node's resources, whichever scheduler placed it.
            self.queue.remove(&pod.key);
            self.reported.remove(&pod.key);
            let old = self.cache.add_or_update_pod(pod.clone());
            let event = match old {
                Some(o) if o.labels == pod.labels => None,
                Some(_) => Some(ClusterEvent::AssignedPodUpdate),
                None => Some(ClusterEvent::AssignedPodAdd),
            };
            if let Some(e) = event {
                self.queue.on_event(e, now);
            }
            return;
        }
        if self.cache.is_assumed(&pod.key) {
            // Our binding is in flight; the watch has not caught up with it yet.
            return;
        }
        if pod.scheduler_name != self.config.scheduler_name || pod.terminating {
            self.queue.remove(&pod.key);
            return;
        }
        self.queue.add(pod, now);
    }

    fn delete_pod(&mut self, key: &PodKey, now: Instant) {
        self.queue.remove(key);
        self.reported.remove(key);
        if self.cache.remove_pod(key).is_some() {
            self.queue.on_event(ClusterEvent::AssignedPodDelete, now);
        }
    }

    fn node_events(&mut self, change: NodeChange, now: Instant) {
        let events = [
            (change.added, ClusterEvent::NodeAdd),
            (change.labels, ClusterEvent::NodeLabelChange),
            (change.taints, ClusterEvent::NodeTaintChange),
            (change.unschedulable, ClusterEvent::NodeUnschedulableChange),
            (change.allocatable, ClusterEvent::NodeAllocatableChange),
        ];
        for (happened, e) in events {
            if happened {
                self.queue.on_event(e, now);
            }
        }
    }

    fn apply_node(&mut self, change: Change<(String, NodeProps), String>, now: Instant) {
        match change {
            Change::Init => self.relist.nodes = Some(HashSet::new()),
            Change::InitDone => {
                if let Some(seen) = self.relist.nodes.take() {
                    for name in self.cache.node_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_node(&name);
                        }
                    }
                }
                if !self.synced.nodes {
                    tracing::info!(nodes = self.cache.num_nodes(), "scheduler: nodes synced");
                }
                self.synced.nodes = true;
            }
            Change::Apply((name, props)) => {
                if let Some(seen) = self.relist.nodes.as_mut() {
                    seen.insert(name.clone());
                }
                let c = self.cache.upsert_node(&name, props);
                self.node_events(c, now);
            }
            Change::Delete(name) => {
                self.cache.remove_node(&name);
            }
        }
    }

    fn apply_namespace(
        &mut self,
        change: Change<(String, crate::labels::Labels), String>,
        now: Instant,
    ) {
        match change {
            Change::Init => self.relist.namespaces = Some(HashSet::new()),
            Change::InitDone => {
                if let Some(seen) = self.relist.namespaces.take() {
                    for name in self.cache.namespace_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_namespace(&name);
                        }
                    }
                }
                self.synced.namespaces = true;
            }
            Change::Apply((name, labels)) => {
                if let Some(seen) = self.relist.namespaces.as_mut() {
                    seen.insert(name.clone());
                }
                if self.cache.set_namespace(&name, labels) {
                    self.queue.on_event(ClusterEvent::NamespaceChange, now);
                }
            }
            Change::Delete(name) => self.cache.remove_namespace(&name),
        }
    }

    fn apply_workload(
        &mut self,
        kind: Kind,
        change: Change<(WorkloadKey, WorkloadSelector), WorkloadKey>,
    ) {
        match change {
            Change::Init => {
                self.relist.workloads.insert(kind, HashSet::new());
            }
            Change::InitDone => {
                if let Some(seen) = self.relist.workloads.remove(&kind) {
                    for k in self.cache.workloads().keys(kind) {
                        if !seen.contains(&k) {
                            self.cache.workloads_mut().remove(&k);
                        }
                    }
                }
                self.synced.workloads.insert(kind);
            }
            Change::Apply((key, sel)) => {
                if let Some(seen) = self.relist.workloads.get_mut(&kind) {
                    seen.insert(key.clone());
                }
                self.cache.workloads_mut().upsert(key, sel);
            }
            Change::Delete(key) => self.cache.workloads_mut().remove(&key),
        }
    }

    fn apply_volume_object(&mut self, change: VolumeObject, now: Instant) {
        /// One kind's map in the cache, with the watch's name for relists.
        fn apply<T>(
            map: &mut HashMap<String, Arc<T>>,
            kind: &'static str,
            change: Change<Arc<T>, String>,
            key: impl Fn(&T) -> String,
            synced: &mut HashSet<&'static str>,
            relist: &mut HashMap<&'static str, HashSet<String>>,
        ) {
            match change {
                Change::Init => {
                    relist.insert(kind, HashSet::new());
                }
                Change::InitDone => {
                    if let Some(seen) = relist.remove(kind) {
                        map.retain(|k, _| seen.contains(k));
                    }
                    synced.insert(kind);
                }
                Change::Apply(o) => {
                    let k = key(&o);
                    if let Some(seen) = relist.get_mut(kind) {
                        seen.insert(k.clone());
                    }
                    map.insert(k, o);
                }
                Change::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        let objects = self.cache.volumes_mut();
        let (synced, relist) = (&mut self.synced.volume_kinds, &mut self.relist.volume_kinds);
        match change {
            VolumeObject::Claim(c) => apply(
                &mut objects.claims,
                "claims",
                c,
                |c| {
                    format!(
                        "{}/{}",
                        c.metadata.namespace.as_deref().unwrap_or(""),
                        c.metadata.name.as_deref().unwrap_or("")
                    )
                },
                synced,
                relist,
            ),
            VolumeObject::Volume(c) => apply(
                &mut objects.volumes,
                "volumes",
                c,
                |v| v.metadata.name.clone().unwrap_or_default(),
                synced,
                relist,
            ),
            VolumeObject::Class(c) => apply(
                &mut objects.classes,
                "classes",
                c,
                |v| v.metadata.name.clone().unwrap_or_default(),
                synced,
                relist,
            ),
        }
        self.queue.on_event(ClusterEvent::VolumeChange, now);
    }

    fn schedule_one(&mut self, popped: Popped) {
        let start = Instant::now();
        let pod = popped.info.clone();
        self.cache.prepare_spread(&pod);
        let result = algorithm::schedule_pod(
            &self.cache,
            &pod,
            &mut self.next_start,
            self.config.percentage_of_nodes_to_score,
            &mut self.rng,
        );
        match result {
            Ok(decision) => {
                self.metrics.attempt("scheduled", start.elapsed());
                self.cache.assume(&pod, &decision.node);
                self.queue.done(&pod.key);
                self.inflight_binds += 1;
                tracing::debug!(pod = %pod.key, node = %decision.node, evaluated = decision.evaluated, feasible = decision.feasible, "scheduler: assumed pod on node");
                let key = pod.key.clone();
                let node = decision.node.clone();
                let claims =
                    crate::plugins::volume_binding::claims_to_select(&pod, self.cache.volumes());
                self.binder.bind(
                    claims,
                    pod.namespace.clone(),
                    pod.name.clone(),
                    pod.uid.clone(),
                    decision.node.to_string(),
                    self.results.clone(),
                    move |result| Input::Bound {
                        key,
                        node,
                        result,
                        popped,
                    },
                );
            }
            Err(Failure::NoNodes) => {
                self.metrics.attempt("unschedulable", start.elapsed());
                self.queue
                    .unschedulable(&pod.key, PluginSet::default(), Instant::now());
                self.report_unschedulable(&pod, NO_NODES_AVAILABLE.to_string());
            }
            Err(Failure::Fit(diagnosis)) => {
                let preemption = diagnosis.preemption_message(&pod, &self.cache);
                let message = diagnosis.message(Some(&preemption));
                self.metrics.attempt("unschedulable", start.elapsed());
                self.queue
                    .unschedulable(&pod.key, diagnosis.unschedulable_plugins, Instant::now());
                self.report_unschedulable(&pod, message);
            }
        }
    }

    fn pod_ref(pod: &PodInfo) -> PodRef {
        PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }
    }

    /// FailedScheduling event, and PodScheduled=False unless the pod already says so.
    fn report_unschedulable(&mut self, pod: &PodInfo, message: String) {
        let current = pod.scheduled_condition.as_ref();
        let same_as_stored = current.is_some_and(|c| {
            c.status == "False" && c.reason == "Unschedulable" && c.message == message
        });
        let same_as_sent = self.reported.get(&pod.key) == Some(&message);
        let condition = if same_as_stored || same_as_sent {
            None
        } else {
            tracing::info!(pod = %pod.key, reason = %message, "scheduler: pod is unschedulable");
            self.reported.insert(pod.key.clone(), message.clone());
            Some(ConditionUpdate {
                reason: "Unschedulable",
                message: message.clone(),
                last_transition_time: current
                    .filter(|c| c.status == "False")
                    .and_then(|c| c.last_transition_time.clone()),
                resource_version: pod.resource_version.clone(),
            })
        };
        self.recorder.record(Record::Failed {
            pod: Self::pod_ref(pod),
            reason: "FailedScheduling",
            message,
            condition,
        });
    }

    fn bound(
        &mut self,
        key: PodKey,
        node: Arc<str>,
        result: Result<(), BindError>,
        popped: Popped,
        now: Instant,
    ) {
        self.inflight_binds = self.inflight_binds.saturating_sub(1);
        match result {
            Ok(()) => {
                self.metrics
                    .bound(now.duration_since(popped.initial_attempt));
                tracing::debug!(pod = %key, node = %node, "scheduler: bound pod");
                self.recorder.record(Record::Scheduled {
                    pod: Self::pod_ref(&popped.info),
                    node: node.to_string(),
                });
            }
            Err(e) => {
                self.metrics.bind_failed();
                if self.cache.forget(&key).is_some() {
                    self.queue.on_event(ClusterEvent::AssignedPodDelete, now);
                }
                match e {
                    BindError::Conflict(msg) | BindError::NotFound(msg) => {
                        tracing::info!(pod = %key, reason = %msg, "scheduler: binding not needed any more");
                    }
                    BindError::Failed(msg) => {
                        tracing::warn!(pod = %key, error = %msg, "scheduler: binding failed; retrying after backoff");
                        let message = format!("running Bind plugin \"DefaultBinder\": {msg}");
                        self.recorder.record(Record::Failed {
                            pod: Self::pod_ref(&popped.info),
                            reason: "FailedScheduling",
                            message,
                            condition: None,
                        });
                        self.queue.error(
                            popped.info.clone(),
                            popped.attempts,
                            popped.initial_attempt,
                            now,
                        );
                    }
                }
            }
        }
    }
}
