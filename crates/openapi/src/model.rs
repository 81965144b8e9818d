//! A typed view of the served schemas for the patch engines and server-side apply: walk from a
//! kind down its fields and ask each position how it merges. Entry point: [`Model::for_kind`].
//!
//! The model reads the same schemas the documents serve (one source of truth), so what the
//! server merges by and what kubectl computes patches with cannot drift apart. A [`TypeRef`]
//! is a position in the type tree: the schema written at the field (where upstream puts the
//! `x-kubernetes-*` field extensions) and the type it resolves to (through `allOf`/`$ref`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::schemas;

/// Entry point to the type model of every served kind.
pub struct Model;

impl Model {
    /// The type of a kind ("apps", "v1", "Deployment"; group "" for the core group), including
    /// list kinds and subresource bodies (autoscaling/v1 Scale).
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<TypeRef> {
        let name = gvk_index().get(&(group.to_string(), version.to_string(), kind.to_string()))?;
        Self::for_schema(name)
    }

    /// The type named by a component ("io.k8s.api.core.v1.PodSpec").
    pub fn for_schema(name: &str) -> Option<TypeRef> {
        let (name, schema) = schemas::all().get_key_value(name)?;
        Some(TypeRef {
            site: schema,
            resolved: schema,
            name: Some(name.as_str()),
        })
    }
}

/// (group, version, kind) → component name, from the schemas' GVK extensions.
fn gvk_index() -> &'static HashMap<(String, String, String), String> {
    static INDEX: OnceLock<HashMap<(String, String, String), String>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut out = HashMap::new();
        for (name, schema) in schemas::all() {
            let Some(gvks) = schema["x-kubernetes-group-version-kind"].as_array() else {
                continue;
            };
            for gvk in gvks {
                let part = |k: &str| gvk[k].as_str().unwrap_or_default().to_string();
                out.entry((part("group"), part("version"), part("kind")))
                    .or_insert_with(|| name.clone());
            }
        }
        out
    })
}

/// What a position holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A struct with named fields.
    Object,
    /// A JSON array.
    List,
    /// A JSON object with arbitrary keys (`map[string]T`).
    Map,
    /// A string, number, boolean, or a scalar-like type (Quantity, IntOrString, Time).
    Primitive,
    /// Any JSON value (RawExtension, JSON, FieldsV1): nothing is known about its insides.
    Untyped,
}

/// `x-kubernetes-patch-strategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PatchStrategy {
    /// Nothing declared: lists are replaced whole, maps and structs are merged.
    #[default]
    Default,
    /// Lists are merged (by merge key, or as a set of primitives).
    Merge,
    /// The value is replaced whole.
    Replace,
    /// Fields missing from the patch are cleared (union types such as DeploymentStrategy).
    RetainKeys,
    /// Both of the above (PodSpec.volumes).
    MergeRetainKeys,
}

impl PatchStrategy {
    fn parse(s: &str) -> PatchStrategy {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let merge = parts.contains(&"merge");
        let retain = parts.contains(&"retainKeys");
        match (merge, retain) {
            (true, true) => PatchStrategy::MergeRetainKeys,
            (true, false) => PatchStrategy::Merge,
            (false, true) => PatchStrategy::RetainKeys,
            (false, false) if parts.contains(&"replace") => PatchStrategy::Replace,
            _ => PatchStrategy::Default,
        }
    }

    /// Whether lists at this position merge rather than replace.
    pub fn merges(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }

    /// Whether `$retainKeys` applies at this position.
    pub fn retains_keys(self) -> bool {
        matches!(
            self,
            PatchStrategy::RetainKeys | PatchStrategy::MergeRetainKeys
        )
    }

    /// The extension's text ("merge,retainKeys"), None for the default.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            PatchStrategy::Default => None,
            PatchStrategy::Merge => Some("merge"),
            PatchStrategy::Replace => Some("replace"),
            PatchStrategy::RetainKeys => Some("retainKeys"),
            PatchStrategy::MergeRetainKeys => Some("merge,retainKeys"),
        }
    }
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

/// `x-kubernetes-map-type` (on a map field or on a struct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    Atomic,
    Granular,
}

/// How the value at one position merges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchMeta {
    pub shape: Shape,
    pub strategy: PatchStrategy,
    pub merge_key: Option<&'static str>,
    pub list_type: Option<ListType>,
    pub map_keys: Vec<&'static str>,
    pub map_type: Option<MapType>,
}

impl PatchMeta {
    pub fn is_primitive(&self) -> bool {
        self.shape == Shape::Primitive
    }

    pub fn is_object(&self) -> bool {
        self.shape == Shape::Object
    }

    pub fn is_list(&self) -> bool {
        self.shape == Shape::List
    }

    pub fn is_map(&self) -> bool {
        self.shape == Shape::Map
    }
}

/// A position in the type tree: a kind, a field of it, an item of a list or a value of a map.
#[derive(Clone, Copy, Debug)]
pub struct TypeRef {
    /// The schema written at this position (carries the field extensions).
    site: &'static Value,
    /// The type the position resolves to.
    resolved: &'static Value,
    /// The component name of the resolved type, when it is a named type.
    name: Option<&'static str>,
}

impl TypeRef {
    fn at(site: &'static Value) -> TypeRef {
        let (resolved, name) = resolve(site);
        TypeRef {
            site,
            resolved,
            name,
        }
    }

    /// The component name of this position's type ("io.k8s.api.core.v1.Container"), if named.
    pub fn schema_name(&self) -> Option<&'static str> {
        self.name
    }

    /// The type of a field of this struct; None for unknown fields and non-structs.
    pub fn field(&self, name: &str) -> Option<TypeRef> {
        let site = self.resolved.get("properties")?.get(name)?;
        Some(TypeRef::at(site))
    }

    /// Names of this struct's fields, in schema order.
    pub fn field_names(&self) -> impl Iterator<Item = &'static str> {
        self.resolved
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
    }

    /// Names of the fields this struct requires (Go fields serialized even when empty, which
    /// server-side apply's zero objects need).
    pub fn required_fields(&self) -> impl Iterator<Item = &'static str> {
        self.resolved
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flat_map(|a| a.iter().filter_map(Value::as_str))
    }

    /// The type of a list's items or of a map's values.
    pub fn items(&self) -> Option<TypeRef> {
        let site = self.resolved.get("items").or_else(|| {
            self.resolved
                .get("additionalProperties")
                .filter(|v| v.is_object())
        })?;
        Some(TypeRef::at(site))
    }

    /// The shape of the value at this position.
    pub fn shape(&self) -> Shape {
        let r = self.resolved;
        match r.get("type").and_then(Value::as_str) {
            Some("array") => Shape::List,
            Some("object") => {
                if r.get("properties").is_some() {
                    Shape::Object
                } else if r.get("additionalProperties").is_some_and(Value::is_object) {
                    Shape::Map
                } else {
                    Shape::Untyped
                }
            }
            Some(_) => Shape::Primitive,
            // IntOrString and Quantity: a choice of scalars.
            None if r.get("oneOf").is_some() || r.get("format").is_some() => Shape::Primitive,
            None => Shape::Untyped,
        }
    }

    /// How the value at this position merges.
    pub fn patch_meta(&self) -> PatchMeta {
        let site = self.site;
        let text = |k: &str| site.get(k).and_then(Value::as_str);
        let map_type = text("x-kubernetes-map-type")
            .or_else(|| {
                self.resolved
                    .get("x-kubernetes-map-type")
                    .and_then(Value::as_str)
            })
            .and_then(|t| match t {
                "atomic" => Some(MapType::Atomic),
                "granular" => Some(MapType::Granular),
                _ => None,
            });
        PatchMeta {
            shape: self.shape(),
            strategy: text("x-kubernetes-patch-strategy")
                .map(PatchStrategy::parse)
                .unwrap_or_default(),
            merge_key: text("x-kubernetes-patch-merge-key"),
            list_type: text("x-kubernetes-list-type").and_then(|t| match t {
                "atomic" => Some(ListType::Atomic),
                "set" => Some(ListType::Set),
                "map" => Some(ListType::Map),
                _ => None,
            }),
            map_keys: site
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default(),
            map_type,
        }
    }

    /// The default upstream declares for this field (e.g. "TCP" for ContainerPort.protocol),
    /// which server-side apply uses for list-map keys a client left out.
    pub fn default_value(&self) -> Option<&'static Value> {
        self.site.get("default").filter(|d| !is_trivial_default(d))
    }
}

/// `{}`, `""`, `0` and `false` are the zero values upstream writes for required fields; they
/// are not defaults anyone applies.
fn is_trivial_default(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// Follows `allOf: [{$ref}]` and `$ref` to the schema a position stands for.
fn resolve(site: &'static Value) -> (&'static Value, Option<&'static str>) {
    let mut current = site;
    if let Some(first) = current.get("allOf").and_then(|a| a.get(0)) {
        current = first;
    }
    if let Some(name) = current
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(schemas::ref_name)
    {
        if let Some((key, target)) = schemas::all().get_key_value(name) {
            return (target, Some(key.as_str()));
        }
    }
    (current, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_spec() -> TypeRef {
        Model::for_kind("", "v1", "Pod")
            .and_then(|p| p.field("spec"))
            .expect("pod spec")
    }

    #[test]
    fn kinds_are_found_by_group_version_kind() {
        let d = Model::for_kind("apps", "v1", "Deployment").expect("deployment");
        assert_eq!(d.schema_name(), Some("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(d.shape(), Shape::Object);
        assert!(Model::for_kind("autoscaling", "v1", "Scale").is_some());
        assert!(Model::for_kind("apps", "v1", "DeploymentList").is_some());
        assert!(Model::for_kind("apps", "v1", "Nope").is_none());
    }

    #[test]
    fn containers_merge_by_name() {
        let containers = pod_spec().field("containers").expect("containers");
        let meta = containers.patch_meta();
        assert!(meta.is_list());
        assert_eq!(meta.strategy, PatchStrategy::Merge);
        assert_eq!(meta.merge_key, Some("name"));
        assert_eq!(meta.list_type, Some(ListType::Map));
        assert_eq!(meta.map_keys, vec!["name"]);
        let container = containers.items().expect("items");
        assert_eq!(
            container.schema_name(),
            Some("io.k8s.api.core.v1.Container")
        );
        assert!(container.patch_meta().is_object());
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol_with_a_tcp_default() {
        let ports = pod_spec()
            .field("containers")
            .and_then(|c| c.items())
            .and_then(|c| c.field("ports"))
            .expect("ports");
        let meta = ports.patch_meta();
        assert_eq!(meta.merge_key, Some("containerPort"));
        assert_eq!(meta.map_keys, vec!["containerPort", "protocol"]);
        let protocol = ports
            .items()
            .and_then(|p| p.field("protocol"))
            .expect("protocol");
        assert_eq!(protocol.default_value(), Some(&Value::from("TCP")));
        assert!(protocol.patch_meta().is_primitive());
    }

    #[test]
    fn volumes_merge_and_retain_keys() {
        let meta = pod_spec().field("volumes").expect("volumes").patch_meta();
        assert_eq!(meta.strategy, PatchStrategy::MergeRetainKeys);
        assert!(meta.strategy.merges() && meta.strategy.retains_keys());
    }

    #[test]
    fn deployment_strategy_retains_keys_and_max_surge_is_primitive() {
        let strategy = Model::for_kind("apps", "v1", "Deployment")
            .and_then(|d| d.field("spec"))
            .and_then(|s| s.field("strategy"))
            .expect("strategy");
        assert_eq!(strategy.patch_meta().strategy, PatchStrategy::RetainKeys);
        let surge = strategy
            .field("rollingUpdate")
            .and_then(|r| r.field("maxSurge"))
            .expect("maxSurge");
        assert!(surge.patch_meta().is_primitive());
    }

    #[test]
    fn metadata_lists_and_maps_have_their_semantics() {
        let meta = Model::for_kind("", "v1", "ConfigMap")
            .and_then(|c| c.field("metadata"))
            .expect("metadata");
        let finalizers = meta.field("finalizers").expect("finalizers").patch_meta();
        assert_eq!(finalizers.strategy, PatchStrategy::Merge);
        assert_eq!(finalizers.list_type, Some(ListType::Set));
        let owners = meta.field("ownerReferences").expect("owners");
        assert_eq!(owners.patch_meta().merge_key, Some("uid"));
        // OwnerReference is an atomic struct.
        assert_eq!(
            owners.items().expect("owner").patch_meta().map_type,
            Some(MapType::Atomic)
        );
        let labels = meta.field("labels").expect("labels");
        assert!(labels.patch_meta().is_map());
        assert!(labels
            .items()
            .expect("label value")
            .patch_meta()
            .is_primitive());
        assert!(meta.field("nope").is_none());
    }

    #[test]
    fn opaque_values_are_untyped() {
        let data = Model::for_kind("apps", "v1", "ControllerRevision")
            .and_then(|c| c.field("data"))
            .expect("data");
        assert_eq!(data.shape(), Shape::Untyped);
        let selector = Model::for_kind("", "v1", "Pod")
            .and_then(|p| p.field("spec"))
            .and_then(|s| s.field("nodeSelector"))
            .expect("nodeSelector");
        assert_eq!(selector.patch_meta().map_type, Some(MapType::Atomic));
    }

    #[test]
    fn strategies_parse_like_upstream_splits_them() {
        assert_eq!(
            PatchStrategy::parse("merge,retainKeys"),
            PatchStrategy::MergeRetainKeys
        );
        assert_eq!(PatchStrategy::parse("replace"), PatchStrategy::Replace);
        assert_eq!(
            PatchStrategy::parse("retainKeys"),
            PatchStrategy::RetainKeys
        );
        assert_eq!(
            PatchStrategy::MergeRetainKeys.as_str(),
            Some("merge,retainKeys")
        );
    }
}
