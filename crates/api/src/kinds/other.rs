//! Kinds of the smaller groups, as upstream defines them: coordination.k8s.io Lease,
//! events.k8s.io Event (stored as a core Event), policy PodDisruptionBudget, the RBAC kinds,
//! storage.k8s.io StorageClass, and apiextensions.k8s.io CustomResourceDefinition ([`crd`]).

pub mod crd;

use k8s_openapi::api::{
    coordination::v1::Lease, events::v1::Event, policy::v1::PodDisruptionBudget, rbac::v1 as rbac,
    storage::v1::StorageClass,
};
use serde_json::{json, Value};

use super::apps::selector::validate_label_selector;
use super::apps::{
    age_cell, int_or_string_text, name_cell, validate_not_more_than_100_percent,
    validate_positive_int_or_percent,
};
use super::conversion;
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::{
    dns1123_subdomain, immutable_field, path_segment_name, qualified_name, NameRule,
};

// ---------------------------------------------------------------------------------------------
// Lease

const LEASE_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
    Column::age(),
];

/// `strategy` and `preferredHolder` belong to the CoordinatedLeaderElection gate, off in 1.32.
fn drop_coordinated_fields(lease: &mut Lease, old: Option<&Lease>) {
    let in_use = old
        .and_then(|o| o.spec.as_ref())
        .is_some_and(|s| s.strategy.is_some() || s.preferred_holder.is_some());
    if let Some(spec) = lease.spec.as_mut().filter(|_| !in_use) {
        spec.strategy = None;
        spec.preferred_holder = None;
    }
}

impl KindHooks for Lease {
    fn defaults(&mut self) {
        // A non-pointer struct upstream: always serialized.
        self.spec.get_or_insert_with(Default::default);
    }

    fn prepare_for_create(&mut self) {
        drop_coordinated_fields(self, None);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        drop_coordinated_fields(self, Some(old));
    }

    fn validate(&self, errs: &mut ErrorList) {
        let Some(spec) = &self.spec else { return };
        let path = Path::new("spec");
        if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(FieldError::invalid(
                path.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(FieldError::invalid(
                path.child("leaseTransitions"),
                t,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(s) = spec.strategy.as_deref() {
            if s != "OldestEmulationVersion" {
                errs.push(FieldError::not_supported(
                    path.child("strategy"),
                    s,
                    &["OldestEmulationVersion"],
                ));
            }
        }
        if spec
            .preferred_holder
            .as_deref()
            .is_some_and(|p| !p.is_empty())
            && spec.strategy.as_deref().is_none_or(str::is_empty)
        {
            errs.push(FieldError::forbidden(
                path.child("preferredHolder"),
                "may only be specified if `strategy` is defined",
            ));
        }
    }

    fn columns() -> &'static [Column] {
        LEASE_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let holder = self
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        vec![
            name_cell(&self.metadata),
            json!(holder),
            age_cell(&self.metadata, ctx),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// events.k8s.io/v1 Event

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// The same event as a core/v1 Event (its storage form).
fn as_core_event(e: &Event) -> Option<k8s_openapi::api::core::v1::Event> {
    let v = serde_json::to_value(e).ok()?;
    serde_json::from_value(conversion::events_v1_to_core(v)).ok()
}

/// Upstream's `legacyValidateEvent` for an events.k8s.io request (core field paths, as
/// upstream validates the internal core type).
fn legacy_validate_event(e: &Event, errs: &mut ErrorList) {
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let regarding_ns = e
        .regarding
        .as_ref()
        .and_then(|r| r.namespace.as_deref())
        .unwrap_or("");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            regarding_ns,
            "does not match event.namespace",
        )
    };
    if e.event_time.is_none() {
        if regarding_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != regarding_ns {
            errs.push(mismatch());
        }
        return;
    }
    if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" {
        errs.push(mismatch());
    }
    let rc = text(&e.reporting_controller);
    if rc.is_empty() {
        errs.push(FieldError::required("reportingController", ""));
    }
    for msg in qualified_name(rc) {
        errs.push(FieldError::invalid("reportingController", rc, msg));
    }
    let limited = [
        (
            "reportingInstance",
            text(&e.reporting_instance),
            REPORTING_INSTANCE_LIMIT,
            true,
        ),
        ("action", text(&e.action), ACTION_LIMIT, true),
        ("reason", text(&e.reason), REASON_LIMIT, true),
        ("message", text(&e.note), NOTE_LIMIT, false),
    ];
    for (field, value, limit, required) in limited {
        if required && value.is_empty() {
            errs.push(FieldError::required(field, ""));
        }
        if value.len() > limit {
            errs.push(FieldError::invalid(
                field,
                "",
                format!("can have at most {limit} characters"),
            ));
        }
    }
}

const EVENT_FIELD_SELECTORS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reason",
    "reportingController",
    "source",
    "type",
];

impl KindHooks for Event {
    const NAME_RULE: NameRule = NameRule::Dns1123Subdomain;
    /// events.k8s.io's own field labels (upstream converts them to the core ones).
    const FIELD_SELECTORS: &'static [&'static str] = EVENT_FIELD_SELECTORS;

    fn defaults(&mut self) {
        // Non-pointer structs upstream, so they always serialize.
        self.regarding.get_or_insert_with(Default::default);
        self.deprecated_source.get_or_insert_with(Default::default);
    }

    /// Upstream's `ValidateEventCreate` for events.k8s.io/v1: legacy plus strict checks.
    fn validate(&self, errs: &mut ErrorList) {
        legacy_validate_event(self, errs);
        if let Some(series) = &self.series {
            if series.count < 2 {
                errs.push(FieldError::invalid(
                    "series.count",
                    "",
                    "should be at least 2",
                ));
            }
        }
        if self.event_time.is_none() {
            errs.push(FieldError::required("eventTime", ""));
        }
        let t = text(&self.type_);
        if t != "Normal" && t != "Warning" {
            errs.push(FieldError::invalid(
                "type",
                "",
                format!("has invalid value: {t}"),
            ));
        }
        if self.deprecated_first_timestamp.is_some() {
            errs.push(FieldError::invalid(
                "firstTimestamp",
                "",
                "needs to be unset",
            ));
        }
        if self.deprecated_last_timestamp.is_some() {
            errs.push(FieldError::invalid(
                "lastTimestamp",
                "",
                "needs to be unset",
            ));
        }
        if self.deprecated_count.unwrap_or(0) != 0 {
            errs.push(FieldError::invalid("count", "", "needs to be unset"));
        }
        let src = self.deprecated_source.clone().unwrap_or_default();
        if !text(&src.component).is_empty() || !text(&src.host).is_empty() {
            errs.push(FieldError::invalid("source", "", "needs to be unset"));
        }
    }

    /// Upstream's `ValidateEventUpdate` for events.k8s.io/v1: most fields are fixed.
    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let regarding = |e: &Event| e.regarding.clone().unwrap_or_default();
        immutable_field(&regarding(self), &regarding(old), "involvedObject", errs);
        immutable_field(&self.reason, &old.reason, "reason", errs);
        immutable_field(&self.note, &old.note, "message", errs);
        immutable_field(
            &self.deprecated_source,
            &old.deprecated_source,
            "source",
            errs,
        );
        immutable_field(
            &self.deprecated_first_timestamp,
            &old.deprecated_first_timestamp,
            "firstTimestamp",
            errs,
        );
        immutable_field(
            &self.deprecated_last_timestamp,
            &old.deprecated_last_timestamp,
            "lastTimestamp",
            errs,
        );
        immutable_field(&self.deprecated_count, &old.deprecated_count, "count", errs);
        immutable_field(&self.type_, &old.type_, "type", errs);
        let micros = |e: &Event| e.event_time.as_ref().map(|t| t.0.as_microsecond());
        if micros(self) != micros(old) {
            immutable_field(&self.event_time, &old.event_time, "eventTime", errs);
        }
        immutable_field(&self.action, &old.action, "action", errs);
        immutable_field(&self.related, &old.related, "related", errs);
        immutable_field(
            &self.reporting_controller,
            &old.reporting_controller,
            "reportingController",
            errs,
        );
        immutable_field(
            &self.reporting_instance,
            &old.reporting_instance,
            "reportingInstance",
            errs,
        );
    }

    /// The core Event printer: upstream prints both versions from the same internal type.
    fn columns() -> &'static [Column] {
        <k8s_openapi::api::core::v1::Event as KindHooks>::columns()
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        match as_core_event(self) {
            Some(core) => core.row(ctx),
            None => crate::table::default_row(&self.metadata),
        }
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let regarding = self.regarding.clone().unwrap_or_default();
        let r = |v: Option<String>| Some(v.unwrap_or_default());
        match field {
            "regarding.kind" => r(regarding.kind),
            "regarding.namespace" => r(regarding.namespace),
            "regarding.name" => r(regarding.name),
            "regarding.uid" => r(regarding.uid),
            "regarding.apiVersion" => r(regarding.api_version),
            "regarding.resourceVersion" => r(regarding.resource_version),
            "regarding.fieldPath" => r(regarding.field_path),
            "reason" => r(self.reason.clone()),
            "reportingController" => r(self.reporting_controller.clone()),
            "type" => r(self.type_.clone()),
            "source" => {
                let component = self
                    .deprecated_source
                    .as_ref()
                    .and_then(|s| s.component.clone())
                    .unwrap_or_default();
                if component.is_empty() {
                    r(self.reporting_controller.clone())
                } else {
                    Some(component)
                }
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PodDisruptionBudget

const PDB_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    Column::new(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    Column::new(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    Column::age(),
];

impl KindHooks for PodDisruptionBudget {
    fn defaults(&mut self) {
        // A non-pointer struct upstream: always serialized.
        self.spec.get_or_insert_with(Default::default);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let Some(spec) = &self.spec else { return };
        let path = Path::new("spec");
        if spec.min_available.is_some() && spec.max_unavailable.is_some() {
            errs.push(FieldError::invalid(
                &path,
                serde_json::to_value(spec).unwrap_or(Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (field, v) in [
            ("minAvailable", &spec.min_available),
            ("maxUnavailable", &spec.max_unavailable),
        ] {
            if let Some(v) = v {
                validate_positive_int_or_percent(v, &path.child(field), errs);
                validate_not_more_than_100_percent(v, &path.child(field), errs);
            }
        }
        if let Some(sel) = &spec.selector {
            validate_label_selector(sel, &path.child("selector"), errs);
        }
        if let Some(p) = spec.unhealthy_pod_eviction_policy.as_deref() {
            if p != "IfHealthyBudget" && p != "AlwaysAllow" {
                errs.push(FieldError::not_supported(
                    path.child("unhealthyPodEvictionPolicy"),
                    p,
                    &["AlwaysAllow", "IfHealthyBudget"],
                ));
            }
        }
    }

    fn columns() -> &'static [Column] {
        PDB_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let show = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>| {
            v.map_or_else(|| "N/A".to_string(), int_or_string_text)
        };
        vec![
            name_cell(&self.metadata),
            json!(show(spec.min_available.as_ref())),
            json!(show(spec.max_unavailable.as_ref())),
            json!(self.status.as_ref().map_or(0, |s| s.disruptions_allowed)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC

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

// ---------------------------------------------------------------------------------------------
// StorageClass

const MAX_PROVISIONER_PARAMETERS: usize = 512;
const MAX_PROVISIONER_PARAMETER_SIZE: usize = 256 * 1024;
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    Column::new("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
    Column::new("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
    Column::new("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    Column::age(),
];

impl KindHooks for StorageClass {
    fn defaults(&mut self) {
        self.reclaim_policy.get_or_insert_with(|| "Delete".into());
        self.volume_binding_mode
            .get_or_insert_with(|| "Immediate".into());
    }

    fn validate(&self, errs: &mut ErrorList) {
        if self.provisioner.is_empty() {
            errs.push(FieldError::required("provisioner", ""));
        } else {
            let lower = self.provisioner.to_lowercase();
            for msg in qualified_name(&lower) {
                errs.push(FieldError::invalid("provisioner", lower.as_str(), msg));
            }
        }
        if let Some(params) = &self.parameters {
            if params.len() > MAX_PROVISIONER_PARAMETERS {
                errs.push(FieldError::too_long(
                    "parameters",
                    MAX_PROVISIONER_PARAMETERS,
                ));
            } else {
                let mut size = 0;
                for (k, v) in params {
                    if k.is_empty() {
                        errs.push(FieldError::invalid(
                            "parameters",
                            "",
                            "field can not be empty.",
                        ));
                    }
                    size += k.len() + v.len();
                }
                if size > MAX_PROVISIONER_PARAMETER_SIZE {
                    errs.push(FieldError::too_long(
                        "parameters",
                        MAX_PROVISIONER_PARAMETER_SIZE,
                    ));
                }
            }
        }
        if let Some(p) = self.reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
            if p != "Delete" && p != "Retain" {
                errs.push(FieldError::not_supported(
                    "reclaimPolicy",
                    p,
                    &["Delete", "Retain"],
                ));
            }
        }
        match self.volume_binding_mode.as_deref() {
            None => errs.push(FieldError::required("volumeBindingMode", "")),
            Some("Immediate" | "WaitForFirstConsumer") => {}
            Some(other) => errs.push(FieldError::not_supported(
                "volumeBindingMode",
                other,
                &["Immediate", "WaitForFirstConsumer"],
            )),
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        if self.parameters != old.parameters {
            errs.push(FieldError::forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if self.provisioner != old.provisioner {
            errs.push(FieldError::forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errs.push(FieldError::forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        immutable_field(
            &self.volume_binding_mode,
            &old.volume_binding_mode,
            "volumeBindingMode",
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        STORAGE_CLASS_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let annotations = self.metadata.annotations.clone().unwrap_or_default();
        let is_default = [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
            .iter()
            .any(|a| annotations.get(*a).map(String::as_str) == Some("true"));
        let mut name = self.metadata.name.clone().unwrap_or_default();
        if is_default {
            name.push_str(" (default)");
        }
        vec![
            json!(name),
            json!(self.provisioner),
            json!(self
                .reclaim_policy
                .clone()
                .unwrap_or_else(|| "Delete".to_string())),
            json!(self
                .volume_binding_mode
                .clone()
                .unwrap_or_else(|| "Immediate".to_string())),
            json!(self.allow_volume_expansion.unwrap_or(false)),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update};
    use super::*;

    #[test]
    fn leases_check_durations_and_print_their_holder() {
        let l = create::<Lease>(json!({
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 0, "strategy": "OldestEmulationVersion"}
        }));
        assert!(l["spec"].get("strategy").is_none());
        assert_eq!(
            errors::<Lease>(&l),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
        assert_eq!(
            row::<Lease>(&l),
            vec![json!("node-1"), json!("node-1"), json!("60m")]
        );
    }

    fn event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2024-01-01T00:59:00.000000Z",
            "reportingController": "capstan.io/scheduler",
            "reportingInstance": "server-1",
            "action": "Binding",
            "reason": "Scheduled",
            "type": "Normal",
            "note": "Successfully assigned default/web to node-1",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default", "uid": "u1"}
        })
    }

    #[test]
    fn new_style_events_pass_strict_validation() {
        let e = create::<Event>(event());
        assert_eq!(e["deprecatedSource"], json!({}));
        assert!(errors::<Event>(&e).is_empty(), "{:?}", errors::<Event>(&e));
    }

    #[test]
    fn events_k8s_io_requires_event_time_and_new_fields() {
        let e = create::<Event>(json!({
            "metadata": {"name": "e", "namespace": "default"},
            "type": "Info",
            "deprecatedCount": 3,
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"}
        }));
        assert_eq!(
            errors::<Event>(&e),
            vec![
                "eventTime: Required value",
                "type: Invalid value: \"\": has invalid value: Info",
                "count: Invalid value: \"\": needs to be unset",
            ]
        );
    }

    #[test]
    fn events_k8s_io_events_keep_their_facts_on_update() {
        let old = create::<Event>(event());
        let mut new = event();
        new["note"] = json!("changed");
        new["series"] = json!({"count": 2, "lastObservedTime": "2024-01-01T00:59:30.000000Z"});
        let (_, errs) = update::<Event>(new, &old);
        assert_eq!(
            errs,
            vec!["message: Invalid value: \"changed\": field is immutable"]
        );
    }

    #[test]
    fn events_k8s_io_selects_on_its_own_field_names() {
        let e = create::<Event>(event());
        let s: &dyn crate::Strategy = &crate::strategy::Typed::<Event>::NEW;
        assert!(s.field_selectors().contains(&"regarding.name"));
        assert!(!s.field_selectors().contains(&"involvedObject.name"));
        assert_eq!(s.field_value(&e, "regarding.name").as_deref(), Some("web"));
        assert_eq!(
            s.field_value(&e, "source").as_deref(),
            Some("capstan.io/scheduler")
        );
        assert_eq!(
            s.field_value(&e, "reportingController").as_deref(),
            Some("capstan.io/scheduler")
        );
    }

    #[test]
    fn events_k8s_io_events_print_with_the_core_event_columns() {
        let e = create::<Event>(event());
        let core_columns = <k8s_openapi::api::core::v1::Event as KindHooks>::columns();
        assert_eq!(<Event as KindHooks>::columns(), core_columns);
        let cells = row::<Event>(&e);
        assert_eq!(cells.len(), core_columns.len());
        assert!(cells.contains(&json!("pod/web")), "{cells:?}");
        assert!(cells.contains(&json!("Scheduled")), "{cells:?}");
    }

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn pdbs_take_one_of_min_available_and_max_unavailable() {
        let p = create::<PodDisruptionBudget>(pdb(
            json!({"minAvailable": 1, "maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
        ));
        let errs = errors::<PodDisruptionBudget>(&p);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Invalid value: {"), "{}", errs[0]);
        assert!(
            errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn a_pdb_prints_its_budget() {
        let p = create::<PodDisruptionBudget>(pdb(
            json!({"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}}),
        ));
        assert_eq!(
            p["status"],
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
        );
        assert!(errors::<PodDisruptionBudget>(&p).is_empty());
        assert_eq!(
            row::<PodDisruptionBudget>(&p),
            vec![
                json!("web"),
                json!("N/A"),
                json!("25%"),
                json!(0),
                json!("60m")
            ]
        );
        let bad = create::<PodDisruptionBudget>(pdb(json!({"minAvailable": "150%"})));
        assert_eq!(
            errors::<PodDisruptionBudget>(&bad),
            vec!["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
    }

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

    #[test]
    fn storage_classes_default_and_freeze_their_parameters() {
        let sc = create::<StorageClass>(json!({
            "metadata": {"name": "local", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "rancher.io/local-path",
            "parameters": {"path": "/data"}
        }));
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(errors::<StorageClass>(&sc).is_empty());
        assert_eq!(
            row::<StorageClass>(&sc),
            vec![
                json!("local (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false),
                json!("60m"),
            ]
        );
        let mut new = sc.clone();
        new["parameters"]["path"] = json!("/other");
        let (_, errs) = update::<StorageClass>(new, &sc);
        assert_eq!(
            errs,
            vec!["parameters: Forbidden: updates to parameters are forbidden."]
        );
        let bad = create::<StorageClass>(json!({"metadata": {"name": "x"}}));
        assert_eq!(
            errors::<StorageClass>(&bad),
            vec!["provisioner: Required value"]
        );
    }
}
