//! NodeName: a pod that names its node fits only there (upstream's `NodeName` filter).

use super::{Plugin, Rejection};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Rejection> {
    if pod.node_name.is_empty() || pod.node_name == *node.name {
        None
    } else {
        Some(Rejection::unresolvable(Plugin::NodeName, ERR_REASON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let n = NodeInfo::with_props("a", Default::default());
        assert!(filter(&pod(json!({"metadata": {"name": "p"}, "spec": {}})), &n).is_none());
        assert!(filter(
            &pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "a"}})),
            &n
        )
        .is_none());
        let r = filter(
            &pod(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "b"}})),
            &n,
        )
        .expect("rejected");
        assert_eq!(r.reasons, vec![ERR_REASON]);
    }
}
