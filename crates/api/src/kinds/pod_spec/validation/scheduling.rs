//! Where a pod may run: tolerations, taint effects, node and pod (anti-)affinity, topology
//! spread constraints.

use k8s_openapi::api::core::v1::{
    Affinity, NodeSelector, NodeSelectorTerm, PodAffinityTerm, Toleration, TopologySpreadConstraint,
};

use super::{s, to_json};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;
use crate::validation::label_value;

/// Upstream's ValidateTolerations.
pub(crate) fn tolerations(list: &[Toleration], path: &Path, errs: &mut ErrorList) {
    for (i, t) in list.iter().enumerate() {
        let p = path.index(i);
        let key = s(&t.key);
        let op = s(&t.operator);
        let effect = s(&t.effect);
        if !key.is_empty() {
            checks::label_name(key, &p.child("key"), errs);
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = label_value(s(&t.value));
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        s(&t.value),
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !s(&t.value).is_empty() {
                    errs.push(FieldError::invalid(
                        p.child("operator"),
                        to_json(t),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                p.child("operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            taint_effect(effect, &p.child("effect"), errs);
        }
    }
}

/// Upstream's validateTaintEffect for a non-empty effect.
pub(crate) fn taint_effect(effect: &str, path: &Path, errs: &mut ErrorList) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errs.push(FieldError::not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
}

fn node_selector_term(term: &NodeSelectorTerm, path: &Path, errs: &mut ErrorList) {
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => errs.push(FieldError::required(
                p.child("values"),
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        checks::label_name(&req.key, &p.child("key"), errs);
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(FieldError::required(
                        p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                p.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        if req.key != "metadata.name" {
            errs.push(FieldError::invalid(
                p.child("key"),
                req.key.as_str(),
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in values.iter().enumerate() {
                checks::dns_subdomain(v, &p.child("values").index(k), errs);
            }
        }
    }
}

fn node_selector(ns: &NodeSelector, path: &Path, errs: &mut ErrorList) {
    let tp = path.child("nodeSelectorTerms");
    if ns.node_selector_terms.is_empty() {
        errs.push(FieldError::required(
            tp,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, t) in ns.node_selector_terms.iter().enumerate() {
        node_selector_term(t, &tp.index(i), errs);
    }
}

fn pod_affinity_term(t: &PodAffinityTerm, path: &Path, errs: &mut ErrorList) {
    if let Some(sel) = &t.label_selector {
        checks::label_selector(sel, &path.child("labelSelector"), errs);
    }
    if let Some(sel) = &t.namespace_selector {
        checks::label_selector(sel, &path.child("namespaceSelector"), errs);
    }
    for ns in t.namespaces.iter().flatten() {
        checks::dns_label(ns, &path.child("namespace"), errs);
    }
    if t.topology_key.is_empty() {
        errs.push(FieldError::required(
            path.child("topologyKey"),
            "can not be empty",
        ));
    }
    checks::label_name(&t.topology_key, &path.child("topologyKey"), errs);
}

pub(super) fn affinity(a: &Affinity, path: &Path, errs: &mut ErrorList) {
    if let Some(na) = &a.node_affinity {
        let p = path.child("nodeAffinity");
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            node_selector(
                req,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution"),
                errs,
            );
        }
        let pp = p.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            if t.weight <= 0 || t.weight > 100 {
                errs.push(FieldError::invalid(
                    pp.index(i).child("weight"),
                    t.weight,
                    "must be in the range 1-100",
                ));
            }
            node_selector_term(&t.preference, &pp.index(i).child("preference"), errs);
        }
    }
    let pods = [
        (
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
            "podAffinity",
        ),
        (
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
            "podAntiAffinity",
        ),
    ];
    for (terms, name) in pods {
        let Some((required, preferred)) = terms else {
            continue;
        };
        let p = path.child(name);
        let rp = p.child("requiredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in required.iter().flatten().enumerate() {
            pod_affinity_term(t, &rp.index(i), errs);
        }
        let pp = p.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in preferred.iter().flatten().enumerate() {
            if t.weight <= 0 || t.weight > 100 {
                errs.push(FieldError::invalid(
                    pp.index(i).child("weight"),
                    t.weight,
                    "must be in the range 1-100",
                ));
            }
            pod_affinity_term(
                &t.pod_affinity_term,
                &pp.index(i).child("podAffinityTerm"),
                errs,
            );
        }
    }
}

pub(super) fn topology_spread(
    list: &[TopologySpreadConstraint],
    path: &Path,
    errs: &mut ErrorList,
) {
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                p.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                p.child("topologyKey"),
                "can not be empty",
            ));
        }
        if !matches!(
            c.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errs.push(FieldError::not_supported(
                p.child("whenUnsatisfiable"),
                c.when_unsatisfiable.as_str(),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if list[i + 1..].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        }) {
            errs.push(FieldError::duplicate(
                p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        if let Some(md) = c.min_domains {
            if md <= 0 {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    md,
                    "must be greater than zero",
                ));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    p.child("minDomains"),
                    md,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                ));
            }
        }
        for (policy, name) in [
            (&c.node_affinity_policy, "nodeAffinityPolicy"),
            (&c.node_taints_policy, "nodeTaintsPolicy"),
        ] {
            if let Some(pol) = policy {
                if pol != "Honor" && pol != "Ignore" {
                    errs.push(FieldError::not_supported(
                        p.child(name),
                        pol.as_str(),
                        &["Honor", "Ignore"],
                    ));
                }
            }
        }
        if let Some(sel) = &c.label_selector {
            checks::label_selector(sel, &p.child("labelSelector"), errs);
        }
    }
}
