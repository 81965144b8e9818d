//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do not
//! tolerate them (filter); untolerated PreferNoSchedule taints lower a node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{default_normalize, Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

/// Upstream's `Toleration.ToleratesTaint`: an empty effect or key matches any; `Exists`
/// ignores the value; an empty operator means `Equal`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerated_by_any(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first NoSchedule/NoExecute taint of `taints` that `tolerations` do not tolerate.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated_by_any(tolerations, t))
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    let taint = first_untolerated(node.taints(), &pod.tolerations)?;
    Some(Rejection::unresolvable(
        Plugin::TaintToleration,
        format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        ),
    ))
}

/// The number of PreferNoSchedule taints the pod does not tolerate (tolerations with an
/// empty effect or PreferNoSchedule count).
pub fn raw_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let prefer: Vec<&Toleration> = pod
        .tolerations
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    node.taints()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| !prefer.iter().any(|t| tolerates(t, taint)))
        .count() as i64
}

/// Fewer untolerated PreferNoSchedule taints score higher.
pub fn normalize(scores: &mut [i64]) {
    default_normalize(scores, true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    fn node(taints: serde_json::Value) -> NodeInfo {
        let props = NodeProps {
            taints: serde_json::from_value(taints).expect("taints"),
            ..Default::default()
        };
        NodeInfo::with_props("n", props)
    }

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    fn taint(v: serde_json::Value) -> Taint {
        serde_json::from_value(v).expect("taint")
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = taint(json!({"key": "k", "value": "v", "effect": "NoSchedule"}));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Equal", "value": "v"})),
            &t
        ));
        assert!(tolerates(
            &tol(json!({"key": "k", "value": "v", "effect": "NoSchedule"})),
            &t
        ));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(
            &tol(json!({"operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Bogus"})),
            &t
        ));
    }

    #[test]
    fn untolerated_no_schedule_taints_reject_with_upstreams_reason() {
        let n = node(json!([
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        ]));
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        let r = filter(&p, &n).expect("rejected");
        assert_eq!(
            r.reasons,
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let ok = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&ok, &n).is_none());
    }

    #[test]
    fn prefer_no_schedule_taints_only_lower_the_score() {
        let tainted = node(json!([{"key": "soft", "effect": "PreferNoSchedule"}]));
        let clean = node(json!([]));
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        assert!(filter(&p, &tainted).is_none());
        let mut scores = vec![raw_score(&p, &tainted), raw_score(&p, &clean)];
        normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
        let tolerant = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"key": "soft", "operator": "Exists"}]}}),
        );
        assert_eq!(raw_score(&tolerant, &tainted), 0);
    }
}
