//! The scheduling queue, upstream's `PriorityQueue`: an active queue ordered by priority then
//! arrival, a backoff queue (1 s doubling to 10 s per failed attempt), and the unschedulable
//! pods, which wait for a cluster event that could help them (a node added, a pod deleted, a
//! label changed...) rather than being polled. Pods left unschedulable for 5 minutes are
//! retried anyway, as upstream does.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::plugins::{Plugin, PluginSet};
use crate::podinfo::{PodInfo, PodKey};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried after this long even without a relevant event.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(5 * 60);

/// A change in the cluster that may make a rejected pod schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeLabelChange,
    NodeTaintChange,
    NodeUnschedulableChange,
    NodeAllocatableChange,
    AssignedPodAdd,
    AssignedPodUpdate,
    AssignedPodDelete,
    NamespaceChange,
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass changed.
    VolumeChange,
}

impl ClusterEvent {
    /// Whether this event can undo a rejection by `plugin` (upstream's EventsToRegister).
    pub fn may_help(self, plugin: Plugin) -> bool {
        use ClusterEvent::*;
        match plugin {
            Plugin::NodeUnschedulable => {
                matches!(self, NodeAdd | NodeUnschedulableChange | NodeTaintChange)
            }
            Plugin::NodeName => matches!(self, NodeAdd),
            Plugin::TaintToleration => matches!(self, NodeAdd | NodeTaintChange),
            Plugin::NodeAffinity => matches!(self, NodeAdd | NodeLabelChange),
            Plugin::NodePorts => matches!(self, NodeAdd | AssignedPodDelete),
            Plugin::NodeResourcesFit => {
                matches!(self, NodeAdd | NodeAllocatableChange | AssignedPodDelete)
            }
            Plugin::PodTopologySpread => matches!(
                self,
                NodeAdd
                    | NodeLabelChange
                    | NodeTaintChange
                    | AssignedPodAdd
                    | AssignedPodUpdate
                    | AssignedPodDelete
            ),
            Plugin::InterPodAffinity => matches!(
                self,
                NodeAdd
                    | NodeLabelChange
                    | AssignedPodAdd
                    | AssignedPodUpdate
                    | AssignedPodDelete
                    | NamespaceChange
            ),
            Plugin::VolumeBinding => matches!(self, NodeAdd | NodeLabelChange | VolumeChange),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being decided on.
    InFlight,
    /// Waiting for its scheduling gates to be removed.
    Gated,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PodInfo>,
    place: Place,
    /// Arrival in the active queue (orders pods of equal priority) or time of the last failure.
    timestamp: Instant,
    attempts: u32,
    initial_attempt: Option<Instant>,
    unschedulable_plugins: PluginSet,
    /// Bumped on every move so stale heap entries can be skipped.
    generation: u64,
}

impl Entry {
    fn backoff_expiry(&self) -> Instant {
        self.timestamp + backoff_duration(self.attempts)
    }
}

/// Upstream's `calculateBackoffDuration`: 1 s after the first attempt, doubling, at most 10 s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d *= 2;
        if d > MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: PodKey,
    generation: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier arrival.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A pod handed out for a scheduling attempt.
#[derive(Debug, Clone)]
pub struct Popped {
    pub info: Arc<PodInfo>,
    pub attempts: u32,
    pub initial_attempt: Instant,
}

/// Sizes of the queue's parts (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub gated: usize,
}

#[derive(Default)]
pub struct SchedulingQueue {
    pods: HashMap<PodKey, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, PodKey, u64)>>,
    unschedulable: HashSet<PodKey>,
    seq: u64,
}

impl SchedulingQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &PodKey, now: Instant, keep_timestamp: bool) {
        let seq = self.next_seq();
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.place == Place::Unschedulable {
            self.unschedulable.remove(key);
        }
        if !keep_timestamp {
            e.timestamp = now;
        }
        e.place = Place::Active;
        e.generation = seq;
        self.active.push(ActiveItem {
            priority: e.info.priority,
            timestamp: e.timestamp,
            seq,
            key: key.clone(),
            generation: seq,
        });
    }

    fn push_backoff(&mut self, key: &PodKey) {
        let seq = self.next_seq();
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.place == Place::Unschedulable {
            self.unschedulable.remove(key);
        }
        e.place = Place::Backoff;
        e.generation = seq;
        self.backoff
            .push(Reverse((e.backoff_expiry(), seq, key.clone(), seq)));
    }

    /// Moves a waiting pod to the backoff queue if its backoff has not expired, else to the
    /// active queue.
    fn requeue(&mut self, key: &PodKey, now: Instant) {
        let Some(e) = self.pods.get(key) else { return };
        if e.attempts > 0 && e.backoff_expiry() > now {
            self.push_backoff(key);
        } else {
            self.push_active(key, now, false);
        }
    }

    /// A new pending pod (or one seen again after a re-list).
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        if self.pods.contains_key(&info.key) {
            self.update(info, now);
            return;
        }
        let key = info.key.clone();
        let gated = info.gated;
        self.pods.insert(
            key.clone(),
            Entry {
                info,
                place: Place::Gated,
                timestamp: now,
                attempts: 0,
                initial_attempt: None,
                unschedulable_plugins: PluginSet::default(),
                generation: 0,
            },
        );
        if !gated {
            self.push_active(&key, now, false);
        }
    }

    /// A pending pod changed. A change that could matter moves an unschedulable (or gated)
    /// pod back; status-only changes do not.
    pub fn update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        let Some(e) = self.pods.get_mut(&key) else {
            self.add(info, now);
            return;
        };
        let changed = e.info.spec != info.spec;
        e.info = info;
        let gated = e.info.gated;
        match e.place {
            Place::Gated if !gated => self.push_active(&key, now, false),
            Place::Unschedulable if changed => self.requeue(&key, now),
            Place::Active | Place::Backoff if gated => {
                e.place = Place::Gated;
                e.generation = 0;
            }
            _ => {}
        }
    }

    /// The pod was deleted or bound by someone else.
    pub fn remove(&mut self, key: &PodKey) {
        if self.pods.remove(key).is_some() {
            self.unschedulable.remove(key);
        }
    }

    pub fn contains(&self, key: &PodKey) -> bool {
        self.pods.contains_key(key)
    }

    /// Moves pods whose backoff has expired to the active queue.
    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((expiry, _, key, generation))) = self.backoff.peek().cloned() {
            if expiry > now {
                break;
            }
            self.backoff.pop();
            let current = self
                .pods
                .get(&key)
                .is_some_and(|e| e.place == Place::Backoff && e.generation == generation);
            if current {
                self.push_active(&key, now, false);
            }
        }
    }

    /// Retries pods that have waited longer than [`MAX_UNSCHEDULABLE_DURATION`].
    pub fn flush_unschedulable_leftovers(&mut self, now: Instant) {
        let stale: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods
                    .get(*k)
                    .is_some_and(|e| now.duration_since(e.timestamp) >= MAX_UNSCHEDULABLE_DURATION)
            })
            .cloned()
            .collect();
        for k in stale {
            self.requeue(&k, now);
        }
    }

    /// The next pod to schedule, if any is ready.
    pub fn pop(&mut self, now: Instant) -> Option<Popped> {
        self.flush_backoff(now);
        while let Some(item) = self.active.pop() {
            let Some(e) = self.pods.get_mut(&item.key) else {
                continue;
            };
            if e.place != Place::Active || e.generation != item.generation {
                continue;
            }
            e.place = Place::InFlight;
            e.attempts += 1;
            let initial = *e.initial_attempt.get_or_insert(now);
            return Some(Popped {
                info: e.info.clone(),
                attempts: e.attempts,
                initial_attempt: initial,
            });
        }
        None
    }

    /// The popped pod was scheduled (assumed on a node): it leaves the queue.
    pub fn done(&mut self, key: &PodKey) {
        self.remove(key);
    }

    /// The popped pod fits nowhere: it waits for an event one of `plugins` cares about (any
    /// event when `plugins` is empty).
    pub fn unschedulable(&mut self, key: &PodKey, plugins: PluginSet, now: Instant) {
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.unschedulable_plugins = plugins;
        e.timestamp = now;
        e.place = Place::Unschedulable;
        e.generation = 0;
        self.unschedulable.insert(key.clone());
    }

    /// The attempt failed for a reason other than fit (an API error, a failed binding): the
    /// pod is retried after its backoff. `info` re-adds a pod that had already left.
    pub fn error(
        &mut self,
        info: Arc<PodInfo>,
        attempts: u32,
        initial_attempt: Instant,
        now: Instant,
    ) {
        let key = info.key.clone();
        let e = self.pods.entry(key.clone()).or_insert_with(|| Entry {
            info,
            place: Place::InFlight,
            timestamp: now,
            attempts,
            initial_attempt: Some(initial_attempt),
            unschedulable_plugins: PluginSet::default(),
            generation: 0,
        });
        e.timestamp = now;
        e.unschedulable_plugins = PluginSet::default();
        self.push_backoff(&key);
    }

    /// A cluster event: unschedulable pods it may help move to the backoff or active queue.
    /// Returns how many moved.
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) -> usize {
        if self.unschedulable.is_empty() {
            return 0;
        }
        let moving: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods.get(*k).is_some_and(|e| {
                    e.unschedulable_plugins.is_empty()
                        || e.unschedulable_plugins.iter().any(|p| event.may_help(p))
                })
            })
            .cloned()
            .collect();
        for k in &moving {
            self.requeue(k, now);
        }
        moving.len()
    }

    /// When the loop must wake up next to move a pod out of backoff.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, ..))| *t)
    }

    pub fn depths(&self) -> Depths {
        let mut d = Depths::default();
        for e in self.pods.values() {
            match e.place {
                Place::Active | Place::InFlight => d.active += 1,
                Place::Backoff => d.backoff += 1,
                Place::Unschedulable => d.unschedulable += 1,
                Place::Gated => d.gated += 1,
            }
        }
        d
    }

    /// Keys of every queued pod (for reconciling after a re-list).
    pub fn keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name}, "spec": {"priority": priority}}),
        ))
    }

    #[test]
    fn higher_priority_first_then_arrival_order() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        q.add(p("b", 10), t + Duration::from_millis(1));
        q.add(p("c", 0), t + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| {
            q.pop(t + Duration::from_millis(3))
                .map(|x| x.info.name.clone())
        })
        .collect();
        assert_eq!(order, vec!["b", "a", "c"]);
    }

    #[test]
    fn backoff_doubles_from_one_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_that_can_help_them() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let a = q.pop(t).expect("a");
        let mut plugins = PluginSet::default();
        plugins.insert(Plugin::NodeResourcesFit);
        q.unschedulable(&a.info.key, plugins, t);
        assert!(q.pop(t + Duration::from_secs(60)).is_none(), "no polling");
        assert_eq!(
            q.on_event(ClusterEvent::AssignedPodAdd, t),
            0,
            "a new pod frees no resources"
        );
        assert_eq!(
            q.on_event(ClusterEvent::NodeAdd, t + Duration::from_secs(2)),
            1
        );
        assert!(
            q.pop(t + Duration::from_secs(2)).is_some(),
            "backoff (1 s) already over"
        );
    }

    #[test]
    fn an_event_during_backoff_sends_the_pod_to_the_backoff_queue() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let a = q.pop(t).expect("a");
        q.unschedulable(&a.info.key, PluginSet::default(), t);
        q.on_event(ClusterEvent::NodeAdd, t + Duration::from_millis(100));
        assert!(q.pop(t + Duration::from_millis(200)).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(t + Duration::from_secs(1)));
        assert!(q.pop(t + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn leftover_unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let a = q.pop(t).expect("a");
        q.unschedulable(&a.info.key, PluginSet::default(), t);
        q.flush_unschedulable_leftovers(t + Duration::from_secs(60));
        assert!(q.pop(t + Duration::from_secs(60)).is_none());
        q.flush_unschedulable_leftovers(t + MAX_UNSCHEDULABLE_DURATION);
        assert!(q.pop(t + MAX_UNSCHEDULABLE_DURATION).is_some());
    }

    #[test]
    fn spec_changes_requeue_but_status_changes_do_not() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let a = q.pop(t).expect("a");
        q.unschedulable(&a.info.key, PluginSet::default(), t);
        let later = t + Duration::from_secs(5);
        let mut same = (*a.info).clone();
        same.resource_version = "99".into();
        q.update(Arc::new(same), later);
        assert!(q.pop(later).is_none());
        q.update(p("a", 5), later);
        assert_eq!(q.pop(later).map(|x| x.attempts), Some(2));
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        let gated = Arc::new(pod(
            json!({"metadata": {"name": "g"}, "spec": {"schedulingGates": [{"name": "x"}]}}),
        ));
        q.add(gated, t);
        assert!(q.pop(t).is_none());
        assert_eq!(q.depths().gated, 1);
        q.update(p("g", 0), t);
        assert!(q.pop(t).is_some());
    }

    #[test]
    fn failed_bindings_come_back_after_backoff() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add(p("a", 0), t);
        let a = q.pop(t).expect("a");
        q.done(&a.info.key);
        assert!(!q.contains(&a.info.key));
        q.error(a.info.clone(), a.attempts, a.initial_attempt, t);
        assert!(q.pop(t + Duration::from_millis(500)).is_none());
        assert!(q.pop(t + Duration::from_secs(1)).is_some());
    }
}
