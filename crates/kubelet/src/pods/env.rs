//! A container's environment, as upstream's `makeEnvironmentVariables`: service links
//! first, then envFrom (ConfigMaps and Secrets, with prefixes), then env in order with
//! `$(VAR)` expansion and valueFrom (configMapKeyRef, secretKeyRef, fieldRef,
//! resourceFieldRef). [`resolve`] is pure: the referenced objects are fetched beforehand
//! into [`Lookups`].

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use capstan_api::kinds::core::quantity;

/// Referenced objects, fetched before resolving. `None` = the object does not exist.
#[derive(Clone, Debug, Default)]
pub struct Lookups {
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
    /// Service env vars (`FOO_SERVICE_HOST`, ...) in upstream's order.
    pub service_env: Vec<(String, String)>,
    pub host_ip: String,
    pub pod_ip: String,
    pub pod_ips: Vec<String>,
    /// The node's allocatable CPU (millicores) and memory (bytes): limits default to them.
    pub node_cpu_milli: i64,
    pub node_memory: i64,
}

/// A configuration error: the container is not created; its waiting reason is
/// CreateContainerConfigError with this message.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{0}")]
    Other(String),
}

/// The names of ConfigMaps and Secrets a container's env refers to.
pub fn references(c: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Expands `$(VAR)` references from `vars`; `$$` escapes; unknown references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let b = input.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The value of a fieldRef path on `pod`.
pub fn field_value(pod: &Pod, path: &str, l: &Lookups) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let bracket = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(k) = bracket("metadata.labels['") {
        return Ok(m
            .labels
            .as_ref()
            .and_then(|x| x.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = bracket("metadata.annotations['") {
        return Ok(m
            .annotations
            .as_ref()
            .and_then(|x| x.get(&k))
            .cloned()
            .unwrap_or_default());
    }
    let fmt_map = |x: &Option<BTreeMap<String, String>>| {
        x.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => fmt_map(&m.labels),
        "metadata.annotations" => fmt_map(&m.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => l.host_ip.clone(),
        "status.hostIPs" => l.host_ip.clone(),
        "status.podIP" => l.pod_ip.clone(),
        "status.podIPs" => l.pod_ips.join(","),
        other => {
            return Err(ConfigError::Other(format!(
                "unsupported fieldRef path {other:?}"
            )))
        }
    })
}

/// The value of a resourceFieldRef for `container` (limits default to the node's allocatable).
pub fn resource_value(
    pod: &Pod,
    default_container: &Container,
    r: &ResourceFieldSelector,
    l: &Lookups,
) -> Result<String, ConfigError> {
    let c = match r.container_name.as_deref() {
        Some(n) if !n.is_empty() => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == n)
            .ok_or_else(|| ConfigError::Other(format!("container {n:?} not found")))?,
        _ => default_container,
    };
    let res = c.resources.as_ref();
    let get = |which: &str, name: &str| -> Option<String> {
        let m = if which == "limits" {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    // Upstream's ExtractContainerResourceValue: CPU as ceil(milliValue / divisor's
    // milliValue), the others as ceil(value / divisor's value); limits default to the node's
    // allocatable, requests to zero.
    let (which, name) = match r.resource.split_once('.') {
        Some((w @ ("limits" | "requests"), n @ ("cpu" | "memory" | "ephemeral-storage"))) => (w, n),
        _ => {
            return Err(ConfigError::Other(format!(
                "unsupported resourceFieldRef {:?}",
                r.resource
            )))
        }
    };
    let units = |q: &str| {
        if name == "cpu" {
            quantity::milli_value_of(q)
        } else {
            quantity::value_of(q)
        }
    };
    let value = match get(which, name).and_then(|q| units(&q)) {
        Some(v) => v,
        None => match (which, name) {
            ("limits", "cpu") => l.node_cpu_milli,
            ("limits", "memory") => l.node_memory,
            _ => 0,
        },
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| units(&d.0))
        .filter(|d| *d > 0)
        .unwrap_or(if name == "cpu" { 1000 } else { 1 });
    let n = (value.max(0) + divisor - 1) / divisor;
    Ok(n.to_string())
}

/// The full environment of `c` in `pod`, in upstream's order.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    l: &Lookups,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |order: &mut Vec<String>, vars: &mut HashMap<String, String>, k: String, v: String| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for (k, v) in &l.service_env {
        set(&mut order, &mut vars, k.clone(), v.clone());
    }
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        if let Some(r) = &f.config_map_ref {
            match l.config_maps.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &f.secret_ref {
            match l.secrets.get(&r.name).cloned().flatten() {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(ConfigError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or_default(), &vars),
            Some(vf) => {
                if let Some(r) = &vf.config_map_key_ref {
                    match l.config_maps.get(&r.name).cloned().flatten() {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(ConfigError::ConfigMapKeyNotFound {
                                    namespace: ns,
                                    name: r.name.clone(),
                                    key: r.key.clone(),
                                })
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(ConfigError::ConfigMapNotFound(r.name.clone())),
                    }
                } else if let Some(r) = &vf.secret_key_ref {
                    match l.secrets.get(&r.name).cloned().flatten() {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => v.clone(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(ConfigError::SecretKeyNotFound {
                                    namespace: ns,
                                    name: r.name.clone(),
                                    key: r.key.clone(),
                                })
                            }
                        },
                        None if r.optional == Some(true) => continue,
                        None => return Err(ConfigError::SecretNotFound(r.name.clone())),
                    }
                } else if let Some(r) = &vf.field_ref {
                    field_value(pod, &r.field_path, l)?
                } else if let Some(r) = &vf.resource_field_ref {
                    resource_value(pod, c, r, l)?
                } else {
                    String::new()
                }
            }
        };
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

/// Docker-link style variables for services (upstream's `enableServiceLinks`), for one service:
/// `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT`, `NAME_PORT_80_TCP...`.
pub fn service_env(
    name: &str,
    cluster_ip: &str,
    ports: &[(Option<String>, i32, String)],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if cluster_ip.is_empty() || cluster_ip == "None" || ports.is_empty() {
        return out;
    }
    let n = name.to_uppercase().replace('-', "_");
    out.push((format!("{n}_SERVICE_HOST"), cluster_ip.to_string()));
    out.push((format!("{n}_SERVICE_PORT"), ports[0].1.to_string()));
    for (pname, port, _) in ports {
        if let Some(pn) = pname.as_deref().filter(|p| !p.is_empty()) {
            out.push((
                format!("{n}_SERVICE_PORT_{}", pn.to_uppercase().replace('-', "_")),
                port.to_string(),
            ));
        }
    }
    let (_, p0, proto0) = &ports[0];
    out.push((
        format!("{n}_PORT"),
        format!("{}://{cluster_ip}:{p0}", proto0.to_lowercase()),
    ));
    for (_, port, proto) in ports {
        let pfx = format!("{n}_PORT_{port}_{}", proto.to_uppercase());
        out.push((
            pfx.clone(),
            format!("{}://{cluster_ip}:{port}", proto.to_lowercase()),
        ));
        out.push((format!("{pfx}_PROTO"), proto.to_lowercase()));
        out.push((format!("{pfx}_PORT"), port.to_string()));
        out.push((format!("{pfx}_ADDR"), cluster_ip.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
            "spec": {"nodeName": "n1", "containers": [{
                "name": "c", "image": "i",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "A", "value": "a"},
                    {"name": "B", "value": "$(A)-b $$(A) $(MISSING)"},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}
                ]
            }]}
        }))
        .expect("pod")
    }

    fn lookups() -> Lookups {
        Lookups {
            config_maps: HashMap::from([(
                "cm".into(),
                Some(BTreeMap::from([("K".into(), "v".into())])),
            )]),
            secrets: HashMap::from([(
                "s".into(),
                Some(BTreeMap::from([("k".into(), "secret".into())])),
            )]),
            pod_ip: "10.42.0.9".into(),
            node_cpu_milli: 2000,
            node_memory: 1 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn env_resolves_every_source_in_order_with_expansion() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let env = resolve(&p, c, &lookups()).expect("env");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0], ("CM_K".to_string(), "v".to_string()));
        assert_eq!(get("B"), Some("a-b $(A) $(MISSING)"));
        assert_eq!(get("S"), Some("secret"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("IP"), Some("10.42.0.9"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU"), Some("2"));
    }

    #[test]
    fn a_missing_secret_is_a_config_error() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let mut l = lookups();
        l.secrets.insert("s".into(), None);
        assert_eq!(
            resolve(&p, c, &l),
            Err(ConfigError::SecretNotFound("s".into()))
        );
    }

    #[test]
    fn service_links_follow_dockers_names() {
        let env = service_env(
            "my-svc",
            "10.43.0.5",
            &[(Some("http".into()), 80, "TCP".into())],
        );
        assert!(env.contains(&("MY_SVC_SERVICE_HOST".into(), "10.43.0.5".into())));
        assert!(env.contains(&("MY_SVC_PORT_80_TCP_ADDR".into(), "10.43.0.5".into())));
        assert!(env.contains(&("MY_SVC_SERVICE_PORT_HTTP".into(), "80".into())));
    }
}
