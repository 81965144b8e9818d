//! Pure decisions about pods, as upstream's `controller_utils` and `podutil`: which pods are
//! active, ready and available, and which to delete first when scaling down.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Not finished and not being deleted (upstream's `IsPodActive`).
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none()
}

pub fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the Ready condition became True, if it is True.
pub fn ready_since(p: &Pod) -> Option<Option<Timestamp>> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(p: &Pod) -> bool {
    ready_since(p).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(p) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t
            .checked_add(SignedDuration::from_secs(min_ready_seconds as i64))
            .is_ok_and(|at| at <= now),
    }
}

/// How long until a ready pod becomes available, if it will.
pub fn until_available(
    p: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let t = ready_since(p)??;
    let at = t
        .checked_add(SignedDuration::from_secs(min_ready_seconds as i64))
        .ok()?;
    let d = at.duration_since(now);
    (d > SignedDuration::ZERO).then(|| d.unsigned_abs())
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream's `ActivePodsWithRanks` order: the pod to delete first sorts first. Unassigned
/// before assigned; Pending before Unknown before Running; not ready before ready; pods on
/// nodes crowded with their siblings first; ready for less time first; more restarts first;
/// newer first.
pub fn deletion_order(pods: &mut [&Pod]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods.iter() {
        if !node(p).is_empty() {
            *per_node.entry(node(p).to_string()).or_default() += 1;
        }
    }
    let rank = |p: &Pod| {
        if node(p).is_empty() {
            0
        } else {
            per_node.get(node(p)).copied().unwrap_or(0)
        }
    };
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| !node(p).is_empty();
        assigned(a)
            .cmp(&assigned(b))
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| is_ready(a).cmp(&is_ready(b)))
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(
                || match (ready_since(a).flatten(), ready_since(b).flatten()) {
                    // Ready more recently (a later time) goes first.
                    (Some(x), Some(y)) => y.cmp(&x),
                    _ => Ordering::Equal,
                },
            )
            .then_with(|| restarts(b).cmp(&restarts(a)))
            .then_with(|| {
                let c = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                c(b).cmp(&c(a))
            })
    });
}

/// Slow-start batch sizes for creating `n` pods: 1, 2, 4, ... (upstream's `slowStartBatch`
/// with initial batch size 1).
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut left = n;
    let mut size = 1;
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size *= 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, v: serde_json::Value) -> Pod {
        let mut p: Pod = serde_json::from_value(v).expect("pod");
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn slow_start_doubles_each_batch() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), vec![1]);
        assert_eq!(slow_start_batches(10), vec![1, 2, 4, 3]);
        assert_eq!(slow_start_batches(1000).iter().sum::<usize>(), 1000);
    }

    #[test]
    fn unscheduled_then_pending_then_not_ready_pods_are_deleted_first() {
        let ready = json!({"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"});
        let running_ready = pod(
            "running-ready",
            json!({"metadata": {}, "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running", "conditions": [ready]}}),
        );
        let running = pod(
            "running",
            json!({"metadata": {}, "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Running"}}),
        );
        let pending = pod(
            "pending",
            json!({"metadata": {}, "spec": {"nodeName": "n1", "containers": []}, "status": {"phase": "Pending"}}),
        );
        let unscheduled = pod(
            "unscheduled",
            json!({"metadata": {}, "spec": {"containers": []}, "status": {"phase": "Pending"}}),
        );
        let mut v = vec![&running_ready, &running, &pending, &unscheduled];
        deletion_order(&mut v);
        let names: Vec<_> = v
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["unscheduled", "pending", "running", "running-ready"]
        );
    }

    #[test]
    fn ready_recently_goes_before_ready_long_ago_and_newer_before_older() {
        let r = |t: &str| json!({"type": "Ready", "status": "True", "lastTransitionTime": t});
        let old = pod(
            "old",
            json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running", "conditions": [r("2024-01-01T00:00:00Z")]}}),
        );
        let new = pod(
            "new",
            json!({"metadata": {"creationTimestamp": "2024-01-02T00:00:00Z"}, "spec": {"nodeName": "n", "containers": []}, "status": {"phase": "Running", "conditions": [r("2024-01-02T00:00:00Z")]}}),
        );
        let mut v = vec![&old, &new];
        deletion_order(&mut v);
        assert_eq!(v[0].metadata.name.as_deref(), Some("new"));
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod(
            "p",
            json!({"metadata": {}, "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let t0: Timestamp = "2024-01-01T00:00:05Z".parse().expect("ts");
        assert!(is_available(&p, 0, t0));
        assert!(!is_available(&p, 10, t0));
        assert_eq!(
            until_available(&p, 10, t0),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(is_available(&p, 5, t0));
        assert!(is_active(&p));
    }
}
