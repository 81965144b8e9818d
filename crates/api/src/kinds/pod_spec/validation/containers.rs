//! Containers, init containers and ephemeral containers: what every container must satisfy
//! (upstream's validateContainerCommon), unique names, host port conflicts, and the fields each
//! kind of container may not set.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, PodSpec};
use serde_json::json;

use super::env::{env, env_from};
use super::mounts::{volume_devices, volume_mounts};
use super::probes::probes_and_lifecycle;
use super::resources::{resize_policy, resource_requirements};
use super::security::container_security_context;
use super::volumes::VolumeKind;
use super::{s, to_json};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

fn container_ports(c: &Container, path: &Path, errs: &mut ErrorList) {
    let mut names = BTreeSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = checks::port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(p.child("name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            for m in checks::port_num(i64::from(port.container_port)) {
                errs.push(FieldError::invalid(
                    p.child("containerPort"),
                    port.container_port,
                    m,
                ));
            }
        }
        if let Some(hp) = port.host_port.filter(|h| *h != 0) {
            for m in checks::port_num(i64::from(hp)) {
                errs.push(FieldError::invalid(p.child("hostPort"), hp, m));
            }
        }
        let proto = s(&port.protocol);
        if proto.is_empty() {
            errs.push(FieldError::required(p.child("protocol"), ""));
        } else if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                p.child("protocol"),
                proto,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

/// Upstream's validateContainerCommon: what every kind of container must satisfy.
fn container_common(
    c: &Container,
    vols: &HashMap<String, VolumeKind>,
    restart_policy: &str,
    host_users: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        checks::dns_label(&c.name, &path.child("name"), errs);
    }
    if s(&c.image).is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    match s(&c.termination_message_policy) {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(FieldError::required(
            path.child("terminationMessagePolicy"),
            "",
        )),
        other => errs.push(FieldError::not_supported(
            path.child("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    container_ports(c, &path.child("ports"), errs);
    env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
        errs,
    );
    env_from(
        c.env_from.as_deref().unwrap_or_default(),
        &path.child("envFrom"),
        errs,
    );
    volume_mounts(c, vols, &path.child("volumeMounts"), errs);
    volume_devices(c, vols, &path.child("volumeDevices"), errs);
    match s(&c.image_pull_policy) {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(FieldError::required(path.child("imagePullPolicy"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    if let Some(r) = &c.resources {
        resource_requirements(r, &path.child("resources"), errs);
    }
    resize_policy(c, restart_policy, &path.child("resizePolicy"), errs);
    if let Some(sc) = &c.security_context {
        container_security_context(sc, host_users, &path.child("securityContext"), errs);
    }
}

fn host_port_conflicts(containers: &[&Container], path: &Path, errs: &mut ErrorList) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let hp = p.host_port.unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{hp}", s(&p.protocol), s(&p.host_ip));
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(
                    path.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

pub(super) struct PodContext<'a> {
    pub(super) vols: &'a HashMap<String, VolumeKind>,
    pub(super) grace: Option<i64>,
    pub(super) restart_policy: &'a str,
    pub(super) host_users: bool,
}

pub(super) fn containers(
    list: &[Container],
    ctx: &PodContext<'_>,
    path: &Path,
    errs: &mut ErrorList,
) {
    if list.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        container_common(c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        }
        probes_and_lifecycle(c, ctx.grace, &p, errs);
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    let refs: Vec<&Container> = list.iter().collect();
    host_port_conflicts(&refs, path, errs);
}

pub(super) fn init_containers(
    list: &[Container],
    regular: &[Container],
    ctx: &PodContext<'_>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mut names: BTreeSet<String> = regular.iter().map(|c| c.name.clone()).collect();
    for (i, c) in list.iter().enumerate() {
        let p = path.index(i);
        container_common(c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        let mut restart_always = false;
        if let Some(rp) = &c.restart_policy {
            if rp == "Always" {
                restart_always = true;
            } else {
                errs.push(FieldError::not_supported(
                    p.child("restartPolicy"),
                    rp.as_str(),
                    &["Always"],
                ));
            }
        }
        if names.contains(&c.name) {
            errs.push(FieldError::duplicate(p.child("name"), c.name.as_str()));
        } else if !c.name.is_empty() {
            names.insert(c.name.clone());
        }
        host_port_conflicts(&[c], path, errs);
        if restart_always {
            probes_and_lifecycle(c, ctx.grace, &p, errs);
        } else {
            for (set, name) in [
                (c.lifecycle.is_some(), "lifecycle"),
                (c.liveness_probe.is_some(), "livenessProbe"),
                (c.readiness_probe.is_some(), "readinessProbe"),
                (c.startup_probe.is_some(), "startupProbe"),
            ] {
                if set {
                    errs.push(FieldError::forbidden(
                        p.child(name),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
        if !c.resize_policy.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::invalid(
                p.child("resizePolicy"),
                to_json(&c.resize_policy),
                "must not be set for init containers",
            ));
        }
    }
}

fn as_container(ec: &EphemeralContainer) -> Container {
    serde_json::to_value(ec)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

pub(super) fn ephemeral_containers(
    spec: &PodSpec,
    ctx: &PodContext<'_>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let list = spec.ephemeral_containers.as_deref().unwrap_or_default();
    if list.is_empty() {
        return;
    }
    let others: BTreeSet<String> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect();
    let mut all = others.clone();
    for (i, ec) in list.iter().enumerate() {
        let p = path.index(i);
        let c = as_container(ec);
        container_common(&c, ctx.vols, ctx.restart_policy, ctx.host_users, &p, errs);
        image_whitespace(&c, &p, errs);
        if !all.insert(ec.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), ec.name.as_str()));
        }
        if let Some(t) = ec
            .target_container_name
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            if !others.contains(t) {
                errs.push(FieldError::not_found(p.child("targetContainerName"), t));
            }
        }
        for (set, name) in [
            (ec.ports.is_some(), "ports"),
            (
                ec.resources
                    .as_ref()
                    .is_some_and(|r| to_json(r) != json!({})),
                "resources",
            ),
            (ec.liveness_probe.is_some(), "livenessProbe"),
            (ec.readiness_probe.is_some(), "readinessProbe"),
            (ec.startup_probe.is_some(), "startupProbe"),
            (ec.lifecycle.is_some(), "lifecycle"),
            (ec.resize_policy.is_some(), "resizePolicy"),
            (ec.restart_policy.is_some(), "restartPolicy"),
        ] {
            if set {
                errs.push(FieldError::forbidden(
                    p.child(name),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        for (j, vm) in ec.volume_mounts.iter().flatten().enumerate() {
            let vp = p.child("volumeMounts").index(j);
            if !s(&vm.sub_path).is_empty() {
                errs.push(FieldError::forbidden(
                    vp.child("subPath"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
            if !s(&vm.sub_path_expr).is_empty() {
                errs.push(FieldError::forbidden(
                    vp.child("subPathExpr"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
    }
}

/// Pod-only check (templates may carry padded images): no whitespace around the image.
pub(crate) fn image_whitespace(c: &Container, path: &Path, errs: &mut ErrorList) {
    let image = s(&c.image);
    if image.len() != image.trim().len() {
        errs.push(FieldError::invalid(
            path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
}
