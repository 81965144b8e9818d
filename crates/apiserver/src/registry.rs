//! The generic registry: create, update, delete and read objects of any kind in the store,
//! running the kind's strategy in upstream's fixed order, with optimistic concurrency,
//! finalizers, graceful pod deletion, namespace lifecycle and Service allocations.
//!
//! Architecture invariant: this is the only module that writes to the store.

use std::sync::Arc;

use capstan_api::catalogue::{self, ResourceInfo};
use capstan_api::field_error::{ErrorList, FieldError};
use capstan_api::meta;
use capstan_api::validation::{validate_object_meta, validate_object_meta_update};
use capstan_store::{KeyValue, Store};
use rand::Rng;
use serde_json::{json, Value};

use crate::allocator::ServiceAllocator;
use crate::codec::{self, decode_stored, encode_for_storage};
use crate::error::{from_store, ApiError, ApiResult};
use crate::params::FieldValidation;

/// Options common to writes.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    /// Set when the caller already recorded the write in managedFields (server-side apply).
    pub fields_tracked: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            field_validation: FieldValidation::Strict,
            field_manager: None,
            fields_tracked: false,
        }
    }
}

impl WriteOptions {
    /// The manager a write is recorded under: the request's (fieldManager or User-Agent),
    /// or the API server itself for its own writes, as upstream's loopback client names it.
    pub fn manager(&self) -> &str {
        self.field_manager.as_deref().unwrap_or("kube-apiserver")
    }
}

/// DeleteOptions, from the query and the body.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// The deprecated `orphanDependents` as sent; `Some(false)` makes a pending deletion 202.
    pub orphan_dependents: Option<bool>,
}

/// An object a write produced: as stored (render without parsing), or a value (dry run).
#[derive(Clone, Debug)]
pub enum ObjectOut {
    Stored(KeyValue),
    Value(Value),
}

/// The result of a write.
#[derive(Debug)]
pub struct Written {
    pub object: ObjectOut,
    pub warnings: Vec<String>,
    /// 201 for creates (including create-on-update), else 200.
    pub created: bool,
}

/// The result of a delete.
#[derive(Debug)]
pub struct Deleted {
    /// The object as it was deleted, or as it now is when deletion is pending.
    pub object: ObjectOut,
    /// False when deletion waits for finalizers or a grace period.
    pub gone: bool,
}

/// Namespaces that cannot be deleted.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Namespace finalizer that the namespace controller removes once the namespace is empty.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

pub struct Registry {
    store: Arc<dyn Store>,
    services: ServiceAllocator,
    /// Every namespace and whether it is terminating. Exact, because this registry is the only
    /// writer of the store; it spares each create a store read of its namespace.
    namespaces: parking_lot::RwLock<std::collections::HashMap<String, bool>>,
    /// Probes of the in-process components, for `componentstatuses`.
    components: crate::components::ComponentHealth,
}

/// The current time in Kubernetes' second-precision RFC 3339 form.
pub fn now_rfc3339() -> String {
    rfc3339(k8s_openapi::jiff::Timestamp::now())
}

fn rfc3339(t: k8s_openapi::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Upstream's generateName suffix: 5 characters from an alphabet without vowels or look-alikes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn is_terminating(obj: &Value) -> bool {
    meta::meta_str(obj, "deletionTimestamp").is_some()
}

fn namespace_terminating(obj: &Value) -> bool {
    is_terminating(obj) || obj["status"]["phase"] == "Terminating"
}

/// Reads a strategy-decoded body into the served kind, checking apiVersion and kind against
/// the URL and handling unknown fields per `fieldValidation`.
pub fn decode_body(
    info: &ResourceInfo,
    mut body: Value,
    field_validation: FieldValidation,
    duplicates: &[String],
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: the object must be a JSON object",
            info.kind, info.version, info.kind
        )));
    }
    let expected_version = info.api_version();
    if let Some(v) = body.get("apiVersion").and_then(Value::as_str) {
        if !v.is_empty() && v != expected_version {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != info.kind {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): kind {k:?} was sent",
                info.kind
            )));
        }
    }
    body["apiVersion"] = json!(expected_version);
    body["kind"] = json!(info.kind);
    let mut unknown = Vec::new();
    let obj = info.strategy.decode(body, &mut unknown).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            info.kind, info.version, info.kind
        ))
    })?;
    let problems: Vec<String> = duplicates
        .iter()
        .map(|d| format!("duplicate field \"{d}\""))
        .chain(unknown.iter().map(|u| format!("unknown field \"{u}\"")))
        .collect();
    if !problems.is_empty() {
        match field_validation {
            // Worded as upstream's decoder failure: "<Kind> in version ... cannot be handled".
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    info.kind,
                    info.version,
                    info.kind,
                    problems.join(", ")
                )))
            }
            FieldValidation::Warn => warnings.extend(problems),
            FieldValidation::Ignore => {}
        }
    }
    Ok(obj)
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, services: ServiceAllocator) -> Self {
        Self {
            store,
            services,
            namespaces: Default::default(),
            components: Default::default(),
        }
    }

    /// Where the binary registers its components' health probes.
    pub fn components(&self) -> &crate::components::ComponentHealth {
        &self.components
    }

    /// Loads the namespaces into memory; call once at start, before serving writes.
    pub async fn load_namespaces(&self) -> ApiResult<()> {
        let ns_info = namespaces();
        let all = self
            .store
            .list(&codec::prefix(ns_info, None), Default::default())
            .await
            .map_err(from_store)?;
        let mut map = self.namespaces.write();
        map.clear();
        for kv in &all.items {
            let obj = decode_stored(ns_info, kv)?;
            if let Some(name) = meta::name(&obj) {
                map.insert(name.to_string(), namespace_terminating(&obj));
            }
        }
        Ok(())
    }

    /// Keeps the namespace view in step with a namespace write that just succeeded.
    fn observe(&self, info: &ResourceInfo, kv: &KeyValue, deleted: bool) {
        if !is_namespace(info) {
            return;
        }
        let Ok(obj) = decode_stored(info, kv) else {
            return;
        };
        let Some(name) = meta::name(&obj) else { return };
        let mut map = self.namespaces.write();
        if deleted {
            map.remove(name);
        } else {
            map.insert(name.to_string(), namespace_terminating(&obj));
        }
    }

    async fn store_create(
        &self,
        info: &ResourceInfo,
        key: &str,
        bytes: Vec<u8>,
    ) -> capstan_store::Result<KeyValue> {
        let kv = self.store.create(key, bytes).await?;
        self.observe(info, &kv, false);
        Ok(kv)
    }

    async fn store_update(
        &self,
        info: &ResourceInfo,
        key: &str,
        bytes: Vec<u8>,
        rev: i64,
    ) -> capstan_store::Result<KeyValue> {
        let kv = self.store.update(key, bytes, rev).await?;
        self.observe(info, &kv, false);
        Ok(kv)
    }

    async fn store_delete(
        &self,
        info: &ResourceInfo,
        key: &str,
        rev: i64,
    ) -> capstan_store::Result<KeyValue> {
        let kv = self.store.delete(key, Some(rev)).await?;
        self.observe(info, &kv, true);
        Ok(kv)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn services(&self) -> &ServiceAllocator {
        &self.services
    }

    /// The stored object, or 404.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<KeyValue> {
        self.store
            .get(&codec::key(info, ns, name))
            .await
            .map_err(from_store)?
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    /// Refuses writes into a namespace that does not exist (404) or is terminating (403).
    async fn check_namespace(&self, info: &ResourceInfo, ns: &str, name: &str) -> ApiResult<()> {
        let known = self.namespaces.read().get(ns).copied();
        let terminating = match known {
            Some(t) => t,
            None => self.namespace_from_store(ns).await?,
        };
        if terminating {
            let mut e = ApiError::forbidden(
                info,
                name,
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            );
            if let Some(Value::Object(d)) = &mut e.details {
                d.insert(
                    "causes".into(),
                    json!([{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]),
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether a namespace missing from the in-memory view is terminating, read from the store;
    /// 404 when it is not there either. The view is updated once a write returns, but watchers
    /// see the commit first: a controller reacting to a new namespace (the service account
    /// controller) can write into it before the view has it.
    async fn namespace_from_store(&self, ns: &str) -> ApiResult<bool> {
        let info = namespaces();
        match self
            .store
            .get(&codec::key(info, None, ns))
            .await
            .map_err(from_store)?
        {
            // Not added to the view: the write that created it does that, and adding it here
            // could race with a deletion and resurrect it.
            Some(kv) => Ok(namespace_terminating(&decode_stored(info, &kv)?)),
            None => Err(ApiError::not_found(info, ns)),
        }
    }

    /// Creates an object from a decoded body (see [`decode_body`]).
    pub async fn create(
        &self,
        info: &'static ResourceInfo,
        url_ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
        warnings: Vec<String>,
    ) -> ApiResult<Written> {
        // Namespace: the URL's wins; a different one in the body is an error.
        if info.namespaced() {
            let ns = url_ns.ok_or_else(ApiError::method_not_supported)?;
            match meta::namespace(&obj) {
                Some(b) if b != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => meta::set_str(&mut obj, "namespace", ns),
            }
        } else {
            meta::metadata_mut(&mut obj).remove("namespace");
        }
        if meta::name(&obj).is_none() {
            if let Some(prefix) = meta::meta_str(&obj, "generateName").map(str::to_string) {
                meta::set_str(&mut obj, "name", format!("{prefix}{}", random_suffix()));
            }
        }
        let name = meta::name(&obj).unwrap_or("").to_string();
        let ns = meta::namespace(&obj).map(str::to_string);
        if let Some(ns) = &ns {
            self.check_namespace(info, ns, &name).await?;
        }
        self.prepare_new(
            info,
            &mut obj,
            (!opts.fields_tracked).then(|| opts.manager()),
        );
        crate::admission::on_create(self.store.as_ref(), info, &mut obj).await?;
        let mut errs = self.validate_new(info, &obj);
        if !errs.is_empty() {
            return Err(ApiError::invalid(info, &name, &errs));
        }
        let taken = if is_service(info) {
            match self.services.allocate(&mut obj, None) {
                Ok(t) => Some(t),
                Err(mut e) => {
                    errs.append(&mut e);
                    return Err(ApiError::invalid(info, &name, &errs));
                }
            }
        } else {
            None
        };
        let key = codec::key(info, ns.as_deref(), &name);
        if opts.dry_run {
            if let Some(t) = &taken {
                self.services.give_back(t);
            }
            // A dry run answers what the real create would, including "already exists".
            if self.store.get(&key).await.map_err(from_store)?.is_some() {
                return Err(ApiError::already_exists(info, &name));
            }
            return Ok(Written {
                object: ObjectOut::Value(obj),
                warnings,
                created: true,
            });
        }
        let bytes = encode_for_storage(info, &obj)?;
        crate::patch::check_object_size("created", bytes.len())?;
        match self.store_create(info, &key, bytes).await {
            Ok(kv) => Ok(Written {
                object: ObjectOut::Stored(kv),
                warnings,
                created: true,
            }),
            Err(e) => {
                if let Some(t) = &taken {
                    self.services.give_back(t);
                }
                match e {
                    capstan_store::Error::AlreadyExists(_) => {
                        Err(ApiError::already_exists(info, &name))
                    }
                    other => Err(from_store(other)),
                }
            }
        }
    }

    /// System metadata, status reset, defaults and the kind's create preparation. The write is
    /// recorded in managedFields for `manager` between defaulting and preparation, where
    /// upstream's field manager sees it (before admission and the kind's own changes).
    fn prepare_new(&self, info: &'static ResourceInfo, obj: &mut Value, manager: Option<&str>) {
        let m = meta::metadata_mut(obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for f in [
            "resourceVersion",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(f);
        }
        if info.has_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if info.has_status() && !info.keeps_status_on_create {
            obj["status"] = json!({});
        }
        info.strategy.apply_defaults(obj);
        if let Some(m) = manager {
            crate::fieldmanager::track_create(info, obj, m);
        }
        info.strategy.prepare_for_create(obj);
    }

    fn validate_new(&self, info: &ResourceInfo, obj: &Value) -> ErrorList {
        let mut errs = Vec::new();
        match serde_json::from_value(obj.get("metadata").cloned().unwrap_or(Value::Null)) {
            Ok(m) => {
                validate_object_meta(&m, info.namespaced(), info.strategy.name_rule(), &mut errs)
            }
            Err(e) => errs.push(FieldError::invalid("metadata", Value::Null, e.to_string())),
        }
        info.strategy.validate(obj, &mut errs);
        errs
    }

    /// Replaces an object (PUT), or its status with `subresource = Some("status")`.
    // Eight plain arguments until the registry takes one request context (typed verb and
    // subresource, issue 12).
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        new: Value,
        opts: &WriteOptions,
        subresource: Option<&str>,
        warnings: Vec<String>,
    ) -> ApiResult<Written> {
        let mut new = new;
        check_name_and_namespace(info, ns, name, &mut new)?;
        let key = codec::key(info, ns, name);
        let precondition = meta::meta_str(&new, "resourceVersion")
            .map(|rv| {
                rv.parse::<i64>().map_err(|_| {
                    ApiError::invalid(
                        info,
                        name,
                        &[FieldError::invalid(
                            "metadata.resourceVersion",
                            rv,
                            "must be a valid resourceVersion",
                        )],
                    )
                })
            })
            .transpose()?;
        loop {
            let Some(cur) = self.store.get(&key).await.map_err(from_store)? else {
                if allows_create_on_update(info) && subresource.is_none() {
                    let mut new = new.clone();
                    meta::metadata_mut(&mut new).remove("resourceVersion");
                    return self.create(info, ns, new, opts, warnings).await;
                }
                return Err(ApiError::not_found(info, name));
            };
            if let Some(rv) = precondition {
                if rv != cur.mod_revision {
                    return Err(ApiError::modified(info, name));
                }
            }
            let old = decode_stored(info, &cur)?;
            let merged = match subresource {
                Some("status") => status_update(&old, &new),
                Some("finalize") => finalize_update(&old, &new),
                Some("ephemeralcontainers") => ephemeral_update(&old, &new),
                _ => new.clone(),
            };
            match self
                .write_update(
                    info,
                    &key,
                    &cur,
                    old,
                    merged,
                    opts,
                    precondition.is_some(),
                    subresource,
                    &warnings,
                )
                .await?
            {
                Some(w) => return Ok(w),
                None => continue,
            }
        }
    }

    /// Applies `mutate` to the current object and writes the result with the same rules as
    /// an update; retries on conflicting writes. Used by patches and subresources.
    pub async fn update_with<F>(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        subresource: Option<&str>,
        mut mutate: F,
    ) -> ApiResult<Written>
    where
        F: FnMut(&Value) -> ApiResult<(Value, Vec<String>)>,
    {
        let key = codec::key(info, ns, name);
        loop {
            let cur = self.get(info, ns, name).await?;
            let old = decode_stored(info, &cur)?;
            let (mut new, warnings) = mutate(&old)?;
            check_name_and_namespace(info, ns, name, &mut new)?;
            let precondition = match meta::meta_str(&new, "resourceVersion") {
                Some(rv) if rv != cur.mod_revision.to_string() => {
                    return Err(ApiError::modified(info, name))
                }
                _ => false,
            };
            let merged = match subresource {
                Some("status") => status_update(&old, &new),
                Some("ephemeralcontainers") => ephemeral_update(&old, &new),
                _ => new,
            };
            if let Some(w) = self
                .write_update(
                    info,
                    &key,
                    &cur,
                    old,
                    merged,
                    opts,
                    precondition,
                    subresource,
                    &warnings,
                )
                .await?
            {
                return Ok(w);
            }
        }
    }

    /// One attempt at an update; `None` means the object changed meanwhile (retry).
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        info: &'static ResourceInfo,
        key: &str,
        cur: &KeyValue,
        old: Value,
        mut new: Value,
        opts: &WriteOptions,
        has_precondition: bool,
        subresource: Option<&str>,
        warnings: &[String],
    ) -> ApiResult<Option<Written>> {
        let name = meta::name(&old).unwrap_or("").to_string();
        carry_system_metadata(&mut new, &old);
        // Writes to the main resource cannot change status; status (and binding) writes can.
        let writes_status = matches!(subresource, Some("status" | "binding"));
        if info.has_status() && !writes_status {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            if new["status"].is_null() {
                if let Value::Object(m) = &mut new {
                    m.remove("status");
                }
            }
        }
        // Subresources (status, binding, finalize) have their own rules (upstream gives them
        // separate strategies): the kind's update hooks would refuse or misread what they exist
        // to change (e.g. a Deployment's annotation recorded through status is no spec change).
        let own_rules = subresource.is_some();
        info.strategy.apply_defaults(&mut new);
        // Recorded where upstream's field manager sees the write: defaulted, before the
        // kind's update preparation. Binding is the scheduler's direct write; upstream
        // records no manager for it.
        if !opts.fields_tracked && subresource != Some("binding") {
            crate::fieldmanager::track_update(info, &old, &mut new, opts.manager(), subresource);
        }
        if !own_rules {
            info.strategy.prepare_for_update(&mut new, &old);
        }
        if info.has_generation {
            // A kind's hook may bump the generation itself (Deployments count annotation
            // changes); otherwise any spec change bumps it.
            let g = meta::generation(&old).unwrap_or(1);
            let hooked = meta::generation(&new).is_some_and(|n| n != g);
            if !hooked {
                let bumped = if meta::spec_part(&new) != meta::spec_part(&old) {
                    g + 1
                } else {
                    g
                };
                meta::metadata_mut(&mut new).insert("generation".into(), json!(bumped));
            }
        }
        let mut errs = self.validate_new(info, &new);
        if let (Ok(nm), Ok(om)) = (
            serde_json::from_value(new["metadata"].clone()),
            serde_json::from_value(old["metadata"].clone()),
        ) {
            validate_object_meta_update(&nm, &om, &mut errs);
        }
        if is_terminating(&old) {
            let before = meta::finalizers(&old);
            if meta::finalizers(&new).iter().any(|f| !before.contains(f)) {
                errs.push(FieldError::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if !own_rules {
            info.strategy.validate_update(&new, &old, &mut errs);
        }
        if subresource == Some("ephemeralcontainers") {
            ephemeral_changes(&old, &new, &mut errs);
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(info, &name, &errs));
        }
        if !own_rules {
            crate::admission::on_update(self.store.as_ref(), info, &old, &new).await?;
        }
        let taken = if is_service(info) {
            match self.services.allocate(&mut new, Some(&old)) {
                Ok(t) => Some(t),
                Err(e) => return Err(ApiError::invalid(info, &name, &e)),
            }
        } else {
            None
        };
        let give_back = |s: &ServiceAllocator| {
            if let Some(t) = &taken {
                s.give_back(t);
            }
        };
        // The last finalizer of an object being deleted lets it go.
        if should_delete_after_update(info, &new) {
            if opts.dry_run {
                give_back(&self.services);
                return Ok(Some(Written {
                    object: ObjectOut::Value(new),
                    warnings: warnings.to_vec(),
                    created: false,
                }));
            }
            return match self.store_delete(info, key, cur.mod_revision).await {
                Ok(kv) => {
                    if is_service(info) {
                        self.services.release(&old);
                    }
                    Ok(Some(Written {
                        object: ObjectOut::Stored(kv),
                        warnings: warnings.to_vec(),
                        created: false,
                    }))
                }
                Err(capstan_store::Error::Conflict { .. }) if !has_precondition => Ok(None),
                Err(capstan_store::Error::Conflict { .. }) => Err(ApiError::modified(info, &name)),
                Err(capstan_store::Error::NotFound(_)) => Err(ApiError::not_found(info, &name)),
                Err(e) => Err(from_store(e)),
            };
        }
        let bytes = encode_for_storage(info, &new)?;
        crate::patch::check_object_size("updated", bytes.len())?;
        if *bytes == *cur.value {
            // Nothing changed: no write, no new resourceVersion, no watch event (as upstream).
            give_back(&self.services);
            return Ok(Some(Written {
                object: ObjectOut::Stored(cur.clone()),
                warnings: warnings.to_vec(),
                created: false,
            }));
        }
        if opts.dry_run {
            give_back(&self.services);
            meta::set_str(&mut new, "resourceVersion", cur.mod_revision.to_string());
            return Ok(Some(Written {
                object: ObjectOut::Value(new),
                warnings: warnings.to_vec(),
                created: false,
            }));
        }
        match self.store_update(info, key, bytes, cur.mod_revision).await {
            Ok(kv) => {
                if is_service(info) {
                    release_dropped_allocations(&self.services, &old, &new);
                }
                Ok(Some(Written {
                    object: ObjectOut::Stored(kv),
                    warnings: warnings.to_vec(),
                    created: false,
                }))
            }
            Err(e) => {
                give_back(&self.services);
                match e {
                    capstan_store::Error::Conflict { .. } if !has_precondition => Ok(None),
                    capstan_store::Error::Conflict { .. } => Err(ApiError::modified(info, &name)),
                    capstan_store::Error::NotFound(_) => Err(ApiError::not_found(info, &name)),
                    other => Err(from_store(other)),
                }
            }
        }
    }

    /// Deletes an object: at once, or by marking it for deletion when finalizers, a pod's
    /// grace period or a namespace's cleanup must run first.
    pub async fn delete(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if is_namespace(info) && PROTECTED_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                info,
                name,
                "this namespace may not be deleted",
            ));
        }
        if let Some(p) = opts.propagation_policy.as_deref() {
            if !matches!(p, "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::invalid(
                    info,
                    name,
                    &[FieldError::not_supported(
                        "propagationPolicy",
                        p,
                        &["Foreground", "Background", "Orphan"],
                    )],
                ));
            }
        }
        if let Some(g) = opts.grace_period_seconds {
            if g < 0 {
                return Err(ApiError::invalid(
                    info,
                    name,
                    &[FieldError::invalid(
                        "gracePeriodSeconds",
                        g,
                        "must be greater than or equal to 0",
                    )],
                ));
            }
        }
        let key = codec::key(info, ns, name);
        loop {
            let cur = self.get(info, ns, name).await?;
            let obj = decode_stored(info, &cur)?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = meta::uid(&obj).unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict(
                        info,
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if *rv != cur.mod_revision.to_string() {
                    return Err(ApiError::conflict(
                        info,
                        name,
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            cur.mod_revision
                        ),
                    ));
                }
            }
            match self.mark_for_deletion(info, &obj, opts) {
                Some(marked) => {
                    if opts.dry_run {
                        return Ok(Deleted {
                            object: ObjectOut::Value(marked),
                            gone: false,
                        });
                    }
                    let bytes = encode_for_storage(info, &marked)?;
                    if *bytes == *cur.value {
                        return Ok(Deleted {
                            object: ObjectOut::Stored(cur),
                            gone: false,
                        });
                    }
                    match self.store_update(info, &key, bytes, cur.mod_revision).await {
                        Ok(kv) => {
                            return Ok(Deleted {
                                object: ObjectOut::Stored(kv),
                                gone: false,
                            })
                        }
                        Err(capstan_store::Error::Conflict { .. }) => continue,
                        Err(capstan_store::Error::NotFound(_)) => {
                            return Err(ApiError::not_found(info, name))
                        }
                        Err(e) => return Err(from_store(e)),
                    }
                }
                None => {
                    if opts.dry_run {
                        return Ok(Deleted {
                            object: ObjectOut::Value(obj),
                            gone: true,
                        });
                    }
                    match self.store_delete(info, &key, cur.mod_revision).await {
                        Ok(kv) => {
                            if is_service(info) {
                                self.services.release(&obj);
                            }
                            return Ok(Deleted {
                                object: ObjectOut::Stored(kv),
                                gone: true,
                            });
                        }
                        Err(capstan_store::Error::Conflict { .. }) => continue,
                        Err(capstan_store::Error::NotFound(_)) => {
                            return Err(ApiError::not_found(info, name))
                        }
                        Err(e) => return Err(from_store(e)),
                    }
                }
            }
        }
    }

    /// The object marked for deletion, or None when it can be removed at once.
    fn mark_for_deletion(
        &self,
        info: &ResourceInfo,
        obj: &Value,
        opts: &DeleteOptions,
    ) -> Option<Value> {
        let mut marked = obj.clone();
        let mut finalizers = meta::finalizers(obj);
        match opts.propagation_policy.as_deref() {
            Some("Orphan") => add_finalizer(&mut finalizers, "orphan"),
            Some("Foreground") => add_finalizer(&mut finalizers, "foregroundDeletion"),
            _ => {}
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let already = is_terminating(obj);
        if is_pod(info) {
            let grace = pod_grace_period(obj, opts.grace_period_seconds);
            if grace > 0 {
                let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
                // A later delete may shorten the grace period, never lengthen it.
                if current.is_none_or(|c| grace < c) {
                    let at = now
                        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace))
                        .unwrap_or(now);
                    let m = meta::metadata_mut(&mut marked);
                    m.insert("deletionTimestamp".into(), json!(rfc3339(at)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                set_finalizers(&mut marked, &finalizers);
                return Some(marked);
            }
        }
        let namespace_pending = is_namespace(info)
            && marked["spec"]["finalizers"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
        if finalizers.is_empty() && !namespace_pending {
            return None;
        }
        if !already || (is_pod(info) && opts.grace_period_seconds == Some(0)) {
            let m = meta::metadata_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(rfc3339(now)));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = m.get("generation").and_then(Value::as_i64) {
                m.insert("generation".into(), json!(g + 1));
            }
        }
        if is_namespace(info) {
            marked["status"]["phase"] = json!("Terminating");
        }
        set_finalizers(&mut marked, &finalizers);
        Some(marked)
    }

    /// Binds a pod to a node (pods/binding), as the scheduler does.
    pub async fn bind_pod(&self, ns: &str, pod: &str, node: &str) -> ApiResult<Written> {
        let info = pods();
        let node = node.to_string();
        self.update_with(
            info,
            Some(ns),
            pod,
            &WriteOptions::default(),
            Some("binding"),
            |old| {
                if is_terminating(old) {
                    return Err(ApiError::conflict(
                        info,
                        pod,
                        format!("pod {pod} is being deleted, cannot be assigned to a host"),
                    ));
                }
                if let Some(current) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
                    return Err(ApiError::conflict(
                        info,
                        pod,
                        format!("pod {pod} is already assigned to node \"{current}\""),
                    ));
                }
                let mut new = old.clone();
                new["spec"]["nodeName"] = json!(node);
                set_condition(&mut new, "PodScheduled", "True", None, None);
                Ok((new, vec![]))
            },
        )
        .await
    }
}

/// A status write: the stored object with only its status, annotations and managedFields
/// replaced. Upstream's status strategies keep the spec (and usually labels) but let
/// annotations through: the deployment controller records revisions that way, without
/// bumping the generation.
fn status_update(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    out["status"] = new.get("status").cloned().unwrap_or(json!({}));
    match new["metadata"].get("annotations") {
        Some(a) => out["metadata"]["annotations"] = a.clone(),
        None => {
            if let Some(m) = out["metadata"].as_object_mut() {
                m.remove("annotations");
            }
        }
    }
    if let Some(mf) = new["metadata"].get("managedFields") {
        out["metadata"]["managedFields"] = mf.clone();
    }
    // The write is conditional on the client's resourceVersion, if it sent one.
    if let Some(rv) = new["metadata"].get("resourceVersion") {
        out["metadata"]["resourceVersion"] = rv.clone();
    }
    out
}

/// pods/{name}/ephemeralcontainers changes only spec.ephemeralContainers.
fn ephemeral_update(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    match new["spec"].get("ephemeralContainers") {
        Some(e) if !e.is_null() => out["spec"]["ephemeralContainers"] = e.clone(),
        _ => {
            if let Some(m) = out["spec"].as_object_mut() {
                m.remove("ephemeralContainers");
            }
        }
    }
    if let Some(mf) = new["metadata"].get("managedFields") {
        out["metadata"]["managedFields"] = mf.clone();
    }
    if let Some(rv) = new["metadata"].get("resourceVersion") {
        out["metadata"]["resourceVersion"] = rv.clone();
    }
    out
}

/// Upstream's ValidatePodEphemeralContainersUpdate: ephemeral containers are only added.
fn ephemeral_changes(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let list = |v: &Value| -> Vec<Value> {
        v["spec"]["ephemeralContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (list(old), list(new));
    for (i, o) in before.iter().enumerate() {
        let name = o["name"].as_str().unwrap_or_default();
        match after.iter().position(|n| n["name"] == o["name"]) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed\n"),
            )),
            Some(j) if after[j] != *o => errs.push(FieldError::forbidden(
                format!("spec.ephemeralContainers[{i}]"),
                format!("existing ephemeral containers {name:?} may not be changed\n"),
            )),
            Some(_) => {}
        }
    }
}

/// namespaces/{name}/finalize changes only spec.finalizers.
fn finalize_update(old: &Value, new: &Value) -> Value {
    let mut out = old.clone();
    out["spec"]["finalizers"] = new["spec"].get("finalizers").cloned().unwrap_or(json!([]));
    out
}

/// Sets or replaces a pod condition.
pub fn set_condition(
    pod: &mut Value,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let mut cond = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conds = pod["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = conds {
        match list.iter_mut().find(|c| c["type"] == type_) {
            Some(existing) => {
                if existing["status"] == status {
                    cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
                }
                *existing = cond;
            }
            None => list.push(cond),
        }
    }
}

fn add_finalizer(list: &mut Vec<String>, f: &str) {
    if !list.iter().any(|x| x == f) {
        list.push(f.to_string());
    }
}

fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    let m = meta::metadata_mut(obj);
    if finalizers.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(finalizers));
    }
}

/// The grace period a pod deletion gets: the request's, else the pod's; unscheduled or
/// finished pods go at once, as upstream.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0)
}

/// An update that leaves an object being deleted without finalizers (and, for a namespace,
/// without spec finalizers) and past its grace period removes it.
fn should_delete_after_update(info: &ResourceInfo, obj: &Value) -> bool {
    if !is_terminating(obj) || !meta::finalizers(obj).is_empty() {
        return false;
    }
    if obj["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        != 0
    {
        return false;
    }
    !(is_namespace(info)
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty()))
}

/// Fields of metadata only the server sets: taken from the stored object on every update.
fn carry_system_metadata(new: &mut Value, old: &Value) {
    let old_meta = meta::metadata(old).cloned().unwrap_or_default();
    let m = meta::metadata_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(f) {
            Some(v) => {
                m.insert(f.to_string(), v.clone());
            }
            None => {
                m.remove(f);
            }
        }
    }
    m.remove("selfLink");
    if !m.contains_key("managedFields") {
        if let Some(mf) = old_meta.get("managedFields") {
            m.insert("managedFields".into(), mf.clone());
        }
    }
}

/// The name must match the URL's; so must the namespace, which is taken from the URL when the
/// body has none (upstream's `EnsureObjectNamespaceMatchesRequestNamespace`).
fn check_name_and_namespace(
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: &mut Value,
) -> ApiResult<()> {
    match meta::name(obj) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        None => {
            return Err(ApiError::bad_request(
                "name is required in the object's metadata when updating",
            ))
        }
        _ => {}
    }
    if info.namespaced() {
        match (meta::namespace(obj), ns) {
            (Some(b), Some(u)) if b != u => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (None, Some(u)) => meta::set_str(obj, "namespace", u),
            _ => {}
        }
    }
    Ok(())
}

/// Kinds upstream lets a PUT create (AllowCreateOnUpdate).
fn allows_create_on_update(info: &ResourceInfo) -> bool {
    matches!(
        (info.group, info.plural),
        ("", "endpoints")
            | ("", "events")
            | ("events.k8s.io", "events")
            | ("coordination.k8s.io", "leases")
            | ("discovery.k8s.io", "endpointslices")
            | ("", "limitranges")
            | ("rbac.authorization.k8s.io", _)
    )
}

fn release_dropped_allocations(alloc: &ServiceAllocator, old: &Value, new: &Value) {
    // What the old object held and the new one no longer does goes back to the pool.
    let mut dropped = old.clone();
    let new_ports: Vec<i64> = new["spec"]["ports"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["nodePort"].as_i64()).collect())
        .unwrap_or_default();
    if let Some(ports) = dropped["spec"]["ports"].as_array_mut() {
        ports.retain(|p| {
            p["nodePort"]
                .as_i64()
                .is_some_and(|n| !new_ports.contains(&n))
        });
    }
    if new["spec"]["clusterIP"] == old["spec"]["clusterIP"] {
        dropped["spec"]["clusterIP"] = json!("");
        dropped["spec"]["clusterIPs"] = json!([]);
    }
    alloc.release(&dropped);
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "services"
}

fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "namespaces"
}

fn is_pod(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.plural == "pods"
}

pub fn namespaces() -> &'static ResourceInfo {
    catalogue::lookup("", "v1", "namespaces")
        .unwrap_or_else(|| unreachable!("namespaces are in the catalogue"))
}

pub fn pods() -> &'static ResourceInfo {
    catalogue::lookup("", "v1", "pods").unwrap_or_else(|| unreachable!("pods are in the catalogue"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A namespace already committed (and seen by watchers) but not yet in the in-memory
    /// view accepts content: the service account controller reacts to the watch event before
    /// the create that made the namespace has returned.
    #[tokio::test]
    async fn a_namespace_in_the_store_but_not_yet_in_the_view_accepts_content() {
        let store: Arc<dyn Store> = Arc::new(
            capstan_store::sqlite::SqliteStore::open_temporary(Default::default()).expect("store"),
        );
        let reg = Registry::new(store.clone(), ServiceAllocator::new(Default::default()));
        let ns = json!({"kind":"Namespace","apiVersion":"v1","metadata":{"name":"fresh"}});
        store
            .create(
                &codec::key(namespaces(), None, "fresh"),
                encode_for_storage(namespaces(), &ns).expect("encodes"),
            )
            .await
            .expect("stored");
        let cms = capstan_api::catalogue::lookup("", "v1", "configmaps").expect("cm");
        let cm = json!({"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a"}});
        reg.create(
            cms,
            Some("fresh"),
            cm.clone(),
            &WriteOptions::default(),
            Vec::new(),
        )
        .await
        .expect("created in a namespace only the store knows yet");
        let err = reg
            .create(
                cms,
                Some("missing"),
                cm,
                &WriteOptions::default(),
                Vec::new(),
            )
            .await
            .expect_err("no such namespace");
        assert_eq!(err.code, 404);
    }

    /// Arbitrary JSON, biased towards the shapes objects have.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-zA-Z0-9:./_-]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("metadata".to_string()),
                        Just("spec".to_string()),
                        Just("status".to_string()),
                        Just("name".to_string()),
                        Just("containers".to_string()),
                        Just("template".to_string()),
                        Just("selector".to_string()),
                        Just("ports".to_string()),
                        "[a-zA-Z]{1,8}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a client sends, decoding and the kind's hooks answer with a value or an
        /// error, never a panic, for every kind served.
        #[test]
        fn any_body_decodes_or_fails_cleanly_for_every_kind(body in json_value()) {
            for info in capstan_api::catalogue::all() {
                let mut warnings = Vec::new();
                if let Ok(mut obj) = decode_body(info, body.clone(), FieldValidation::Warn, &[], &mut warnings) {
                    info.strategy.apply_defaults(&mut obj);
                    info.strategy.prepare_for_create(&mut obj);
                    let mut errs = Vec::new();
                    info.strategy.validate(&obj, &mut errs);
                    info.strategy.validate_update(&obj, &obj, &mut errs);
                    let _ = info.strategy.row(&obj, &capstan_api::table::RowContext::now());
                    for f in info.strategy.field_selectors() {
                        let _ = info.strategy.field_value(&obj, f);
                    }
                }
            }
        }

        #[test]
        fn any_bytes_parse_or_fail_cleanly(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            for kind in [crate::codec::BodyType::Json, crate::codec::BodyType::Yaml] {
                let _ = crate::codec::parse_body(&raw, kind);
                let _ = crate::strict::duplicate_fields(&raw, kind);
            }
        }
    }
}
