//! Upstream's default filter and score plugins, each a module of pure functions over a pod and
//! a node (and, for the cluster-wide ones, state computed once per cycle). This file holds the
//! vocabulary they share: which plugin said no ([`Plugin`]), how final the no is ([`Code`]),
//! and the reasons that end up in "0/3 nodes are available: ..." ([`Rejection`]).

use std::borrow::Cow;

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

/// Scores run from 0 to this (upstream's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// The filter plugins, in upstream's default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plugin {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
    VolumeBinding,
}

impl Plugin {
    pub const ALL: [Plugin; 9] = [
        Plugin::NodeUnschedulable,
        Plugin::NodeName,
        Plugin::TaintToleration,
        Plugin::NodeAffinity,
        Plugin::NodePorts,
        Plugin::NodeResourcesFit,
        Plugin::PodTopologySpread,
        Plugin::InterPodAffinity,
        Plugin::VolumeBinding,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Plugin::NodeUnschedulable => "NodeUnschedulable",
            Plugin::NodeName => "NodeName",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::NodePorts => "NodePorts",
            Plugin::NodeResourcesFit => "NodeResourcesFit",
            Plugin::PodTopologySpread => "PodTopologySpread",
            Plugin::InterPodAffinity => "InterPodAffinity",
            Plugin::VolumeBinding => "VolumeBinding",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of plugins (the ones that rejected a pod, for requeueing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginSet(u16);

impl PluginSet {
    pub fn insert(&mut self, p: Plugin) {
        self.0 |= p.bit();
    }

    pub fn contains(self, p: Plugin) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Plugin> {
        Plugin::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

/// How final a rejection is. Preemption only considers nodes rejected as `Unschedulable`:
/// evicting pods cannot fix `UnschedulableAndUnresolvable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unschedulable,
    UnschedulableAndUnresolvable,
}

/// One plugin's "no" for one node, with upstream's reason strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: Plugin,
    pub code: Code,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    pub fn new(plugin: Plugin, code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            plugin,
            code,
            reasons: vec![reason.into()],
        }
    }

    pub fn unschedulable(plugin: Plugin, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(plugin, Code::Unschedulable, reason)
    }

    pub fn unresolvable(plugin: Plugin, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(plugin, Code::UnschedulableAndUnresolvable, reason)
    }
}

/// Upstream's `DefaultNormalizeScore`: scales scores so the highest becomes `MAX_NODE_SCORE`
/// (or, reversed, the lowest); all-zero scores stay zero (or all become the maximum, reversed).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = MAX_NODE_SCORE * *s / max;
        if reverse {
            v = MAX_NODE_SCORE - v;
        }
        *s = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_scales_to_the_maximum_and_can_reverse() {
        let mut s = vec![1, 2, 4];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![25, 50, 100]);
        let mut s = vec![0, 1, 2];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }

    #[test]
    fn plugin_sets_hold_plugins() {
        let mut s = PluginSet::default();
        assert!(s.is_empty());
        s.insert(Plugin::NodeResourcesFit);
        s.insert(Plugin::InterPodAffinity);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Plugin::NodeResourcesFit, Plugin::InterPodAffinity]
        );
    }
}
