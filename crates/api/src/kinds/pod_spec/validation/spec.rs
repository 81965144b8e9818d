//! Upstream's ValidatePodSpec: the pod-level fields, and each part (volumes, containers,
//! security, scheduling, DNS) checked in upstream's order.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::containers::{containers, ephemeral_containers, init_containers, PodContext};
use super::dns::dns_config;
use super::resources::resource_requirements;
use super::scheduling::{affinity, tolerations, topology_spread};
use super::security::pod_security_context;
use super::volumes::volumes;
use super::{s, Options, MAX_INT32};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks::{self, inclusive_range};
use crate::validation::validate_labels;

/// Upstream's ValidatePodSpec.
pub(crate) fn validate_spec(
    spec: &PodSpec,
    meta: Option<&ObjectMeta>,
    path: &Path,
    opts: Options,
    errs: &mut ErrorList,
) {
    if spec.termination_grace_period_seconds.is_none() {
        errs.push(FieldError::required(
            path.child("terminationGracePeriodSeconds"),
            "",
        ));
    }
    let host_users = spec.host_users.unwrap_or(true);
    let pod_name = meta.and_then(|m| m.name.as_deref());
    let vols = volumes(
        spec.volumes.as_deref().unwrap_or_default(),
        pod_name,
        &path.child("volumes"),
        errs,
    );
    let mut claims = BTreeSet::new();
    for (i, c) in spec.resource_claims.iter().flatten().enumerate() {
        let p = path.child("resourceClaims").index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !claims.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        } else {
            checks::dns_label(&c.name, &p.child("name"), errs);
        }
    }
    let restart_policy = s(&spec.restart_policy);
    let ctx = PodContext {
        vols: &vols,
        grace: spec.termination_grace_period_seconds,
        restart_policy,
        host_users,
    };
    containers(&spec.containers, &ctx, &path.child("containers"), errs);
    init_containers(
        spec.init_containers.as_deref().unwrap_or_default(),
        &spec.containers,
        &ctx,
        &path.child("initContainers"),
        errs,
    );
    ephemeral_containers(spec, &ctx, &path.child("ephemeralContainers"), errs);
    if spec.host_network == Some(true) {
        let cp = path.child("containers");
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, port) in c.ports.iter().flatten().enumerate() {
                let hp = port.host_port.unwrap_or(0);
                if (opts.resource_is_pod || hp != 0) && hp != port.container_port {
                    errs.push(FieldError::invalid(
                        cp.index(i).child("ports").index(j).child("hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    match restart_policy {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = s(&spec.dns_policy);
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(FieldError::required(path.child("dnsPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    if let Some(ns) = &spec.node_selector {
        validate_labels(ns, &path.child("nodeSelector"), errs);
    }
    if let Some(sc) = &spec.security_context {
        pod_security_context(sc, spec, &path.child("securityContext"), errs);
    }
    if let Some(a) = &spec.affinity {
        affinity(a, &path.child("affinity"), errs);
    }
    dns_config(
        spec.dns_config.as_ref(),
        dns_policy,
        &path.child("dnsConfig"),
        errs,
    );
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        checks::qualified(
            &g.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
            errs,
        );
    }
    let mut gates = BTreeSet::new();
    for (i, g) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        checks::qualified(&g.name, &p, errs);
        if !gates.insert(g.name.clone()) {
            errs.push(FieldError::duplicate(&p, g.name.as_str()));
        }
    }
    topology_spread(
        spec.topology_spread_constraints
            .as_deref()
            .unwrap_or_default(),
        &path.child("topologySpreadConstraints"),
        errs,
    );
    if spec.host_users == Some(false) {
        for (set, name) in [
            (spec.host_network == Some(true), "hostNetwork"),
            (spec.host_pid == Some(true), "HostPID"),
            (spec.host_ipc == Some(true), "HostIPC"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    path.child(name),
                    "when `pod.Spec.HostUsers` is false",
                ));
            }
        }
    }
    for (value, name) in [
        (&spec.service_account_name, "serviceAccountName"),
        (&spec.node_name, "nodeName"),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            checks::dns_subdomain(v, &path.child(name), errs);
        }
    }
    if let Some(ads) = spec.active_deadline_seconds {
        if !(1..=MAX_INT32).contains(&ads) {
            errs.push(FieldError::invalid(
                path.child("activeDeadlineSeconds"),
                ads,
                inclusive_range(1, MAX_INT32),
            ));
        }
    }
    for (value, name) in [(&spec.hostname, "hostname"), (&spec.subdomain, "subdomain")] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            checks::dns_label(v, &path.child(name), errs);
        }
    }
    if let Some(t) = spec.tolerations.as_deref().filter(|t| !t.is_empty()) {
        tolerations(t, &path.child("tolerations"), errs);
    }
    for (i, ha) in spec.host_aliases.iter().flatten().enumerate() {
        let p = path.child("hostAliases").index(i);
        checks::valid_ip(&ha.ip, &p.child("ip"), errs);
        for (j, h) in ha.hostnames.iter().flatten().enumerate() {
            checks::dns_subdomain(h, &p.child("hostnames").index(j), errs);
        }
    }
    if let Some(pc) = spec
        .priority_class_name
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        checks::dns_subdomain(pc, &path.child("priorityClassName"), errs);
    }
    if let Some(rc) = &spec.runtime_class_name {
        checks::dns_subdomain(rc, &path.child("runtimeClassName"), errs);
    }
    if let Some(pp) = &spec.preemption_policy {
        match pp.as_str() {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(FieldError::required(path.child("preemptionPolicy"), "")),
            other => errs.push(FieldError::not_supported(
                path.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(o) = &spec.overhead {
        let r = ResourceRequirements {
            limits: Some(o.clone()),
            ..Default::default()
        };
        resource_requirements(&r, &path.child("overhead"), errs);
    }
    if let Some(os) = &spec.os {
        let p = path.child("os").child("name");
        if os.name.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else if os.name != "linux" && os.name != "windows" {
            errs.push(FieldError::not_supported(
                p,
                os.name.as_str(),
                &["linux", "windows"],
            ));
        }
    }
}
