//! A pod's dnsConfig: nameservers, search paths and options, and what `dnsPolicy: None`
//! requires of it.

use k8s_openapi::api::core::v1::PodDNSConfig;

use super::{s, to_json};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

pub(super) fn dns_config(
    cfg: Option<&PodDNSConfig>,
    policy: &str,
    path: &Path,
    errs: &mut ErrorList,
) {
    if policy == "None" {
        match cfg {
            None => {
                errs.push(FieldError::required(
                    path,
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
                return;
            }
            Some(c) if c.nameservers.as_deref().unwrap_or_default().is_empty() => {
                errs.push(FieldError::required(
                    path.child("nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                ));
                return;
            }
            _ => {}
        }
    }
    let Some(c) = cfg else { return };
    let ns = c.nameservers.as_deref().unwrap_or_default();
    if ns.len() > 3 {
        errs.push(FieldError::invalid(
            path.child("nameservers"),
            to_json(&ns),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        checks::valid_ip(n, &path.child("nameservers").index(i), errs);
    }
    let searches = c.searches.as_deref().unwrap_or_default();
    if searches.len() > 32 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            to_json(&searches),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(FieldError::invalid(
            path.child("searches"),
            to_json(&searches),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, sp) in searches.iter().enumerate() {
        checks::dns_subdomain(
            sp.strip_suffix('.').unwrap_or(sp),
            &path.child("searches").index(i),
            errs,
        );
    }
    for (i, o) in c.options.iter().flatten().enumerate() {
        if s(&o.name).is_empty() {
            errs.push(FieldError::required(
                path.child("options").index(i),
                "must not be empty",
            ));
        }
    }
}
