//! Which k8s-openapi type describes each kind capstan serves: the bridge from the catalogue's
//! group/version/kind to a schemars schema. Entry point: [`KINDS`].
//!
//! The catalogue (capstan-api) holds strategies as trait objects, so it cannot hand out schemas;
//! this table names the Rust type for every served kind and for the bodies of subresources
//! (Scale, Eviction, TokenRequest, Binding). A test checks it covers the whole catalogue.

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, autoscaling::v1 as autoscaling_v1,
    autoscaling::v2 as autoscaling_v2, batch::v1 as batch, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// One kind and the function that registers its schema (and everything it references).
pub(crate) struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Adds the schema to the generator's definitions and returns a `$ref` to it.
    pub register: fn(&mut SchemaGenerator) -> Schema,
    /// The component name, e.g. "io.k8s.api.apps.v1.Deployment".
    pub schema_name: fn() -> String,
    /// Whether the kind is a top-level resource with a list kind (not a subresource body).
    pub listable: bool,
}

fn register<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn name_of<T: JsonSchema>() -> String {
    T::schema_name().into_owned()
}

macro_rules! kind {
    ($group:literal, $version:literal, $kind:literal, $ty:ty) => {
        kind!($group, $version, $kind, $ty, true)
    };
    ($group:literal, $version:literal, $kind:literal, $ty:ty, $listable:literal) => {
        KindSchema {
            group: $group,
            version: $version,
            kind: $kind,
            register: register::<$ty>,
            schema_name: name_of::<$ty>,
            listable: $listable,
        }
    };
}

/// Every kind with a schema in the documents, resources first, then subresource bodies.
pub(crate) static KINDS: &[KindSchema] = &[
    kind!("", "v1", "ComponentStatus", core::ComponentStatus),
    kind!("", "v1", "ConfigMap", core::ConfigMap),
    kind!("", "v1", "Endpoints", core::Endpoints),
    kind!("", "v1", "Event", core::Event),
    kind!("", "v1", "LimitRange", core::LimitRange),
    kind!("", "v1", "Namespace", core::Namespace),
    kind!("", "v1", "Node", core::Node),
    kind!(
        "",
        "v1",
        "PersistentVolumeClaim",
        core::PersistentVolumeClaim
    ),
    kind!("", "v1", "PersistentVolume", core::PersistentVolume),
    kind!("", "v1", "Pod", core::Pod),
    kind!("", "v1", "PodTemplate", core::PodTemplate),
    kind!(
        "",
        "v1",
        "ReplicationController",
        core::ReplicationController
    ),
    kind!("", "v1", "ResourceQuota", core::ResourceQuota),
    kind!("", "v1", "Secret", core::Secret),
    kind!("", "v1", "ServiceAccount", core::ServiceAccount),
    kind!("", "v1", "Service", core::Service),
    kind!("apps", "v1", "ControllerRevision", apps::ControllerRevision),
    kind!("apps", "v1", "DaemonSet", apps::DaemonSet),
    kind!("apps", "v1", "Deployment", apps::Deployment),
    kind!("apps", "v1", "ReplicaSet", apps::ReplicaSet),
    kind!("apps", "v1", "StatefulSet", apps::StatefulSet),
    kind!(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        autoscaling_v2::HorizontalPodAutoscaler
    ),
    kind!(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        autoscaling_v1::HorizontalPodAutoscaler
    ),
    kind!("batch", "v1", "CronJob", batch::CronJob),
    kind!("batch", "v1", "Job", batch::Job),
    kind!("coordination.k8s.io", "v1", "Lease", coordination::Lease),
    kind!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        discovery::EndpointSlice
    ),
    kind!("events.k8s.io", "v1", "Event", events::Event),
    kind!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        networking::IngressClass
    ),
    kind!("networking.k8s.io", "v1", "Ingress", networking::Ingress),
    kind!(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        networking::NetworkPolicy
    ),
    kind!(
        "policy",
        "v1",
        "PodDisruptionBudget",
        policy::PodDisruptionBudget
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        rbac::ClusterRoleBinding
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        rbac::ClusterRole
    ),
    kind!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        rbac::RoleBinding
    ),
    kind!("rbac.authorization.k8s.io", "v1", "Role", rbac::Role),
    kind!(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        storage::StorageClass
    ),
    kind!(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        apiextensions::CustomResourceDefinition
    ),
    // Bodies of subresources.
    kind!("autoscaling", "v1", "Scale", autoscaling_v1::Scale, false),
    kind!("policy", "v1", "Eviction", policy::Eviction, false),
    kind!(
        "authentication.k8s.io",
        "v1",
        "TokenRequest",
        authentication::TokenRequest,
        false
    ),
    kind!("", "v1", "Binding", core::Binding, false),
];

/// The schema entry for a kind, if it has one.
pub(crate) fn find(group: &str, version: &str, kind: &str) -> Option<&'static KindSchema> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_kind_and_subresource_body_has_a_schema() {
        for r in capstan_api::catalogue::all() {
            assert!(
                find(r.group, r.version, r.kind).is_some(),
                "no schema for {}/{} {}",
                r.group,
                r.version,
                r.kind
            );
            for s in r.subresources {
                let (g, v) = if s.version.is_empty() {
                    (r.group, r.version)
                } else {
                    (s.group, s.version)
                };
                // Connect options (exec, attach, proxy, ...) have no body schema, as upstream.
                if s.kind.ends_with("Options") || s.name == "log" {
                    continue;
                }
                assert!(
                    find(g, v, s.kind).is_some(),
                    "no schema for subresource {} body {g}/{v} {}",
                    s.name,
                    s.kind
                );
            }
        }
    }

    #[test]
    fn schema_names_follow_upstream() {
        let d = find("apps", "v1", "Deployment").expect("deployment");
        assert_eq!((d.schema_name)(), "io.k8s.api.apps.v1.Deployment");
    }
}
