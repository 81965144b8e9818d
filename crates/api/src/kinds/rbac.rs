//! rbac.authorization.k8s.io/v1 kinds (Role, ClusterRole, RoleBinding, ClusterRoleBinding),
//! with upstream's defaults, validation (pkg/apis/rbac/validation) and printers.

use k8s_openapi::api::rbac::v1 as rbac;
use serde_json::{json, Value};

use super::apps::selector::validate_label_selector;
use super::apps::{age_cell, name_cell};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{dns1123_subdomain, path_segment_name, NameRule};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rbac_name(name: &str, path: &str, errs: &mut ErrorList) {
    for msg in path_segment_name(name) {
        errs.push(FieldError::invalid(path, name, msg));
    }
}

/// Upstream's `ValidatePolicyRule`.
fn validate_policy_rule(
    rule: &rbac::PolicyRule,
    namespaced: bool,
    path: &Path,
    errs: &mut ErrorList,
) {
    if rule.verbs.is_empty() {
        errs.push(FieldError::required(
            path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = rule.non_resource_urls.as_deref().unwrap_or(&[]);
    let empty = |v: &Option<Vec<String>>| v.as_ref().is_none_or(Vec::is_empty);
    if !urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                path.child("nonResourceURLs"),
                json!(urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !empty(&rule.api_groups) || !empty(&rule.resources) || !empty(&rule.resource_names) {
            errs.push(FieldError::invalid(
                path.child("nonResourceURLs"),
                json!(urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if empty(&rule.api_groups) {
        errs.push(FieldError::required(
            path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if empty(&rule.resources) {
        errs.push(FieldError::required(
            path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn validate_rules(rules: Option<&Vec<rbac::PolicyRule>>, namespaced: bool, errs: &mut ErrorList) {
    for (i, r) in rules.into_iter().flatten().enumerate() {
        validate_policy_rule(r, namespaced, &Path::new("rules").index(i), errs);
    }
}

fn default_subjects(subjects: Option<&mut Vec<rbac::Subject>>) {
    for s in subjects.into_iter().flatten() {
        if s.api_group.as_deref().unwrap_or("").is_empty() {
            s.api_group = Some(match s.kind.as_str() {
                "User" | "Group" => RBAC_GROUP.into(),
                _ => String::new(),
            });
        }
    }
}

fn default_role_ref(r: &mut rbac::RoleRef) {
    if r.api_group.is_empty() {
        r.api_group = RBAC_GROUP.into();
    }
}

/// Upstream's `ValidateRoleBindingSubject`.
fn validate_subject(s: &rbac::Subject, namespaced: bool, path: &Path, errs: &mut ErrorList) {
    if s.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    }
    let group = s.api_group.as_deref().unwrap_or("");
    match s.kind.as_str() {
        "ServiceAccount" => {
            if !s.name.is_empty() {
                for msg in dns1123_subdomain(&s.name) {
                    errs.push(FieldError::invalid(
                        path.child("name"),
                        s.name.as_str(),
                        msg,
                    ));
                }
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    path.child("apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && s.namespace.as_deref().unwrap_or("").is_empty() {
                errs.push(FieldError::required(path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(FieldError::not_supported(
                    path.child("apiGroup"),
                    group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            path.child("kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

fn validate_binding(
    role_ref: &rbac::RoleRef,
    subjects: Option<&Vec<rbac::Subject>>,
    kinds: &[&str],
    namespaced: bool,
    errs: &mut ErrorList,
) {
    if role_ref.api_group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            role_ref.api_group.as_str(),
            &[RBAC_GROUP],
        ));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            role_ref.kind.as_str(),
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        rbac_name(&role_ref.name, "roleRef.name", errs);
    }
    for (i, s) in subjects.into_iter().flatten().enumerate() {
        validate_subject(s, namespaced, &Path::new("subjects").index(i), errs);
    }
}

fn role_ref_immutable(new: &rbac::RoleRef, old: &rbac::RoleRef, errs: &mut ErrorList) {
    if new != old {
        errs.push(FieldError::invalid(
            "roleRef",
            serde_json::to_value(new).unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
}

const fn binding_columns(kind: &'static str) -> [Column; 6] {
    let (users, groups, sas) = match kind.as_bytes() {
        b"RoleBinding" => (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ),
        _ => (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ),
    };
    [
        Column::name(),
        Column::new("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."),
        Column::age(),
        Column::new("Users", "string", users).wide(),
        Column::new("Groups", "string", groups).wide(),
        Column::new("ServiceAccounts", "string", sas).wide(),
    ]
}

const ROLE_BINDING_COLUMNS: [Column; 6] = binding_columns("RoleBinding");
const CLUSTER_ROLE_BINDING_COLUMNS: [Column; 6] = binding_columns("ClusterRoleBinding");

fn binding_row(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    role_ref: &rbac::RoleRef,
    subjects: Option<&Vec<rbac::Subject>>,
    ctx: &RowContext,
) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in subjects.into_iter().flatten() {
        match s.kind.as_str() {
            "ServiceAccount" => sas.push(format!(
                "{}/{}",
                s.namespace.as_deref().unwrap_or(""),
                s.name
            )),
            "User" => users.push(s.name.clone()),
            "Group" => groups.push(s.name.clone()),
            _ => {}
        }
    }
    vec![
        name_cell(meta),
        json!(format!("{}/{}", role_ref.kind, role_ref.name)),
        age_cell(meta, ctx),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

impl KindHooks for rbac::Role {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn validate(&self, errs: &mut ErrorList) {
        validate_rules(self.rules.as_ref(), true, errs);
    }
}

impl KindHooks for rbac::ClusterRole {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn validate(&self, errs: &mut ErrorList) {
        validate_rules(self.rules.as_ref(), false, errs);
        if let Some(agg) = &self.aggregation_rule {
            let p = Path::new("aggregationRule").child("clusterRoleSelectors");
            let selectors = agg.cluster_role_selectors.as_deref().unwrap_or(&[]);
            if selectors.is_empty() {
                errs.push(FieldError::required(
                    &p,
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
            for (i, s) in selectors.iter().enumerate() {
                validate_label_selector(s, &p.index(i), errs);
            }
        }
    }
}

impl KindHooks for rbac::RoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn defaults(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(self.subjects.as_mut());
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_binding(
            &self.role_ref,
            self.subjects.as_ref(),
            &["Role", "ClusterRole"],
            true,
            errs,
        );
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        role_ref_immutable(&self.role_ref, &old.role_ref, errs);
    }

    fn columns() -> &'static [Column] {
        &ROLE_BINDING_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        binding_row(&self.metadata, &self.role_ref, self.subjects.as_ref(), ctx)
    }
}

impl KindHooks for rbac::ClusterRoleBinding {
    const NAME_RULE: NameRule = NameRule::PathSegment;

    fn defaults(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(self.subjects.as_mut());
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_binding(
            &self.role_ref,
            self.subjects.as_ref(),
            &["ClusterRole"],
            false,
            errs,
        );
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        role_ref_immutable(&self.role_ref, &old.role_ref, errs);
    }

    fn columns() -> &'static [Column] {
        &CLUSTER_ROLE_BINDING_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        binding_row(&self.metadata, &self.role_ref, self.subjects.as_ref(), ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update};
    use super::*;

    fn binding() -> Value {
        json!({
            "metadata": {"name": "read-pods", "namespace": "default"},
            "roleRef": {"kind": "Role", "name": "pod-reader"},
            "subjects": [
                {"kind": "User", "name": "jane"},
                {"kind": "Group", "name": "devs"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": "default"}
            ]
        })
    }

    #[test]
    fn role_bindings_default_api_groups_and_print_subjects() {
        let b = create::<rbac::RoleBinding>(binding());
        assert_eq!(b["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert_eq!(b["subjects"][2]["apiGroup"], "");
        assert!(
            errors::<rbac::RoleBinding>(&b).is_empty(),
            "{:?}",
            errors::<rbac::RoleBinding>(&b)
        );
        assert_eq!(
            row::<rbac::RoleBinding>(&b),
            vec![
                json!("read-pods"),
                json!("Role/pod-reader"),
                json!("60m"),
                json!("jane"),
                json!("devs"),
                json!("default/ci")
            ]
        );
    }

    #[test]
    fn role_refs_cannot_change() {
        let old = create::<rbac::RoleBinding>(binding());
        let mut new = binding();
        new["roleRef"]["name"] = json!("other");
        let (_, errs) = update::<rbac::RoleBinding>(new, &old);
        assert_eq!(
            errs,
            vec!["roleRef: Invalid value: {\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"other\"}: cannot change roleRef"]
        );
    }

    #[test]
    fn cluster_role_bindings_need_cluster_roles_and_service_account_namespaces() {
        let b = create::<rbac::ClusterRoleBinding>(json!({
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci"}, {"kind": "Robot", "name": "r2"}]
        }));
        assert_eq!(
            errors::<rbac::ClusterRoleBinding>(&b),
            vec![
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
                "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
    }

    #[test]
    fn role_rules_need_verbs_groups_and_resources() {
        let r = create::<rbac::Role>(json!({
            "metadata": {"name": "r", "namespace": "default"},
            "rules": [{"verbs": []}, {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]
        }));
        assert_eq!(
            errors::<rbac::Role>(&r),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[0].resources: Required value: resource rules must supply at least one resource",
                "rules[1].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        assert_eq!(
            row::<rbac::Role>(&r),
            vec![json!("r"), json!("2024-01-01T00:00:00Z")]
        );
    }
}
