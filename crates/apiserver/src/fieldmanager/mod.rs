//! Field management: `metadata.managedFields` kept up to date on every write, and server-side
//! apply (`PATCH` with `application/apply-patch+yaml`). Entry points: [`track_create`] and
//! [`track_update`] (called by the registry for creates, updates, patches and status and
//! scale writes), [`apply_object`] (the merge of an applied configuration) and
//! [`apply::patch`] (the request).
//!
//! The logic is upstream's, layer by layer (k8s.io/apimachinery managedfields and
//! sigs.k8s.io/structured-merge-diff): field sets computed from objects with the type model
//! ([`typed`]), ownership moved by comparing the old and new object ([`updater`]), metadata
//! fields never owned, at most ten `Update` managers, the kubectl `last-applied-configuration`
//! annotation kept in step for `kubectl apply --server-side` ([`lastapplied`]).
//!
//! Architecture invariant: nothing here does I/O; the registry stores what these functions
//! return.

pub mod apply;
pub mod fieldset;
mod lastapplied;
pub mod managed;
pub mod path;
pub mod typed;
mod updater;
mod zero;

use capstan_api::catalogue::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use fieldset::Set;
use managed::{Managed, ManagerId, Operation, VersionedSet};
use path::{path_string, Path, PathElement};
use updater::{UpdateError, Updater};

/// How many `Update` managers an object keeps before the oldest are merged (upstream's
/// DefaultMaxUpdateManagers).
const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager the oldest updates are merged into beyond [`MAX_UPDATE_MANAGERS`].
const ANCIENT_CHANGES: &str = "ancient-changes";

/// The manager that takes the fields of an object nobody managed before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Why a server-side apply failed. None of these are retryable as they stand: the client
/// has to change its request (or force it, for conflicts).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid object type: {0}")]
    InvalidObjectType(String),
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInPatch,
    #[error("failed to decode managed fields: {0}")]
    DecodeManagedFields(String),
    #[error("failed to create typed patch object ({object}): {errors}")]
    TypedPatch { object: String, errors: String },
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<(ManagerId, Path)>),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::InvalidObjectType(_) | Error::ManagedFieldsInPatch => {
                ApiError::bad_request(e.to_string())
            }
            // Upstream returns these as plain errors, which become 500s without a reason.
            Error::DecodeManagedFields(_) | Error::TypedPatch { .. } => {
                ApiError::new(500, "", e.to_string())
            }
            Error::Conflicts(list) => {
                let causes: Vec<Value> = list
                    .iter()
                    .map(|(id, p)| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with {}", id.describe()),
                            "field": path_string(p),
                        })
                    })
                    .collect();
                ApiError::new(409, "Conflict", e.to_string())
                    .with_details(json!({"causes": causes}))
            }
        }
    }
}

/// Upstream's conflict message: one line for one conflict, else grouped by manager.
fn conflict_message(list: &[(ManagerId, Path)]) -> String {
    if let [(id, p)] = list {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            id.describe(),
            path_string(p)
        );
    }
    let mut by_manager: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for (id, p) in list {
        by_manager
            .entry(id.describe())
            .or_default()
            .push(path_string(p));
    }
    let mut lines = Vec::new();
    for (who, paths) in by_manager {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        list.len(),
        lines.join("\n")
    )
}

/// What one endpoint's strategy resets, so nobody owns it there: status on the main
/// resource of kinds with a status subresource, spec on the status subresource.
fn ignored_fields(info: &ResourceInfo, subresource: Option<&str>) -> Set {
    let f = |s: &str| vec![PathElement::Field(s.into())];
    match subresource {
        Some("status") => Set::of(&[f("spec")]),
        _ if info.has_status() => Set::of(&[f("status")]),
        _ => Set::new(),
    }
}

/// Fields of metadata that are the server's, never a manager's.
fn stripped_fields() -> Set {
    let f = |s: &str| PathElement::Field(s.into());
    let mut paths = vec![vec![f("apiVersion")], vec![f("kind")], vec![f("metadata")]];
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        paths.push(vec![f("metadata"), f(m)]);
    }
    Set::of(&paths)
}

/// The current time as managedFields records it.
fn now() -> String {
    crate::registry::now_rfc3339()
}

/// A copy of `obj` without `metadata.managedFields` (so it never counts as a change).
fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    out
}

/// Writes `managed` into `obj` (or removes the entries when there are none).
fn encode_into(obj: &mut Value, managed: &Managed) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match managed.encode() {
        Some(entries) => {
            meta.insert("managedFields".into(), entries);
        }
        None => {
            meta.remove("managedFields");
        }
    }
}

/// The manager recorded for a write: the request's `fieldManager`, else the User-Agent up
/// to its first "/" (printable characters only, at most 128 bytes), as upstream.
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prefix = user_agent
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default();
    let mut out = String::new();
    for c in prefix.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

/// The Update half of upstream's field manager: ownership after `old` became `new`,
/// starting from `managed`. None when nothing is tracked (an existing object nobody managed).
fn update_managed(
    updater: &Updater,
    old: &Value,
    new: &Value,
    mut managed: Managed,
    id: &ManagerId,
    is_create: bool,
) -> Option<Managed> {
    // Objects that predate field tracking only start being tracked at their first apply.
    if managed.is_empty() && !is_create {
        return None;
    }
    let (fields, current) = updater.update(
        &without_managed_fields(old),
        &without_managed_fields(new),
        managed.fields,
    );
    managed.fields = fields;
    let current = current.difference(&stripped_fields());
    if !current.is_empty() {
        let set = match managed.fields.get(id) {
            Some(previous) => current.union(&previous.set),
            None => current,
        };
        managed.fields.insert(
            id.clone(),
            VersionedSet {
                set,
                api_version: updater.version(),
                applied: false,
            },
        );
        managed.times.insert(id.clone(), Some(now()));
    }
    cap_update_managers(&mut managed);
    Some(managed)
}

/// Merges the oldest `Update` managers beyond the cap into one "ancient-changes" entry per
/// API version.
fn cap_update_managers(managed: &mut Managed) {
    let mut updaters: Vec<ManagerId> = managed
        .fields
        .iter()
        .filter(|(_, vs)| !vs.applied)
        .map(|(id, _)| id.clone())
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    let seconds = |m: &Managed, id: &ManagerId| {
        m.times
            .get(id)
            .cloned()
            .flatten()
            .map(|t| managed::unix_seconds(&t))
            .unwrap_or(0)
    };
    updaters.sort_by(|a, b| {
        seconds(managed, a)
            .cmp(&seconds(managed, b))
            .then_with(|| a.cmp(b))
    });
    let mut length = updaters.len();
    let mut first_of_version: std::collections::BTreeMap<String, ManagerId> =
        std::collections::BTreeMap::new();
    for id in updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(vs) = managed.fields.get(&id).cloned() else {
            continue;
        };
        let time = managed.times.get(&id).cloned().flatten();
        let bucket = ManagerId::new(ANCIENT_CHANGES, Operation::Update, &vs.api_version, None);
        match first_of_version.get(&vs.api_version) {
            Some(first) => {
                if !managed.fields.contains_key(&bucket) {
                    if let Some(s) = managed.fields.remove(first) {
                        managed.fields.insert(bucket.clone(), s);
                    }
                }
                if let Some(b) = managed.fields.get_mut(&bucket) {
                    b.set = vs.set.union(&b.set);
                }
                managed.fields.remove(&id);
                managed.times.insert(bucket, time);
                length -= 1;
            }
            None => {
                first_of_version.insert(vs.api_version.clone(), id);
            }
        }
    }
}

/// Decodes the managed fields a write starts from, as upstream picks them: the stored ones
/// for subresources; none when the request resets them (`[]` or `[{}]`); the request's when
/// valid and not empty; else the stored ones (so clients unaware of managedFields cannot
/// drop them); nothing when those are invalid too.
fn starting_managed(old: Option<&Value>, new: &Value, subresource: Option<&str>) -> Managed {
    let stored = || {
        old.and_then(|o| o["metadata"].get("managedFields"))
            .map(|v| Managed::decode(v).unwrap_or_default())
            .unwrap_or_default()
    };
    if subresource.is_some() {
        return stored();
    }
    let sent = new["metadata"].get("managedFields");
    if managed::is_reset(sent) {
        return Managed::default();
    }
    match sent.map(Managed::decode) {
        Some(Ok(m)) if !m.is_empty() => m,
        _ => stored(),
    }
}

/// Records a create in `obj`'s managedFields: `manager` owns every field it set (defaults
/// included), compared with the empty object of the kind.
pub fn track_create(info: &'static ResourceInfo, obj: &mut Value, manager: &str) {
    let updater = Updater::new(info, ignored_fields(info, None));
    let id = ManagerId::new(manager, Operation::Update, &updater.version(), None);
    let managed = starting_managed(None, obj, None);
    let zero = zero::object(info);
    if let Some(m) = update_managed(&updater, &zero, obj, managed, &id, true) {
        encode_into(obj, &m);
    }
}

/// Records an update (PUT, non-apply PATCH, status or scale write) from `old` to `new` in
/// `new`'s managedFields.
pub fn track_update(
    info: &'static ResourceInfo,
    old: &Value,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let updater = Updater::new(info, ignored_fields(info, subresource));
    let id = ManagerId::new(manager, Operation::Update, &updater.version(), subresource);
    let managed = starting_managed(Some(old), new, subresource);
    let previous_time = managed.times.get(&id).cloned().flatten();
    match update_managed(&updater, old, new, managed, &id, false) {
        Some(mut m) => {
            // Upstream maps scale writes back onto the parent with the parent's times, so a
            // scale entry keeps the time it had (none, when new).
            if subresource == Some("scale") && m.fields.contains_key(&id) {
                m.times.insert(id.clone(), previous_time);
            }
            encode_into(new, &m)
        }
        None => {
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
    }
}

/// `group/version, Kind=kind`, as upstream prints a GroupVersionKind.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object does not exist
/// yet). Returns the object to write, managedFields included; defaults, validation and the
/// write itself are the registry's.
pub fn apply_object(
    info: &'static ResourceInfo,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
) -> Result<Value, Error> {
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = config
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != info.api_version() || kind != info.kind {
        return Err(Error::InvalidObjectType(gvk_string(api_version, kind)));
    }
    let updater = Updater::new(info, ignored_fields(info, subresource));
    let version = updater.version();
    let mut managed = match live.and_then(|l| l["metadata"].get("managedFields")) {
        Some(v) => Managed::decode(v).map_err(Error::DecodeManagedFields)?,
        None => Managed::default(),
    };
    let live_value = live
        .map(without_managed_fields)
        .unwrap_or_else(|| json!({}));
    // Whatever an object nobody managed holds belongs to "before-first-apply", so an apply
    // that changes it conflicts instead of silently taking it over.
    if managed.is_empty() && live.is_some() {
        let id = ManagerId::new(BEFORE_FIRST_APPLY, Operation::Update, &version, subresource);
        if let Some(m) = update_managed(
            &updater,
            &zero::object(info),
            &live_value,
            managed.clone(),
            &id,
            true,
        ) {
            managed = m;
        }
    }
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(Error::ManagedFieldsInPatch);
    }
    let id = ManagerId::new(manager, Operation::Apply, &version, subresource);
    let typed_error = |errors: Vec<typed::TypedError>| Error::TypedPatch {
        object: format!(
            "{}/{}; {}",
            config["metadata"]["namespace"].as_str().unwrap_or_default(),
            config["metadata"]["name"].as_str().unwrap_or_default(),
            gvk_string(api_version, kind)
        ),
        errors: typed::join_errors(&errors),
    };
    let attempt =
        |force: bool| updater.apply(&live_value, config, managed.fields.clone(), &id, force);
    let (new, fields) = match attempt(force) {
        Ok(r) => r,
        Err(UpdateError::Typed(errors)) => return Err(typed_error(errors)),
        Err(UpdateError::Conflicts(conflicts)) => {
            // kubectl's own applies may take over what its client-side applies set, as long as
            // the live values still match the last-applied configuration.
            let allowed = (manager == lastapplied::KUBECTL)
                .then(|| live.and_then(|l| lastapplied::allowed_conflicts(&updater, l)))
                .flatten();
            let remaining: Vec<(ManagerId, Path)> = match &allowed {
                Some(set) => conflicts.into_iter().filter(|(_, p)| !set.has(p)).collect(),
                None => conflicts,
            };
            if !remaining.is_empty() {
                return Err(Error::Conflicts(remaining));
            }
            match attempt(true) {
                Ok(r) => r,
                Err(UpdateError::Typed(errors)) => return Err(typed_error(errors)),
                Err(UpdateError::Conflicts(c)) => return Err(Error::Conflicts(c)),
            }
        }
    };
    managed.fields = fields;
    if let Some(vs) = managed.fields.get_mut(&id) {
        vs.set = vs.set.difference(&stripped_fields());
        if vs.set.is_empty() {
            managed.fields.remove(&id);
        }
    }
    let mut object = match new {
        Some(obj) => {
            managed.times.insert(id.clone(), Some(now()));
            obj
        }
        None => live_value,
    };
    cap_update_managers(&mut managed);
    if manager == lastapplied::KUBECTL {
        lastapplied::update_annotation(&mut object, config);
    }
    if object.get("metadata").is_none_or(|m| !m.is_object()) {
        object["metadata"] = json!({});
    }
    encode_into(&mut object, &managed);
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::catalogue;

    fn deployments() -> &'static ResourceInfo {
        catalogue::lookup("apps", "v1", "deployments").expect("deployments")
    }

    fn deployment(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"}, "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
        }})
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    #[test]
    fn a_create_records_an_update_entry_without_metadata_fields() {
        let mut obj = deployment(1);
        obj["metadata"]["labels"] = json!({"app": "a"});
        track_create(deployments(), &mut obj, "kubectl-create");
        let e = entry(&obj, "kubectl-create").expect("entry");
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert!(e["time"].is_string());
        let f = &e["fieldsV1"];
        assert_eq!(f["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
        assert!(f["f:spec"].get(".").is_none(), "{f}");
        let containers = &f["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert!(containers.get(".").is_none(), "{f}");
        assert!(containers["k:{\"name\":\"c\"}"].get(".").is_some(), "{f}");
    }

    #[test]
    fn an_update_moves_changed_fields_and_keeps_unchanged_entries() {
        let mut obj = deployment(1);
        track_create(deployments(), &mut obj, "creator");
        let mut new = obj.clone();
        new["spec"]["replicas"] = json!(4);
        track_update(deployments(), &obj, &mut new, "scaler", Some("scale"));
        let e = entry(&new, "scaler").expect("scaler");
        assert_eq!(e["subresource"], "scale");
        assert!(
            e.get("time").is_none(),
            "scale entries carry the parent's time for them: {e}"
        );
        assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        let creator = entry(&new, "creator").expect("creator");
        assert!(creator["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        // A write that changes nothing leaves managedFields as they were.
        let mut same = new.clone();
        track_update(deployments(), &new, &mut same, "other", None);
        assert_eq!(
            same["metadata"]["managedFields"],
            new["metadata"]["managedFields"]
        );
    }

    #[test]
    fn an_object_without_managed_fields_stays_untracked_on_update() {
        let old = deployment(1);
        let mut new = deployment(2);
        track_update(deployments(), &old, &mut new, "x", None);
        assert!(new["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn invalid_managed_fields_from_a_client_fall_back_to_the_stored_ones() {
        let mut obj = deployment(1);
        track_create(deployments(), &mut obj, "creator");
        let mut new = obj.clone();
        new["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
        track_update(deployments(), &obj, &mut new, "y", None);
        assert_eq!(
            new["metadata"]["managedFields"],
            obj["metadata"]["managedFields"]
        );
        let mut reset = obj.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        reset["spec"]["replicas"] = json!(3);
        track_update(deployments(), &obj, &mut reset, "y", None);
        // Reset, and an existing object with no managers stays untracked until applied to.
        assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
    }

    #[test]
    fn apply_creates_conflicts_and_forces() {
        let created = apply_object(deployments(), None, &deployment(3), "kubectl", false, None)
            .expect("applies");
        let e = entry(&created, "kubectl").expect("entry");
        assert_eq!(e["operation"], "Apply");
        assert!(e["fieldsV1"]["f:metadata"].is_null(), "{e}");
        let mut live = created.clone();
        live["metadata"]["uid"] = json!("u");
        let mut changed = live.clone();
        changed["spec"]["replicas"] = json!(7);
        track_update(deployments(), &live, &mut changed, "kubectl-edit", None);
        let err = apply_object(
            deployments(),
            Some(&changed),
            &deployment(3),
            "kubectl",
            false,
            None,
        )
        .expect_err("conflict");
        let api: ApiError = err.into();
        assert_eq!(api.code, 409);
        assert_eq!(api.reason, "Conflict");
        assert_eq!(api.message, "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas");
        let causes = &api.details.expect("details")["causes"];
        assert_eq!(
            causes,
            &json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using apps/v1", "field": ".spec.replicas"}])
        );
        let forced = apply_object(
            deployments(),
            Some(&changed),
            &deployment(3),
            "kubectl",
            true,
            None,
        )
        .expect("forced");
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(entry(&forced, "kubectl-edit").is_none());
    }

    #[test]
    fn apply_rejects_wrong_kinds_and_managed_fields() {
        let mut wrong = deployment(1);
        wrong["apiVersion"] = json!("apps/v1beta1");
        let e: ApiError = apply_object(deployments(), None, &wrong, "m", false, None)
            .expect_err("wrong")
            .into();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "invalid object type: apps/v1beta1, Kind=Deployment")
        );
        let mut mf = deployment(1);
        mf["metadata"]["managedFields"] = json!([]);
        let e: ApiError = apply_object(deployments(), None, &mf, "m", false, None)
            .expect_err("mf")
            .into();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "metadata.managedFields must be nil")
        );
        let mut unknown = deployment(1);
        unknown["spec"]["foo"] = json!(1);
        let e: ApiError = apply_object(deployments(), None, &unknown, "m", false, None)
            .expect_err("unknown")
            .into();
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "failed to create typed patch object (default/d; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema"
        );
    }

    #[test]
    fn conflict_messages_group_several_conflicts_by_manager() {
        let a = ManagerId::new("a", Operation::Update, "v1", None);
        let f = |s: &str| PathElement::Field(s.into());
        let msg = conflict_message(&[(a.clone(), vec![f("x")]), (a, vec![f("y")])]);
        assert_eq!(
            msg,
            "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .x\n- .y"
        );
    }

    #[test]
    fn managers_come_from_the_user_agent_when_not_given() {
        assert_eq!(manager_or_user_agent(Some("m"), Some("kubectl/v1.32")), "m");
        assert_eq!(
            manager_or_user_agent(None, Some("OpenAPI-Generator/31.0.0/python")),
            "OpenAPI-Generator"
        );
        assert_eq!(manager_or_user_agent(Some(""), None), "");
    }

    #[test]
    fn update_managers_beyond_ten_merge_into_ancient_changes() {
        let mut obj = deployment(0);
        track_create(deployments(), &mut obj, "m0");
        for i in 1..=11 {
            let mut new = obj.clone();
            new["spec"]["template"]["metadata"]["labels"][format!("l{i}")] = json!("x");
            track_update(deployments(), &obj, &mut new, &format!("m{i}"), None);
            obj = new;
        }
        let entries = obj["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(entries.len(), 10, "{entries:?}");
        assert!(entries.iter().any(|e| e["manager"] == ANCIENT_CHANGES));
    }
}
