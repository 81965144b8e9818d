//! Pod and container security contexts: user and group ids, seccomp profiles, procMount,
//! privilege escalation, sysctls.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSecurityContext, PodSpec, SeccompProfile, SecurityContext};

use super::{to_json, MAX_INT32};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks::{self, inclusive_range};

fn user_or_group_id(id: i64, path: Path, errs: &mut ErrorList) {
    if !(0..=MAX_INT32).contains(&id) {
        errs.push(FieldError::invalid(path, id, inclusive_range(0, MAX_INT32)));
    }
}

fn seccomp(sp: &SeccompProfile, path: &Path, errs: &mut ErrorList) {
    const TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
    match sp.type_.as_str() {
        "" => errs.push(FieldError::required(
            path.child("type"),
            "type is required when seccompProfile is set",
        )),
        t if !TYPES.contains(&t) => {
            errs.push(FieldError::not_supported(path.child("type"), t, TYPES))
        }
        _ => {}
    }
    if sp.type_ == "Localhost" {
        match &sp.localhost_profile {
            None => errs.push(FieldError::required(
                path.child("localhostProfile"),
                "must be set when seccomp type is Localhost",
            )),
            Some(lp) => checks::local_descending_path(lp, &path.child("localhostProfile"), errs),
        }
    } else if sp.localhost_profile.is_some() {
        errs.push(FieldError::invalid(
            path.child("localhostProfile"),
            to_json(sp),
            "can only be set when seccomp type is Localhost",
        ));
    }
}

pub(super) fn container_security_context(
    sc: &SecurityContext,
    host_users: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(u) = sc.run_as_user {
        user_or_group_id(u, path.child("runAsUser"), errs);
    }
    if let Some(g) = sc.run_as_group {
        user_or_group_id(g, path.child("runAsGroup"), errs);
    }
    if let Some(pm) = &sc.proc_mount {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(FieldError::not_supported(
                path.child("procMount"),
                pm.as_str(),
                &["Default", "Unmasked"],
            ));
        }
        if host_users && pm == "Unmasked" {
            errs.push(FieldError::invalid(
                path.child("procMount"),
                pm.as_str(),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    if let Some(sp) = &sc.seccomp_profile {
        seccomp(sp, &path.child("seccompProfile"), errs);
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errs.push(FieldError::invalid(
                path,
                to_json(sc),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        if sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|c| c == "CAP_SYS_ADMIN"))
        {
            errs.push(FieldError::invalid(
                path,
                to_json(sc),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            ));
        }
    }
}

pub(super) fn pod_security_context(
    sc: &PodSecurityContext,
    spec: &PodSpec,
    path: &Path,
    errs: &mut ErrorList,
) {
    if let Some(g) = sc.fs_group {
        user_or_group_id(g, path.child("fsGroup"), errs);
    }
    if let Some(u) = sc.run_as_user {
        user_or_group_id(u, path.child("runAsUser"), errs);
    }
    if let Some(g) = sc.run_as_group {
        user_or_group_id(g, path.child("runAsGroup"), errs);
    }
    for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
        user_or_group_id(*g, path.child("supplementalGroups").index(i), errs);
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(FieldError::invalid(
            path.child("shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let p = path.child("sysctls").index(i);
        if sysctl.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !sysctl_name_ok(&sysctl.name) {
            errs.push(FieldError::invalid(
                p.child("name"),
                sysctl.name.as_str(),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        }
        if !names.insert(sysctl.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), sysctl.name.as_str()));
        }
    }
    if let Some(p) = &sc.fs_group_change_policy {
        if p != "Always" && p != "OnRootMismatch" {
            errs.push(FieldError::not_supported(
                path.child("fsGroupChangePolicy"),
                p.as_str(),
                &["Always", "OnRootMismatch"],
            ));
        }
    }
    if let Some(sp) = &sc.seccomp_profile {
        seccomp(sp, &path.child("seccompProfile"), errs);
    }
}

fn sysctl_name_ok(name: &str) -> bool {
    if name.len() > 253 {
        return false;
    }
    name.split(['.', '/']).all(|seg| {
        let b = seg.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    })
}
