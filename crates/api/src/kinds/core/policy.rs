//! LimitRanges and ResourceQuotas: upstream's defaults for container limit ranges, their
//! validation, the LimitRange "Created At" table and the quota REQUEST/LIMIT columns.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use serde_json::{json, Value};

use super::quantity::{self, canonicalize_opt_list, Quantity};
use super::{age_cell, checks};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};

type List = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;

fn limit_range_resource_name(limit_type: &str, name: &str, path: &Path, errs: &mut ErrorList) {
    match limit_type {
        "Pod" | "Container" => checks::container_resource_name(name, path, errs),
        _ => {
            checks::resource_name(name, path, errs);
        }
    }
}

fn validate_limit_range(lr: &LimitRange, errs: &mut ErrorList) {
    let path = Path::new("spec").child("limits");
    let mut types = BTreeSet::new();
    for (i, item) in lr.spec.iter().flat_map(|s| s.limits.iter()).enumerate() {
        let p = path.index(i);
        let ty = item.type_.as_str();
        let before = errs.len();
        checks::label_name(ty, &p.child("type"), errs);
        if errs.len() == before
            && !ty.contains('/')
            && !matches!(ty, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            errs.push(FieldError::invalid(
                p.child("type"),
                ty,
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(ty.to_string()) {
            errs.push(FieldError::duplicate(p.child("type"), ty));
        }
        let mut keys = BTreeSet::new();
        let mut collect = |list: &Option<List>,
                           field: &str,
                           errs: &mut ErrorList|
         -> BTreeMap<String, Quantity> {
            let mut out = BTreeMap::new();
            for (k, v) in list.iter().flatten() {
                let kp = p.child(field).key(k);
                limit_range_resource_name(ty, k, &kp, errs);
                keys.insert(k.clone());
                if let Some(q) = checks::parse_quantity(v, &kp, errs) {
                    out.insert(k.clone(), q);
                }
            }
            out
        };
        let max = collect(&item.max, "max", errs);
        let min = collect(&item.min, "min", errs);
        let (mut defaults, mut default_requests) = (BTreeMap::new(), BTreeMap::new());
        if ty == "Pod" {
            if item.default.as_ref().is_some_and(|d| !d.is_empty()) {
                errs.push(FieldError::forbidden(
                    p.child("default"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
            if item.default_request.as_ref().is_some_and(|d| !d.is_empty()) {
                errs.push(FieldError::forbidden(
                    p.child("defaultRequest"),
                    "may not be specified when `type` is 'Pod'",
                ));
            }
        } else {
            defaults = collect(&item.default, "default", errs);
            default_requests = collect(&item.default_request, "defaultRequest", errs);
        }
        if ty == "PersistentVolumeClaim"
            && !min.contains_key("storage")
            && !max.contains_key("storage")
        {
            errs.push(FieldError::required(
                p.child("limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let ratios = collect(&item.max_limit_request_ratio, "maxLimitRequestRatio", errs);
        for k in &keys {
            let (mn, mx, df, dr, ratio) = (
                min.get(k),
                max.get(k),
                defaults.get(k),
                default_requests.get(k),
                ratios.get(k),
            );
            let inv = |field: &str, q: &Quantity, msg: String| {
                FieldError::invalid(p.child(field).key(k), q.canonical(), msg)
            };
            if let (Some(mn), Some(mx)) = (mn, mx) {
                if mn > mx {
                    errs.push(inv(
                        "min",
                        mn,
                        format!("min value {mn} is greater than max value {mx}"),
                    ));
                }
            }
            if let (Some(dr), Some(mn)) = (dr, mn) {
                if mn > dr {
                    errs.push(inv(
                        "defaultRequest",
                        dr,
                        format!("min value {mn} is greater than default request value {dr}"),
                    ));
                }
            }
            if let (Some(dr), Some(mx)) = (dr, mx) {
                if dr > mx {
                    errs.push(inv(
                        "defaultRequest",
                        dr,
                        format!("default request value {dr} is greater than max value {mx}"),
                    ));
                }
            }
            if let (Some(dr), Some(df)) = (dr, df) {
                if dr > df {
                    errs.push(inv(
                        "defaultRequest",
                        dr,
                        format!(
                            "default request value {dr} is greater than default limit value {df}"
                        ),
                    ));
                }
            }
            if let (Some(df), Some(mn)) = (df, mn) {
                if mn > df {
                    errs.push(inv(
                        "default",
                        mn,
                        format!("min value {mn} is greater than default value {df}"),
                    ));
                }
            }
            if let (Some(df), Some(mx)) = (df, mx) {
                if df > mx {
                    errs.push(inv(
                        "default",
                        mx,
                        format!("default value {df} is greater than max value {mx}"),
                    ));
                }
            }
            if let Some(r) = ratio {
                if *r < Quantity::from_int(1) {
                    errs.push(inv(
                        "maxLimitRequestRatio",
                        r,
                        format!("ratio {r} is less than 1"),
                    ));
                }
                if let (Some(mn), Some(mx)) = (mn, mx) {
                    let limit = mx.milli_value() as f64 / mn.milli_value() as f64;
                    let rv = r.milli_value() as f64 / 1000.0;
                    if rv > limit {
                        errs.push(inv(
                            "maxLimitRequestRatio",
                            r,
                            format!("ratio {r} is greater than max/min = {limit:.6}"),
                        ));
                    }
                }
            }
            if !checks::is_overcommit_allowed(k) {
                if let (Some(df), Some(dr)) = (df, dr) {
                    if df != dr {
                        errs.push(inv(
                            "defaultRequest",
                            dr,
                            format!(
                                "default value {df} must equal to defaultRequest value {dr} in {k}"
                            ),
                        ));
                    }
                }
            }
        }
    }
}

static LIMIT_RANGE_COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Created At", "date", "CreationTimestamp is a timestamp representing the server time when this object was created."),
];

impl KindHooks for LimitRange {
    fn defaults(&mut self) {
        for item in self.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
            if item.type_ == "Container" {
                let mut default = item.default.clone().unwrap_or_default();
                for (k, v) in item.max.iter().flatten() {
                    default.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let mut default_request = item.default_request.clone().unwrap_or_default();
                for (k, v) in default.iter().chain(item.min.iter().flatten()) {
                    default_request
                        .entry(k.clone())
                        .or_insert_with(|| v.clone());
                }
                if !default.is_empty() {
                    item.default = Some(default);
                }
                if !default_request.is_empty() {
                    item.default_request = Some(default_request);
                }
            }
            for list in [
                &mut item.max,
                &mut item.min,
                &mut item.default,
                &mut item.default_request,
                &mut item.max_limit_request_ratio,
            ] {
                canonicalize_opt_list(list);
            }
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        validate_limit_range(self, errs);
    }

    fn columns() -> &'static [Column] {
        LIMIT_RANGE_COLUMNS
    }

    fn row(&self, _ctx: &RowContext) -> Vec<Value> {
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            serde_json::to_value(&self.metadata.creation_timestamp).unwrap_or(Value::Null),
        ]
    }
}

const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const COMPUTE: &[&str] = &[
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => resource == "pods" || COMPUTE.contains(&resource),
        "BestEffort" => resource == "pods",
        _ => true,
    }
}

fn validate_quota_scopes(rq: &ResourceQuota, errs: &mut ErrorList) {
    let spec = rq.spec.clone().unwrap_or_default();
    let hard: Vec<String> = spec.hard.clone().unwrap_or_default().into_keys().collect();
    let scopes = spec.scopes.clone().unwrap_or_default();
    let sp = Path::new("spec").child("scopes");
    let scopes_json = json!(scopes);
    for scope in &scopes {
        if !SCOPES.contains(&scope.as_str()) {
            errs.push(FieldError::invalid(
                &sp,
                scopes_json.clone(),
                "unsupported scope",
            ));
        }
        for k in &hard {
            if checks::is_standard_quota_resource(k) && !scope_valid_for(scope, k) {
                errs.push(FieldError::invalid(
                    &sp,
                    scopes_json.clone(),
                    "unsupported scope applied to resource",
                ));
            }
        }
    }
    let has = |a: &str| scopes.iter().any(|x| x == a);
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if has(a) && has(b) {
            errs.push(FieldError::invalid(
                &sp,
                scopes_json.clone(),
                "conflicting scopes",
            ));
        }
    }
    let Some(sel) = &spec.scope_selector else {
        return;
    };
    let mp = Path::new("spec")
        .child("scopeSelector")
        .child("matchExpressions");
    let mut seen = BTreeSet::new();
    for req in sel.match_expressions.iter().flatten() {
        if !SCOPES.contains(&req.scope_name.as_str()) {
            errs.push(FieldError::invalid(
                mp.child("scopeName"),
                req.scope_name.as_str(),
                "unsupported scope",
            ));
        }
        let values = req.values.clone().unwrap_or_default();
        if matches!(
            req.scope_name.as_str(),
            "BestEffort"
                | "NotBestEffort"
                | "Terminating"
                | "NotTerminating"
                | "CrossNamespacePodAffinity"
        ) && req.operator != "Exists"
        {
            errs.push(FieldError::invalid(
                mp.child("operator"),
                req.operator.as_str(),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            ));
        }
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                mp.child("values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::invalid(
                mp.child("values"),
                json!(values),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => errs.push(FieldError::invalid(
                mp.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        seen.insert(req.scope_name.clone());
    }
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if seen.contains(a) && seen.contains(b) {
            errs.push(FieldError::invalid(
                &mp,
                scopes_json.clone(),
                "conflicting scopes",
            ));
        }
    }
}

static QUOTA_COLUMNS: &[Column] = &[
    Column::name(),
    Column::age(),
    Column::new("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    Column::new("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
];

impl KindHooks for ResourceQuota {
    fn defaults(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            canonicalize_opt_list(&mut spec.hard);
        }
        if let Some(status) = self.status.as_mut() {
            canonicalize_opt_list(&mut status.hard);
            canonicalize_opt_list(&mut status.used);
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let hard_path = Path::new("spec").child("hard");
        checks::resource_list(
            self.spec.as_ref().and_then(|s| s.hard.as_ref()),
            &hard_path,
            checks::quota_resource_name,
            errs,
        );
        validate_quota_scopes(self, errs);
        for (list, name) in [
            (self.status.as_ref().and_then(|s| s.hard.as_ref()), "hard"),
            (self.status.as_ref().and_then(|s| s.used.as_ref()), "used"),
        ] {
            checks::resource_list(
                list,
                &Path::new("status").child(name),
                checks::quota_resource_name,
                errs,
            );
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let scopes = |q: &ResourceQuota| -> BTreeSet<String> {
            q.spec
                .iter()
                .flat_map(|s| s.scopes.iter().flatten())
                .cloned()
                .collect()
        };
        if scopes(self) != scopes(old) {
            let new_scopes = self
                .spec
                .as_ref()
                .and_then(|s| s.scopes.clone())
                .unwrap_or_default();
            errs.push(FieldError::invalid(
                Path::new("spec").child("scopes"),
                json!(new_scopes),
                "field is immutable",
            ));
        }
    }

    fn columns() -> &'static [Column] {
        QUOTA_COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        let hard = status.hard.clone().unwrap_or_default();
        let used = status.used.clone().unwrap_or_default();
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for (name, h) in &hard {
            let u = used
                .get(name)
                .map(quantity::display)
                .unwrap_or_else(|| "0".to_string());
            let cell = format!("{name}: {u}/{}", quantity::display(h));
            let pieces: Vec<&str> = name.split('.').collect();
            if pieces.len() > 1 && pieces[0] == "limits" {
                limits.push(cell);
            } else {
                requests.push(cell);
            }
        }
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            age_cell(&self.metadata, ctx),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_limit_ranges_default_from_max_and_min() {
        let mut lr: LimitRange =
            serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}}]}}))
            .expect("lr");
        lr.defaults();
        let v = serde_json::to_value(&lr.spec).expect("json");
        assert_eq!(v["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            v["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );
        let mut errs = Vec::new();
        lr.validate(&mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn min_above_max_is_rejected() {
        let lr: LimitRange =
            serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Pod", "max": {"cpu": "1"}, "min": {"cpu": "2"}}]}}))
            .expect("lr");
        let mut errs = Vec::new();
        lr.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"]
        );
    }

    #[test]
    fn limit_ranges_print_their_creation_time() {
        let lr: LimitRange = serde_json::from_value(
            json!({"metadata": {"name": "l", "creationTimestamp": "2024-01-01T00:00:00Z"}}),
        )
        .expect("lr");
        assert_eq!(
            lr.row(&RowContext::now()),
            vec![json!("l"), json!("2024-01-01T00:00:00Z")]
        );
    }

    #[test]
    fn quota_rows_split_requests_and_limits() {
        let rq: ResourceQuota = serde_json::from_value(json!({"metadata": {"name": "q"},
            "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi"}, "used": {"pods": "3", "limits.cpu": "500m"}}})).expect("rq");
        let row = rq.row(&RowContext::now());
        assert_eq!(row[2], json!("pods: 3/10, requests.memory: 0/1Gi"));
        assert_eq!(row[3], json!("limits.cpu: 500m/2"));
    }

    #[test]
    fn quota_resources_must_be_standard_and_whole_counts() {
        let rq: ResourceQuota = serde_json::from_value(
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1500m", "widgets": "1"}}}),
        )
        .expect("rq");
        let mut errs = Vec::new();
        rq.validate(&mut errs);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![
                "spec.hard[pods]: Invalid value: \"1500m\": must be an integer",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
                "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
            ]
        );
    }
}
