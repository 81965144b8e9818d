//! The table of every resource capstan serves: identity, scope, names, verbs, subresources and
//! the strategy that holds its behaviour. Discovery, routing and storage keys all derive from it.

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    policy::v1 as policy, rbac::v1 as rbac, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;

use crate::kinds::conversion::{self, Conversion};
use crate::strategy::{Strategy, Typed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource such as `status` or `scale`, with the kind it answers in.
#[derive(Clone, Copy, Debug)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the body; empty group/version mean "same as the parent".
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Everything the generic API server knows about one resource in one group-version.
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment, e.g. "deployments".
    pub plural: &'static str,
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether metadata.generation is kept and bumped on spec changes.
    pub has_generation: bool,
    /// Whether a create keeps the status a client sent (nodes, events) instead of clearing it.
    pub keeps_status_on_create: bool,
    pub strategy: &'static dyn Strategy,
    /// Set when objects are stored in another version's form (HPA v1 as v2, events.k8s.io as
    /// core events): the storage identity and the conversions to and from it.
    pub conversion: Option<&'static Conversion>,
    /// Whether a DELETE answers with the object rather than a success Status once it is gone
    /// (upstream's `ReturnDeletedObject` on the kind's registry store).
    pub delete_returns_object: bool,
    /// Where objects come from: the store, or computed on each read.
    pub source: Source,
    /// The warning every request for the resource gets (deprecated APIs), as upstream's
    /// `299 - "..."` header.
    pub deprecation: Option<&'static str>,
}

/// Where a resource's objects come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Stored objects, read and written through the registry.
    Store,
    /// Component health, computed on each get or list (`componentstatuses`).
    ComponentHealth,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

impl ResourceInfo {
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// "apps/v1", or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group and plural under which objects are stored (shared between versions).
    pub fn storage_resource(&self) -> (&'static str, &'static str) {
        match self.conversion {
            Some(c) => (c.storage_group, c.storage_plural),
            None => (self.group, self.plural),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// The group as it appears in "Kind.group" messages ("deployments.apps").
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// "Deployment.apps", or "Pod" for the core group, as in "Deployment.apps \"x\" is invalid".
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// Verbs of an ordinary namespaced or cluster-scoped resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_COLLECTION_DELETE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE_ONLY: &[&str] = &["create"];
const GET_ONLY: &[&str] = &["get"];
const GET_LIST: &[&str] = &["get", "list"];

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "",
        kind,
        verbs,
    }
}

const fn sub_gv(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version,
        kind,
        verbs,
    }
}

/// Defaults for catalogue entries; identity fields and the strategy are always overridden.
const BASE: ResourceInfo = ResourceInfo {
    group: "",
    version: "",
    kind: "",
    plural: "",
    singular: "",
    scope: Scope::Namespaced,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    has_generation: false,
    keeps_status_on_create: false,
    strategy: &Typed::<core::ConfigMap>::NEW,
    conversion: None,
    delete_returns_object: false,
    source: Source::Store,
    deprecation: None,
};

const SCALE: Subresource = sub_gv("scale", "autoscaling", "v1", "Scale", GET_PATCH_UPDATE);

macro_rules! status {
    ($kind:literal) => {
        sub("status", $kind, GET_PATCH_UPDATE)
    };
}

/// A catalogue entry with the common defaults; fields are overridden with struct update syntax.
macro_rules! resource {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal, $scope:ident, { $($field:ident : $value:expr),* $(,)? }) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: const_lower!($kind),
            scope: Scope::$scope,
            strategy: &Typed::<$ty>::NEW,
            $($field: $value,)*
            ..BASE
        }
    };
}

/// Singular names are the lower-cased kind; written out because const lowercasing is awkward.
macro_rules! const_lower {
    ($kind:literal) => {
        crate::catalogue::singular_of($kind)
    };
}

/// The lower-cased kind, for singular resource names.
pub const fn singular_of(kind: &'static str) -> &'static str {
    match kind.as_bytes() {
        b"Binding" => "binding",
        b"ComponentStatus" => "componentstatus",
        b"ConfigMap" => "configmap",
        b"Endpoints" => "endpoints",
        b"Event" => "event",
        b"LimitRange" => "limitrange",
        b"Namespace" => "namespace",
        b"Node" => "node",
        b"PersistentVolumeClaim" => "persistentvolumeclaim",
        b"PersistentVolume" => "persistentvolume",
        b"Pod" => "pod",
        b"PodTemplate" => "podtemplate",
        b"ReplicationController" => "replicationcontroller",
        b"ResourceQuota" => "resourcequota",
        b"Secret" => "secret",
        b"ServiceAccount" => "serviceaccount",
        b"Service" => "service",
        b"ControllerRevision" => "controllerrevision",
        b"DaemonSet" => "daemonset",
        b"Deployment" => "deployment",
        b"ReplicaSet" => "replicaset",
        b"StatefulSet" => "statefulset",
        b"HorizontalPodAutoscaler" => "horizontalpodautoscaler",
        b"CronJob" => "cronjob",
        b"Job" => "job",
        b"Lease" => "lease",
        b"EndpointSlice" => "endpointslice",
        b"IngressClass" => "ingressclass",
        b"Ingress" => "ingress",
        b"NetworkPolicy" => "networkpolicy",
        b"PodDisruptionBudget" => "poddisruptionbudget",
        b"ClusterRoleBinding" => "clusterrolebinding",
        b"ClusterRole" => "clusterrole",
        b"RoleBinding" => "rolebinding",
        b"Role" => "role",
        b"StorageClass" => "storageclass",
        b"CustomResourceDefinition" => "customresourcedefinition",
        _ => "",
    }
}

static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!(core::ComponentStatus, "", "v1", "ComponentStatus", "componentstatuses", Cluster, {
        short_names: &["cs"],
        verbs: GET_LIST,
        source: Source::ComponentHealth,
        deprecation: Some("v1 ComponentStatus is deprecated in v1.19+"),
    }),
    resource!(core::ConfigMap, "", "v1", "ConfigMap", "configmaps", Namespaced, { short_names: &["cm"] }),
    resource!(core::Endpoints, "", "v1", "Endpoints", "endpoints", Namespaced, { short_names: &["ep"] }),
    resource!(core::Event, "", "v1", "Event", "events", Namespaced, { short_names: &["ev"], keeps_status_on_create: true }),
    resource!(core::LimitRange, "", "v1", "LimitRange", "limitranges", Namespaced, { short_names: &["limits"] }),
    resource!(core::Namespace, "", "v1", "Namespace", "namespaces", Cluster, {
        short_names: &["ns"],
        verbs: NO_COLLECTION_DELETE,
        subresources: &[sub("finalize", "Namespace", &["update"]), status!("Namespace")],
    }),
    resource!(core::Node, "", "v1", "Node", "nodes", Cluster, {
        short_names: &["no"],
        subresources: &[sub("proxy", "NodeProxyOptions", &["create", "delete", "get", "patch", "update"]), status!("Node")],
        keeps_status_on_create: true,
    }),
    resource!(core::PersistentVolumeClaim, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", Namespaced, {
        delete_returns_object: true,
        short_names: &["pvc"],
        subresources: &[status!("PersistentVolumeClaim")],
    }),
    resource!(core::PersistentVolume, "", "v1", "PersistentVolume", "persistentvolumes", Cluster, {
        delete_returns_object: true,
        short_names: &["pv"],
        subresources: &[status!("PersistentVolume")],
    }),
    resource!(core::Pod, "", "v1", "Pod", "pods", Namespaced, {
        delete_returns_object: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            sub("attach", "PodAttachOptions", &["create", "get"]),
            sub("binding", "Binding", CREATE_ONLY),
            sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
            sub_gv("eviction", "policy", "v1", "Eviction", CREATE_ONLY),
            sub("exec", "PodExecOptions", &["create", "get"]),
            sub("log", "Pod", GET_ONLY),
            sub("portforward", "PodPortForwardOptions", &["create", "get"]),
            sub("proxy", "PodProxyOptions", &["create", "delete", "get", "patch", "update"]),
            sub("resize", "Pod", GET_PATCH_UPDATE),
            status!("Pod"),
        ],
    }),
    resource!(core::PodTemplate, "", "v1", "PodTemplate", "podtemplates", Namespaced, {
        delete_returns_object: true,
    }),
    resource!(core::ReplicationController, "", "v1", "ReplicationController", "replicationcontrollers", Namespaced, {
        short_names: &["rc"],
        categories: &["all"],
        subresources: &[SCALE, status!("ReplicationController")],
        has_generation: true,
    }),
    resource!(core::ResourceQuota, "", "v1", "ResourceQuota", "resourcequotas", Namespaced, {
        delete_returns_object: true,
        short_names: &["quota"],
        subresources: &[status!("ResourceQuota")],
    }),
    resource!(core::Secret, "", "v1", "Secret", "secrets", Namespaced, {}),
    resource!(core::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", Namespaced, {
        delete_returns_object: true,
        short_names: &["sa"],
        subresources: &[sub_gv("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE_ONLY)],
    }),
    resource!(core::Service, "", "v1", "Service", "services", Namespaced, {
        delete_returns_object: true,
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[sub("proxy", "ServiceProxyOptions", &["create", "delete", "get", "patch", "update"]), status!("Service")],
    }),
    // apps/v1
    resource!(
        apps::ControllerRevision,
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        Namespaced,
        {}
    ),
    resource!(apps::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", Namespaced, {
        short_names: &["ds"],
        categories: &["all"],
        subresources: &[status!("DaemonSet")],
        has_generation: true,
    }),
    resource!(apps::Deployment, "apps", "v1", "Deployment", "deployments", Namespaced, {
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[SCALE, status!("Deployment")],
        has_generation: true,
    }),
    resource!(apps::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", Namespaced, {
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[SCALE, status!("ReplicaSet")],
        has_generation: true,
    }),
    resource!(apps::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", Namespaced, {
        short_names: &["sts"],
        categories: &["all"],
        subresources: &[SCALE, status!("StatefulSet")],
        has_generation: true,
    }),
    // autoscaling: v2 is stored and preferred; v1 is converted.
    resource!(autoscaling_v2::HorizontalPodAutoscaler, "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", Namespaced, {
        short_names: &["hpa"],
        categories: &["all"],
        subresources: &[status!("HorizontalPodAutoscaler")],
        has_generation: true,
    }),
    resource!(autoscaling_v1::HorizontalPodAutoscaler, "autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", Namespaced, {
        short_names: &["hpa"],
        categories: &["all"],
        subresources: &[status!("HorizontalPodAutoscaler")],
        has_generation: true,
        conversion: Some(&conversion::HPA_V1),
    }),
    // batch/v1
    resource!(batch::CronJob, "batch", "v1", "CronJob", "cronjobs", Namespaced, {
        short_names: &["cj"],
        categories: &["all"],
        subresources: &[status!("CronJob")],
        has_generation: true,
    }),
    resource!(batch::Job, "batch", "v1", "Job", "jobs", Namespaced, {
        categories: &["all"],
        subresources: &[status!("Job")],
        has_generation: true,
    }),
    resource!(
        coordination::Lease,
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        Namespaced,
        {}
    ),
    resource!(
        discovery::EndpointSlice,
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        Namespaced,
        {}
    ),
    resource!(events::Event, "events.k8s.io", "v1", "Event", "events", Namespaced, {
        short_names: &["ev"],
        keeps_status_on_create: true,
        conversion: Some(&conversion::EVENTS_V1),
    }),
    resource!(
        networking::IngressClass,
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        Cluster,
        {}
    ),
    resource!(networking::Ingress, "networking.k8s.io", "v1", "Ingress", "ingresses", Namespaced, {
        short_names: &["ing"],
        subresources: &[status!("Ingress")],
        has_generation: true,
    }),
    resource!(networking::NetworkPolicy, "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", Namespaced, {
        short_names: &["netpol"],
        has_generation: true,
    }),
    resource!(policy::PodDisruptionBudget, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", Namespaced, {
        short_names: &["pdb"],
        subresources: &[status!("PodDisruptionBudget")],
        has_generation: true,
    }),
    resource!(
        rbac::ClusterRoleBinding,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        Cluster,
        {}
    ),
    resource!(
        rbac::ClusterRole,
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        Cluster,
        {}
    ),
    resource!(
        rbac::RoleBinding,
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        Namespaced,
        {}
    ),
    resource!(
        rbac::Role,
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        Namespaced,
        {}
    ),
    resource!(storage::StorageClass, "storage.k8s.io", "v1", "StorageClass", "storageclasses", Cluster, {
        short_names: &["sc"],
        delete_returns_object: true,
    }),
    resource!(apiextensions::CustomResourceDefinition, "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", Cluster, {
        short_names: &["crd", "crds"],
        subresources: &[status!("CustomResourceDefinition")],
        has_generation: true,
    }),
];

/// Every resource served, in a stable order (discovery lists them in this order per group).
pub fn all() -> &'static [ResourceInfo] {
    RESOURCES
}

struct Index {
    by_gvr: HashMap<(&'static str, &'static str, &'static str), &'static ResourceInfo>,
    by_gvk: HashMap<(&'static str, &'static str, &'static str), &'static ResourceInfo>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_gvr = HashMap::new();
        let mut by_gvk = HashMap::new();
        for r in RESOURCES {
            by_gvr.insert((r.group, r.version, r.plural), r);
            by_gvk.insert((r.group, r.version, r.kind), r);
        }
        Index { by_gvr, by_gvk }
    })
}

/// The resource at `/apis/{group}/{version}/{plural}` (group "" for /api/v1).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    index().by_gvr.get(&(group, version, plural)).copied()
}

/// The resource serving a kind in a group-version.
pub fn lookup_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    index().by_gvk.get(&(group, version, kind)).copied()
}

/// A served group with its versions, preferred first.
pub struct GroupInfo {
    pub name: &'static str,
    pub versions: Vec<&'static str>,
}

/// The groups served (the core group "" first), each with versions in preference order.
pub fn groups() -> &'static [GroupInfo] {
    static GROUPS: OnceLock<Vec<GroupInfo>> = OnceLock::new();
    GROUPS.get_or_init(|| {
        let mut out: Vec<GroupInfo> = Vec::new();
        for r in RESOURCES {
            match out.iter_mut().find(|g| g.name == r.group) {
                Some(g) => {
                    if !g.versions.contains(&r.version) {
                        g.versions.push(r.version);
                    }
                }
                None => out.push(GroupInfo {
                    name: r.group,
                    versions: vec![r.version],
                }),
            }
        }
        out
    })
}

/// The resources of one group-version, in catalogue order.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_singular_name() {
        for r in all() {
            assert!(!r.singular.is_empty(), "{} has no singular name", r.kind);
        }
    }

    #[test]
    fn resources_are_found_by_path_and_kind() {
        let d = lookup("apps", "v1", "deployments").expect("deployments");
        assert_eq!(d.kind, "Deployment");
        assert!(lookup_kind("", "v1", "Pod").is_some());
        assert!(lookup("", "v1", "nope").is_none());
    }

    #[test]
    fn versions_of_a_group_are_listed_preferred_first() {
        let autoscaling = groups()
            .iter()
            .find(|g| g.name == "autoscaling")
            .expect("autoscaling");
        assert_eq!(autoscaling.versions, vec!["v2", "v1"]);
        assert_eq!(groups()[0].name, "");
    }

    /// The kinds whose registry store sets `ReturnDeletedObject` upstream (pkg/registry/*).
    #[test]
    fn deletes_return_objects_for_upstreams_kinds() {
        let mut kinds: Vec<&str> = all()
            .iter()
            .filter(|r| r.delete_returns_object)
            .map(|r| r.kind)
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "PersistentVolume",
                "PersistentVolumeClaim",
                "Pod",
                "PodTemplate",
                "ResourceQuota",
                "Service",
                "ServiceAccount",
                "StorageClass"
            ]
        );
        let cs = lookup("", "v1", "componentstatuses").expect("cs");
        assert_eq!(cs.source, Source::ComponentHealth);
        assert_eq!(cs.verbs, ["get", "list"]);
        assert!(cs.deprecation.is_some());
    }

    #[test]
    fn converted_versions_share_storage_with_the_stored_version() {
        let v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").expect("hpa v1");
        let v2 = lookup("autoscaling", "v2", "horizontalpodautoscalers").expect("hpa v2");
        assert_eq!(v1.storage_resource(), v2.storage_resource());
        let ev = lookup("events.k8s.io", "v1", "events").expect("events");
        assert_eq!(ev.storage_resource(), ("", "events"));
    }
}
