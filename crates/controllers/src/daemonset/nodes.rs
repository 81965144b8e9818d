//! Which nodes a DaemonSet's pod belongs on (upstream's `NodeShouldRunDaemonPod`), the
//! tolerations upstream adds to every daemon pod, and the node affinity that pins a daemon pod
//! to its node so the scheduler binds it there.

use std::collections::BTreeMap;

use capstan_api::selector::NodeSelector;
use capstan_scheduler::plugins::taint_toleration::tolerated_by_any;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector as NodeSelectorApi, NodeSelectorRequirement,
    NodeSelectorTerm, Pod, PodSpec, Toleration,
};

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`):
/// daemons keep running on not-ready and unreachable nodes, and land on nodes under
/// pressure or cordoned; host-network daemons also on nodes whose network is not up yet.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // As upstream's AddOrUpdateToleration: an existing toleration of the same key,
        // operator and effect is replaced.
        if let Some(i) = tolerations.iter().position(|o| {
            o.key == t.key
                && o.effect == t.effect
                && o.operator.as_deref().unwrap_or("Equal") == "Exists"
        }) {
            tolerations[i] = t;
        } else {
            tolerations.push(t);
        }
    }
}

/// Sets required node affinity `metadata.name In [node]` (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): other field terms give way to it, label
/// expressions of existing terms stay.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = na
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(NodeSelectorApi::default);
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// The node a daemon pod is for: where it is bound, or where its affinity pins it
/// (upstream's `GetTargetNodeName`).
pub fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|f| {
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| {
                    f.values
                        .as_ref()
                        .and_then(|v| (v.len() == 1).then(|| v[0].clone()))
                })
                .flatten()
        })
    })
}

/// Whether the daemon pod should run on `node` and, if not, whether an existing one may
/// continue (upstream's `NodeShouldRunDaemonPod`). `spec` is the template's pod spec with the
/// daemon tolerations added.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return (false, false);
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(r) = required {
        if !NodeSelector::from_api(r).matches(name, labels) {
            return (false, false);
        }
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .any(|t| effects.contains(&t.effect.as_str()) && !tolerated_by_any(tolerations, t))
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        // A pod already there may stay unless a NoExecute taint would evict it.
        return (false, !untolerated(&["NoExecute"]));
    }
    (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn node_selectors_and_affinity_choose_nodes() {
        let s = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let ssd = node(json!({"metadata": {"name": "a", "labels": {"disk": "ssd"}}}));
        let hdd = node(json!({"metadata": {"name": "b", "labels": {"disk": "hdd"}}}));
        assert_eq!(should_run(&s, &ssd), (true, true));
        assert_eq!(should_run(&s, &hdd), (false, false));
        let s = spec(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}]}}}}),
        );
        assert_eq!(should_run(&s, &ssd), (false, false));
        assert_eq!(should_run(&s, &hdd), (true, true));
        let s = spec(json!({"containers": [], "nodeName": "b"}));
        assert_eq!(should_run(&s, &ssd), (false, false));
    }

    #[test]
    fn taints_keep_daemons_out_unless_tolerated_and_no_schedule_lets_them_stay() {
        let plain = spec(json!({"containers": []}));
        let no_sched = node(
            json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}}),
        );
        let no_exec = node(
            json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "gpu", "effect": "NoExecute"}]}}),
        );
        assert_eq!(should_run(&plain, &no_sched), (false, true));
        assert_eq!(should_run(&plain, &no_exec), (false, false));
        let tolerant =
            spec(json!({"containers": [], "tolerations": [{"key": "gpu", "operator": "Exists"}]}));
        assert_eq!(should_run(&tolerant, &no_exec), (true, true));
        // The automatic tolerations: not-ready, cordoned and pressured nodes keep daemons.
        let sick = node(
            json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(should_run(&plain, &sick), (true, true));
        let net = node(
            json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(should_run(&plain, &net), (false, true));
        let host = spec(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(should_run(&host, &net), (true, true));
    }

    #[test]
    fn pods_are_pinned_by_field_affinity_keeping_label_terms() {
        let mut s: PodSpec = serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}})).expect("spec");
        pin_to_node(&mut s, "n7");
        let v = serde_json::to_value(&s).expect("json");
        let term = &v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": ["n7"]}])
        );
        assert_eq!(term["matchExpressions"][0]["key"], "disk");
        let p = Pod {
            spec: Some(s),
            ..Default::default()
        };
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        let mut plain = PodSpec::default();
        pin_to_node(&mut plain, "n1");
        add_daemon_tolerations(&mut plain);
        add_daemon_tolerations(&mut plain);
        assert_eq!(
            plain.tolerations.as_ref().map(Vec::len),
            Some(6),
            "tolerations are not added twice"
        );
    }
}
