//! The `x-kubernetes-*` field extensions that k8s-openapi's schemas lack: patch strategy and
//! merge key (strategic merge patch, kubectl apply), list type, list map keys and map type
//! (server-side apply). Entry points: [`field`], [`struct_map_type`].

mod data;

pub(crate) use data::LIST_DESCRIPTIONS;

/// Extensions of one field, as upstream publishes them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct F {
    pub name: &'static str,
    /// `x-kubernetes-patch-strategy`: "merge", "replace", "retainKeys" or "merge,retainKeys".
    pub strategy: Option<&'static str>,
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: "atomic", "set" or "map".
    pub list_type: Option<&'static str>,
    pub map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: "atomic" or "granular".
    pub map_type: Option<&'static str>,
    /// A non-trivial default as JSON text (e.g. `"TCP"` for ContainerPort.protocol).
    pub default: Option<&'static str>,
}

impl F {
    pub(crate) const fn new(name: &'static str) -> F {
        F {
            name,
            strategy: None,
            merge_key: None,
            list_type: None,
            map_keys: &[],
            map_type: None,
            default: None,
        }
    }

    pub(crate) const fn strategy(mut self, s: &'static str) -> F {
        self.strategy = Some(s);
        self
    }

    pub(crate) const fn merge_key(mut self, k: &'static str) -> F {
        self.merge_key = Some(k);
        self
    }

    pub(crate) const fn list(mut self, t: &'static str) -> F {
        self.list_type = Some(t);
        self
    }

    pub(crate) const fn list_map(mut self, keys: &'static [&'static str]) -> F {
        self.list_type = Some("map");
        self.map_keys = keys;
        self
    }

    pub(crate) const fn map(mut self, t: &'static str) -> F {
        self.map_type = Some(t);
        self
    }

    pub(crate) const fn default(mut self, json: &'static str) -> F {
        self.default = Some(json);
        self
    }
}

/// Where k8s-openapi's `required` lists differ from upstream's (beyond `metadata`, which upstream
/// never requires and k8s-openapi always does): fields to drop, fields to add.
pub(crate) static REQUIRED_FIXES: &[(&str, &[&str], &[&str])] = &[
    ("io.k8s.api.core.v1.ConfigMapEnvSource", &["name"], &[]),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", &["name"], &[]),
    ("io.k8s.api.core.v1.ConfigMapProjection", &["name"], &[]),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", &["name"], &[]),
    ("io.k8s.api.core.v1.LocalObjectReference", &["name"], &[]),
    ("io.k8s.api.core.v1.SecretEnvSource", &["name"], &[]),
    ("io.k8s.api.core.v1.SecretKeySelector", &["name"], &[]),
    ("io.k8s.api.core.v1.SecretProjection", &["name"], &[]),
    ("io.k8s.api.core.v1.Event", &[], &["metadata"]),
    ("io.k8s.api.events.v1.Event", &[], &["eventTime"]),
    (
        "io.k8s.api.networking.v1.NetworkPolicySpec",
        &[],
        &["podSelector"],
    ),
];

/// `x-kubernetes-unions` upstream publishes (discriminated unions of profile sources).
pub(crate) static UNIONS: &[&str] = &[
    "io.k8s.api.core.v1.AppArmorProfile",
    "io.k8s.api.core.v1.SeccompProfile",
];

/// The extensions of every field of a schema that has any.
pub(crate) fn fields_of(schema: &str) -> &'static [F] {
    data::FIELDS
        .binary_search_by(|(name, _)| (*name).cmp(schema))
        .map(|i| data::FIELDS[i].1)
        .unwrap_or(&[])
}

/// The extensions of one field, if it has any.
#[cfg(test)]
pub(crate) fn field(schema: &str, field: &str) -> Option<&'static F> {
    fields_of(schema).iter().find(|f| f.name == field)
}

/// The `x-kubernetes-map-type` of a whole schema (e.g. "atomic" for LocalObjectReference).
pub(crate) fn struct_map_type(schema: &str) -> Option<&'static str> {
    data::STRUCT_MAP_TYPES
        .iter()
        .find(|(name, _)| *name == schema)
        .map(|(_, t)| *t)
}

/// Every schema named in the tables, for consistency tests.
#[cfg(test)]
pub(crate) fn all_fields() -> impl Iterator<Item = (&'static str, &'static F)> {
    data::FIELDS
        .iter()
        .flat_map(|(schema, fields)| fields.iter().map(move |f| (*schema, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_for_binary_search() {
        let names: Vec<&str> = data::FIELDS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn known_fields_carry_upstream_patch_metadata() {
        let containers = field("io.k8s.api.core.v1.PodSpec", "containers").expect("containers");
        assert_eq!(containers.strategy, Some("merge"));
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(containers.list_type, Some("map"));
        assert_eq!(containers.map_keys, &["name"]);

        let ports = field("io.k8s.api.core.v1.Container", "ports").expect("ports");
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.map_keys, &["containerPort", "protocol"]);

        let env = field("io.k8s.api.core.v1.Container", "env").expect("env");
        assert_eq!(env.merge_key, Some("name"));
        assert_eq!(env.strategy, Some("merge"));

        let volumes = field("io.k8s.api.core.v1.PodSpec", "volumes").expect("volumes");
        assert_eq!(volumes.strategy, Some("merge,retainKeys"));
        assert_eq!(volumes.merge_key, Some("name"));

        let finalizers = field(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        )
        .expect("finalizers");
        assert_eq!(finalizers.strategy, Some("merge"));
        assert_eq!(finalizers.list_type, Some("set"));

        let owners = field(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
        )
        .expect("owners");
        assert_eq!(owners.merge_key, Some("uid"));

        let svc_ports = field("io.k8s.api.core.v1.ServiceSpec", "ports").expect("service ports");
        assert_eq!(svc_ports.merge_key, Some("port"));
        assert_eq!(svc_ports.map_keys, &["port", "protocol"]);

        let strategy = field("io.k8s.api.apps.v1.DeploymentSpec", "strategy").expect("strategy");
        assert_eq!(strategy.strategy, Some("retainKeys"));

        let protocol = field("io.k8s.api.core.v1.ContainerPort", "protocol").expect("protocol");
        assert_eq!(protocol.default, Some("\"TCP\""));

        assert_eq!(
            struct_map_type("io.k8s.api.core.v1.LocalObjectReference"),
            Some("atomic")
        );
        assert_eq!(struct_map_type("io.k8s.api.core.v1.Container"), None);
    }
}
