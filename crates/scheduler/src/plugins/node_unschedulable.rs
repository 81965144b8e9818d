//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerated_by_any;
use super::{Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const ERR_REASON: &str = "node(s) were unschedulable";
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    if !node.unschedulable() {
        return None;
    }
    let taint = Taint {
        key: TAINT_KEY.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if tolerated_by_any(&pod.tolerations, &taint) {
        return None;
    }
    Some(Rejection::unresolvable(
        Plugin::NodeUnschedulable,
        ERR_REASON,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeinfo::NodeProps;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_reject_pods_that_do_not_tolerate_it() {
        let n = NodeInfo::with_props(
            "n",
            NodeProps {
                unschedulable: true,
                ..Default::default()
            },
        );
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(filter(&p, &n).expect("rejected").reasons, vec![ERR_REASON]);
        let t = pod(
            json!({"metadata": {"name": "p"}, "spec": {"tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(filter(&t, &n).is_none());
        assert!(filter(&p, &NodeInfo::with_props("m", NodeProps::default())).is_none());
    }
}
