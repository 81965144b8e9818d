//! Upstream's defaulting of pod specs (`SetDefaults_PodSpec` and the generated defaulters for
//! everything under it: containers, probes, volumes, resource lists), plus the Pod-only
//! defaults (`SetDefaults_Pod`) that templates do not get.

use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, HTTPGetAction, Lifecycle, ObjectFieldSelector,
    PersistentVolumeClaimSpec, PodSpec, Probe, ResourceFieldSelector, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;

use crate::kinds::core::quantity::{canonicalize, canonicalize_opt_list};

fn set_if_none<T>(slot: &mut Option<T>, value: impl FnOnce() -> T) {
    if slot.is_none() {
        *slot = Some(value());
    }
}

fn set_str_if_empty(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().unwrap_or("").is_empty() {
        *slot = Some(value.to_string());
    }
}

/// The tag of an image reference, as upstream's ParseImageName finds it: "latest" when neither a
/// tag nor a digest is given, "" when only a digest is.
pub(crate) fn image_tag(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A ':' after the last '/' separates the tag; earlier ones belong to a registry port.
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    match last_segment.rsplit_once(':') {
        Some((_, tag)) => tag.to_string(),
        None if digest.is_some() => String::new(),
        None => "latest".to_string(),
    }
}

/// `IfNotPresent` for tagged or digested images, `Always` for `:latest` or untagged ones.
pub(crate) fn default_pull_policy(image: Option<&str>) -> &'static str {
    match image {
        Some(i) if !i.is_empty() && image_tag(i) == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    set_str_if_empty(&mut h.path, "/");
    set_str_if_empty(&mut h.scheme, "HTTP");
}

fn default_probe(p: &mut Probe) {
    for (slot, v) in [
        (&mut p.timeout_seconds, 1),
        (&mut p.period_seconds, 10),
        (&mut p.success_threshold, 1),
        (&mut p.failure_threshold, 3),
    ] {
        if slot.unwrap_or(0) == 0 {
            *slot = Some(v);
        }
    }
    if let Some(h) = p.http_get.as_mut() {
        default_http_get(h);
    }
    if let Some(g) = p.grpc.as_mut() {
        set_if_none(&mut g.service, String::new);
    }
}

fn default_lifecycle(l: &mut Lifecycle) {
    for h in [l.post_start.as_mut(), l.pre_stop.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(g) = h.http_get.as_mut() {
            default_http_get(g);
        }
    }
}

fn default_field_ref(f: &mut ObjectFieldSelector) {
    set_str_if_empty(&mut f.api_version, "v1");
}

/// Go's non-pointer `divisor` always serializes, as "0" when unset.
fn default_resource_field_ref(r: &mut ResourceFieldSelector) {
    match r.divisor.as_mut() {
        Some(d) => canonicalize(d),
        None => r.divisor = Some(QuantityString("0".into())),
    }
}

fn default_resources(r: &mut Option<ResourceRequirements>) {
    let r = r.get_or_insert_with(Default::default);
    canonicalize_opt_list(&mut r.limits);
    canonicalize_opt_list(&mut r.requests);
    // Empty lists are omitted by upstream's serializer (omitempty).
    for list in [&mut r.limits, &mut r.requests] {
        if list.as_ref().is_some_and(|l| l.is_empty()) {
            *list = None;
        }
    }
    if r.claims.as_ref().is_some_and(|c| c.is_empty()) {
        r.claims = None;
    }
}

/// `SetDefaults_Container` and the generated defaults under a container.
pub(crate) fn default_container(c: &mut Container) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        c.image_pull_policy = Some(default_pull_policy(c.image.as_deref()).to_string());
    }
    set_str_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_str_if_empty(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_str_if_empty(&mut p.protocol, "TCP");
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(from) = e.value_from.as_mut() {
            if let Some(f) = from.field_ref.as_mut() {
                default_field_ref(f);
            }
            if let Some(r) = from.resource_field_ref.as_mut() {
                default_resource_field_ref(r);
            }
        }
    }
    default_resources(&mut c.resources);
    for p in [
        c.liveness_probe.as_mut(),
        c.readiness_probe.as_mut(),
        c.startup_probe.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        default_probe(p);
    }
    if let Some(l) = c.lifecycle.as_mut() {
        default_lifecycle(l);
    }
}

/// Ephemeral containers share the container defaults (upstream converts them the same way).
pub(crate) fn default_ephemeral_container(ec: &mut EphemeralContainer) {
    let Ok(mut c) = serde_json::to_value(&*ec).and_then(serde_json::from_value::<Container>) else {
        return;
    };
    default_container(&mut c);
    let target = ec.target_container_name.take();
    if let Ok(mut back) =
        serde_json::to_value(&c).and_then(serde_json::from_value::<EphemeralContainer>)
    {
        back.target_container_name = target;
        *ec = back;
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec` plus its resource lists.
pub(crate) fn default_pvc_spec(spec: &mut PersistentVolumeClaimSpec) {
    set_str_if_empty(&mut spec.volume_mode, "Filesystem");
    let r = spec.resources.get_or_insert_with(Default::default);
    canonicalize_opt_list(&mut r.limits);
    canonicalize_opt_list(&mut r.requests);
}

/// `SetDefaults_Volume` and the defaults of each volume source.
pub(crate) fn default_volume(v: &mut Volume) {
    let no_source = serde_json::to_value(&*v)
        .ok()
        .and_then(|j| j.as_object().map(|m| m.keys().all(|k| k == "name")))
        .unwrap_or(false);
    if no_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(e) = v.empty_dir.as_mut() {
        if let Some(s) = e.size_limit.as_mut() {
            canonicalize(s);
        }
    }
    if let Some(h) = v.host_path.as_mut() {
        set_if_none(&mut h.type_, String::new);
    }
    if let Some(s) = v.secret.as_mut() {
        set_if_none(&mut s.default_mode, || 0o644);
    }
    if let Some(c) = v.config_map.as_mut() {
        set_if_none(&mut c.default_mode, || 0o644);
    }
    if let Some(d) = v.downward_api.as_mut() {
        set_if_none(&mut d.default_mode, || 0o644);
        for item in d.items.iter_mut().flatten() {
            if let Some(f) = item.field_ref.as_mut() {
                default_field_ref(f);
            }
            if let Some(r) = item.resource_field_ref.as_mut() {
                default_resource_field_ref(r);
            }
        }
    }
    if let Some(p) = v.projected.as_mut() {
        set_if_none(&mut p.default_mode, || 0o644);
        for src in p.sources.iter_mut().flatten() {
            if let Some(d) = src.downward_api.as_mut() {
                for item in d.items.iter_mut().flatten() {
                    if let Some(f) = item.field_ref.as_mut() {
                        default_field_ref(f);
                    }
                    if let Some(r) = item.resource_field_ref.as_mut() {
                        default_resource_field_ref(r);
                    }
                }
            }
            if let Some(t) = src.service_account_token.as_mut() {
                set_if_none(&mut t.expiration_seconds, || 3600);
            }
        }
    }
    if let Some(i) = v.iscsi.as_mut() {
        set_str_if_empty(&mut i.iscsi_interface, "default");
    }
    if let Some(r) = v.rbd.as_mut() {
        set_str_if_empty(&mut r.pool, "rbd");
        set_str_if_empty(&mut r.user, "admin");
        set_str_if_empty(&mut r.keyring, "/etc/ceph/keyring");
    }
    if let Some(a) = v.azure_disk.as_mut() {
        set_str_if_empty(&mut a.caching_mode, "ReadWrite");
        set_str_if_empty(&mut a.fs_type, "ext4");
        set_if_none(&mut a.read_only, || false);
        set_str_if_empty(&mut a.kind, "Shared");
    }
    if let Some(s) = v.scale_io.as_mut() {
        set_str_if_empty(&mut s.storage_mode, "ThinProvisioned");
        set_str_if_empty(&mut s.fs_type, "xfs");
    }
    if let Some(t) = v
        .ephemeral
        .as_mut()
        .and_then(|e| e.volume_claim_template.as_mut())
    {
        default_pvc_spec(&mut t.spec);
    }
}

/// Everything upstream defaults in a pod spec wherever it appears (Pods and templates).
pub(crate) fn default_spec(spec: &mut PodSpec) {
    set_str_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_str_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(&mut spec.security_context, Default::default);
    set_if_none(&mut spec.termination_grace_period_seconds, || 30);
    set_str_if_empty(&mut spec.scheduler_name, "default-scheduler");
    // Conversion keeps the deprecated serviceAccount in step with serviceAccountName.
    if spec
        .service_account_name
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        if let Some(sa) = spec.service_account.clone().filter(|s| !s.is_empty()) {
            spec.service_account_name = Some(sa);
        }
    }
    spec.service_account = spec.service_account_name.clone().filter(|s| !s.is_empty());

    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c);
    }
    for c in spec.containers.iter_mut() {
        default_container(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        default_ephemeral_container(c);
    }
    canonicalize_opt_list(&mut spec.overhead);
    if let Some(r) = spec.resources.as_mut() {
        canonicalize_opt_list(&mut r.limits);
        canonicalize_opt_list(&mut r.requests);
    }
}

/// `SetDefaults_Pod`: what only a Pod (not a template) gets, run before [`default_spec`].
pub(crate) fn default_pod_only(spec: &mut PodSpec) {
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        let Some(r) = c.resources.as_mut() else {
            continue;
        };
        if let Some(limits) = r.limits.clone() {
            let requests = r.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    set_if_none(&mut spec.enable_service_links, || true);
    if spec.host_network == Some(true) {
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_are_found_like_upstream() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:1.25"), "1.25");
        assert_eq!(image_tag("localhost:5000/app"), "latest");
        assert_eq!(image_tag("localhost:5000/app:v1"), "v1");
        assert_eq!(image_tag("nginx@sha256:abc"), "");
        assert_eq!(image_tag("nginx:latest"), "latest");
    }

    #[test]
    fn pull_policy_defaults_by_tag() {
        assert_eq!(default_pull_policy(Some("nginx")), "Always");
        assert_eq!(default_pull_policy(Some("nginx:latest")), "Always");
        assert_eq!(default_pull_policy(Some("nginx:1.25")), "IfNotPresent");
        assert_eq!(
            default_pull_policy(Some("nginx@sha256:abc")),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy(None), "IfNotPresent");
    }

    #[test]
    fn a_volume_without_source_becomes_an_empty_dir() {
        let mut v = Volume {
            name: "scratch".into(),
            ..Default::default()
        };
        default_volume(&mut v);
        assert_eq!(
            serde_json::to_value(&v).expect("json"),
            serde_json::json!({"name":"scratch","emptyDir":{}})
        );
    }
}
