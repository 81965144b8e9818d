//! A container's environment: `env` variables (names and valueFrom sources) and `envFrom`.

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar};

use super::field_refs::{object_field_selector, resource_field_selector, ENV_FIELD_PATHS};
use super::s;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::core::checks;

pub(super) fn env(vars: &[EnvVar], path: &Path, errs: &mut ErrorList) {
    for (i, ev) in vars.iter().enumerate() {
        let p = path.index(i);
        if ev.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for m in checks::env_var_name(&ev.name) {
                errs.push(FieldError::invalid(p.child("name"), ev.name.as_str(), m));
            }
        }
        let Some(from) = &ev.value_from else { continue };
        let fp = p.child("valueFrom");
        let mut n = 0;
        if let Some(f) = &from.field_ref {
            n += 1;
            object_field_selector(f, ENV_FIELD_PATHS, &fp.child("fieldRef"), errs);
        }
        if let Some(r) = &from.resource_field_ref {
            n += 1;
            resource_field_selector(r, false, &fp.child("resourceFieldRef"), errs);
        }
        for (sel, key_path) in [
            (
                from.config_map_key_ref.as_ref().map(|c| (&c.name, &c.key)),
                "configMapKeyRef",
            ),
            (
                from.secret_key_ref.as_ref().map(|c| (&c.name, &c.key)),
                "secretKeyRef",
            ),
        ] {
            let Some((name, key)) = sel else { continue };
            n += 1;
            let kp = fp.child(key_path);
            checks::dns_subdomain(name, &kp.child("name"), errs);
            if key.is_empty() {
                errs.push(FieldError::required(kp.child("key"), ""));
            } else {
                for m in checks::config_map_key(key) {
                    errs.push(FieldError::invalid(kp.child("key"), key.as_str(), m));
                }
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !s(&ev.value).is_empty() {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

pub(super) fn env_from(sources: &[EnvFromSource], path: &Path, errs: &mut ErrorList) {
    for (i, ev) in sources.iter().enumerate() {
        let p = path.index(i);
        if let Some(prefix) = ev.prefix.as_deref().filter(|x| !x.is_empty()) {
            for m in checks::env_var_name(prefix) {
                errs.push(FieldError::invalid(p.child("prefix"), prefix, m));
            }
        }
        let mut n = 0;
        for (name, child) in [
            (ev.config_map_ref.as_ref().map(|c| &c.name), "configMapRef"),
            (ev.secret_ref.as_ref().map(|c| &c.name), "secretRef"),
        ] {
            let Some(name) = name else { continue };
            n += 1;
            let np = p.child(child).child("name");
            if name.is_empty() {
                errs.push(FieldError::required(np, ""));
            } else {
                checks::dns_subdomain(name, &np, errs);
            }
        }
        if n == 0 {
            errs.push(FieldError::invalid(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if n > 1 {
            errs.push(FieldError::invalid(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}
