//! Validators shared by every kind: names, labels, annotations and object metadata, with
//! upstream's wording (apimachinery's validation package) so users see familiar messages.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::field_error::{ErrorList, FieldError, Path};

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

/// How a kind's object names are checked (upstream's ValidateNameFunc per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Dns1123Subdomain,
    /// RFC 1123 label: namespaces, and kinds whose names become hostnames.
    Dns1123Label,
    /// RFC 1035 label: services.
    Dns1035Label,
    /// Any path segment (not "." or "..", no "/" or "%"): RBAC kinds, events.
    PathSegment,
}

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
}

/// Problems with `s` as an RFC 1123 label; empty when valid.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label_shape(s) {
        errs.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
        ));
    }
    errs
}

/// Problems with `s` as an RFC 1123 subdomain; empty when valid.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.split('.').all(is_dns1123_label_shape) {
        errs.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
        ));
    }
    errs
}

/// Problems with `s` as an RFC 1035 label; empty when valid.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && is_alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum_lower(c) || c == b'-');
    if !ok {
        errs.push(format!(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
        ));
    }
    errs
}

/// Problems with `s` as a path segment name; empty when valid.
pub fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn max_len_msg(n: usize) -> String {
    format!("must be no more than {n} characters")
}

impl NameRule {
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            Self::Dns1123Subdomain => dns1123_subdomain(name),
            Self::Dns1123Label => dns1123_label(name),
            Self::Dns1035Label => dns1035_label(name),
            Self::PathSegment => path_segment_name(name),
        }
    }
}

const QUALIFIED_NAME_MAX: usize = 63;
const QUALIFIED_NAME_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Problems with a qualified name such as a label key (`example.com/name` or `name`).
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if name.contains('/') {
        errs.push(format!("a qualified name {QUALIFIED_NAME_ERR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
        return errs;
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else {
            for e in dns1123_subdomain(p) {
                errs.push(format!("prefix part {e}"));
            }
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!(
            "name part must be no more than {QUALIFIED_NAME_MAX} characters"
        ));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(QUALIFIED_NAME_ERR.to_string());
    }
    errs
}

/// Problems with a label value (empty is allowed).
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > QUALIFIED_NAME_MAX {
        errs.push(max_len_msg(QUALIFIED_NAME_MAX));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
    }
    errs
}

/// Validates a label map at `path` (keys qualified names, values label values).
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &Path, errs: &mut ErrorList) {
    for (k, v) in labels {
        for msg in qualified_name(k) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        for msg in label_value(v) {
            errs.push(FieldError::invalid(path, v.as_str(), msg));
        }
    }
}

/// Validates annotations: qualified-name keys and a total size limit.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for msg in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

/// Upstream's ValidateObjectMeta: name (or generateName), namespace presence, labels, annotations,
/// owner references and finalizers. `namespaced` says whether the kind lives in a namespace.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
    errs: &mut ErrorList,
) {
    let path = Path::new("metadata");
    match meta.name.as_deref() {
        None | Some("") => {
            if meta.generate_name.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required(
                    path.child("name"),
                    "name or generateName is required",
                ));
            }
        }
        Some(name) => {
            for msg in rule.check(name) {
                errs.push(FieldError::invalid(path.child("name"), name, msg));
            }
        }
    }
    if let Some(gn) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        // A generated name gets a suffix, so only the prefix's shape can be checked here; upstream
        // checks the prefix with a trailing dash trimmed.
        let trimmed = gn.trim_end_matches('-');
        if !trimmed.is_empty() && meta.name.as_deref().unwrap_or("").is_empty() {
            for msg in rule.check(trimmed) {
                errs.push(FieldError::invalid(path.child("generateName"), gn, msg));
            }
        }
    }
    match (namespaced, meta.namespace.as_deref()) {
        (true, None | Some("")) => errs.push(FieldError::required(path.child("namespace"), "")),
        (true, Some(ns)) => {
            for msg in dns1123_label(ns) {
                errs.push(FieldError::invalid(path.child("namespace"), ns, msg));
            }
        }
        (false, Some(ns)) if !ns.is_empty() => errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        )),
        _ => {}
    }
    if let Some(labels) = &meta.labels {
        validate_labels(labels, &path.child("labels"), errs);
    }
    if let Some(annotations) = &meta.annotations {
        validate_annotations(annotations, &path.child("annotations"), errs);
    }
    if let Some(refs) = &meta.owner_references {
        let p = path.child("ownerReferences");
        let mut controllers = 0;
        for r in refs {
            if r.api_version.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("apiVersion"),
                    r.api_version.as_str(),
                    "version must not be empty",
                ));
            }
            if r.kind.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("kind"),
                    r.kind.as_str(),
                    "must not be empty",
                ));
            }
            if r.name.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("name"),
                    r.name.as_str(),
                    "must not be empty",
                ));
            }
            if r.uid.is_empty() {
                errs.push(FieldError::invalid(
                    p.child("uid"),
                    r.uid.as_str(),
                    "must not be empty",
                ));
            }
            if r.controller == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid(
                p,
                serde_json::to_value(refs).unwrap_or(Value::Null),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(finalizers) = &meta.finalizers {
        let p = path.child("finalizers");
        for f in finalizers {
            for msg in qualified_name(f) {
                errs.push(FieldError::invalid(&p, f.as_str(), msg));
            }
        }
    }
}

/// Upstream's ValidateObjectMetaUpdate: identity fields cannot change.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta, errs: &mut ErrorList) {
    let path = Path::new("metadata");
    let immutable = |field: &str, a: &Option<String>, b: &Option<String>, errs: &mut ErrorList| {
        if a != b {
            errs.push(FieldError::invalid(
                path.child(field),
                a.clone().unwrap_or_default(),
                "field is immutable",
            ));
        }
    };
    immutable("name", &new.name, &old.name, errs);
    immutable("namespace", &new.namespace, &old.namespace, errs);
    immutable("uid", &new.uid, &old.uid, errs);
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            path.child("creationTimestamp"),
            serde_json::to_value(&new.creation_timestamp).unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

/// Adds an "immutable" error when `new != old`, rendering the new value like upstream.
pub fn immutable_field<T: serde::Serialize + PartialEq>(
    new: &T,
    old: &T,
    path: impl Into<String>,
    errs: &mut ErrorList,
) {
    if new != old {
        errs.push(FieldError::invalid(
            path,
            serde_json::to_value(new).unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

/// Adds an error when a count is negative (upstream: "must be greater than or equal to 0").
pub fn non_negative(v: i64, path: impl Into<String>, errs: &mut ErrorList) {
    if v < 0 {
        errs.push(FieldError::invalid(
            path,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_accepts_dotted_lowercase() {
        assert!(dns1123_subdomain("my-app.example.com").is_empty());
        assert!(!dns1123_subdomain("My-App").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(!dns1123_subdomain("-a").is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
    }

    #[test]
    fn label_rejects_dots_and_long_names() {
        assert!(dns1123_label("abc-123").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert_eq!(dns1123_label(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn dns1035_requires_a_leading_letter() {
        assert!(dns1035_label("svc1").is_empty());
        assert!(!dns1035_label("1svc").is_empty());
    }

    #[test]
    fn qualified_names_allow_a_prefix() {
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("app").is_empty());
        assert!(!qualified_name("/app").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(!qualified_name("-app").is_empty());
    }

    #[test]
    fn object_meta_requires_a_name_or_generate_name() {
        let mut errs = Vec::new();
        let meta = ObjectMeta {
            namespace: Some("default".into()),
            ..Default::default()
        };
        validate_object_meta(&meta, true, NameRule::Dns1123Subdomain, &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }

    #[test]
    fn cluster_scoped_objects_may_not_have_a_namespace() {
        let mut errs = Vec::new();
        let meta = ObjectMeta {
            name: Some("n".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        validate_object_meta(&meta, false, NameRule::Dns1123Subdomain, &mut errs);
        assert_eq!(errs.len(), 1);
    }
}
