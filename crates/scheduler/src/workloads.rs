//! The selectors of Services, ReplicationControllers, ReplicaSets and StatefulSets, for
//! upstream's default topology spreading: a pod without spread constraints of its own is
//! spread (softly: hostname maxSkew 3, zone maxSkew 5) among the pods selected by the Services
//! that select it and by its controller ([`Workloads::default_selector`], upstream's
//! `DefaultSelector`).

use std::collections::{BTreeMap, HashMap};

use crate::labels::Labels;
use crate::podinfo::PodInfo;
use capstan_api::selector::Selector;

/// Which kind of object a selector belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Service,
    ReplicationController,
    ReplicaSet,
    StatefulSet,
}

/// (kind, namespace, name).
pub type WorkloadKey = (Kind, String, String);

/// A workload's selector: a plain label map (Services, RCs) or a label selector.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkloadSelector {
    Map(BTreeMap<String, String>),
    Selector(Selector),
}

#[derive(Default)]
pub struct Workloads {
    objects: HashMap<WorkloadKey, WorkloadSelector>,
}

impl Workloads {
    pub fn upsert(&mut self, key: WorkloadKey, sel: WorkloadSelector) {
        self.objects.insert(key, sel);
    }

    pub fn remove(&mut self, key: &WorkloadKey) {
        self.objects.remove(key);
    }

    pub fn keys(&self, kind: Kind) -> Vec<WorkloadKey> {
        self.objects
            .keys()
            .filter(|k| k.0 == kind)
            .cloned()
            .collect()
    }

    /// Upstream's `DefaultSelector`: the label maps of the Services selecting the pod and of
    /// its ReplicationController merged, plus its ReplicaSet's or StatefulSet's selector.
    /// None when that selects nothing in particular.
    pub fn default_selector(&self, pod: &PodInfo) -> Option<Selector> {
        let mut set: Labels = BTreeMap::new();
        for ((kind, ns, _), sel) in &self.objects {
            if *kind != Kind::Service || *ns != pod.namespace {
                continue;
            }
            if let WorkloadSelector::Map(m) = sel {
                if !m.is_empty() && m.iter().all(|(k, v)| pod.labels.get(k) == Some(v)) {
                    set.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut extra: Option<&Selector> = None;
        if let Some(c) = pod.controller.as_ref() {
            let kind = match (c.api_group.as_str(), c.kind.as_str()) {
                ("", "ReplicationController") => Some(Kind::ReplicationController),
                ("apps", "ReplicaSet") => Some(Kind::ReplicaSet),
                ("apps", "StatefulSet") => Some(Kind::StatefulSet),
                _ => None,
            };
            if let Some(kind) = kind {
                match self
                    .objects
                    .get(&(kind, pod.namespace.clone(), c.name.clone()))
                {
                    Some(WorkloadSelector::Map(m)) => {
                        set.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())))
                    }
                    Some(WorkloadSelector::Selector(s)) => extra = Some(s),
                    None => {}
                }
            }
        }
        let mut selector = Selector::everything();
        for (k, v) in &set {
            selector.require(k, v, true);
        }
        if let Some(s) = extra {
            selector.extend(s);
        }
        (!selector.is_empty()).then_some(selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::tests::pod;
    use serde_json::json;

    #[test]
    fn services_and_the_controller_make_the_default_selector() {
        let mut w = Workloads::default();
        w.upsert(
            (Kind::Service, "default".into(), "web".into()),
            WorkloadSelector::Map(
                [("app".to_string(), "web".to_string())]
                    .into_iter()
                    .collect(),
            ),
        );
        w.upsert(
            (Kind::Service, "default".into(), "other".into()),
            WorkloadSelector::Map(
                [("app".to_string(), "db".to_string())]
                    .into_iter()
                    .collect(),
            ),
        );
        let rs_sel: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
            serde_json::from_value(
                json!({"matchLabels": {"app": "web", "pod-template-hash": "abc"}}),
            )
            .expect("sel");
        w.upsert(
            (Kind::ReplicaSet, "default".into(), "web-abc".into()),
            WorkloadSelector::Selector(Selector::from_api(Some(&rs_sel))),
        );
        let p = pod(
            json!({"metadata": {"name": "web-abc-1", "labels": {"app": "web", "pod-template-hash": "abc"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u", "controller": true}]}, "spec": {}}),
        );
        let s = w.default_selector(&p).expect("a selector");
        assert!(s.matches(&p.labels));
        let sibling_of_other_rs: Labels = [("app", "web"), ("pod-template-hash", "def")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(!s.matches(&sibling_of_other_rs));
        let lonely = pod(json!({"metadata": {"name": "x", "labels": {"app": "none"}}, "spec": {}}));
        assert!(w.default_selector(&lonely).is_none());
    }
}
