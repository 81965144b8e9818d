//! Pods: upstream's defaults, create-time status and the admission defaults capstan applies
//! itself (service account, priority, default toleration seconds), validation including the
//! update rules, `kubectl get pods` columns and the pod field selectors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};

use super::quantity::{canonicalize_opt_list, Quantity};
use super::{age_cell, s};
use crate::field_error::{ErrorList, FieldError, Path};
use crate::kinds::pod_spec::{self, Options};
use crate::strategy::KindHooks;
use crate::table::{human_duration_since, Column, RowContext};

/// The QoS class upstream computes from a pod's requests and limits (GetPodQOS).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        for (name, q) in pod_spec::parsed(r.requests.as_ref()) {
            if (name == "cpu" || name == "memory") && q > Quantity::ZERO {
                let sum = requests.get(&name).map(|prev| q.add(prev)).unwrap_or(q);
                requests.insert(name, sum);
            }
        }
        let mut found = (false, false);
        for (name, q) in pod_spec::parsed(r.limits.as_ref()) {
            if (name == "cpu" || name == "memory") && q > Quantity::ZERO {
                if name == "cpu" {
                    found.0 = true;
                } else {
                    found.1 = true;
                }
                let sum = limits.get(&name).map(|prev| q.add(prev)).unwrap_or(q);
                limits.insert(name, sum);
            }
        }
        if found != (true, true) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// Priority values of the built-in priority classes (upstream's scheduling API defaults).
fn system_priority(class: &str) -> Option<i32> {
    match class {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

/// The priority the Priority admission plugin computes, when the class is known.
fn computed_priority(spec: &PodSpec) -> Option<i32> {
    match spec.priority_class_name.as_deref().unwrap_or("") {
        "" => Some(0),
        class => system_priority(class),
    }
}

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// The DefaultTolerationSeconds admission plugin: tolerate not-ready and unreachable nodes
/// for 300s unless the pod already tolerates them.
fn add_default_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let tolerates = |key: &str, list: &[Toleration]| {
        list.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or("");
            let e = t.effect.as_deref().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        if !tolerates(key, tolerations) {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                toleration_seconds: Some(300),
                ..Default::default()
            });
        }
    }
}

/// What capstan does in place of upstream's ServiceAccount, Priority and
/// DefaultTolerationSeconds admission plugins on pod create.
fn admit(pod: &mut Pod) {
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let spec = pod.spec.get_or_insert_with(Default::default);
    if !mirror && s(&spec.service_account_name).is_empty() {
        spec.service_account_name = Some("default".to_string());
    }
    spec.service_account = spec.service_account_name.clone().filter(|n| !n.is_empty());
    if let Some(p) = computed_priority(spec) {
        if spec.priority.is_none() {
            spec.priority = Some(p);
        }
        if spec.preemption_policy.is_none() {
            spec.preemption_policy = Some("PreemptLowerPriority".to_string());
        }
    }
    add_default_tolerations(spec);
}

/// Upstream's conversion keeps podIP/podIPs and hostIP/hostIPs in step: the plural lists win,
/// and a lone singular value seeds its list.
fn sync_ips(status: &mut PodStatus) {
    match status.pod_ips.as_deref().and_then(|l| l.first()) {
        Some(first) => status.pod_ip = Some(first.ip.clone()),
        None => {
            if let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty()) {
                status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP { ip }]);
            }
        }
    }
    match status.host_ips.as_deref().and_then(|l| l.first()) {
        Some(first) => status.host_ip = Some(first.ip.clone()),
        None => {
            if let Some(ip) = status.host_ip.clone().filter(|ip| !ip.is_empty()) {
                status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP { ip }]);
            }
        }
    }
}

fn default_status(status: &mut PodStatus) {
    sync_ips(status);
    for list in [
        status.container_statuses.as_mut(),
        status.init_container_statuses.as_mut(),
        status.ephemeral_container_statuses.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        for cs in list {
            // Go's non-pointer container states always serialize, as {} when empty.
            cs.state.get_or_insert_with(Default::default);
            cs.last_state.get_or_insert_with(Default::default);
            canonicalize_opt_list(&mut cs.allocated_resources);
            if let Some(r) = cs.resources.as_mut() {
                canonicalize_opt_list(&mut r.limits);
                canonicalize_opt_list(&mut r.requests);
            }
        }
    }
}

/// The fields a pod update may change, as upstream lists them in its error.
const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A short description of what differs between two specs, in the spirit of upstream's cmp.Diff.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        match (o.get(k), n.get(k)) {
            (a, b) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    out.push_str(&format!("- \t{k}: {a},\n"));
                }
                if let Some(b) = b {
                    out.push_str(&format!("+ \t{k}: {b},\n"));
                }
            }
        }
    }
    out.push_str("  }\n");
    out
}

fn validate_pod_update(new: &Pod, old: &Pod, errs: &mut ErrorList) {
    let spec_path = Path::new("spec");
    let new_spec = new.spec.clone().unwrap_or_default();
    let old_spec = old.spec.clone().unwrap_or_default();
    for (n, o, name) in [
        (&new_spec.containers, &old_spec.containers, "containers"),
        (
            &new_spec.init_containers.clone().unwrap_or_default(),
            &old_spec.init_containers.clone().unwrap_or_default(),
            "initContainers",
        ),
    ] {
        if n.len() != o.len() {
            errs.push(FieldError::forbidden(
                spec_path.child(name),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    match (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        (Some(n), old) => {
            if !(0..=i64::from(i32::MAX)).contains(&n) {
                errs.push(FieldError::invalid(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    super::checks::inclusive_range(0, i64::from(i32::MAX)),
                ));
                return;
            }
            if old.is_some_and(|o| o < n) {
                errs.push(FieldError::invalid(
                    spec_path.child("activeDeadlineSeconds"),
                    n,
                    "must be less than or equal to previous value",
                ));
                return;
            }
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            spec_path.child("activeDeadlineSeconds"),
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }
    let new_tol = new_spec.tolerations.clone().unwrap_or_default();
    for old_t in old_spec.tolerations.iter().flatten() {
        let found = new_tol.iter().any(|t| {
            let mut o = old_t.clone();
            o.toleration_seconds = t.toleration_seconds;
            &o == t
        });
        if !found {
            errs.push(FieldError::forbidden(
                spec_path.child("tolerations"),
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    let old_gates: Vec<&str> = old_spec
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, g) in new_spec.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(&g.name.as_str()) {
            errs.push(FieldError::forbidden(
                spec_path.child("schedulingGates").index(i).child("name"),
                format!(
                    "only deletion is allowed, but found new scheduling gate '{}'",
                    g.name
                ),
            ));
        }
    }
    if new_spec == old_spec {
        return;
    }
    let old_qos = old
        .status
        .as_ref()
        .and_then(|st| st.qos_class.clone())
        .unwrap_or_else(|| qos_class(&old_spec).to_string());
    if old_qos != qos_class(&new_spec) {
        let new_qos = new
            .status
            .as_ref()
            .and_then(|st| st.qos_class.clone())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            "metadata",
            new_qos,
            "Pod QoS is immutable",
        ));
    }
    let mut munged = new_spec.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image = o.image.clone();
    }
    for (c, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_spec.init_containers.iter().flatten())
    {
        c.image = o.image.clone();
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.scheduling_gates = old_spec.scheduling_gates.clone();
    munged.tolerations = old_spec.tolerations.clone();
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    if !old_gates.is_empty() {
        // Gated pods may gain node selector entries and node affinity.
        munged.node_selector = old_spec.node_selector.clone();
        if let Some(a) = munged.affinity.as_mut() {
            a.node_affinity = old_spec
                .affinity
                .as_ref()
                .and_then(|oa| oa.node_affinity.clone());
        }
        if munged.affinity.as_ref().is_some_and(|a| {
            a.pod_affinity.is_none() && a.pod_anti_affinity.is_none() && a.node_affinity.is_none()
        }) && old_spec.affinity.is_none()
        {
            munged.affinity = None;
        }
    }
    if munged != old_spec {
        let diff = spec_diff(&to_value(&old_spec), &to_value(&munged));
        errs.push(FieldError::forbidden(
            spec_path,
            format!("pod updates may not change fields other than {UPDATABLE_FIELDS}\n{diff}"),
        ));
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// ---- printing ------------------------------------------------------------------------------

static COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    Column::new("Status", "string", "The aggregate status of the containers in this pod."),
    Column::new(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    Column::age(),
    Column::new("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
    Column::new("Node", "string", "NodeName indicates in which node this pod is scheduled.").wide(),
    Column::new("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.").wide(),
    Column::new("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
];

fn later(a: Option<Time>, b: Option<&Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b.clone() } else { a }),
        (None, Some(b)) => Some(b.clone()),
        (a, None) => a,
    }
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The STATUS, READY and RESTARTS cells as upstream's printPod computes them.
fn status_cells(pod: &Pod, ctx: &RowContext) -> (String, String, String) {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let conditions = status.conditions.clone().unwrap_or_default();
    let phase = s(&status.phase).to_string();
    let mut reason = if s(&status.reason).is_empty() {
        phase.clone()
    } else {
        s(&status.reason).to_string()
    };
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && s(&c.reason) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let total = spec.containers.len()
        + init_specs
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<Time> = None;
    let mut last_sidecar_restart: Option<Time> = None;
    let mut initializing = false;
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    for (i, cs) in init_statuses.iter().enumerate() {
        restarts += i64::from(cs.restart_count);
        let last_term = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if let Some(t) = last_term {
            last_restart = later(last_restart, t.finished_at.as_ref());
        }
        let sidecar = restartable(&cs.name);
        if sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            if let Some(t) = last_term {
                last_sidecar_restart = later(last_sidecar_restart, t.finished_at.as_ref());
            }
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = if s(&t.reason).is_empty() {
                match t.signal.filter(|sig| *sig != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{}", t.exit_code),
                }
            } else {
                format!("Init:{}", s(&t.reason))
            };
        } else if let Some(w) = state
            .waiting
            .as_ref()
            .filter(|w| !s(&w.reason).is_empty() && s(&w.reason) != "PodInitializing")
        {
            reason = format!("Init:{}", s(&w.reason));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }
    if !initializing || condition_true(&conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            if let Some(t) = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                last_restart = later(last_restart, t.finished_at.as_ref());
            }
            let state = cs.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting.as_ref().filter(|w| !s(&w.reason).is_empty()) {
                reason = s(&w.reason).to_string();
            } else if let Some(t) = state.terminated.as_ref() {
                reason = if !s(&t.reason).is_empty() {
                    s(&t.reason).to_string()
                } else {
                    match t.signal.filter(|sig| *sig != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", t.exit_code),
                    }
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(&conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        if s(&status.reason) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_string();
        }
    }
    let restarts_cell = match &last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration_since(t.0, ctx.now))
        }
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts_cell)
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

impl KindHooks for Pod {
    const FIELD_SELECTORS: &'static [&'static str] = &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
        "spec.host",
    ];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        pod_spec::default_pod_only(spec);
        pod_spec::default_pod_spec(spec);
        if let Some(status) = self.status.as_mut() {
            default_status(status);
        }
    }

    fn prepare_for_create(&mut self) {
        admit(self);
        let spec = self.spec.clone().unwrap_or_default();
        let mut status = PodStatus {
            phase: Some("Pending".to_string()),
            qos_class: Some(qos_class(&spec).to_string()),
            ..Default::default()
        };
        if !spec
            .scheduling_gates
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            status.conditions = Some(vec![PodCondition {
                type_: "PodScheduled".to_string(),
                status: "False".to_string(),
                reason: Some("SchedulingGated".to_string()),
                message: Some(
                    "Scheduling is blocked due to non-empty scheduling gates".to_string(),
                ),
                ..Default::default()
            }]);
        }
        self.status = Some(status);
    }

    fn validate(&self, errs: &mut ErrorList) {
        let spec = self.spec.clone().unwrap_or_default();
        let spec_path = Path::new("spec");
        if let Some(a) = &self.metadata.annotations {
            pod_spec::pod_annotations(
                a,
                Some(&spec),
                &Path::new("metadata").child("annotations"),
                errs,
            );
        }
        pod_spec::validate_spec(
            &spec,
            Some(&self.metadata),
            &spec_path,
            Options {
                resource_is_pod: true,
            },
            errs,
        );
        if s(&spec.service_account_name).is_empty() {
            for (vi, v) in spec.volumes.iter().flatten().enumerate() {
                for (si, src) in v
                    .projected
                    .iter()
                    .flat_map(|p| p.sources.iter().flatten())
                    .enumerate()
                {
                    if src.service_account_token.is_some() {
                        errs.push(FieldError::forbidden(
                            spec_path
                                .child("volumes")
                                .index(vi)
                                .child("projected")
                                .child("sources")
                                .index(si)
                                .child("serviceAccountToken"),
                            "must not be specified when serviceAccountName is not set",
                        ));
                    }
                }
            }
        }
        for (i, c) in spec.containers.iter().enumerate() {
            pod_spec::image_whitespace(c, &spec_path.child("containers").index(i), errs);
        }
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            pod_spec::image_whitespace(c, &spec_path.child("initContainers").index(i), errs);
        }
        // A new object carries no resourceVersion yet; only creates get upstream's
        // ValidatePodCreate checks.
        let creating = s(&self.metadata.resource_version).is_empty();
        if creating
            && !spec
                .ephemeral_containers
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            errs.push(FieldError::forbidden(
                spec_path.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !s(&spec.node_name).is_empty()
            && !spec
                .scheduling_gates
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            errs.push(FieldError::forbidden(
                spec_path.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        if let (Some(p), Some(computed)) = (spec.priority, computed_priority(&spec)) {
            if p != computed {
                errs.push(FieldError::forbidden(
                    spec_path.child("priority"),
                    format!("the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"),
                ));
            }
            if let Some(pp) = spec
                .preemption_policy
                .as_deref()
                .filter(|pp| *pp != "PreemptLowerPriority")
            {
                if pp == "Never" {
                    errs.push(FieldError::forbidden(
                        spec_path.child("preemptionPolicy"),
                        format!("the string value of PreemptionPolicy ({pp}) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"),
                    ));
                }
            }
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        validate_pod_update(self, old, errs);
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let (ready, reason, restarts) = status_cells(self, ctx);
        let ip = status
            .pod_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .map(|ip| ip.ip.as_str())
            .unwrap_or("");
        let gates = spec.readiness_gates.clone().unwrap_or_default();
        let gates_cell = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let conditions = status.conditions.clone().unwrap_or_default();
            let ok = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .find(|c| c.type_ == g.condition_type)
                        .is_some_and(|c| c.status == "True")
                })
                .count();
            format!("{ok}/{}", gates.len())
        };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(ready),
            json!(reason),
            json!(restarts),
            age_cell(&self.metadata, ctx),
            json!(or_none(ip)),
            json!(or_none(s(&spec.node_name))),
            json!(or_none(s(&status.nominated_node_name))),
            json!(gates_cell),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let v = match field {
            "spec.nodeName" | "spec.host" => s(&spec.node_name).to_string(),
            "spec.restartPolicy" => s(&spec.restart_policy).to_string(),
            "spec.schedulerName" => s(&spec.scheduler_name).to_string(),
            "spec.serviceAccountName" => s(&spec.service_account_name).to_string(),
            "spec.hostNetwork" => spec.host_network.unwrap_or(false).to_string(),
            "status.phase" => s(&status.phase).to_string(),
            "status.podIP" => status
                .pod_ips
                .iter()
                .flatten()
                .next()
                .map(|i| i.ip.clone())
                .unwrap_or_default(),
            // Accepted by upstream's field label conversion but not in its selectable set,
            // so it always reads as empty.
            "status.podIPs" => String::new(),
            "status.nominatedNodeName" => s(&status.nominated_node_name).to_string(),
            _ => return None,
        };
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Strategy, Typed};
    use jiff::Timestamp;

    fn ctx() -> RowContext {
        RowContext {
            now: "2024-01-01T01:00:00Z".parse::<Timestamp>().expect("time"),
        }
    }

    fn created(v: Value) -> Value {
        let s: &dyn Strategy = &Typed::<Pod>::NEW;
        let mut unknown = Vec::new();
        let mut obj = s.decode(v, &mut unknown).expect("decodes");
        assert!(unknown.is_empty(), "{unknown:?}");
        s.apply_defaults(&mut obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({}));
        }
        s.prepare_for_create(&mut obj);
        obj
    }

    fn errors(v: Value) -> Vec<String> {
        let s: &dyn Strategy = &Typed::<Pod>::NEW;
        let obj = created(v);
        let mut errs = Vec::new();
        s.validate(&obj, &mut errs);
        errs.iter().map(ToString::to_string).collect()
    }

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
            "status": status
        }))
        .expect("pod")
    }

    fn cells(p: &Pod) -> Vec<Value> {
        p.row(&ctx())
    }

    #[test]
    fn the_example_pod_reads_back_as_upstream_stores_it() {
        // examples/pod.yaml, as `kubectl create -f` sends it.
        let obj = created(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-pod", "namespace": "default"},
            "spec": {"containers": [{"name": "my-container", "image": "nginx"}]}}),
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "my-pod", "namespace": "default"},
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
                    "enableServiceLinks": true,
                    "preemptionPolicy": "PreemptLowerPriority",
                    "priority": 0,
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "serviceAccount": "default",
                    "serviceAccountName": "default",
                    "terminationGracePeriodSeconds": 30,
                    "tolerations": [
                        {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                        {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
                    ]
                },
                "status": {"phase": "Pending", "qosClass": "BestEffort"}
            })
        );
        let mut errs = Vec::new();
        Typed::<Pod>::NEW.validate(&obj, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn qos_class_follows_requests_and_limits() {
        let spec = |res: Value| -> PodSpec {
            serde_json::from_value(
                json!({"containers": [{"name": "c", "image": "i", "resources": res}]}),
            )
            .expect("spec")
        };
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(
                json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}})
            )),
            "Guaranteed"
        );
        let obj = created(json!({"metadata": {"name": "g", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}));
        assert_eq!(obj["status"]["qosClass"], "Guaranteed");
        assert_eq!(
            obj["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
    }

    #[test]
    fn existing_tolerations_suppress_the_defaults() {
        let obj = created(
            json!({"metadata": {"name": "t", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"operator": "Exists"}]}}),
        );
        assert_eq!(obj["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn a_missing_image_is_reported_like_upstream() {
        assert_eq!(
            errors(
                json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c"}]}})
            ),
            vec!["spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create() {
        assert_eq!(
            errors(
                json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "i"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}})
            ),
            vec!["spec.ephemeralContainers: Forbidden: cannot be set on create"]
        );
    }

    #[test]
    fn a_user_set_priority_is_forbidden() {
        assert_eq!(
            errors(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"priority": 5, "containers": [{"name": "c", "image": "i"}]}})),
            vec!["spec.priority: Forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"]
        );
    }

    #[test]
    fn host_network_pods_default_host_ports() {
        let obj = created(
            json!({"metadata": {"name": "h", "namespace": "d"}, "spec": {"hostNetwork": true,
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert_eq!(
            obj["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn only_images_may_change_on_update() {
        let s: &dyn Strategy = &Typed::<Pod>::NEW;
        let old = created(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        );
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        let mut errs = Vec::new();
        s.validate_update(&new, &old, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        new["spec"]["restartPolicy"] = json!("Never");
        s.validate_update(&new, &old, &mut errs);
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
            "{msg}"
        );
        assert!(msg.contains("- \trestartPolicy: \"Always\""), "{msg}");
    }

    #[test]
    fn an_update_may_not_set_the_node_name() {
        // Binding goes through pods/binding, which the server keeps out of these rules.
        let s: &dyn Strategy = &Typed::<Pod>::NEW;
        let old = created(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        );
        let mut bound = old.clone();
        bound["spec"]["nodeName"] = json!("n1");
        let mut errs = Vec::new();
        s.validate_update(&bound, &old, &mut errs);
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn adding_a_container_on_update_is_forbidden() {
        let s: &dyn Strategy = &Typed::<Pod>::NEW;
        let old = created(
            json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        );
        let mut new = old.clone();
        new["spec"]["containers"] =
            json!([{"name": "c", "image": "nginx"}, {"name": "d", "image": "nginx"}]);
        let mut errs = Vec::new();
        s.validate_update(&new, &old, &mut errs);
        assert_eq!(
            errs[0].to_string(),
            "spec.containers: Forbidden: pod updates may not add or remove containers"
        );
    }

    #[test]
    fn a_running_ready_pod_prints_running() {
        let p = pod(
            json!({"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-01-01T00:00:10Z"}}}]}),
        );
        assert_eq!(
            cells(&p),
            vec![
                json!("p"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn a_crashing_pod_shows_the_waiting_reason_and_restart_age() {
        let p = pod(json!({"phase": "Running",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-01-01T00:55:00Z"}}}]}));
        let c = cells(&p);
        assert_eq!(c[1], json!("0/1"));
        assert_eq!(c[2], json!("CrashLoopBackOff"));
        assert_eq!(c[3], json!("3 (5m ago)"));
    }

    #[test]
    fn an_initializing_pod_shows_init_progress() {
        let mut p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}],
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = Some(
                serde_json::from_value(
                    json!([{"name": "i1", "image": "i"}, {"name": "i2", "image": "i"}]),
                )
                .expect("ic"),
            );
        }
        let c = cells(&p);
        assert_eq!(c[2], json!("Init:1/2"));
        assert_eq!(c[1], json!("0/1"));
    }

    #[test]
    fn a_failed_init_container_shows_its_reason() {
        let mut p = pod(json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "i1", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}));
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers =
                Some(serde_json::from_value(json!([{"name": "i1", "image": "i"}])).expect("ic"));
        }
        let c = cells(&p);
        assert_eq!(c[2], json!("Init:CrashLoopBackOff"));
        assert_eq!(c[3], json!("2"));
    }

    #[test]
    fn a_deleted_pod_prints_terminating() {
        let mut p = pod(json!({"phase": "Running"}));
        p.metadata.deletion_timestamp = Some(Time("2024-01-01T00:59:00Z".parse().expect("t")));
        assert_eq!(cells(&p)[2], json!("Terminating"));
    }

    #[test]
    fn a_completed_pod_with_a_running_container_is_not_ready() {
        let p = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "image": "i", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(cells(&p)[2], json!("NotReady"));
    }

    #[test]
    fn pod_ip_and_pod_ips_are_kept_in_step() {
        let mut p = pod(
            json!({"phase": "Running", "podIP": "10.42.0.7", "hostIPs": [{"ip": "192.168.1.10"}]}),
        );
        p.defaults();
        let st = serde_json::to_value(&p.status).expect("json");
        assert_eq!(st["podIPs"], json!([{"ip": "10.42.0.7"}]));
        assert_eq!(st["hostIP"], "192.168.1.10");
        assert_eq!(cells(&p)[5], json!("10.42.0.7"));
    }

    #[test]
    fn field_values_match_upstream_labels() {
        let p = pod(json!({"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}]}));
        assert_eq!(p.field_value("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(p.field_value("spec.host").as_deref(), Some("n1"));
        assert_eq!(p.field_value("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(p.field_value("status.phase").as_deref(), Some("Running"));
        assert_eq!(p.field_value("status.podIP").as_deref(), Some("10.42.0.5"));
        assert_eq!(p.field_value("spec.restartPolicy").as_deref(), Some(""));
        assert_eq!(p.field_value("spec.nope"), None);
    }
}
