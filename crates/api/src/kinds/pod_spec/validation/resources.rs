//! Compute resources: requests and limits (upstream's ValidateResourceRequirements), resize
//! policies, and the parsed lists the Pod kind sums for its QoS class.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};

use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;
use crate::kinds::core::quantity::{self, Quantity};

/// Upstream's ValidateResourceRequirements: names, non-negative values, requests <= limits.
pub(crate) fn resource_requirements(r: &ResourceRequirements, path: &Path, errs: &mut ErrorList) {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let (mut lim_cpu_mem, mut req_cpu_mem, mut lim_huge, mut req_huge) =
        (false, false, false, false);
    let limits = checks::resource_list(
        r.limits.as_ref(),
        &lim_path,
        checks::container_resource_name,
        errs,
    );
    for name in limits.keys() {
        lim_huge |= name.starts_with("hugepages-");
        lim_cpu_mem |= name == "cpu" || name == "memory";
    }
    for (name, q) in r.requests.iter().flatten() {
        let p = req_path.key(name);
        checks::container_resource_name(name, &p, errs);
        let Some(q) = checks::parse_quantity(q, &p, errs) else {
            continue;
        };
        checks::resource_quantity_value(name, &q, &p, errs);
        match limits.get(name) {
            Some(lim) => {
                if q != *lim && !checks::is_overcommit_allowed(name) {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!("must be equal to {name} limit of {}", lim.canonical()),
                    ));
                } else if q > *lim {
                    errs.push(FieldError::invalid(
                        &req_path,
                        q.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            lim.canonical()
                        ),
                    ));
                }
            }
            None if !checks::is_overcommit_allowed(name) => errs.push(FieldError::required(
                &lim_path,
                "Limit must be set for non overcommitable resources",
            )),
            None => {}
        }
        req_huge |= name.starts_with("hugepages-");
        req_cpu_mem |= name == "cpu" || name == "memory";
    }
    if !lim_cpu_mem && !req_cpu_mem && (lim_huge || req_huge) {
        errs.push(FieldError::forbidden(
            path,
            "HugePages require cpu or memory",
        ));
    }
    let mut claims = BTreeSet::new();
    for (i, c) in r.claims.iter().flatten().enumerate() {
        if c.name.is_empty() {
            errs.push(FieldError::required(path.child("claims").index(i), ""));
        } else if !claims.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(
                path.child("claims").index(i),
                c.name.as_str(),
            ));
        }
    }
}

pub(super) fn resize_policy(
    c: &Container,
    restart_policy: &str,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mut seen = BTreeSet::new();
    for (i, p) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(p.resource_name.clone()) {
            errs.push(FieldError::duplicate(
                path.index(i),
                p.resource_name.as_str(),
            ));
        }
        match p.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(path, other, &["cpu", "memory"])),
        }
        match p.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(FieldError::required(path, "")),
            other => errs.push(FieldError::not_supported(
                path,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if restart_policy == "Never" && p.restart_policy != "NotRequired" {
            errs.push(FieldError::invalid(
                path,
                p.restart_policy.as_str(),
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
}

/// The parsed requests and limits summed for QoS; shared with the Pod kind.
pub(crate) fn parsed(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, Quantity> {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| quantity::parse(v).ok().map(|q| (k.clone(), q)))
        .collect()
}
