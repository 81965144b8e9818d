//! Pod and container specs as CRI configs: [`sandbox_config`] (metadata, hostname, DNS per
//! dnsPolicy, port mappings for hostPort, namespaces, cgroup parent, sysctls) and
//! [`container_config`] (command and args with `$(VAR)` expansion, env, mounts, resources as
//! cgroup limits, securityContext), plus the per-pod /etc/hosts ([`hosts_file`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

use super::env;
use super::observe::keys;
use crate::cri::api as pb;
use capstan_api::kinds::core::quantity;

/// Cluster DNS settings and the host's resolver config.
#[derive(Clone, Debug, Default)]
pub struct Dns {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub host_servers: Vec<String>,
    pub host_searches: Vec<String>,
    pub host_options: Vec<String>,
}

impl Dns {
    /// Reads the host's resolv.conf (systemd-resolved's upstream file when the stub is in use).
    pub fn with_host_resolv(mut self) -> Self {
        let mut text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        if text.contains("127.0.0.53") {
            if let Ok(t) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
                text = t;
            }
        }
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => self.host_servers.extend(f.next().map(str::to_string)),
                Some("search") | Some("domain") => self.host_searches.extend(f.map(str::to_string)),
                Some("options") => self.host_options.extend(f.map(str::to_string)),
                _ => {}
            }
        }
        self
    }
}

/// The pod's DNS config per its dnsPolicy and dnsConfig, as upstream's `GetPodDNS`.
pub fn dns_config(pod: &Pod, dns: &Dns) -> pb::DnsConfig {
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster = |d: &Dns| -> pb::DnsConfig {
        let dom = &d.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{dom}"), format!("svc.{dom}"), dom.clone()];
        searches.extend(d.host_searches.iter().cloned());
        pb::DnsConfig {
            servers: d.cluster_dns.iter().map(ToString::to_string).collect(),
            searches,
            options: vec!["ndots:5".into()],
        }
    };
    let host = |d: &Dns| pb::DnsConfig {
        servers: d.host_servers.clone(),
        searches: d.host_searches.clone(),
        options: d.host_options.clone(),
    };
    let mut cfg = match policy {
        "None" => pb::DnsConfig::default(),
        "Default" => host(dns),
        "ClusterFirstWithHostNet" if !dns.cluster_dns.is_empty() => cluster(dns),
        "ClusterFirst" if !host_net && !dns.cluster_dns.is_empty() => cluster(dns),
        _ => host(dns),
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let text = match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = o.name.clone().unwrap_or_default();
            cfg.options
                .retain(|x| x.split(':').next() != Some(key.as_str()));
            cfg.options.push(text);
        }
    }
    cfg.servers.truncate(3);
    cfg.searches.truncate(32);
    cfg
}

/// The pod's hostname (spec.hostname, else its name truncated to 63 characters).
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// The pod's /etc/hosts: upstream's managed file with the pod's own address and hostAliases.
pub fn hosts_file(pod: &Pod, pod_ip: Option<&str>, domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let host = hostname(pod);
    if let Some(ip) = pod_ip {
        match spec
            .and_then(|s| s.subdomain.as_deref())
            .filter(|s| !s.is_empty())
        {
            Some(sub) => {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                out.push_str(&format!("{ip}\t{host}.{sub}.{ns}.svc.{domain}\t{host}\n"));
            }
            None => out.push_str(&format!("{ip}\t{host}\n")),
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

/// QoS class as upstream computes it.
/// The pod's ephemeral containers (`kubectl debug`) as plain containers (the same fields
/// less `targetContainerName`), with the container whose process namespace each joins.
pub fn ephemeral_containers(pod: &Pod) -> Vec<(Container, Option<String>)> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .filter_map(|e| {
            let target = e.target_container_name.clone().filter(|t| !t.is_empty());
            let mut v = serde_json::to_value(e).ok()?;
            if let Some(m) = v.as_object_mut() {
                m.remove("targetContainerName");
            }
            Some((serde_json::from_value::<Container>(v).ok()?, target))
        })
        .collect()
}

pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let lim = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (lim.get(res), req.get(res)) {
                (Some(l), Some(q)) if quantity::parse(l).ok() == quantity::parse(q).ok() => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The pod's cgroup parent (cgroupfs layout, as upstream's kubepods hierarchy).
pub fn cgroup_parent(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

fn base_labels(pod: &Pod) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(
        keys::POD_NAME.into(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(
        keys::POD_NAMESPACE.into(),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    l.insert(
        keys::POD_UID.into(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    l
}

/// The sandbox config; `log_dir` holds the pod's container logs.
pub fn sandbox_config(pod: &Pod, attempt: u32, log_dir: &Path, dns: &Dns) -> pb::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_net = spec.host_network.unwrap_or(false);
    let mut ports = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                let proto = match p.protocol.as_deref() {
                    Some("UDP") => pb::Protocol::Udp,
                    Some("SCTP") => pb::Protocol::Sctp,
                    _ => pb::Protocol::Tcp,
                };
                ports.push(pb::PortMapping {
                    protocol: proto as i32,
                    container_port: p.container_port,
                    host_port: hp,
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let ns_mode = |node: bool| {
        if node {
            pb::NamespaceMode::Node as i32
        } else {
            pb::NamespaceMode::Pod as i32
        }
    };
    let pid = if spec.host_pid == Some(true) {
        pb::NamespaceMode::Node as i32
    } else if spec.share_process_namespace == Some(true) {
        pb::NamespaceMode::Pod as i32
    } else {
        pb::NamespaceMode::Container as i32
    };
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    let sysctls: HashMap<String, String> = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(
        keys::GRACE_PERIOD.into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    let mut labels = base_labels(pod);
    for (k, v) in pod.metadata.labels.clone().unwrap_or_default() {
        labels.entry(k).or_insert(v);
    }
    pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_net {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: log_dir.to_string_lossy().into_owned(),
        dns_config: Some(dns_config(pod, dns)),
        port_mappings: ports,
        labels,
        annotations,
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod),
            security_context: Some(pb::LinuxSandboxSecurityContext {
                namespace_options: Some(pb::NamespaceOption {
                    network: ns_mode(host_net),
                    pid,
                    ipc: ns_mode(spec.host_ipc == Some(true)),
                    ..Default::default()
                }),
                run_as_user: psc.run_as_user.map(|v| pb::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| pb::Int64Value { value: v }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        windows: None,
    }
}

/// cgroup settings from the container's requests and limits (cgroup v1, as upstream computes).
pub fn resources(c: &Container, qos: &str) -> pb::LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let req = r.requests.unwrap_or_default();
    let lim = r.limits.unwrap_or_default();
    let cpu_req = req
        .get("cpu")
        .or(lim.get("cpu"))
        .and_then(|q| quantity::milli_value_of(&q.0));
    let cpu_lim = lim.get("cpu").and_then(|q| quantity::milli_value_of(&q.0));
    let mem_lim = lim.get("memory").and_then(|q| quantity::value_of(&q.0));
    let shares = cpu_req.map_or(2, |m| (m * 1024 / 1000).max(2));
    let (period, quota) = match cpu_lim {
        Some(m) => (100_000, (m * 100_000 / 1000).max(1000)),
        None => (0, 0),
    };
    let oom = match qos {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let mem_req = req
                .get("memory")
                .and_then(|q| quantity::value_of(&q.0))
                .unwrap_or(0);
            let total = crate::node::memory_bytes().max(1);
            (1000 - 1000 * mem_req / total).clamp(3, 999)
        }
    };
    pb::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_lim.unwrap_or(0),
        oom_score_adj: oom,
        ..Default::default()
    }
}

fn security(
    sc: Option<&SecurityContext>,
    pod: &Pod,
    run_as_user_image: Option<i64>,
) -> Result<pb::LinuxContainerSecurityContext, env::ConfigError> {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = sc.cloned().unwrap_or_default();
    let run_as_user = sc.run_as_user.or(psc.run_as_user);
    let run_as_group = sc.run_as_group.or(psc.run_as_group);
    let non_root = sc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    if non_root {
        match run_as_user.or(run_as_user_image) {
            Some(0) | None => {
                return Err(env::ConfigError::Other(
                    "container has runAsNonRoot and image will run as root".into(),
                ))
            }
            _ => {}
        }
    }
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let host_net = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let ns_mode = |node: bool| {
        if node {
            pb::NamespaceMode::Node as i32
        } else {
            pb::NamespaceMode::Pod as i32
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let pid = if spec.host_pid == Some(true) {
        pb::NamespaceMode::Node as i32
    } else if spec.share_process_namespace == Some(true) {
        pb::NamespaceMode::Pod as i32
    } else {
        pb::NamespaceMode::Container as i32
    };
    Ok(pb::LinuxContainerSecurityContext {
        capabilities: Some(pb::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(pb::NamespaceOption {
            network: ns_mode(host_net),
            pid,
            ipc: ns_mode(spec.host_ipc == Some(true)),
            ..Default::default()
        }),
        run_as_user: run_as_user.map(|v| pb::Int64Value { value: v }),
        run_as_group: run_as_group.map(|v| pb::Int64Value { value: v }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        ..Default::default()
    })
}

/// Everything a container config needs besides the spec.
pub struct ContainerInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub attempt: u32,
    pub image_ref: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<pb::Mount>,
    pub init: bool,
    pub hash: String,
    pub message_file: Option<String>,
}

/// The container config for `inp`.
pub fn container_config(inp: ContainerInputs<'_>) -> Result<pb::ContainerConfig, env::ConfigError> {
    let c = inp.container;
    let vars: HashMap<String, String> = inp.env.iter().cloned().collect();
    let expand_all = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| env::expand(s, &vars)).collect()
    };
    let mut labels = base_labels(inp.pod);
    labels.insert(keys::CONTAINER_NAME.into(), c.name.clone());
    let mut annotations = HashMap::new();
    annotations.insert(keys::CONTAINER_HASH.into(), inp.hash.clone());
    annotations.insert(keys::RESTART_COUNT.into(), inp.attempt.to_string());
    annotations.insert(
        keys::TERMINATION_MESSAGE_PATH.into(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    );
    annotations.insert(
        keys::GRACE_PERIOD.into(),
        inp.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .to_string(),
    );
    if inp.init {
        annotations.insert(keys::INIT.into(), "true".into());
    }
    if let Some(f) = &inp.message_file {
        annotations.insert(keys::MESSAGE_FILE.into(), f.clone());
    }
    annotations.insert(
        keys::MESSAGE_POLICY.into(),
        c.termination_message_policy
            .clone()
            .unwrap_or_else(|| "File".into()),
    );
    let qos = qos_class(inp.pod);
    let sec = security(c.security_context.as_ref(), inp.pod, None)?;
    Ok(pb::ContainerConfig {
        metadata: Some(pb::ContainerMetadata {
            name: c.name.clone(),
            attempt: inp.attempt,
        }),
        image: Some(pb::ImageSpec {
            image: inp.image_ref.clone(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inp
            .env
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: inp.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", c.name, inp.attempt),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(pb::LinuxContainerConfig {
            resources: Some(resources(c, qos)),
            security_context: Some(sec),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_and_the_namespace_search_path() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}),
        );
        let dns = Dns {
            cluster_dns: vec!["10.43.0.10".parse().expect("ip")],
            cluster_domain: "cluster.local".into(),
            host_servers: vec!["1.1.1.1".into()],
            host_searches: vec!["example.com".into()],
            host_options: vec![],
        };
        let c = dns_config(&p, &dns);
        assert_eq!(c.servers, vec!["10.43.0.10"]);
        assert_eq!(
            c.searches,
            vec![
                "ns.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "example.com"
            ]
        );
        assert_eq!(c.options, vec!["ndots:5"]);
        let host_net = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"hostNetwork": true, "containers": []}}),
        );
        assert_eq!(dns_config(&host_net, &dns).servers, vec!["1.1.1.1"]);
        let none = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"dnsPolicy": "None", "dnsConfig": {"nameservers": ["9.9.9.9"], "options": [{"name": "ndots", "value": "2"}]}, "containers": []}}),
        );
        let c = dns_config(&none, &dns);
        assert_eq!(
            (c.servers, c.options),
            (vec!["9.9.9.9".to_string()], vec!["ndots:2".to_string()])
        );
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}})).expect("c");
        let r = resources(&c, "Guaranteed");
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100_000, 50_000, 512)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": {"containers": [], "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}]}}),
        );
        let h = hosts_file(&p, Some("10.42.0.7"), "cluster.local");
        assert!(h.contains("10.42.0.7\tweb\n"));
        assert!(h.contains("1.2.3.4\ta\tb\n"));
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let mk = |res: serde_json::Value| {
            pod(
                serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": res}]}}),
            )
        };
        assert_eq!(qos_class(&mk(serde_json::json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&mk(
                serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&mk(serde_json::json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}
