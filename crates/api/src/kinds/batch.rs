//! batch/v1 kinds (Job, CronJob) with upstream's defaults (pkg/apis/batch/v1/defaults.go),
//! strategies (pkg/registry/batch/*/strategy.go: generated selectors and labels), validation
//! (pkg/apis/batch/validation) and printers; and [`cron`], the schedule parser.

pub mod cron;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{json, Value};

use super::apps::selector::{as_selector, format_label_selector, validate_label_selector};
use super::apps::{
    age_cell, container_cells, default_template, is_blank, name_cell, non_negative_opt,
    selector_mismatch, validate_domain_prefixed_path, CONTAINERS_COLUMN, IMAGES_COLUMN,
};
use crate::field_error::{ErrorList, FieldError, FieldErrorType, Path};
use crate::kinds::pod_spec::validate_pod_template_spec;
use crate::strategy::KindHooks;
use crate::table::{human_duration_since, Column, RowContext};
use crate::validation::{dns1123_label, immutable_field, non_negative};

/// Labels the server puts on a Job's pods (and selects them by) unless `manualSelector`.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

const MAX_PARALLELISM_FOR_INDEXED_JOB: i32 = 100_000;
const MAX_FAILED_INDEXES_LIMIT: i32 = 100_000;
const MAX_MANAGED_BY_LENGTH: usize = 63;
const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
const MAX_EXIT_CODE_VALUES: usize = 255;
/// A CronJob's Jobs are named `<cronjob>-<11 characters>`, and must fit a DNS label.
const MAX_CRON_JOB_NAME_LENGTH: usize = 52;

fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    FieldError::new(
        FieldErrorType::TooMany,
        path,
        Some(json!(actual)),
        format!("must have at most {max} items"),
    )
}

// ---------------------------------------------------------------------------------------------
// Job

const JOB_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Status", "string", "Status of the job."),
    Column::new("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
    Column::new("Duration", "string", "Time required to complete the job."),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column::new("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

fn manual_selector(spec: &JobSpec) -> bool {
    spec.manual_selector == Some(true)
}

/// Upstream's `generateSelector`: uid- and name-based labels on the template, and a selector
/// on the uid label; labels the user set already are left for validation to judge.
fn generate_selector(job: &mut Job) {
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for key in [LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| name.clone());
    }
    for key in [LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL] {
        labels.entry(key.to_string()).or_insert_with(|| uid.clone());
    }
    spec.selector
        .get_or_insert_with(Default::default)
        .match_labels
        .get_or_insert_with(Default::default)
        .entry(CONTROLLER_UID_LABEL.to_string())
        .or_insert(uid);
}

/// Upstream copies a Job's template labels to the Job when it has none, each time it is
/// decoded (defaulting runs on reads too, so the generated labels show up).
fn default_labels_from_template(job: &mut Job) {
    let template_labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels {
        if job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            job.metadata.labels = Some(labels);
        }
    }
}

/// Upstream's `validateGeneratedSelector`: the generated labels and selector must be as the
/// server made them.
fn validate_generated_selector(job: &Job, errs: &mut ErrorList) {
    let default = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default);
    if manual_selector(spec) {
        return;
    }
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let labels_path = Path::new("spec")
        .child("template")
        .child("metadata")
        .child("labels");
    let Some(labels) = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
    else {
        errs.push(FieldError::required(&labels_path, ""));
        return;
    };
    let Some(selector) = &spec.selector else {
        return;
    };
    let Some(match_labels) = &selector.match_labels else {
        errs.push(FieldError::required("spec.selector.matchLabels", ""));
        return;
    };
    let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
    if get(match_labels, CONTROLLER_UID_LABEL) != uid {
        errs.push(FieldError::invalid(
            Path::new("spec.selector.matchLabels").key(CONTROLLER_UID_LABEL),
            get(match_labels, CONTROLLER_UID_LABEL),
            format!("must be '{uid}'"),
        ));
    }
    for (key, want) in [
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
    ] {
        if get(labels, key) != *want {
            errs.push(FieldError::invalid(
                labels_path.key(key),
                get(labels, key),
                format!("must be '{want}'"),
            ));
        }
    }
}

fn validate_exit_codes(
    req: &PodFailurePolicyOnExitCodesRequirement,
    path: &Path,
    containers: &[String],
    errs: &mut ErrorList,
) {
    if req.operator != "In" && req.operator != "NotIn" {
        errs.push(FieldError::not_supported(
            path.child("operator"),
            req.operator.as_str(),
            &["In", "NotIn"],
        ));
    }
    if let Some(c) = &req.container_name {
        if !containers.contains(c) {
            errs.push(FieldError::invalid(
                path.child("containerName"),
                c.as_str(),
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let vp = path.child("values");
    if req.values.is_empty() {
        errs.push(FieldError::invalid(
            &vp,
            json!(req.values),
            "at least one value is required",
        ));
    } else if req.values.len() > MAX_EXIT_CODE_VALUES {
        errs.push(too_many(&vp, req.values.len(), MAX_EXIT_CODE_VALUES));
    }
    let mut seen = Vec::new();
    for (j, v) in req.values.iter().enumerate() {
        if req.operator == "In" && *v == 0 {
            errs.push(FieldError::invalid(
                vp.index(j),
                *v,
                "must not be 0 for the In operator",
            ));
        }
        if seen.contains(v) {
            errs.push(FieldError::duplicate(vp.index(j), *v));
        } else {
            seen.push(*v);
        }
    }
    if req.values.windows(2).any(|w| w[0] > w[1]) {
        errs.push(FieldError::invalid(
            &vp,
            json!(req.values),
            "must be ordered",
        ));
    }
}

fn validate_pod_failure_policy(
    spec: &JobSpec,
    policy: &PodFailurePolicy,
    path: &Path,
    errs: &mut ErrorList,
) {
    let rules_path = path.child("rules");
    if policy.rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(too_many(
            &rules_path,
            policy.rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    let containers: Vec<String> = spec
        .template
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .map(|c| c.name.clone())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        let rp = rules_path.index(i);
        if rule.action == "FailIndex" && spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::invalid(
                rp.child("action"),
                rule.action.as_str(),
                "requires the backoffLimitPerIndex to be set",
            ));
        }
        if !["Count", "FailIndex", "FailJob", "Ignore"].contains(&rule.action.as_str()) {
            errs.push(FieldError::not_supported(
                rp.child("action"),
                rule.action.as_str(),
                &["Count", "FailIndex", "FailJob", "Ignore"],
            ));
        }
        if let Some(req) = &rule.on_exit_codes {
            validate_exit_codes(req, &rp.child("onExitCodes"), &containers, errs);
        }
        for (j, pattern) in rule.on_pod_conditions.iter().flatten().enumerate() {
            let pp = rp.child("onPodConditions").index(j);
            if !["True", "False", "Unknown"].contains(&pattern.status.as_str()) {
                errs.push(FieldError::not_supported(
                    pp.child("status"),
                    pattern.status.as_str(),
                    &["False", "True", "Unknown"],
                ));
            }
            for msg in crate::validation::qualified_name(&pattern.type_) {
                errs.push(FieldError::invalid(
                    pp.child("type"),
                    pattern.type_.as_str(),
                    msg,
                ));
            }
        }
    }
}

const MAX_SUCCESS_POLICY_RULES: usize = 20;
const MAX_SUCCEEDED_INDEXES_LENGTH: usize = 64 * 1024;

/// Upstream's `validateIndexesFormat`: ordered, non-overlapping intervals below
/// `completions`; the number of indexes they hold.
fn validate_indexes_format(indexes: &str, completions: i32) -> Result<i64, String> {
    if indexes.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0i64;
    for interval in indexes.split(',') {
        let limits: Vec<&str> = interval.split('-').collect();
        if limits.len() > 2 {
            return Err(format!("the fragment {interval:?} violates the requirement that an index interval can have at most two parts separated by '-'"));
        }
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("cannot convert string to integer for index: {s:?}"))
        };
        let x = parse(limits[0])?;
        if x >= i64::from(completions) {
            return Err(format!("too large index: {:?}", limits[0]));
        }
        if let Some(l) = last.filter(|l| *l >= x) {
            return Err(format!("non-increasing order, previous: {l}, current: {x}"));
        }
        total += 1;
        last = Some(x);
        if let Some(hi) = limits.get(1) {
            let y = parse(hi)?;
            if y >= i64::from(completions) {
                return Err(format!("too large index: {hi:?}"));
            }
            if x >= y {
                return Err(format!("non-increasing order, previous: {x}, current: {y}"));
            }
            total += y - x;
            last = Some(y);
        }
    }
    Ok(total)
}

/// Upstream's `validateSuccessPolicy` (Indexed Jobs only).
fn validate_success_policy(
    spec: &JobSpec,
    policy: &SuccessPolicy,
    path: &Path,
    errs: &mut ErrorList,
) {
    if spec.completion_mode.as_deref() != Some("Indexed") {
        errs.push(FieldError::invalid(
            path,
            serde_json::to_value(policy).unwrap_or(Value::Null),
            "requires indexed completion mode",
        ));
        return;
    }
    let completions = spec.completions.unwrap_or(0);
    let rules_path = path.child("rules");
    if policy.rules.is_empty() {
        errs.push(FieldError::required(
            &rules_path,
            "at least one rules must be specified when the successPolicy is specified",
        ));
    }
    if policy.rules.len() > MAX_SUCCESS_POLICY_RULES {
        errs.push(too_many(
            &rules_path,
            policy.rules.len(),
            MAX_SUCCESS_POLICY_RULES,
        ));
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let rp = rules_path.index(i);
        if rule.succeeded_count.is_none() && rule.succeeded_indexes.is_none() {
            errs.push(FieldError::required(
                &rp,
                "at least one of succeededCount or succeededIndexes must be specified",
            ));
        }
        let mut total = 0;
        if let Some(idx) = &rule.succeeded_indexes {
            let ip = rp.child("succeededIndexes");
            if idx.len() > MAX_SUCCEEDED_INDEXES_LENGTH {
                errs.push(FieldError::too_long(&ip, MAX_SUCCEEDED_INDEXES_LENGTH));
            }
            match validate_indexes_format(idx, completions) {
                Ok(t) => total = t,
                Err(e) => errs.push(FieldError::invalid(
                    &ip,
                    idx.as_str(),
                    format!("error parsing succeededIndexes: {e}"),
                )),
            }
        }
        if let Some(c) = rule.succeeded_count {
            let cp = rp.child("succeededCount");
            non_negative(i64::from(c), &cp, errs);
            if c > completions {
                errs.push(FieldError::invalid(
                    &cp,
                    c,
                    format!("must be less than or equal to {completions} (the number of specified completions)"),
                ));
            }
            if rule.succeeded_indexes.is_some() && i64::from(c) > total {
                errs.push(FieldError::invalid(
                    &cp,
                    c,
                    format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                ));
            }
        }
    }
}

/// Upstream's `validateJobSpec`: everything but the selector.
fn validate_job_spec(spec: &JobSpec, path: &Path, errs: &mut ErrorList) {
    non_negative_opt(spec.parallelism, &path.child("parallelism"), errs);
    non_negative_opt(spec.completions, &path.child("completions"), errs);
    if let Some(v) = spec.active_deadline_seconds {
        non_negative(v, path.child("activeDeadlineSeconds"), errs);
    }
    non_negative_opt(spec.backoff_limit, &path.child("backoffLimit"), errs);
    non_negative_opt(
        spec.ttl_seconds_after_finished,
        &path.child("ttlSecondsAfterFinished"),
        errs,
    );
    non_negative_opt(
        spec.backoff_limit_per_index,
        &path.child("backoffLimitPerIndex"),
        errs,
    );
    if let Some(m) = spec.max_failed_indexes {
        non_negative(i64::from(m), path.child("maxFailedIndexes"), errs);
        if spec.backoff_limit_per_index.is_none() {
            errs.push(FieldError::required(
                path.child("backoffLimitPerIndex"),
                "when maxFailedIndexes is specified",
            ));
        }
    }
    if let Some(m) = &spec.managed_by {
        validate_domain_prefixed_path(m, &path.child("managedBy"), errs);
        if m.len() > MAX_MANAGED_BY_LENGTH {
            errs.push(FieldError::too_long(
                path.child("managedBy"),
                MAX_MANAGED_BY_LENGTH,
            ));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(mode) = spec.completion_mode.as_deref() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if indexed {
            if spec.completions.is_none() {
                errs.push(FieldError::required(
                    path.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec
                .parallelism
                .filter(|p| *p > MAX_PARALLELISM_FOR_INDEXED_JOB)
            {
                errs.push(FieldError::invalid(
                    path.child("parallelism"),
                    p,
                    format!("must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"),
                ));
            }
            if let (Some(c), Some(m)) = (spec.completions, spec.max_failed_indexes) {
                if m > c {
                    errs.push(FieldError::invalid(
                        path.child("maxFailedIndexes"),
                        m,
                        "must be less than or equal to completions",
                    ));
                }
            }
            if let Some(m) = spec
                .max_failed_indexes
                .filter(|m| *m > MAX_FAILED_INDEXES_LIMIT)
            {
                errs.push(FieldError::invalid(
                    path.child("maxFailedIndexes"),
                    m,
                    format!("must be less than or equal to {MAX_FAILED_INDEXES_LIMIT}"),
                ));
            }
        }
    }
    if !indexed {
        if let Some(b) = spec.backoff_limit_per_index {
            errs.push(FieldError::invalid(
                path.child("backoffLimitPerIndex"),
                b,
                "requires indexed completion mode",
            ));
        }
        if let Some(m) = spec.max_failed_indexes {
            errs.push(FieldError::invalid(
                path.child("maxFailedIndexes"),
                m,
                "requires indexed completion mode",
            ));
        }
    }
    if let Some(policy) = &spec.pod_failure_policy {
        validate_pod_failure_policy(spec, policy, &path.child("podFailurePolicy"), errs);
    }
    if let Some(policy) = &spec.success_policy {
        validate_success_policy(spec, policy, &path.child("successPolicy"), errs);
    }
    if let Some(rp) = spec.pod_replacement_policy.as_deref() {
        if spec.pod_failure_policy.is_some() {
            if rp != "Failed" {
                errs.push(FieldError::not_supported(
                    path.child("podReplacementPolicy"),
                    rp,
                    &["Failed"],
                ));
            }
        } else if rp != "Failed" && rp != "TerminatingOrFailed" {
            errs.push(FieldError::not_supported(
                path.child("podReplacementPolicy"),
                rp,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let tp = path.child("template");
    validate_pod_template_spec(&spec.template, &tp, errs);
    let rpath = tp.child("spec").child("restartPolicy");
    match spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("")
    {
        "" | "Always" => errs.push(FieldError::required(
            rpath,
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" if spec.pod_failure_policy.is_some() => errs.push(FieldError::invalid(
            rpath,
            "OnFailure",
            "only \"Never\" is supported when podFailurePolicy is specified",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            rpath,
            other,
            &["OnFailure", "Never"],
        )),
    }
}

fn template_labels(spec: &JobSpec) -> Option<&BTreeMap<String, String>> {
    spec.template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
}

fn has_true_condition(status: Option<&JobStatus>, type_: &str) -> bool {
    status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
        .is_some_and(|c| c.status == "True")
}

impl KindHooks for Job {
    const FIELD_SELECTORS: &'static [&'static str] = &["status.successful"];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        if spec.backoff_limit.is_none() {
            spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
                i32::MAX
            } else {
                6
            });
        }
        if is_blank(spec.completion_mode.as_deref()) {
            spec.completion_mode = Some("NonIndexed".into());
        }
        spec.suspend.get_or_insert(false);
        if let Some(policy) = spec.pod_failure_policy.as_mut() {
            for pattern in policy
                .rules
                .iter_mut()
                .flat_map(|r| r.on_pod_conditions.iter_mut().flatten())
            {
                if pattern.status.is_empty() {
                    pattern.status = "True".into();
                }
            }
        }
        if spec.pod_replacement_policy.is_none() {
            let policy = if spec.pod_failure_policy.is_some() {
                "Failed"
            } else {
                "TerminatingOrFailed"
            };
            spec.pod_replacement_policy = Some(policy.into());
        }
        default_template(&mut spec.template);
        default_labels_from_template(self);
    }

    fn prepare_for_create(&mut self) {
        if !self.spec.as_ref().is_some_and(manual_selector) {
            generate_selector(self);
        }
        default_labels_from_template(self);
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_generated_selector(self, errs);
        let default = JobSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let path = Path::new("spec");
        validate_job_spec(spec, &path, errs);
        match &spec.selector {
            None => errs.push(FieldError::required(path.child("selector"), "")),
            Some(sel) => validate_label_selector(sel, &path.child("selector"), errs),
        }
        let matches = match &spec.selector {
            None => Some(false),
            Some(sel) => as_selector(sel)
                .ok()
                .map(|s| s.matches(&template_labels(spec))),
        };
        if matches == Some(false) {
            errs.push(selector_mismatch(&spec.template, &path.child("template")));
        }
        if spec.completion_mode.as_deref() == Some("Indexed") {
            if let Some(c) = spec.completions.filter(|c| *c > 0) {
                let name = self.metadata.name.clone().unwrap_or_default();
                let hostname = format!("{name}-{}", c - 1);
                if !dns1123_label(&hostname).is_empty() {
                    errs.push(FieldError::invalid(
                        "metadata.name",
                        name,
                        format!("will not able to create pod with invalid DNS label: {hostname}"),
                    ));
                }
            }
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let path = Path::new("spec");
        let indexed = new_spec.completion_mode.as_deref() == Some("Indexed");
        if !indexed {
            immutable_field(
                &new_spec.completions,
                &old_spec.completions,
                path.child("completions"),
                errs,
            );
        } else if new_spec.completions != old_spec.completions {
            if let Some(c) = new_spec.completions {
                if Some(c) != new_spec.parallelism {
                    errs.push(FieldError::invalid(
                        path.child("completions"),
                        c,
                        "can only be modified in tandem with spec.parallelism",
                    ));
                }
            }
        }
        immutable_field(
            &new_spec.selector,
            &old_spec.selector,
            path.child("selector"),
            errs,
        );
        // A suspended Job that never started may change its scheduling directives.
        let mut old_template = old_spec.template.clone();
        let suspended = old_spec.suspend == Some(true);
        let not_started = old.status.as_ref().is_none_or(|s| s.start_time.is_none());
        if suspended && not_started {
            let new_t = &new_spec.template;
            let meta = old_template.metadata.get_or_insert_with(Default::default);
            let new_meta = new_t.metadata.clone().unwrap_or_default();
            meta.labels = new_meta.labels;
            meta.annotations = new_meta.annotations;
            if let (Some(os), Some(ns)) = (old_template.spec.as_mut(), new_t.spec.as_ref()) {
                os.node_selector = ns.node_selector.clone();
                os.tolerations = ns.tolerations.clone();
                os.scheduling_gates = ns.scheduling_gates.clone();
                if let Some(na) = ns.affinity.as_ref().and_then(|a| a.node_affinity.clone()) {
                    os.affinity
                        .get_or_insert_with(Default::default)
                        .node_affinity = Some(na);
                } else if let Some(a) = os.affinity.as_mut() {
                    a.node_affinity = None;
                }
            }
        }
        immutable_field(
            &new_spec.template,
            &old_template,
            path.child("template"),
            errs,
        );
        immutable_field(
            &new_spec.completion_mode,
            &old_spec.completion_mode,
            path.child("completionMode"),
            errs,
        );
        immutable_field(
            &new_spec.pod_failure_policy,
            &old_spec.pod_failure_policy,
            path.child("podFailurePolicy"),
            errs,
        );
        immutable_field(
            &new_spec.backoff_limit_per_index,
            &old_spec.backoff_limit_per_index,
            path.child("backoffLimitPerIndex"),
            errs,
        );
        immutable_field(
            &new_spec.managed_by,
            &old_spec.managed_by,
            path.child("managedBy"),
            errs,
        );
        immutable_field(
            &new_spec.success_policy,
            &old_spec.success_policy,
            path.child("successPolicy"),
            errs,
        );
    }

    fn columns() -> &'static [Column] {
        JOB_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = JobSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.as_ref();
        let succeeded = status.and_then(|s| s.succeeded).unwrap_or(0);
        let completions = match spec.completions {
            Some(c) => format!("{succeeded}/{c}"),
            None => match spec.parallelism.unwrap_or(0) {
                p if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let start = status.and_then(|s| s.start_time.as_ref());
        let end = status.and_then(|s| s.completion_time.as_ref());
        let duration = match (start, end) {
            (None, _) => String::new(),
            (Some(s), None) => human_duration_since(s.0, ctx.now),
            (Some(s), Some(e)) => human_duration_since(s.0, e.0),
        };
        let state = if has_true_condition(status, "Complete") {
            "Complete"
        } else if has_true_condition(status, "Failed") {
            "Failed"
        } else if self.metadata.deletion_timestamp.is_some() {
            "Terminating"
        } else if has_true_condition(status, "Suspended") {
            "Suspended"
        } else if has_true_condition(status, "FailureTarget") {
            "FailureTarget"
        } else if has_true_condition(status, "SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let (names, images) = container_cells(Some(&spec.template));
        vec![
            name_cell(&self.metadata),
            json!(state),
            json!(completions),
            json!(duration),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(format_label_selector(spec.selector.as_ref())),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "status.successful" => Some(
                self.status
                    .as_ref()
                    .and_then(|s| s.succeeded)
                    .unwrap_or(0)
                    .to_string(),
            ),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CronJob

const CRON_JOB_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    Column::new("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process."),
    Column::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
    Column::new("Active", "integer", "A list of pointers to currently running jobs."),
    Column::new("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    Column::age(),
    CONTAINERS_COLUMN,
    IMAGES_COLUMN,
    Column::new("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
];

fn time_zone_part_ok(part: &str) -> bool {
    part != "."
        && part != ".."
        && !part.starts_with('-')
        && (1..=14).contains(&part.len())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
}

/// Upstream's `validateTimeZone`.
fn validate_time_zone(tz: &str, path: &Path, errs: &mut ErrorList) {
    if tz.is_empty() {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    if !tz.split('/').all(time_zone_part_ok) {
        errs.push(FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = cron::load_time_zone(tz) {
        errs.push(FieldError::invalid(path, tz, e));
    }
}

/// Upstream's `ValidateJobTemplateSpec`.
fn validate_job_template(t: &JobTemplateSpec, path: &Path, errs: &mut ErrorList) {
    let default = JobSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&default);
    let sp = path.child("spec");
    validate_job_spec(spec, &sp, errs);
    if let Some(sel) = &spec.selector {
        errs.push(FieldError::invalid(
            sp.child("selector"),
            serde_json::to_value(sel).unwrap_or(Value::Null),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            sp.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
}

fn validate_cron_job_spec(spec: &CronJobSpec, old: Option<&CronJobSpec>, errs: &mut ErrorList) {
    let path = Path::new("spec");
    let sp = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&sp, ""));
    } else {
        if let Err(e) = cron::Schedule::parse(&spec.schedule) {
            errs.push(FieldError::invalid(&sp, spec.schedule.as_str(), e.0));
        }
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        if spec.schedule.contains("TZ") {
            if !allow_tz {
                errs.push(FieldError::invalid(
                    &sp,
                    spec.schedule.as_str(),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if spec.time_zone.is_some() {
                errs.push(FieldError::invalid(
                    &sp,
                    spec.schedule.as_str(),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(s) = spec.starting_deadline_seconds {
        non_negative(s, path.child("startingDeadlineSeconds"), errs);
    }
    if let Some(tz) = &spec.time_zone {
        if old.is_none_or(|o| o.time_zone.as_ref() != Some(tz)) {
            validate_time_zone(tz, &path.child("timeZone"), errs);
        }
    }
    let cp = path.child("concurrencyPolicy");
    match spec.concurrency_policy.as_deref().unwrap_or("") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(cp, "")),
        other => errs.push(FieldError::not_supported(
            cp,
            other,
            &["Allow", "Forbid", "Replace"],
        )),
    }
    validate_job_template(&spec.job_template, &path.child("jobTemplate"), errs);
    non_negative_opt(
        spec.successful_jobs_history_limit,
        &path.child("successfulJobsHistoryLimit"),
        errs,
    );
    non_negative_opt(
        spec.failed_jobs_history_limit,
        &path.child("failedJobsHistoryLimit"),
        errs,
    );
}

impl KindHooks for CronJob {
    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        if is_blank(spec.concurrency_policy.as_deref()) {
            spec.concurrency_policy = Some("Allow".into());
        }
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        let jt = &mut spec.job_template;
        jt.metadata.get_or_insert_with(Default::default);
        default_template(&mut jt.spec.get_or_insert_with(Default::default).template);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let default = CronJobSpec::default();
        validate_cron_job_spec(self.spec.as_ref().unwrap_or(&default), None, errs);
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.len() > MAX_CRON_JOB_NAME_LENGTH {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be no more than 52 characters",
            ));
        }
    }

    fn columns() -> &'static [Column] {
        CRON_JOB_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let default = CronJobSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&default);
        let status = self.status.clone().unwrap_or_default();
        let last = status
            .last_schedule_time
            .as_ref()
            .map_or_else(|| "<none>".to_string(), |t| ctx.age(Some(t)));
        let suspend = match spec.suspend {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let job_spec = spec.job_template.spec.as_ref();
        let (names, images) = container_cells(job_spec.map(|s| &s.template));
        let selector: Option<&LabelSelector> = job_spec.and_then(|s| s.selector.as_ref());
        vec![
            name_cell(&self.metadata),
            json!(spec.schedule),
            json!(spec
                .time_zone
                .clone()
                .unwrap_or_else(|| "<none>".to_string())),
            json!(suspend),
            json!(status.active.map_or(0, |a| a.len())),
            json!(last),
            age_cell(&self.metadata, ctx),
            json!(names),
            json!(images),
            json!(format_label_selector(selector)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::super::apps::testing::{create, errors, row, update, UID};
    use super::*;

    fn job() -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "pi", "image": "perl"}],
                "restartPolicy": "Never"
            }}}
        })
    }

    #[test]
    fn a_job_gets_upstreams_defaults_and_a_generated_selector() {
        let j = create::<Job>(job());
        let spec = &j["spec"];
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["suspend"], false);
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {CONTROLLER_UID_LABEL: UID}})
        );
        let labels = json!({
            CONTROLLER_UID_LABEL: UID,
            JOB_NAME_LABEL: "pi",
            LEGACY_CONTROLLER_UID_LABEL: UID,
            LEGACY_JOB_NAME_LABEL: "pi",
        });
        assert_eq!(spec["template"]["metadata"]["labels"], labels);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["status"], json!({}));
        assert!(errors::<Job>(&j).is_empty(), "{:?}", errors::<Job>(&j));
    }

    #[test]
    fn success_policies_need_indexed_jobs_and_well_formed_rules() {
        let mut j = job();
        j["spec"]["successPolicy"] = json!({"rules": [{"succeededCount": 1}]});
        let errs = errors::<Job>(&create::<Job>(j.clone()));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("spec.successPolicy: Invalid value")
                && errs[0].ends_with("requires indexed completion mode"),
            "{errs:?}"
        );
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["completions"] = json!(5);
        j["spec"]["successPolicy"] = json!({"rules": [
            {},
            {"succeededIndexes": "3-1"},
            {"succeededIndexes": "0-1", "succeededCount": 3},
            {"succeededIndexes": "0,2-4", "succeededCount": 4},
        ]});
        let errs = errors::<Job>(&create::<Job>(j.clone()));
        assert_eq!(
            errs,
            vec![
                "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified",
                "spec.successPolicy.rules[1].succeededIndexes: Invalid value: \"3-1\": error parsing succeededIndexes: non-increasing order, previous: 3, current: 1",
                "spec.successPolicy.rules[2].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)",
            ]
        );
        j["spec"]["successPolicy"] = json!({"rules": [{"succeededIndexes": "0,7"}]});
        let errs = errors::<Job>(&create::<Job>(j));
        assert_eq!(errs, vec!["spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"0,7\": error parsing succeededIndexes: too large index: \"7\""]);
    }

    #[test]
    fn job_pods_may_not_restart_always() {
        let mut j = job();
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let errs = errors::<Job>(&create::<Job>(j));
        assert_eq!(
            errs,
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
    }

    #[test]
    fn a_manual_selector_must_be_given_and_match() {
        let mut j = job();
        j["spec"]["manualSelector"] = json!(true);
        j["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
        let errs = errors::<Job>(&create::<Job>(j));
        assert_eq!(
            errs,
            vec![
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: {\"app\":\"pi\"}: `selector` does not match template `labels`",
            ]
        );
    }

    #[test]
    fn job_templates_and_completions_are_immutable() {
        let old = create::<Job>(job());
        let mut new = old.clone();
        new["spec"]["completions"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5");
        let (_, errs) = update::<Job>(new, &old);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.completions: Invalid value: 3: field is immutable"
        );
        assert!(
            errs[1].starts_with("spec.template: Invalid value: {"),
            "{}",
            errs[1]
        );
        assert!(errs[1].ends_with("}: field is immutable"), "{}", errs[1]);
    }

    #[test]
    fn a_suspended_job_may_change_its_node_selector() {
        let mut j = job();
        j["spec"]["suspend"] = json!(true);
        let old = create::<Job>(j);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        let (_, errs) = update::<Job>(new, &old);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn a_completed_job_prints_like_kubectl() {
        let mut j = create::<Job>(job());
        j["status"] = json!({
            "startTime": "2024-01-01T00:10:00Z",
            "completionTime": "2024-01-01T00:10:42Z",
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}
            ]
        });
        assert_eq!(
            row::<Job>(&j),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("60m"),
                json!("pi"),
                json!("perl"),
                json!(format!("{CONTROLLER_UID_LABEL}={UID}")),
            ]
        );
        let s: &dyn crate::Strategy = &crate::strategy::Typed::<Job>::NEW;
        assert_eq!(s.field_value(&j, "status.successful").as_deref(), Some("1"));
    }

    #[test]
    fn a_running_parallel_job_without_completions_prints_its_parallelism() {
        let mut j = job();
        j["spec"]["parallelism"] = json!(3);
        let mut j = create::<Job>(j);
        j["status"] = json!({"startTime": "2024-01-01T00:30:00Z", "active": 3});
        let cells = row::<Job>(&j);
        assert_eq!(cells[1], "Running");
        assert_eq!(cells[2], "0/1 of 3");
        assert_eq!(cells[3], "30m");
        // Succeeded but pods still terminating: the interim condition shows.
        j["status"]["conditions"] = json!([{"type": "SuccessCriteriaMet", "status": "True"}]);
        assert_eq!(row::<Job>(&j)[1], "SuccessCriteriaMet");
    }

    fn cron_job() -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "hello", "image": "busybox"}],
                    "restartPolicy": "OnFailure"
                }}}}
            }
        })
    }

    #[test]
    fn a_cron_job_gets_upstreams_defaults() {
        let c = create::<CronJob>(cron_job());
        let spec = &c["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert_eq!(spec["jobTemplate"]["metadata"], json!({}));
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert_eq!(c["status"], json!({}));
        assert!(
            errors::<CronJob>(&c).is_empty(),
            "{:?}",
            errors::<CronJob>(&c)
        );
    }

    #[test]
    fn cron_job_schedules_and_time_zones_are_checked() {
        let mut c = cron_job();
        c["spec"]["schedule"] = json!("61 * * * *");
        c["spec"]["timeZone"] = json!("Mars/Olympus_Mons");
        let errs = errors::<CronJob>(&create::<CronJob>(c));
        assert_eq!(
            errs,
            vec![
                "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
                "spec.timeZone: Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons",
            ]
        );
        let mut c = cron_job();
        c["spec"]["schedule"] = json!("TZ=UTC 0 * * * *");
        let errs = errors::<CronJob>(&create::<CronJob>(c));
        assert_eq!(
            errs,
            vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
    }

    #[test]
    fn cron_job_names_leave_room_for_job_suffixes() {
        let mut c = cron_job();
        c["metadata"]["name"] = json!("a".repeat(53));
        let errs = errors::<CronJob>(&create::<CronJob>(c));
        assert_eq!(
            errs,
            vec![format!(
                "metadata.name: Invalid value: \"{}\": must be no more than 52 characters",
                "a".repeat(53)
            )]
        );
    }

    #[test]
    fn a_suspended_cron_job_prints_like_kubectl() {
        let mut c = cron_job();
        c["spec"]["suspend"] = json!(true);
        c["spec"]["timeZone"] = json!("Europe/Paris");
        let mut c = create::<CronJob>(c);
        c["status"] = json!({"lastScheduleTime": "2024-01-01T00:55:00Z"});
        assert_eq!(
            row::<CronJob>(&c),
            vec![
                json!("hello"),
                json!("*/5 * * * *"),
                json!("Europe/Paris"),
                json!("True"),
                json!(0),
                json!("5m"),
                json!("60m"),
                json!("hello"),
                json!("busybox"),
                json!("<none>"),
            ]
        );
    }
}
