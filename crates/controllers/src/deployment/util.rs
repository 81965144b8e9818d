//! Pure deployment arithmetic, as upstream's `deployment/util`: maxSurge/maxUnavailable
//! resolution, the pod-template-hash, revisions and their annotations, how far a rolling
//! update may scale the new and the old ReplicaSets, proportional scaling, and status
//! conditions. No I/O here; `mod.rs` applies what these decide.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations of a Deployment that are not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

// Condition reasons, as upstream names them.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

/// Upstream's `intstr.GetScaledValueFromIntOrPercent`: a number as is, a percentage of
/// `total` rounded up or down. None for a malformed percentage.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match v {
        IntOrString::Int(i) => Some(*i),
        IntOrString::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            let num = p * total as i64;
            Some(if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            } as i32)
        }
    }
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// (maxSurge, maxUnavailable) as numbers: surge rounds up, unavailable down; both zero
/// becomes unavailable 1 (upstream's `ResolveFenceposts`). Recreate has neither.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if is_recreate(d) {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".into());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct);
    let unavail = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&pct);
    let desired = replicas(d);
    let s = scaled_value(surge, desired, true).unwrap_or(0).max(0);
    let u = scaled_value(unavail, desired, false).unwrap_or(0).max(0);
    if s == 0 && u == 0 {
        (0, 1)
    } else {
        (s, u)
    }
}

/// maxUnavailable, never more than the desired replicas (upstream's `MaxUnavailable`).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let (_, u) = fenceposts(d);
    u.min(replicas(d))
}

/// maxSurge (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// FNV-1a, 32 bits, as Go's hash/fnv.
fn fnv32a(data: &[u8], h: &mut u32) {
    for b in data {
        *h ^= *b as u32;
        *h = h.wrapping_mul(16_777_619);
    }
}

/// Upstream's `rand.SafeEncodeString`: letters and digits that cannot spell words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template-hash of a template (and collision count): FNV-32a of the template's
/// canonical JSON, encoded as upstream encodes its hash.
pub fn template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 2_166_136_261;
    fnv32a(&serde_json::to_vec(t).unwrap_or_default(), &mut h);
    if let Some(c) = collision_count {
        fnv32a(&(c as u32).to_le_bytes(), &mut h);
    }
    safe_encode(&h.to_string())
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
        if l.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    t
}

/// Templates equal apart from the pod-template-hash label (upstream's `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let norm = |t: &PodTemplateSpec| serde_json::to_value(without_hash(t)).unwrap_or_default();
    norm(a) == norm(b)
}

pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map_or(0, |s| s.replicas),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, then by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub fn sort_by_creation(rss: &mut [ReplicaSet]) {
    rss.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The ReplicaSet whose template is the deployment's (the oldest if several).
pub fn find_new_rs(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let t = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|&a, &b| {
        created(&rss[a])
            .cmp(&created(&rss[b]))
            .then_with(|| rss[a].metadata.name.cmp(&rss[b].metadata.name))
    });
    idx.into_iter()
        .find(|&i| equal_ignore_hash(&rs_template(&rss[i]), &t))
}

/// Upstream's `NewRSNewReplicas` for a rolling update: how big the new ReplicaSet may be now.
pub fn new_rs_new_replicas(
    desired: i32,
    max_surge: i32,
    all_replicas: i32,
    new_rs_replicas: i32,
) -> i32 {
    let max_total = desired + max_surge;
    if all_replicas >= max_total {
        return new_rs_replicas;
    }
    let scale_up = max_total - all_replicas;
    scale_up.min(desired - new_rs_replicas).max(0) + new_rs_replicas
}

/// The sizes one step of scaling old ReplicaSets down takes them to, as upstream's
/// `reconcileOldReplicaSets`: first unhealthy replicas (up to what may go), then healthy
/// ones while availability stays at `desired - maxUnavailable`. `old` is (replicas,
/// available) oldest first; `new_rs` is (replicas, available). Returns the new sizes of `old`.
pub fn scale_down_old(
    old: &[(i32, i32)],
    new_rs: (i32, i32),
    desired: i32,
    max_unavailable: i32,
) -> Vec<i32> {
    let mut sizes: Vec<i32> = old.iter().map(|o| o.0).collect();
    let old_count: i32 = sizes.iter().sum();
    if old_count == 0 {
        return sizes;
    }
    let all_count = old_count + new_rs.0;
    let min_available = desired - max_unavailable;
    let new_unavailable = new_rs.0 - new_rs.1;
    let mut max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return sizes;
    }
    // Unhealthy replicas first: they do not count toward availability anyway.
    let mut cleaned = 0;
    for (i, &(replicas, available)) in old.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        if replicas == 0 {
            continue;
        }
        let unhealthy = (replicas - available).max(0);
        if unhealthy == 0 {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(unhealthy);
        sizes[i] = replicas - n;
        cleaned += n;
    }
    max_scaled_down -= cleaned;
    let _ = max_scaled_down;
    // Then healthy ones, keeping minAvailable.
    let available: i32 = old.iter().map(|o| o.1).sum::<i32>() + new_rs.1;
    if available <= min_available {
        return sizes;
    }
    let total = available - min_available;
    let mut scaled = 0;
    for s in sizes.iter_mut() {
        if scaled >= total {
            break;
        }
        if *s == 0 {
            continue;
        }
        let n = (*s).min(total - scaled);
        *s -= n;
        scaled += n;
    }
    sizes
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Proportional scaling (upstream's `scale` for rolling deployments): spreads the change of
/// the deployment's size over its active ReplicaSets in proportion to their sizes, larger
/// ones first, leftovers to the largest. `rss` are the active ReplicaSets; returns new sizes.
pub fn proportional_sizes(
    rss: &[ReplicaSet],
    desired: i32,
    max_surge: i32,
    status_replicas: i32,
) -> Vec<i32> {
    let all: i32 = rss.iter().map(rs_replicas).sum();
    let allowed = if desired > 0 { desired + max_surge } else { 0 };
    let to_add = allowed - all;
    let mut order: Vec<usize> = (0..rss.len()).collect();
    // Larger first; ties: newer first when adding, older first when removing.
    order.sort_by(|&a, &b| {
        rs_replicas(&rss[b])
            .cmp(&rs_replicas(&rss[a]))
            .then_with(|| {
                if to_add > 0 {
                    created(&rss[b]).cmp(&created(&rss[a]))
                } else {
                    created(&rss[a]).cmp(&created(&rss[b]))
                }
            })
    });
    let mut sizes: Vec<i32> = rss.iter().map(rs_replicas).collect();
    let mut added = 0;
    if to_add != 0 {
        for &i in &order {
            let rs = &rss[i];
            let cur = rs_replicas(rs);
            if cur == 0 || to_add == added {
                continue;
            }
            let fraction = if desired == 0 {
                -cur
            } else {
                let dep_replicas = desired + max_surge;
                let annotated = annotation_i32(rs, MAX_REPLICAS).unwrap_or(status_replicas);
                if annotated == 0 {
                    0
                } else {
                    let size = (cur as f64 * dep_replicas as f64) / annotated as f64;
                    size.round() as i32 - cur
                }
            };
            let allowed = to_add - added;
            let p = if to_add > 0 {
                fraction.min(allowed)
            } else {
                fraction.max(allowed)
            };
            sizes[i] = cur + p;
            added += p;
        }
        if added != to_add {
            if let Some(&first) = order.first() {
                sizes[first] = (sizes[first] + to_add - added).max(0);
            }
        }
    }
    sizes
}

/// The annotations a Deployment's ReplicaSet should carry (upstream's
/// `SetNewReplicaSetAnnotations` + `SetReplicasAnnotations`). Returns true when changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = ann.get(REVISION).cloned().unwrap_or_default();
    let old_n: i64 = old.parse().unwrap_or(0);
    let new_n: i64 = new_revision.parse().unwrap_or(0);
    if old_n < new_n {
        ann.insert(REVISION.into(), new_revision.into());
        changed = true;
        if !old.is_empty() {
            let hist = ann.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let v = if hist.is_empty() {
                old
            } else {
                format!("{hist},{old}")
            };
            ann.insert(REVISION_HISTORY.into(), v);
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
    }
    changed
}

/// desired-replicas and max-replicas; true when changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition`: no change when status and reason are the same; the
/// transition time is kept while the status stays.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

/// Upstream's `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| all.iter().map(|r| f(r)).sum::<i32>();
    let available = sum(&|r| rs_status(r).2);
    let total = sum(&rs_replicas);
    let prior = d.status.clone().unwrap_or_default();
    let opt = |v: i32| (v != 0).then_some(v);
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: opt(sum(&|r| rs_status(r).0)),
        updated_replicas: opt(new_rs.map_or(0, |r| rs_status(r).0)),
        ready_replicas: opt(sum(&|r| rs_status(r).1)),
        available_replicas: opt(available),
        unavailable_replicas: opt((total - available).max(0)),
        collision_count: prior.collision_count,
        conditions: prior.conditions.clone(),
        ..Default::default()
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "True",
                MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                "Available",
                "False",
                MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// All replicas updated and available, and the status is current (upstream's `DeploymentComplete`).
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    n(s.updated_replicas) == r
        && n(s.replicas) == r
        && n(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// The rollout moved since the last status (upstream's `DeploymentProgressing`).
pub fn is_progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(s.replicas) - n(s.updated_replicas);
    n(s.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|&s| s != i32::MAX)
}

/// No progress for progressDeadlineSeconds (upstream's `DeploymentTimedOut`).
pub fn is_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => c
            .last_update_time
            .as_ref()
            .and_then(|t| {
                t.0.checked_add(SignedDuration::from_secs(deadline as i64))
                    .ok()
            })
            .is_some_and(|at| at < now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).expect("deployment")
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&p("25%"), 10, true), Some(3));
        assert_eq!(scaled_value(&p("25%"), 10, false), Some(2));
        assert_eq!(scaled_value(&p("25%"), 1, true), Some(1));
        assert_eq!(scaled_value(&p("25%"), 1, false), Some(0));
        assert_eq!(scaled_value(&IntOrString::Int(4), 10, false), Some(4));
        assert_eq!(scaled_value(&p("x"), 10, false), None);
        let d = deployment(json!({"spec": {"replicas": 3, "selector": {}, "template": {}}}));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deployment(
            json!({"spec": {"replicas": 3, "selector": {}, "template": {}, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}),
        );
        assert_eq!(
            fenceposts(&d),
            (0, 1),
            "both zero resolves to one unavailable"
        );
        let d = deployment(
            json!({"spec": {"replicas": 3, "selector": {}, "template": {}, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(fenceposts(&d), (0, 0));
    }

    #[test]
    fn the_new_replica_set_grows_up_to_the_surge() {
        assert_eq!(new_rs_new_replicas(10, 3, 10, 0), 3);
        assert_eq!(new_rs_new_replicas(10, 3, 13, 3), 3);
        assert_eq!(new_rs_new_replicas(10, 3, 11, 3), 5);
        assert_eq!(new_rs_new_replicas(3, 1, 3, 2), 3);
    }

    #[test]
    fn old_replica_sets_shrink_only_while_availability_holds() {
        // 10 desired, maxUnavailable 2; old has 10 available, new 3 not yet available.
        assert_eq!(scale_down_old(&[(10, 10)], (3, 0), 10, 2), vec![8]);
        // Nothing may go: availability is at the minimum.
        assert_eq!(scale_down_old(&[(8, 8)], (5, 0), 10, 2), vec![8]);
        // Unhealthy old replicas go first.
        assert_eq!(scale_down_old(&[(4, 1), (6, 6)], (3, 3), 10, 0), vec![1, 6]);
        // Everything new is available: the rest of the old goes.
        assert_eq!(scale_down_old(&[(2, 2)], (10, 10), 10, 2), vec![0]);
    }

    #[test]
    fn proportional_scaling_spreads_by_size_with_leftovers_to_the_largest() {
        let rs = |name: &str, replicas: i32, max: i32, created: &str| -> ReplicaSet {
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created, "annotations": {MAX_REPLICAS: max.to_string()}}, "spec": {"replicas": replicas, "selector": {}}})).expect("rs")
        };
        // Upstream's example: 10 replicas, maxSurge 3, mid-rollout 8 old + 5 new; scale to 15.
        let old = rs("old", 8, 13, "2024-01-01T00:00:00Z");
        let new = rs("new", 5, 13, "2024-01-02T00:00:00Z");
        let sizes = proportional_sizes(&[old.clone(), new.clone()], 15, 3, 13);
        assert_eq!(sizes.iter().sum::<i32>(), 18);
        assert_eq!(sizes, vec![11, 7]);
        // Scale down to 5.
        let sizes = proportional_sizes(&[old, new], 5, 3, 13);
        assert_eq!(sizes.iter().sum::<i32>(), 8);
        assert_eq!(sizes, vec![5, 3]);
    }

    #[test]
    fn template_hashes_ignore_nothing_but_collisions_change_them() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).expect("t");
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let mut hashed = t.clone();
        hashed
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert(POD_TEMPLATE_HASH.into(), h.clone()));
        assert!(equal_ignore_hash(&t, &hashed));
    }

    #[test]
    fn revisions_move_to_the_history_annotation() {
        let d = deployment(
            json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "x", REVISION: "9"}}, "spec": {"replicas": 2, "selector": {}, "template": {}}}),
        );
        let mut rs: ReplicaSet =
            serde_json::from_value(json!({"metadata": {"annotations": {REVISION: "1"}}}))
                .expect("rs");
        assert!(set_new_rs_annotations(&d, &mut rs, "3", true));
        let a = rs.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert_eq!(
            a.get("kubernetes.io/change-cause").map(String::as_str),
            Some("x")
        );
        assert!(!set_new_rs_annotations(&d, &mut rs, "3", true));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_stays() {
        let t0: Timestamp = "2024-01-01T00:00:00Z".parse().expect("ts");
        let t1: Timestamp = "2024-01-01T00:01:00Z".parse().expect("ts");
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition("Progressing", "True", NEW_RS_REASON, "a".into(), t0),
        );
        set_condition(
            &mut s,
            new_condition("Progressing", "True", RS_UPDATED_REASON, "b".into(), t1),
        );
        let c = condition(&s, "Progressing").expect("cond");
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_update_time, Some(Time(t1)));
        let d = deployment(
            json!({"spec": {"replicas": 1, "selector": {}, "template": {}, "progressDeadlineSeconds": 30}}),
        );
        assert!(!is_timed_out(&d, &s, t1));
        assert!(is_timed_out(
            &d,
            &s,
            "2024-01-01T00:02:00Z".parse().expect("ts")
        ));
    }
}
