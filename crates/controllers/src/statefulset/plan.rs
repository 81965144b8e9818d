//! Pure StatefulSet decisions (upstream's `updateStatefulSet`): which ordinals to create and
//! at which revision, which pods to delete (failed ones, those past the replica count in
//! reverse ordinal order, old revisions during a rolling update from the highest ordinal
//! down to the partition), in OrderedReady mode one step at a time and only while every pod
//! before is running and available; and the status counts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::history::REVISION_HASH_LABEL;
use crate::pods::{is_available, is_ready};

/// Which revision a created pod gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rev {
    Current,
    Update,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create(i32, Rev),
    /// A failed or finished pod, recreated later with the same name.
    Recreate(String),
    /// A pod past the replica count.
    ScaleDown(String),
    /// A pod of an old revision, replaced at the update revision.
    Update(String),
}

/// The update strategy as the plan needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    OnDelete,
    RollingUpdate {
        partition: i32,
        max_unavailable: i32,
    },
}

pub struct Input<'a> {
    pub start: i32,
    pub replicas: i32,
    /// The set's pods by ordinal.
    pub pods: BTreeMap<i32, &'a Pod>,
    pub parallel: bool,
    pub strategy: Strategy,
    pub update_revision: &'a str,
    pub min_ready_seconds: i32,
    pub now: Timestamp,
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub fn revision_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

fn terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

/// Running, and ready for minReadySeconds (upstream's `isRunningAndAvailable`).
pub fn running_and_available(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    phase(p) == Some("Running") && is_available(p, min_ready_seconds, now)
}

fn healthy(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    !terminating(p)
        && phase(p) == Some("Running")
        && is_ready(p)
        && is_available(p, min_ready_seconds, now)
}

/// Which revision the pod with `ordinal` is created at (upstream's
/// `newVersionedStatefulSetPod`): below the partition, the current one.
pub fn revision_for(ordinal: i32, i: &Input) -> Rev {
    match i.strategy {
        Strategy::RollingUpdate { partition, .. } if ordinal < i.start + partition => Rev::Current,
        _ => Rev::Update,
    }
}

/// The next actions, in order.
pub fn plan(i: &Input) -> Vec<Action> {
    let mut out = Vec::new();
    let monotonic = !i.parallel;
    let mrs = i.min_ready_seconds;
    let end = i.start + i.replicas;
    // Replicas, in ordinal order.
    for ord in i.start..end {
        match i.pods.get(&ord) {
            None => {
                out.push(Action::Create(ord, revision_for(ord, i)));
                if monotonic {
                    return out;
                }
            }
            Some(p) if matches!(phase(p), Some("Failed" | "Succeeded")) => {
                if !terminating(p) {
                    out.push(Action::Recreate(name(p)));
                }
                if monotonic {
                    return out;
                }
            }
            Some(p) => {
                if monotonic && (terminating(p) || !running_and_available(p, mrs, i.now)) {
                    return out;
                }
            }
        }
    }
    // Condemned pods, highest ordinal first.
    let condemned: Vec<&Pod> = i
        .pods
        .iter()
        .rev()
        .filter(|(o, _)| **o < i.start || **o >= end)
        .map(|(_, p)| *p)
        .collect();
    // In OrderedReady mode every replica is healthy here; an unhealthy condemned pod goes
    // only if it is the first unhealthy one (upstream's firstUnhealthyPod).
    let first_unhealthy = condemned
        .iter()
        .find(|p| !(phase(p) == Some("Running") && is_ready(p)))
        .map(|p| name(p));
    for p in &condemned {
        if terminating(p) {
            if monotonic {
                return out;
            }
            continue;
        }
        let unhealthy = !(phase(p) == Some("Running") && is_ready(p));
        if monotonic && unhealthy && first_unhealthy.as_deref() != Some(name(p).as_str()) {
            return out;
        }
        out.push(Action::ScaleDown(name(p)));
        if monotonic {
            return out;
        }
    }
    let Strategy::RollingUpdate {
        partition,
        max_unavailable,
    } = i.strategy
    else {
        return out;
    };
    // Rolling update from the highest ordinal down to the partition: at most
    // max_unavailable of those pods unhealthy at once.
    let update_min = i.start + partition.max(0);
    let targets: Vec<&Pod> = (update_min..end)
        .rev()
        .filter_map(|o| i.pods.get(&o).copied())
        .collect();
    let missing = (update_min..end)
        .filter(|o| !i.pods.contains_key(o))
        .count() as i32;
    let mut unavailable =
        missing + targets.iter().filter(|p| !healthy(p, mrs, i.now)).count() as i32;
    for p in targets {
        if revision_of(p) != Some(i.update_revision) && !terminating(p) {
            // An unhealthy old pod is replaced without costing more availability.
            if healthy(p, mrs, i.now) {
                if unavailable >= max_unavailable.max(1) {
                    break;
                }
                unavailable += 1;
            }
            out.push(Action::Update(name(p)));
        }
    }
    out
}

/// Status counts (upstream's replica counting): created pods, ready, available, and those
/// at the current and the update revision.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

pub fn counts(
    pods: &[&Pod],
    current_revision: &str,
    update_revision: &str,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        if phase(p).is_none() {
            continue;
        }
        c.replicas += 1;
        if phase(p) == Some("Running") && is_ready(p) {
            c.ready += 1;
            if is_available(p, min_ready_seconds, now) {
                c.available += 1;
            }
        }
        if !terminating(p) {
            if revision_of(p) == Some(current_revision) {
                c.current += 1;
            }
            if revision_of(p) == Some(update_revision) {
                c.updated += 1;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2024-01-01T00:00:00Z";

    fn pod(name: &str, rev: &str, phase: &str, ready: bool) -> Pod {
        let conds = if ready {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": T0}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"controller-revision-hash": rev}},
            "status": {"phase": phase, "conditions": conds}
        }))
        .expect("pod")
    }

    fn input<'a>(pods: &'a [Pod], replicas: i32, parallel: bool, strategy: Strategy) -> Input<'a> {
        Input {
            start: 0,
            replicas,
            pods: pods
                .iter()
                .map(|p| {
                    let n = p.metadata.name.as_deref().unwrap_or("");
                    (
                        n.rsplit_once('-')
                            .and_then(|(_, o)| o.parse().ok())
                            .unwrap_or(-1),
                        p,
                    )
                })
                .collect(),
            parallel,
            strategy,
            update_revision: "new",
            min_ready_seconds: 0,
            now: "2024-01-01T00:01:00Z".parse().expect("ts"),
        }
    }

    const ROLL: Strategy = Strategy::RollingUpdate {
        partition: 0,
        max_unavailable: 1,
    };

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_after_the_previous_is_ready() {
        assert_eq!(
            plan(&input(&[], 3, false, ROLL)),
            vec![Action::Create(0, Rev::Update)]
        );
        let starting = [pod("web-0", "new", "Pending", false)];
        assert!(plan(&input(&starting, 3, false, ROLL)).is_empty());
        let ready = [pod("web-0", "new", "Running", true)];
        assert_eq!(
            plan(&input(&ready, 3, false, ROLL)),
            vec![Action::Create(1, Rev::Update)]
        );
        // Parallel: all missing at once.
        assert_eq!(
            plan(&input(&[], 3, true, ROLL)),
            vec![
                Action::Create(0, Rev::Update),
                Action::Create(1, Rev::Update),
                Action::Create(2, Rev::Update)
            ]
        );
    }

    #[test]
    fn failed_pods_are_recreated_and_scale_down_goes_from_the_top() {
        let pods = [
            pod("web-0", "new", "Running", true),
            pod("web-1", "new", "Failed", false),
        ];
        assert_eq!(
            plan(&input(&pods, 2, false, ROLL)),
            vec![Action::Recreate("web-1".into())]
        );
        let pods: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("web-{i}"), "new", "Running", true))
            .collect();
        assert_eq!(
            plan(&input(&pods, 1, false, ROLL)),
            vec![Action::ScaleDown("web-2".into())]
        );
        assert_eq!(
            plan(&input(&pods, 1, true, ROLL)),
            vec![
                Action::ScaleDown("web-2".into()),
                Action::ScaleDown("web-1".into())
            ]
        );
        // OrderedReady waits while web-2 terminates.
        let mut going = pods.clone();
        going[2].metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(T0.parse().expect("ts")),
        );
        assert!(plan(&input(&going, 1, false, ROLL)).is_empty());
    }

    #[test]
    fn rolling_updates_go_down_from_the_top_to_the_partition() {
        let pods: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("web-{i}"), "old", "Running", true))
            .collect();
        assert_eq!(
            plan(&input(&pods, 3, false, ROLL)),
            vec![Action::Update("web-2".into())]
        );
        let part = Strategy::RollingUpdate {
            partition: 2,
            max_unavailable: 1,
        };
        let mut some = pods.clone();
        some[2] = pod("web-2", "new", "Running", true);
        assert!(
            plan(&input(&some, 3, false, part)).is_empty(),
            "web-0 and web-1 stay below the partition"
        );
        assert_eq!(
            plan(&input(&some, 3, false, ROLL)),
            vec![Action::Update("web-1".into())]
        );
        // The replacement is not ready yet: wait.
        some[2] = pod("web-2", "new", "Running", false);
        assert!(plan(&input(&some, 3, false, ROLL)).is_empty());
        // maxUnavailable 2 replaces two at once.
        let two = Strategy::RollingUpdate {
            partition: 0,
            max_unavailable: 2,
        };
        assert_eq!(
            plan(&input(&pods, 3, true, two)),
            vec![
                Action::Update("web-2".into()),
                Action::Update("web-1".into())
            ]
        );
        assert!(plan(&input(&pods, 3, false, Strategy::OnDelete)).is_empty());
        let i = input(&pods, 3, false, part);
        assert_eq!(
            (revision_for(1, &i), revision_for(2, &i)),
            (Rev::Current, Rev::Update)
        );
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let pods = [pod("web-5", "new", "Running", true)];
        let mut i = input(&pods, 2, false, ROLL);
        i.start = 5;
        assert_eq!(plan(&i), vec![Action::Create(6, Rev::Update)]);
        // web-5 is below start 6 once the start moves: condemned.
        i.start = 6;
        assert_eq!(plan(&i), vec![Action::Create(6, Rev::Update)]);
        let all = [
            pod("web-6", "new", "Running", true),
            pod("web-7", "new", "Running", true),
            pod("web-5", "new", "Running", true),
        ];
        let mut i = input(&all, 2, false, ROLL);
        i.start = 6;
        assert_eq!(plan(&i), vec![Action::ScaleDown("web-5".into())]);
    }

    #[test]
    fn counts_split_current_and_updated() {
        let pods = [
            pod("web-0", "old", "Running", true),
            pod("web-1", "new", "Running", false),
            pod("web-2", "new", "Pending", false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let c = counts(
            &refs,
            "old",
            "new",
            0,
            "2024-01-01T00:01:00Z".parse().expect("ts"),
        );
        assert_eq!(
            c,
            Counts {
                replicas: 3,
                ready: 1,
                available: 1,
                current: 1,
                updated: 2
            }
        );
    }
}
