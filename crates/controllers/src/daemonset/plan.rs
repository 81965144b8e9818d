//! Pure DaemonSet decisions (upstream's `podsShouldBeOnNode`, `rollingUpdate` and
//! `updateDaemonSetStatus`): given each node's eligibility and the daemon pods on it, which
//! nodes need a pod, which pods go, and the status. `mod.rs` applies them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::pods::{is_available, is_ready};

/// One node as the DaemonSet sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub continue_running: bool,
}

/// What to do: create a pod on these nodes, delete these pods (by name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create_on: Vec<String>,
    pub delete: Vec<String>,
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Oldest first; among equals, a running pod before a pending one.
fn by_age(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let c = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        c(a).cmp(&c(b))
            .then_with(|| (phase(b) == Some("Running")).cmp(&(phase(a) == Some("Running"))))
            .then_with(|| name(a).cmp(&name(b)))
    });
}

/// Upstream's `podsShouldBeOnNode` for one node: whether it needs a pod, and which of its
/// daemon pods to delete (failed or finished ones, extras, all of them when it may not keep
/// one). With surge, an updated pod and an old one may share a node until the new one is
/// available.
#[allow(clippy::too_many_arguments)]
pub fn on_node(
    node: &str,
    e: Eligibility,
    pods: &[&Pod],
    is_updated: &dyn Fn(&Pod) -> bool,
    surge: bool,
    min_ready_seconds: i32,
    now: Timestamp,
    plan: &mut Plan,
) {
    if e.should_run && pods.is_empty() {
        plan.create_on.push(node.to_string());
        return;
    }
    if !e.continue_running {
        plan.delete.extend(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| name(p)),
        );
        return;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if matches!(phase(p), Some("Failed" | "Succeeded")) {
            plan.delete.push(name(p));
        } else {
            running.push(p);
        }
    }
    if running.len() <= 1 {
        return;
    }
    by_age(&mut running);
    if !surge {
        plan.delete.extend(running[1..].iter().map(|p| name(p)));
        return;
    }
    let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
    for p in running {
        let slot = if is_updated(p) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(p);
        } else {
            plan.delete.push(name(p));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !is_ready(old) || is_available(new, min_ready_seconds, now) {
            plan.delete.push(name(old));
        }
    }
}

/// The node's updated and old pod (not being deleted), or None when there are several of
/// either (upstream's `findUpdatedPodsOnNode`).
fn updated_and_old<'a>(
    pods: &[&'a Pod],
    is_updated: &dyn Fn(&Pod) -> bool,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(p) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*p);
    }
    Some((new, old))
}

/// Upstream's `rollingUpdate`: without surge, delete old pods while fewer than
/// `max_unavailable` nodes are unavailable (old pods that are unavailable anyway go at once);
/// with surge, start updated pods beside old ones on up to `max_surge` nodes and delete each
/// old pod once its replacement is available. Nodes are taken in name order.
pub fn rolling_update(
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    is_updated: &dyn Fn(&Pod) -> bool,
    max_surge: i32,
    max_unavailable: i32,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Plan {
    let avail = |p: &Pod| is_available(p, min_ready_seconds, now);
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            match updated_and_old(pods, is_updated) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !avail(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !avail(old) {
                        plan.delete.push(name(old));
                    } else {
                        candidates.push(name(old));
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surging = 0;
        let mut candidates = Vec::new();
        for (node, pods) in node_pods {
            match updated_and_old(pods, is_updated) {
                None => surging += 1,
                Some((_, None)) => {}
                Some((None, Some(old))) => {
                    if !avail(old) {
                        plan.create_on.push(node.clone());
                    } else {
                        candidates.push(node.clone());
                    }
                }
                Some((Some(new), Some(old))) => {
                    if avail(new) {
                        plan.delete.push(name(old));
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let room = (max_surge - surging).max(0) as usize;
        plan.create_on.extend(candidates.into_iter().take(room));
    }
    plan
}

/// Upstream's `updateDaemonSetStatus` counts over the nodes (the oldest daemon pod of each
/// node counts), as the status JSON with zero counts left out as the API omits them.
pub fn status(
    nodes: &[(String, Eligibility)],
    node_pods: &BTreeMap<String, Vec<&Pod>>,
    is_updated: &dyn Fn(&Pod) -> bool,
    min_ready_seconds: i32,
    now: Timestamp,
) -> BTreeMap<&'static str, i64> {
    let mut c: BTreeMap<&'static str, i64> = [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberMisscheduled",
        "numberReady",
        "numberAvailable",
        "updatedNumberScheduled",
        "numberUnavailable",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    let mut bump = |k: &'static str| *c.entry(k).or_default() += 1;
    for (node, e) in nodes {
        let mut pods: Vec<&Pod> = node_pods
            .get(node)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect()
            })
            .unwrap_or_default();
        if e.should_run {
            bump("desiredNumberScheduled");
            if pods.is_empty() {
                continue;
            }
            bump("currentNumberScheduled");
            by_age(&mut pods);
            let p = pods[0];
            if is_ready(p) {
                bump("numberReady");
                if is_available(p, min_ready_seconds, now) {
                    bump("numberAvailable");
                }
            }
            if is_updated(p) {
                bump("updatedNumberScheduled");
            }
        } else if !pods.is_empty() {
            bump("numberMisscheduled");
        }
    }
    let unavailable = c["desiredNumberScheduled"] - c["numberAvailable"];
    c.insert("numberUnavailable", unavailable.max(0));
    c
}

/// The status counts as JSON: the four always-present counts, the rest when not zero.
pub fn status_json(c: &BTreeMap<&'static str, i64>) -> Value {
    let mut s = json!({});
    for (k, v) in c {
        let required = matches!(
            *k,
            "desiredNumberScheduled"
                | "currentNumberScheduled"
                | "numberMisscheduled"
                | "numberReady"
        );
        if required || *v != 0 {
            s[*k] = json!(v);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2024-01-01T00:00:00Z";

    fn pod(name: &str, rev: &str, ready: bool, created: &str) -> Pod {
        let conds = if ready {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": T0}])
        } else {
            json!([])
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created, "labels": {"controller-revision-hash": rev}},
            "status": {"phase": "Running", "conditions": conds}
        }))
        .expect("pod")
    }

    fn updated(p: &Pod) -> bool {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"))
            .map(String::as_str)
            == Some("new")
    }

    fn now() -> Timestamp {
        "2024-01-01T00:01:00Z".parse().expect("ts")
    }

    const RUN: Eligibility = Eligibility {
        should_run: true,
        continue_running: true,
    };

    #[test]
    fn nodes_without_pods_get_one_and_extras_and_ineligible_ones_go() {
        let mut plan = Plan::default();
        on_node("a", RUN, &[], &updated, false, 0, now(), &mut plan);
        let (p1, p2) = (
            pod("p1", "new", true, T0),
            pod("p2", "new", true, "2024-01-01T00:00:30Z"),
        );
        on_node("b", RUN, &[&p2, &p1], &updated, false, 0, now(), &mut plan);
        let gone = Eligibility {
            should_run: false,
            continue_running: false,
        };
        let p3 = pod("p3", "new", true, T0);
        on_node("c", gone, &[&p3], &updated, false, 0, now(), &mut plan);
        let stays = Eligibility {
            should_run: false,
            continue_running: true,
        };
        on_node("d", stays, &[&p3], &updated, false, 0, now(), &mut plan);
        assert_eq!(
            plan,
            Plan {
                create_on: vec!["a".into()],
                delete: vec!["p2".into(), "p3".into()]
            }
        );
    }

    #[test]
    fn without_surge_old_pods_go_one_at_a_time_within_max_unavailable() {
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), "old", true, T0))
            .collect();
        let mut m: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for (i, p) in pods.iter().enumerate() {
            m.insert(format!("n{i}"), vec![p]);
        }
        let plan = rolling_update(&m, &updated, 0, 1, 0, now());
        assert_eq!(plan.delete, vec!["p0"]);
        // n0's replacement exists but is not ready: nothing more goes.
        let fresh = pod("q0", "new", false, T0);
        m.insert("n0".into(), vec![&fresh]);
        assert!(rolling_update(&m, &updated, 0, 1, 0, now())
            .delete
            .is_empty());
        // A node whose old pod is being replaced (no pod yet) counts as unavailable.
        m.insert("n0".into(), vec![]);
        assert!(rolling_update(&m, &updated, 0, 1, 0, now())
            .delete
            .is_empty());
        // Ready: the next old pod goes; with maxUnavailable 2, two go.
        let ready = pod("q0", "new", true, T0);
        m.insert("n0".into(), vec![&ready]);
        assert_eq!(
            rolling_update(&m, &updated, 0, 1, 0, now()).delete,
            vec!["p1"]
        );
        assert_eq!(
            rolling_update(&m, &updated, 0, 2, 0, now()).delete,
            vec!["p1", "p2"]
        );
        // minReadySeconds 120: pods ready for 60 s are not available, so old ones go at
        // once (they cost no availability) while the new one does not count as available.
        assert_eq!(
            rolling_update(&m, &updated, 0, 1, 120, now()).delete,
            vec!["p1", "p2", "p3"]
        );
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones_which_go_once_they_are_available() {
        let (o0, o1) = (pod("o0", "old", true, T0), pod("o1", "old", true, T0));
        let mut m: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        m.insert("n0".into(), vec![&o0]);
        m.insert("n1".into(), vec![&o1]);
        let plan = rolling_update(&m, &updated, 1, 0, 0, now());
        assert_eq!(
            plan,
            Plan {
                create_on: vec!["n0".into()],
                delete: vec![]
            }
        );
        let n0 = pod("x0", "new", false, T0);
        m.insert("n0".into(), vec![&o0, &n0]);
        assert_eq!(
            rolling_update(&m, &updated, 1, 0, 0, now()),
            Plan::default()
        );
        let n0 = pod("x0", "new", true, T0);
        m.insert("n0".into(), vec![&o0, &n0]);
        assert_eq!(
            rolling_update(&m, &updated, 1, 0, 0, now()),
            Plan {
                create_on: vec!["n1".into()],
                delete: vec!["o0".into()]
            }
        );
    }

    #[test]
    fn status_counts_nodes_not_pods() {
        let (a, b) = (pod("a", "new", true, T0), pod("b", "old", false, T0));
        let extra = pod("c", "new", true, T0);
        let mut m: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        m.insert("n0".into(), vec![&a]);
        m.insert("n1".into(), vec![&b]);
        m.insert("n3".into(), vec![&extra]);
        let nodes = vec![
            ("n0".to_string(), RUN),
            ("n1".to_string(), RUN),
            ("n2".to_string(), RUN),
            (
                "n3".to_string(),
                Eligibility {
                    should_run: false,
                    continue_running: false,
                },
            ),
        ];
        let c = status(&nodes, &m, &updated, 0, now());
        assert_eq!(
            status_json(&c),
            json!({"currentNumberScheduled": 2, "desiredNumberScheduled": 3, "numberAvailable": 1, "numberMisscheduled": 1, "numberReady": 1, "numberUnavailable": 2, "updatedNumberScheduled": 1})
        );
    }
}
