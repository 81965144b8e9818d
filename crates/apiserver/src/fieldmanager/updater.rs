//! Ownership bookkeeping for one write, as structured-merge-diff's `Updater` does it:
//! [`Updater::update`] for writes that replace the object (create, update, patch) and
//! [`Updater::apply`] for server-side apply (merge, prune what the applier dropped, detect
//! conflicts with other managers).
//!
//! Managers that last wrote with another API version are compared in that version (HPA v1 and
//! v2 share storage); a version the server no longer serves drops the manager, as upstream.

use std::collections::BTreeMap;

use capstan_api::catalogue::{self, ResourceInfo};
use capstan_openapi::Model;
use serde_json::Value;

use super::fieldset::Set;
use super::managed::{ManagerId, VersionedSet};
use super::path::Path;
use super::typed::{self, Comparison, Schema, TypedError};

/// Everybody's fields, by manager.
pub type ManagedFields = BTreeMap<ManagerId, VersionedSet>;

/// Why an ownership update failed. Neither is retryable as is: the applier must force, drop
/// the fields, or fix its configuration.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Fields the applier would change are owned by other managers (409 unless forced).
    #[error("{} conflicting field(s)", .0.len())]
    Conflicts(Vec<(ManagerId, Path)>),
    /// The applied configuration does not fit the schema.
    #[error("{}", typed::join_errors(.0))]
    Typed(Vec<TypedError>),
}

/// The resource being written and its versions.
pub struct Updater {
    info: &'static ResourceInfo,
    /// Fields the strategy resets for this endpoint (status on the main resource, spec on
    /// status): never owned, never conflicting.
    ignored: Set,
}

impl Updater {
    pub fn new(info: &'static ResourceInfo, ignored: Set) -> Self {
        Updater { info, ignored }
    }

    pub fn version(&self) -> String {
        self.info.api_version()
    }

    /// The schema of the request's version.
    pub fn schema(&self) -> Schema {
        schema_of(self.info)
    }

    /// `obj` (in the request's version) in another served version of the same resource, with
    /// that version's schema; None when the version is not served.
    fn convert(&self, obj: &Value, api_version: &str) -> Option<(Value, Schema)> {
        if api_version == self.version() {
            return Some((obj.clone(), self.schema()));
        }
        let storage = self.info.storage_resource();
        let target = catalogue::all()
            .iter()
            .find(|r| r.api_version() == api_version && r.storage_resource() == storage)?;
        let stored = match self.info.conversion {
            Some(c) => (c.to_storage)(obj.clone()),
            None => obj.clone(),
        };
        let converted = match target.conversion {
            Some(c) => (c.from_storage)(stored),
            None => stored,
        };
        Some((converted, schema_of(target)))
    }

    /// The comparison of `old` and `new` in `version`, without ignored fields; cached per
    /// version. None when the version is not served.
    fn comparison<'c>(
        &self,
        cache: &'c mut BTreeMap<String, Option<Comparison>>,
        old: &Value,
        new: &Value,
        version: &str,
    ) -> Option<&'c Comparison> {
        cache
            .entry(version.to_string())
            .or_insert_with(|| {
                let (o, schema) = self.convert(old, version)?;
                let (n, _) = self.convert(new, version)?;
                let c = typed::compare(&o, &n, schema);
                // Reset fields are only known for the request's version.
                Some(if version == self.version() {
                    c.exclude(&self.ignored)
                } else {
                    c
                })
            })
            .as_ref()
    }

    /// Takes changed fields away from every manager but `workflow`; with `force` false,
    /// changed fields another manager owns are conflicts instead.
    fn update_managers(
        &self,
        old: &Value,
        new: &Value,
        mut managers: ManagedFields,
        workflow: &ManagerId,
        force: bool,
    ) -> Result<(ManagedFields, Comparison), UpdateError> {
        let mut cache = BTreeMap::new();
        let own = self.version();
        let own_comparison = self
            .comparison(&mut cache, old, new, &own)
            .cloned()
            .unwrap_or_default();
        let mut conflicts: Vec<(ManagerId, Set)> = Vec::new();
        let mut removed: Vec<(ManagerId, Set)> = Vec::new();
        let mut dropped = Vec::new();
        for (id, vs) in &managers {
            if id == workflow {
                continue;
            }
            let Some(c) = self.comparison(&mut cache, old, new, &vs.api_version) else {
                dropped.push(id.clone());
                continue;
            };
            let conflict = vs.set.intersection(&c.modified.union(&c.added));
            if !conflict.is_empty() {
                conflicts.push((id.clone(), conflict));
            }
            if !c.removed.is_empty() {
                removed.push((id.clone(), c.removed.clone()));
            }
        }
        for id in dropped {
            managers.remove(&id);
        }
        if !force && !conflicts.is_empty() {
            let mut list = Vec::new();
            for (id, set) in conflicts {
                for p in set.paths() {
                    list.push((id.clone(), p));
                }
            }
            return Err(UpdateError::Conflicts(list));
        }
        for (id, set) in conflicts.into_iter().chain(removed) {
            if let Some(vs) = managers.get_mut(&id) {
                vs.set = vs.set.difference(&set);
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok((managers, own_comparison))
    }

    /// Ownership after a write that replaced `old` with `new`: every manager loses what
    /// changed or went away; the returned set is what the writer changed (added or modified,
    /// without reset fields), for the caller to add to the writer's entry.
    pub fn update(
        &self,
        old: &Value,
        new: &Value,
        managers: ManagedFields,
    ) -> (ManagedFields, Set) {
        // The writer is a manager nobody is yet, so that its own old entry loses removed
        // fields like everyone else's (upstream's "current-operation").
        let current = ManagerId::new(
            "current-operation",
            super::managed::Operation::Update,
            "",
            None,
        );
        match self.update_managers(old, new, managers, &current, true) {
            Ok((managers, c)) => {
                let set = c
                    .modified
                    .union(&c.added)
                    .recursive_difference(&self.ignored);
                (managers, set)
            }
            // Forced updates never conflict.
            Err(_) => (ManagedFields::new(), Set::new()),
        }
    }

    /// Server-side apply of `config` onto `live`: the merged and pruned object (None when it
    /// equals `live`) and the new ownership.
    pub fn apply(
        &self,
        live: &Value,
        config: &Value,
        mut managers: ManagedFields,
        manager: &ManagerId,
        force: bool,
    ) -> Result<(Option<Value>, ManagedFields), UpdateError> {
        let schema = self.schema();
        let mut errors = Vec::new();
        let set = typed::to_field_set(config, schema, &mut errors);
        if !errors.is_empty() {
            return Err(UpdateError::Typed(errors));
        }
        let merged = typed::merge(live, config, schema).map_err(UpdateError::Typed)?;
        let last = managers.get(manager).cloned();
        managers.insert(
            manager.clone(),
            VersionedSet {
                set: set.recursive_difference(&self.ignored),
                api_version: self.version(),
                applied: true,
            },
        );
        let new = match &last {
            Some(last) if !last.set.is_empty() => self.prune(&merged, &managers, last),
            _ => merged,
        };
        let (managers, _) = self.update_managers(live, &new, managers, manager, force)?;
        let changed = !typed::values_equal(live, &new);
        Ok((changed.then_some(new), managers))
    }

    /// Removes what the applier applied last time and no longer applies, unless someone
    /// (the applier's new configuration included) still owns it.
    fn prune(&self, merged: &Value, managers: &ManagedFields, last: &VersionedSet) -> Value {
        let Some((converted, schema)) = self.convert(merged, &last.api_version) else {
            return merged.clone();
        };
        let named = |s: &Set| typed::ensure_named_fields(s, Some(schema));
        let pruned = typed::remove_items(&converted, &named(&last.set), schema);
        let pruned = self.add_back_owned(&converted, pruned, &last.api_version, managers);
        let pruned = add_back_dangling(&converted, &pruned, &last.set, schema);
        if last.api_version == self.version() {
            return pruned;
        }
        // Back to the request's version.
        let storage_info = catalogue::all().iter().find(|r| {
            r.api_version() == last.api_version
                && r.storage_resource() == self.info.storage_resource()
        });
        match storage_info {
            Some(from) => {
                let stored = match from.conversion {
                    Some(c) => (c.to_storage)(pruned),
                    None => pruned,
                };
                match self.info.conversion {
                    Some(c) => (c.from_storage)(stored),
                    None => stored,
                }
            }
            None => merged.clone(),
        }
    }

    /// Puts back into `pruned` whatever any manager owns (compared in each manager's version;
    /// only the pruned version is handled here, as the others rarely differ).
    fn add_back_owned(
        &self,
        merged: &Value,
        pruned: Value,
        version: &str,
        managers: &ManagedFields,
    ) -> Value {
        let mut owned = Set::new();
        for vs in managers.values().filter(|vs| vs.api_version == version) {
            owned = owned.union(&vs.set);
        }
        let Some((_, schema)) = self.convert(merged, version) else {
            return pruned;
        };
        let named = |s: &Set| typed::ensure_named_fields(s, Some(schema));
        let mut ignore = Vec::new();
        let merged_set = typed::to_field_set(merged, schema, &mut ignore);
        let pruned_set = typed::to_field_set(&pruned, schema, &mut ignore);
        let remove = named(&merged_set).difference(&named(&pruned_set).union(&named(&owned)));
        typed::remove_items(merged, &remove, schema)
    }
}

/// Removes from `merged` only what the pruning removed *and* the applier owned last time:
/// fields nobody owns (defaults, other writers') stay.
fn add_back_dangling(merged: &Value, pruned: &Value, last: &Set, schema: Schema) -> Value {
    let named = |s: &Set| typed::ensure_named_fields(s, Some(schema));
    let mut ignore = Vec::new();
    let pruned_set = named(&typed::to_field_set(pruned, schema, &mut ignore));
    let merged_set = named(&typed::to_field_set(merged, schema, &mut ignore));
    let remove = merged_set
        .difference(&pruned_set)
        .intersection(&named(last));
    typed::remove_items(merged, &remove, schema)
}

fn schema_of(info: &ResourceInfo) -> Schema {
    Model::for_kind(info.group, info.version, info.kind)
        .map(Schema::Typed)
        .unwrap_or(Schema::Deduced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldmanager::managed::Operation;
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        catalogue::lookup("apps", "v1", "deployments").expect("deployments")
    }

    fn updater() -> Updater {
        Updater::new(
            deployments(),
            Set::of(&[vec![crate::fieldmanager::path::PathElement::Field(
                "status".into(),
            )]]),
        )
    }

    fn applier(name: &str) -> ManagerId {
        ManagerId::new(name, Operation::Apply, "apps/v1", None)
    }

    fn base() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }})
    }

    fn update_as(
        u: &Updater,
        old: &Value,
        new: &Value,
        m: ManagedFields,
        who: ManagerId,
    ) -> ManagedFields {
        let (mut m, set) = u.update(old, new, m);
        if !set.is_empty() {
            m.insert(
                who,
                VersionedSet {
                    set,
                    api_version: "apps/v1".into(),
                    applied: false,
                },
            );
        }
        m
    }

    #[test]
    fn an_applier_owns_what_it_applied_and_conflicts_with_another_applier() {
        let u = updater();
        let (obj, m) = u
            .apply(
                &json!({}),
                &base(),
                ManagedFields::new(),
                &applier("a"),
                false,
            )
            .expect("applies");
        let obj = obj.expect("changed");
        assert!(m[&applier("a")].set.to_fields_v1()["f:spec"]
            .get("f:replicas")
            .is_some());
        let mut other = base();
        other["spec"]["replicas"] = json!(5);
        match u.apply(&obj, &other, m.clone(), &applier("b"), false) {
            Err(UpdateError::Conflicts(c)) => {
                assert_eq!(c.len(), 1);
                assert_eq!(c[0].0, applier("a"));
                assert_eq!(
                    crate::fieldmanager::path::path_string(&c[0].1),
                    ".spec.replicas"
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Forced: b takes the field from a.
        let (obj2, m2) = u
            .apply(&obj, &other, m, &applier("b"), true)
            .expect("forced");
        assert_eq!(obj2.expect("changed")["spec"]["replicas"], 5);
        assert!(m2[&applier("a")].set.to_fields_v1()["f:spec"]
            .get("f:replicas")
            .is_none());
        assert!(m2[&applier("b")].set.to_fields_v1()["f:spec"]
            .get("f:replicas")
            .is_some());
    }

    #[test]
    fn applying_the_same_value_shares_ownership_without_conflict() {
        let u = updater();
        let (obj, m) = u
            .apply(
                &json!({}),
                &base(),
                ManagedFields::new(),
                &applier("a"),
                false,
            )
            .expect("applies");
        let (same, m2) = u
            .apply(&obj.expect("changed"), &base(), m, &applier("b"), false)
            .expect("no conflict");
        assert!(same.is_none());
        assert!(m2.contains_key(&applier("a")) && m2.contains_key(&applier("b")));
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_pruned_unless_someone_else_owns_them() {
        let u = updater();
        let mut first = base();
        first["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "c", "image": "i"}, {"name": "side", "image": "s"}]);
        first["metadata"]["labels"] = json!({"keep": "1", "drop": "1"});
        let (obj, m) = u
            .apply(
                &json!({}),
                &first,
                ManagedFields::new(),
                &applier("a"),
                false,
            )
            .expect("applies");
        let obj = obj.expect("changed");
        // Another writer updates and so co-owns the label "keep".
        let mut edited = obj.clone();
        edited["metadata"]["labels"]["keep"] = json!("2");
        let m = update_as(
            &u,
            &obj,
            &edited,
            m,
            ManagerId::new("editor", Operation::Update, "apps/v1", None),
        );
        let mut second = base();
        second["metadata"]["labels"] = json!({});
        let (out, _) = u
            .apply(&edited, &second, m, &applier("a"), false)
            .expect("applies");
        let out = out.expect("changed");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["c"]);
        assert_eq!(out["metadata"]["labels"], json!({"keep": "2"}));
    }

    #[test]
    fn an_update_takes_changed_fields_from_other_managers() {
        let u = updater();
        let (obj, m) = u
            .apply(
                &json!({}),
                &base(),
                ManagedFields::new(),
                &applier("a"),
                false,
            )
            .expect("applies");
        let obj = obj.expect("changed");
        let mut scaled = obj.clone();
        scaled["spec"]["replicas"] = json!(9);
        let scaler = ManagerId::new("scaler", Operation::Update, "apps/v1", Some("scale"));
        let m = update_as(&u, &obj, &scaled, m, scaler.clone());
        assert_eq!(
            m[&scaler].set.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(m[&applier("a")].set.to_fields_v1()["f:spec"]
            .get("f:replicas")
            .is_none());
    }

    #[test]
    fn status_is_ignored_on_the_main_resource() {
        let u = updater();
        let mut config = base();
        config["status"] = json!({"replicas": 3});
        let (_, m) = u
            .apply(
                &json!({}),
                &config,
                ManagedFields::new(),
                &applier("a"),
                false,
            )
            .expect("applies");
        assert!(m[&applier("a")]
            .set
            .to_fields_v1()
            .get("f:status")
            .is_none());
    }
}
