//! apps/v1 kinds (Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision) with
//! upstream's defaults (pkg/apis/apps/v1/defaults.go), strategies
//! (pkg/registry/apps/*/strategy.go), validation (pkg/apis/apps/validation) and printers.
//!
//! Also the helpers the other workload kinds share: pod template defaults and table cells,
//! int-or-percent validation ([`validate_positive_int_or_percent`]) and label selectors
//! ([`selector`]).

pub(crate) mod selector;
#[cfg(test)]
pub(crate) mod testing;

use k8s_openapi::api::apps::v1::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use self::selector::{as_selector, is_empty, validate_label_selector, Selector};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::pod_spec::{default_pod_template_spec, validate_pod_template_spec};
use crate::strategy::KindHooks;
use crate::table::{format_labels, Column, RowContext};
use crate::validation::{
    immutable_field, non_negative, validate_annotations, validate_labels, NameRule,
};

// ---------------------------------------------------------------------------------------------
// Shared helpers

pub(crate) const CONTAINERS_COLUMN: Column = Column::new(
    "Containers",
    "string",
    "Names of each container in the template.",
)
.wide();
pub(crate) const IMAGES_COLUMN: Column = Column::new(
    "Images",
    "string",
    "Images referenced by each container in the template.",
)
.wide();
pub(crate) const SELECTOR_DESCRIPTION: &str = "Label query over pods that should match the replica count. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// Pod template defaults as the generated defaulters apply them to every template: the
/// template's (non-pointer upstream) metadata and spec exist, and the pod spec is defaulted.
pub(crate) fn default_template(t: &mut PodTemplateSpec) {
    t.metadata.get_or_insert_with(Default::default);
    t.spec.get_or_insert_with(Default::default);
    default_pod_template_spec(t);
}

/// Upstream's `layoutContainerCells`: container names and images, comma-separated.
pub(crate) fn container_cells(t: Option<&PodTemplateSpec>) -> (String, String) {
    let containers = t
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

/// An IntOrString as a JSON value, for error messages.
pub(crate) fn int_or_string_value(v: &IntOrString) -> Value {
    match v {
        IntOrString::Int(i) => json!(i),
        IntOrString::String(s) => json!(s),
    }
}

/// An IntOrString as upstream's `String()` prints it.
pub(crate) fn int_or_string_text(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The numeric part of a valid percent string (`"25%"` → 25).
fn percent_value(v: &IntOrString) -> Option<i64> {
    match v {
        IntOrString::String(s) if is_valid_percent(s) => s[..s.len() - 1].parse().ok(),
        _ => None,
    }
}

fn is_valid_percent(s: &str) -> bool {
    s.len() > 1 && s.ends_with('%') && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// Upstream's `getIntOrPercentValue`: the percent number, the int, or a string's integer
/// value (0 when it is not one).
pub(crate) fn int_or_percent_value(v: Option<&IntOrString>) -> i64 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(s @ IntOrString::String(text)) => {
            percent_value(s).unwrap_or_else(|| text.parse().unwrap_or(0))
        }
    }
}

/// Upstream's `ValidatePositiveIntOrPercent`.
pub(crate) fn validate_positive_int_or_percent(v: &IntOrString, path: &Path, errs: &mut ErrorList) {
    match v {
        IntOrString::String(s) => {
            if !is_valid_percent(s) {
                errs.push(FieldError::invalid(
                    path,
                    s.as_str(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
        IntOrString::Int(i) => non_negative(i64::from(*i), path, errs),
    }
}

/// Upstream's `IsNotMoreThan100Percent`.
pub(crate) fn validate_not_more_than_100_percent(
    v: &IntOrString,
    path: &Path,
    errs: &mut ErrorList,
) {
    if percent_value(v).is_some_and(|p| p > 100) {
        errs.push(FieldError::invalid(
            path,
            int_or_string_value(v),
            "must not be greater than 100%",
        ));
    }
}

/// Upstream's `IsDomainPrefixedPath` (e.g. `acme.io/foo`).
pub(crate) fn validate_domain_prefixed_path(value: &str, path: &Path, errs: &mut ErrorList) {
    if value.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let Some((host, rest)) = value
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        errs.push(FieldError::invalid(
            path,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for msg in crate::validation::dns1123_subdomain(host) {
        errs.push(FieldError::invalid(path, host, msg));
    }
    let path_char = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c);
    if !rest.chars().all(path_char) {
        errs.push(FieldError::invalid(
            path,
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
}

pub(crate) fn non_negative_opt(v: Option<i32>, path: &Path, errs: &mut ErrorList) {
    if let Some(v) = v {
        non_negative(i64::from(v), path, errs);
    }
}

pub(crate) fn is_blank(s: Option<&str>) -> bool {
    s.is_none_or(str::is_empty)
}

pub(crate) fn selector_mismatch(t: &PodTemplateSpec, path: &Path) -> FieldError {
    let labels = t.metadata.as_ref().and_then(|m| m.labels.as_ref());
    FieldError::invalid(
        path.child("metadata").child("labels"),
        serde_json::to_value(labels).unwrap_or(Value::Null),
        "`selector` does not match template `labels`",
    )
}

/// The selector checks Deployment, ReplicaSet and StatefulSet share: required, valid, and
/// parsed (`None` when it did not parse; `Some(None)` stands for upstream's nil selector).
fn checked_selector(
    sel: &LabelSelector,
    path: &Path,
    bad_detail: &str,
    errs: &mut ErrorList,
) -> Option<Option<Selector>> {
    if is_empty(sel) {
        errs.push(FieldError::required(path, ""));
        return Some(None);
    }
    validate_label_selector(sel, path, errs);
    match as_selector(sel) {
        Ok(s) => Some(Some(s)),
        Err(_) => {
            errs.push(FieldError::invalid(
                path,
                selector::to_value(sel),
                bad_detail,
            ));
            None
        }
    }
}

fn selector_matches(sel: Option<&Selector>, t: &PodTemplateSpec) -> bool {
    match sel {
        None => false,
        Some(s) => s.is_empty() || s.matches(&t.metadata.as_ref().and_then(|m| m.labels.as_ref())),
    }
}

fn restart_policy_always(t: &PodTemplateSpec, path: &Path, errs: &mut ErrorList) {
    let policy = t
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            path.child("spec").child("restartPolicy"),
            policy,
            &["Always"],
        ));
    }
}

fn no_active_deadline(t: &PodTemplateSpec, path: &Path, owner: &str, errs: &mut ErrorList) {
    if t.spec
        .as_ref()
        .is_some_and(|s| s.active_deadline_seconds.is_some())
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {owner} is not Supported"),
        ));
    }
}

/// Upstream's `ValidatePodTemplateSpecForReplicaSet` (also used for Deployments).
fn validate_replica_set_template(
    t: &PodTemplateSpec,
    sel: Option<&Selector>,
    path: &Path,
    errs: &mut ErrorList,
) {
    if !selector_matches(sel, t) {
        errs.push(selector_mismatch(t, path));
    }
    validate_pod_template_spec(t, path, errs);
    restart_policy_always(t, path, errs);
    no_active_deadline(t, path, "ReplicaSet", errs);
}

pub(crate) fn name_cell(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Value {
    json!(meta.name.clone().unwrap_or_default())
}

pub(crate) fn age_cell(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ctx: &RowContext,
) -> Value {
    json!(ctx.age(meta.creation_timestamp.as_ref()))
}

// ---------------------------------------------------------------------------------------------
// Deployment

const DEPLOYMENT_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::new("Up-to-date", "string", "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
    Column::new("Available", "string", "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column::new("Selector", "string", SELECTOR_DESCRIPTION).wide(),
];

fn validate_deployment_strategy(s: Option<&DeploymentStrategy>, path: &Path, errs: &mut ErrorList) {
    let default = DeploymentStrategy::default();
    let s = s.unwrap_or(&default);
    match s.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if s.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &s.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = path.child("rollingUpdate");
                let zero = IntOrString::Int(0);
                let max_unavailable = ru.max_unavailable.as_ref().unwrap_or(&zero);
                let max_surge = ru.max_surge.as_ref().unwrap_or(&zero);
                validate_positive_int_or_percent(max_unavailable, &p.child("maxUnavailable"), errs);
                validate_positive_int_or_percent(max_surge, &p.child("maxSurge"), errs);
                if int_or_percent_value(Some(max_unavailable)) == 0
                    && int_or_percent_value(Some(max_surge)) == 0
                {
                    errs.push(FieldError::invalid(
                        p.child("maxUnavailable"),
                        int_or_string_value(max_unavailable),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                validate_not_more_than_100_percent(
                    max_unavailable,
                    &p.child("maxUnavailable"),
                    errs,
                );
            }
        },
        _ => errs.push(FieldError::not_supported(
            path,
            serde_json::to_value(s).unwrap_or(Value::Null),
            &["Recreate", "RollingUpdate"],
        )),
    }
}

impl KindHooks for Deployment {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        let strategy = spec.strategy.get_or_insert_with(Default::default);
        if is_blank(strategy.type_.as_deref()) {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let ru = strategy.rolling_update.get_or_insert_with(Default::default);
            ru.max_unavailable
                .get_or_insert_with(|| IntOrString::String("25%".into()));
            ru.max_surge
                .get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        default_template(&mut spec.template);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        // Annotations are copied from a Deployment to its ReplicaSets, so upstream treats an
        // annotation change like a spec change and bumps the generation.
        if self.spec != old.spec || self.metadata.annotations != old.metadata.annotations {
            self.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = DeploymentSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        non_negative(
            i64::from(spec.replicas.unwrap_or(0)),
            path.child("replicas"),
            errs,
        );
        if let Some(sel) = checked_selector(
            &spec.selector,
            &path.child("selector"),
            "invalid label selector",
            errs,
        ) {
            validate_replica_set_template(
                &spec.template,
                sel.as_ref(),
                &path.child("template"),
                errs,
            );
        }
        validate_deployment_strategy(spec.strategy.as_ref(), &path.child("strategy"), errs);
        non_negative_opt(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        non_negative_opt(
            spec.revision_history_limit,
            &path.child("revisionHistoryLimit"),
            errs,
        );
        if let Some(pds) = spec.progress_deadline_seconds {
            non_negative(i64::from(pds), path.child("progressDeadlineSeconds"), errs);
            if pds <= spec.min_ready_seconds.unwrap_or(0) {
                errs.push(FieldError::invalid(
                    path.child("progressDeadlineSeconds"),
                    pds,
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_sel = self.spec.as_ref().map(|s| &s.selector);
        let old_sel = old.spec.as_ref().map(|s| &s.selector);
        immutable_field(&new_sel, &old_sel, "spec.selector", errs);
    }

    fn columns() -> &'static [Column] {
        DEPLOYMENT_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = DeploymentSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.clone().unwrap_or_default();
        let (names, images) = container_cells(Some(&spec.template));
        let selector = match as_selector(&spec.selector) {
            Ok(s) => s.to_string(),
            Err(_) => "<invalid>".to_string(),
        };
        vec![
            name_cell(&self.metadata),
            json!(format!(
                "{}/{}",
                status.ready_replicas.unwrap_or(0),
                spec.replicas.unwrap_or(0)
            )),
            json!(status.updated_replicas.unwrap_or(0)),
            json!(status.available_replicas.unwrap_or(0)),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(selector),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet

const REPLICA_SET_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    Column::new("Current", "integer", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
    Column::new("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column::new("Selector", "string", SELECTOR_DESCRIPTION).wide(),
];

impl KindHooks for ReplicaSet {
    const FIELD_SELECTORS: &'static [&'static str] = &["status.replicas"];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        spec.replicas.get_or_insert(1);
        default_template(spec.template.get_or_insert_with(Default::default));
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = ReplicaSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        non_negative(
            i64::from(spec.replicas.unwrap_or(0)),
            path.child("replicas"),
            errs,
        );
        non_negative_opt(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        if let Some(sel) = checked_selector(
            &spec.selector,
            &path.child("selector"),
            "invalid label selector",
            errs,
        ) {
            let template = spec.template.clone().unwrap_or_default();
            validate_replica_set_template(&template, sel.as_ref(), &path.child("template"), errs);
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_sel = self.spec.as_ref().map(|s| &s.selector);
        let old_sel = old.spec.as_ref().map(|s| &s.selector);
        immutable_field(&new_sel, &old_sel, "spec.selector", errs);
    }

    fn columns() -> &'static [Column] {
        REPLICA_SET_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = ReplicaSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.clone().unwrap_or_default();
        let (names, images) = container_cells(spec.template.as_ref());
        vec![
            name_cell(&self.metadata),
            json!(spec.replicas.unwrap_or(0)),
            json!(status.replicas),
            json!(status.ready_replicas.unwrap_or(0)),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(selector::format_label_selector(Some(&spec.selector))),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "status.replicas" => Some(self.status.as_ref().map_or(0, |s| s.replicas).to_string()),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// StatefulSet

const STATEFUL_SET_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Ready", "string", "Number of the pod with ready state"),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
];

const STATEFUL_SET_FORBIDDEN_UPDATE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Defaults of a volume claim template (SetDefaults_PersistentVolumeClaim and its spec).
fn default_claim_template(pvc: &mut PersistentVolumeClaim) {
    let spec = pvc.spec.get_or_insert_with(Default::default);
    spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
    let status = pvc.status.get_or_insert_with(Default::default);
    if is_blank(status.phase.as_deref()) {
        status.phase = Some("Pending".into());
    }
}

/// Drops `rollingUpdate.maxUnavailable` while the MaxUnavailableStatefulSet gate is off
/// (alpha in 1.32), unless the old object already used it.
fn drop_max_unavailable(new: &mut StatefulSet, old: Option<&StatefulSet>) {
    let in_use = |s: &StatefulSet| {
        s.spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.rolling_update.as_ref())
            .is_some_and(|r| r.max_unavailable.is_some())
    };
    if old.is_some_and(in_use) {
        return;
    }
    if let Some(ru) = new
        .spec
        .as_mut()
        .and_then(|s| s.update_strategy.as_mut())
        .and_then(|u| u.rolling_update.as_mut())
    {
        ru.max_unavailable = None;
    }
}

fn validate_retention_policy(
    p: Option<&StatefulSetPersistentVolumeClaimRetentionPolicy>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let Some(p) = p else { return };
    for (field, v) in [
        ("whenDeleted", &p.when_deleted),
        ("whenScaled", &p.when_scaled),
    ] {
        let v = v.as_deref().unwrap_or("");
        if v != "Retain" && v != "Delete" {
            errs.push(FieldError::not_supported(
                path.child(field),
                v,
                &["Retain", "Delete"],
            ));
        }
    }
}

impl KindHooks for StatefulSet {
    const NAME_RULE: NameRule = NameRule::Dns1123Label;

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if is_blank(spec.pod_management_policy.as_deref()) {
            spec.pod_management_policy = Some("OrderedReady".into());
        }
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if is_blank(strategy.type_.as_deref()) {
            strategy.type_ = Some("RollingUpdate".into());
            strategy.rolling_update.get_or_insert_with(Default::default);
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            if let Some(ru) = strategy.rolling_update.as_mut() {
                ru.partition.get_or_insert(0);
            }
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(Default::default);
        for v in [&mut retention.when_deleted, &mut retention.when_scaled] {
            if is_blank(v.as_deref()) {
                *v = Some("Retain".into());
            }
        }
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        default_template(&mut spec.template);
        for pvc in spec.volume_claim_templates.iter_mut().flatten() {
            default_claim_template(pvc);
        }
    }

    fn prepare_for_create(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.available_replicas.get_or_insert(0);
        }
        drop_max_unavailable(self, None);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        drop_max_unavailable(self, Some(old));
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = StatefulSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        match spec.pod_management_policy.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(path.child("podManagementPolicy"), "")),
            "OrderedReady" | "Parallel" => {}
            other => errs.push(FieldError::invalid(
                path.child("podManagementPolicy"),
                other,
                "must be 'OrderedReady' or 'Parallel'",
            )),
        }
        let default_strategy = StatefulSetUpdateStrategy::default();
        let strategy = spec.update_strategy.as_ref().unwrap_or(&default_strategy);
        let sp = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "" => errs.push(FieldError::required(&sp, "")),
            "OnDelete" => {
                if let Some(ru) = &strategy.rolling_update {
                    errs.push(FieldError::invalid(
                        sp.child("rollingUpdate"),
                        serde_json::to_value(ru).unwrap_or(Value::Null),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = &strategy.rolling_update {
                    let rp = sp.child("rollingUpdate");
                    non_negative(
                        i64::from(ru.partition.unwrap_or(0)),
                        rp.child("partition"),
                        errs,
                    );
                    if let Some(mu) = &ru.max_unavailable {
                        let mp = rp.child("maxUnavailable");
                        validate_positive_int_or_percent(mu, &mp, errs);
                        if int_or_percent_value(Some(mu)) == 0 {
                            errs.push(FieldError::invalid(
                                &mp,
                                int_or_string_value(mu),
                                "cannot be 0",
                            ));
                        }
                        validate_not_more_than_100_percent(mu, &mp, errs);
                    }
                }
            }
            _ => errs.push(FieldError::invalid(
                &sp,
                serde_json::to_value(strategy).unwrap_or(Value::Null),
                "must be 'RollingUpdate' or 'OnDelete'",
            )),
        }
        validate_retention_policy(
            spec.persistent_volume_claim_retention_policy.as_ref(),
            &path.child("persistentVolumeClaimRetentionPolicy"),
            errs,
        );
        non_negative(
            i64::from(spec.replicas.unwrap_or(0)),
            path.child("replicas"),
            errs,
        );
        non_negative_opt(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        if let Some(o) = &spec.ordinals {
            non_negative(
                i64::from(o.start.unwrap_or(0)),
                path.child("ordinals.start"),
                errs,
            );
        }
        let tp = path.child("template");
        if let Some(sel) = checked_selector(&spec.selector, &path.child("selector"), "", errs) {
            // Upstream validates only the template's labels and annotations here, not its pod
            // spec (volume mounts may name volume claim templates; see its TODO).
            if !selector_matches(sel.as_ref(), &spec.template) {
                errs.push(selector_mismatch(&spec.template, &tp));
            }
            if let Some(m) = &spec.template.metadata {
                if let Some(l) = &m.labels {
                    validate_labels(l, &tp.child("labels"), errs);
                }
                if let Some(a) = &m.annotations {
                    validate_annotations(a, &tp.child("annotations"), errs);
                }
            }
        }
        restart_policy_always(&spec.template, &tp, errs);
        no_active_deadline(&spec.template, &tp, "StatefulSet", errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let mut new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        new_spec.replicas = old_spec.replicas;
        new_spec.template = old_spec.template.clone();
        new_spec.update_strategy = old_spec.update_strategy.clone();
        new_spec.min_ready_seconds = old_spec.min_ready_seconds;
        new_spec.ordinals = old_spec.ordinals.clone();
        new_spec.persistent_volume_claim_retention_policy =
            old_spec.persistent_volume_claim_retention_policy.clone();
        if new_spec != old_spec {
            errs.push(FieldError::forbidden("spec", STATEFUL_SET_FORBIDDEN_UPDATE));
        }
    }

    fn columns() -> &'static [Column] {
        STATEFUL_SET_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = StatefulSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let ready = self
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let (names, images) = container_cells(Some(&spec.template));
        vec![
            name_cell(&self.metadata),
            json!(format!("{}/{}", ready, spec.replicas.unwrap_or(0))),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// DaemonSet

/// The annotation apps/v1 keeps the (internal) template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

const DAEMON_SET_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    Column::new("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    Column::new("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
    Column::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    Column::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    Column::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column::new("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|v| v.parse().ok())
}

fn set_template_generation(ds: &mut DaemonSet, g: i64) {
    ds.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_GENERATION_ANNOTATION.to_string(), g.to_string());
}

fn validate_daemon_set_strategy(
    s: Option<&DaemonSetUpdateStrategy>,
    path: &Path,
    errs: &mut ErrorList,
) {
    let default = DaemonSetUpdateStrategy::default();
    let s = s.unwrap_or(&default);
    match s.type_.as_deref().unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = &s.rolling_update else {
                errs.push(FieldError::required(path.child("rollingUpdate"), ""));
                return;
            };
            let p = path.child("rollingUpdate");
            let zero = IntOrString::Int(0);
            let mu = ru.max_unavailable.as_ref().unwrap_or(&zero);
            let ms = ru.max_surge.as_ref().unwrap_or(&zero);
            validate_positive_int_or_percent(mu, &p.child("maxUnavailable"), errs);
            validate_positive_int_or_percent(ms, &p.child("maxSurge"), errs);
            validate_not_more_than_100_percent(mu, &p.child("maxUnavailable"), errs);
            validate_not_more_than_100_percent(ms, &p.child("maxSurge"), errs);
            let has_unavailable = int_or_percent_value(Some(mu)) != 0;
            let has_surge = int_or_percent_value(Some(ms)) != 0;
            if has_unavailable && has_surge {
                errs.push(FieldError::invalid(
                    p.child("maxSurge"),
                    int_or_string_value(ms),
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    p.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        _ => errs.push(FieldError::not_supported(
            path,
            serde_json::to_value(s).unwrap_or(Value::Null),
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

impl KindHooks for DaemonSet {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let strategy = spec.update_strategy.get_or_insert_with(Default::default);
        if is_blank(strategy.type_.as_deref()) {
            strategy.type_ = Some("RollingUpdate".into());
        }
        if strategy.type_.as_deref() == Some("RollingUpdate") {
            let ru = strategy.rolling_update.get_or_insert_with(Default::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit.get_or_insert(10);
        default_template(&mut spec.template);
    }

    fn prepare_for_create(&mut self) {
        let g = template_generation(self).unwrap_or(0).max(1);
        set_template_generation(self, g);
    }

    fn prepare_for_update(&mut self, old: &Self) {
        // The template generation is the server's: kept, and bumped when the template changes.
        let mut g = template_generation(old).unwrap_or(1);
        let new_template = self.spec.as_ref().map(|s| &s.template);
        let old_template = old.spec.as_ref().map(|s| &s.template);
        if new_template != old_template {
            g += 1;
        }
        set_template_generation(self, g);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = DaemonSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        let sel = if is_empty(&spec.selector) {
            Ok(None)
        } else {
            validate_label_selector(&spec.selector, &path.child("selector"), errs);
            as_selector(&spec.selector).map(Some)
        };
        if let Ok(sel) = sel {
            if !selector_matches(sel.as_ref(), &spec.template) {
                errs.push(selector_mismatch(&spec.template, &path.child("template")));
            }
        }
        let tp = path.child("template");
        validate_pod_template_spec(&spec.template, &tp, errs);
        restart_policy_always(&spec.template, &tp, errs);
        no_active_deadline(&spec.template, &tp, "DaemonSet", errs);
        non_negative_opt(spec.min_ready_seconds, &path.child("minReadySeconds"), errs);
        if let Some(g) = template_generation(self) {
            non_negative(g, path.child("templateGeneration"), errs);
        }
        validate_daemon_set_strategy(
            spec.update_strategy.as_ref(),
            &path.child("updateStrategy"),
            errs,
        );
        non_negative_opt(
            spec.revision_history_limit,
            &path.child("revisionHistoryLimit"),
            errs,
        );
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_sel = self.spec.as_ref().map(|s| &s.selector);
        let old_sel = old.spec.as_ref().map(|s| &s.selector);
        immutable_field(&new_sel, &old_sel, "spec.selector", errs);
    }

    fn columns() -> &'static [Column] {
        DAEMON_SET_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = DaemonSetSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.clone().unwrap_or_default();
        let (names, images) = container_cells(Some(&spec.template));
        let node_selector = spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.as_ref());
        vec![
            name_cell(&self.metadata),
            json!(status.desired_number_scheduled),
            json!(status.current_number_scheduled),
            json!(status.number_ready),
            json!(status.updated_number_scheduled.unwrap_or(0)),
            json!(status.number_available.unwrap_or(0)),
            json!(format_labels(node_selector)),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(selector::format_label_selector(Some(&spec.selector))),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// ControllerRevision

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Controller", "string", "Controller of the object"),
    Column::new(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    Column::age(),
];

impl KindHooks for ControllerRevision {
    fn validate(&self, errs: &mut ErrorList) {
        if self.data.is_none() {
            errs.push(FieldError::required("data", "data is mandatory"));
        }
        non_negative(self.revision, "revision", errs);
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        immutable_field(&self.data, &old.data, "data", errs);
    }

    fn columns() -> &'static [Column] {
        CONTROLLER_REVISION_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let controller = self
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| {
                let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
                let kind = if group.is_empty() {
                    r.kind.clone()
                } else {
                    format!("{}.{group}", r.kind)
                };
                format!("{}/{}", kind.to_lowercase(), r.name)
            })
            .unwrap_or_else(|| "<none>".to_string());
        vec![
            name_cell(&self.metadata),
            json!(controller),
            json!(self.revision),
            age_cell(&self.metadata, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{create, errors, row, update, UID};
    use super::*;

    fn example_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "my-deployment", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "my-app"}},
                "template": {
                    "metadata": {"labels": {"app": "my-app"}},
                    "spec": {"containers": [{"name": "my-container", "image": "nginx"}]}
                }
            }
        })
    }

    #[test]
    fn the_example_deployment_gets_upstreams_defaults() {
        let d = create::<Deployment>(example_deployment());
        let spec = &d["spec"];
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["selector"], json!({"matchLabels": {"app": "my-app"}}));
        assert_eq!(
            spec["strategy"],
            json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"})
        );
        assert_eq!(
            spec["template"]["metadata"],
            json!({"labels": {"app": "my-app"}})
        );
        assert_eq!(d["status"], json!({}));
        assert!(
            errors::<Deployment>(&d).is_empty(),
            "{:?}",
            errors::<Deployment>(&d)
        );
    }

    #[test]
    fn the_example_deployment_stores_upstreams_whole_spec() {
        let d = create::<Deployment>(example_deployment());
        assert_eq!(
            d["spec"],
            json!({
                "progressDeadlineSeconds": 600,
                "replicas": 3,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "my-app"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "my-app"}},
                    "spec": {
                        "containers": [{
                            "image": "nginx",
                            "imagePullPolicy": "Always",
                            "name": "my-container",
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        }],
                        "dnsPolicy": "ClusterFirst",
                        "restartPolicy": "Always",
                        "schedulerName": "default-scheduler",
                        "securityContext": {},
                        "terminationGracePeriodSeconds": 30
                    }
                }
            })
        );
    }

    #[test]
    fn a_deployment_without_selector_reports_both_upstream_errors() {
        let mut d = example_deployment();
        d["spec"].as_object_mut().expect("spec").remove("selector");
        let d = create::<Deployment>(d);
        let errs = errors::<Deployment>(&d);
        assert_eq!(errs[0], "spec.selector: Required value");
        assert_eq!(
            errs[1],
            "spec.template.metadata.labels: Invalid value: {\"app\":\"my-app\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn a_selector_that_misses_the_template_labels_is_rejected() {
        let mut d = example_deployment();
        d["spec"]["selector"]["matchLabels"]["app"] = json!("other");
        let errs = errors::<Deployment>(&create::<Deployment>(d));
        assert_eq!(
            errs,
            vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"my-app\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn deployment_templates_must_restart_always() {
        let mut d = example_deployment();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let errs = errors::<Deployment>(&create::<Deployment>(d));
        assert!(
            errs.contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn deployment_rollouts_cannot_stall_with_zero_surge_and_unavailability() {
        let mut d = example_deployment();
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
        let errs = errors::<Deployment>(&create::<Deployment>(d));
        assert_eq!(
            errs,
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"]
        );
    }

    #[test]
    fn deployment_percentages_and_counts_are_checked() {
        let mut d = example_deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["revisionHistoryLimit"] = json!(-2);
        d["spec"]["strategy"] =
            json!({"rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}});
        let errs = errors::<Deployment>(&create::<Deployment>(d));
        assert_eq!(
            errs,
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x%\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
                "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn an_unknown_deployment_strategy_is_unsupported() {
        let mut d = example_deployment();
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        let errs = errors::<Deployment>(&create::<Deployment>(d));
        assert_eq!(
            errs,
            vec!["spec.strategy: Unsupported value: {\"type\":\"BlueGreen\"}: supported values: \"Recreate\", \"RollingUpdate\""]
        );
    }

    #[test]
    fn deployment_selectors_are_immutable() {
        let old = create::<Deployment>(example_deployment());
        let mut new = example_deployment();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("web");
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
        let (_, errs) = update::<Deployment>(new, &old);
        assert_eq!(
            errs,
            vec!["spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"my-app\",\"tier\":\"web\"}}: field is immutable"]
        );
    }

    #[test]
    fn a_deployment_mid_rollout_prints_like_kubectl() {
        let mut d = create::<Deployment>(example_deployment());
        d["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "sidecar", "image": "busybox"}));
        d["status"] = json!({"replicas": 4, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(
            row::<Deployment>(&d),
            vec![
                json!("my-deployment"),
                json!("2/3"),
                json!(2),
                json!(2),
                json!("60m"),
                json!("my-container,sidecar"),
                json!("nginx,busybox"),
                json!("app=my-app"),
            ]
        );
    }

    fn replica_set() -> Value {
        json!({
            "metadata": {"name": "rs", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        })
    }

    #[test]
    fn replica_sets_default_to_one_replica_and_zero_status() {
        let rs = create::<ReplicaSet>(replica_set());
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(rs["status"], json!({"replicas": 0}));
        assert!(errors::<ReplicaSet>(&rs).is_empty());
        assert_eq!(
            row::<ReplicaSet>(&rs),
            vec![
                json!("rs"),
                json!(1),
                json!(0),
                json!(0),
                json!("60m"),
                json!("c"),
                json!("i"),
                json!("app=x")
            ]
        );
    }

    #[test]
    fn replica_sets_select_on_status_replicas() {
        let mut rs = create::<ReplicaSet>(replica_set());
        rs["status"]["replicas"] = json!(2);
        let s: &dyn crate::Strategy = &crate::strategy::Typed::<ReplicaSet>::NEW;
        assert_eq!(s.field_selectors(), &["status.replicas"]);
        assert_eq!(s.field_value(&rs, "status.replicas").as_deref(), Some("2"));
    }

    fn stateful_set() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "www", "mountPath": "/www"}]}]}
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        })
    }

    #[test]
    fn stateful_sets_get_upstreams_defaults() {
        let s = create::<StatefulSet>(stateful_set());
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"],
            json!({"phase": "Pending"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["kind"],
            "PersistentVolumeClaim"
        );
        assert_eq!(s["status"], json!({"availableReplicas": 0, "replicas": 0}));
        assert!(
            errors::<StatefulSet>(&s).is_empty(),
            "{:?}",
            errors::<StatefulSet>(&s)
        );
    }

    #[test]
    fn stateful_set_updates_are_limited_to_some_fields() {
        let old = create::<StatefulSet>(stateful_set());
        let mut new = stateful_set();
        new["spec"]["replicas"] = json!(3);
        let (_, errs) = update::<StatefulSet>(new.clone(), &old);
        assert!(errs.is_empty(), "{errs:?}");
        new["spec"]["serviceName"] = json!("other");
        let (_, errs) = update::<StatefulSet>(new, &old);
        assert_eq!(
            errs,
            vec![format!("spec: Forbidden: {STATEFUL_SET_FORBIDDEN_UPDATE}")]
        );
    }

    #[test]
    fn stateful_set_names_must_be_dns_labels() {
        assert_eq!(
            <StatefulSet as KindHooks>::NAME_RULE,
            NameRule::Dns1123Label
        );
    }

    #[test]
    fn a_stateful_set_prints_ready_over_desired() {
        let mut s = create::<StatefulSet>(stateful_set());
        s["status"]["readyReplicas"] = json!(1);
        assert_eq!(
            row::<StatefulSet>(&s),
            vec![
                json!("web"),
                json!("1/1"),
                json!("60m"),
                json!("c"),
                json!("i")
            ]
        );
    }

    fn daemon_set() -> Value {
        json!({
            "metadata": {"name": "agent", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "c", "image": "i"}]}
                }
            }
        })
    }

    #[test]
    fn daemon_sets_get_upstreams_defaults_and_a_template_generation() {
        let ds = create::<DaemonSet>(daemon_set());
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            ds["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "1"
        );
        assert_eq!(
            ds["status"],
            json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0})
        );
        assert!(errors::<DaemonSet>(&ds).is_empty());
    }

    #[test]
    fn daemon_set_template_changes_bump_the_template_generation() {
        let old = create::<DaemonSet>(daemon_set());
        let mut new = daemon_set();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        let (new, errs) = update::<DaemonSet>(new, &old);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            new["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION],
            "2"
        );
    }

    #[test]
    fn daemon_sets_need_a_nonzero_rollout_budget() {
        let mut ds = daemon_set();
        ds["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
        let errs = errors::<DaemonSet>(&create::<DaemonSet>(ds));
        assert_eq!(
            errs,
            vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
    }

    #[test]
    fn a_daemon_set_prints_its_node_selector() {
        let ds = create::<DaemonSet>(daemon_set());
        assert_eq!(
            row::<DaemonSet>(&ds),
            vec![
                json!("agent"),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!(0),
                json!("kubernetes.io/os=linux"),
                json!("60m"),
                json!("c"),
                json!("i"),
                json!("app=agent"),
            ]
        );
    }

    #[test]
    fn controller_revisions_need_data_and_print_their_owner() {
        let cr = create::<ControllerRevision>(json!({
            "metadata": {"name": "web-5d9", "namespace": "default", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": UID, "controller": true}
            ]},
            "revision": 2
        }));
        assert_eq!(
            errors::<ControllerRevision>(&cr),
            vec!["data: Required value: data is mandatory"]
        );
        assert_eq!(
            row::<ControllerRevision>(&cr),
            vec![
                json!("web-5d9"),
                json!("statefulset.apps/web"),
                json!(2),
                json!("60m")
            ]
        );
    }
}
