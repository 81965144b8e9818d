//! Nodes: status shape and allocatable defaults, ValidateNode/ValidateNodeUpdate, the
//! `kubectl get nodes` columns and the `spec.unschedulable` field selector.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{DaemonEndpoint, Node, NodeDaemonEndpoints, Taint};
use serde_json::{json, Value};

use super::checks;
use super::quantity::canonicalize_opt_list;
use super::{age_cell, s};
use crate::field_error::{ErrorList, FieldError, FieldErrorType, Path};
use crate::kinds::pod_spec;
use crate::strategy::KindHooks;
use crate::table::{Column, RowContext};
use crate::validation::label_value;

/// Upstream's validateNodeTaints (reported under `metadata.taints`, as upstream does).
fn validate_taints(taints: &[Taint], path: &Path, errs: &mut ErrorList) {
    let mut unique = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = path.index(i);
        checks::label_name(&t.key, &p.child("key"), errs);
        let msgs = label_value(s(&t.value));
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                p.child("value"),
                s(&t.value),
                msgs.join(";"),
            ));
        }
        if t.effect.is_empty() {
            errs.push(FieldError::required(p.child("effect"), ""));
        } else {
            pod_spec::taint_effect(&t.effect, &p.child("effect"), errs);
        }
        if !unique.insert((t.effect.clone(), t.key.clone())) {
            errs.push(FieldError::new(
                FieldErrorType::Duplicate,
                &p,
                Some(serde_json::to_value(t).unwrap_or(Value::Null)),
                "taints must be unique by key and effect pair",
            ));
        }
    }
}

fn validate_resources(node: &Node, errs: &mut ErrorList) {
    let Some(status) = &node.status else { return };
    for (list, name) in [
        (&status.capacity, "capacity"),
        (&status.allocatable, "allocatable"),
    ] {
        for (k, v) in list.iter().flatten() {
            let p = Path::new("status").child(name).child(k);
            if let Some(q) = checks::parse_quantity(v, &p, errs) {
                checks::resource_quantity_value(k, &q, &p, errs);
            }
        }
    }
}

fn validate_pod_cidrs(cidrs: &[String], errs: &mut ErrorList) {
    let p = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        checks::valid_cidr(c, &p.index(i), errs);
    }
    if cidrs.len() > 1 {
        let v4 = |c: &String| {
            c.split('/')
                .next()
                .and_then(checks::parse_ip)
                .is_some_and(|ip| ip.is_ipv4())
        };
        if cidrs.len() > 2 || v4(&cidrs[0]) == v4(&cidrs[1]) {
            errs.push(FieldError::invalid(
                &p,
                json!(cidrs),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(FieldError::duplicate(p.index(i), c.as_str()));
            }
        }
    }
}

static COLUMNS: &[Column] = &[
    Column::name(),
    Column::new("Status", "string", "The status of the node"),
    Column::new("Roles", "string", "The roles of the node"),
    Column::age(),
    Column::new("Version", "string", "Kubelet Version reported by the node."),
    Column::new("Internal-IP", "string", "List of addresses reachable to the node.").wide(),
    Column::new("External-IP", "string", "List of addresses reachable to the node.").wide(),
    Column::new("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
    Column::new("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
    Column::new("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
];

const ROLE_PREFIX: &str = "node-role.kubernetes.io/";

fn roles(node: &Node) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in node.metadata.labels.iter().flatten() {
        if let Some(role) = k.strip_prefix(ROLE_PREFIX).filter(|r| !r.is_empty()) {
            roles.insert(role.to_string());
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v.clone());
        }
    }
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn or_unknown(v: &str) -> String {
    if v.is_empty() {
        "<unknown>".to_string()
    } else {
        v.to_string()
    }
}

impl KindHooks for Node {
    const FIELD_SELECTORS: &'static [&'static str] = &["spec.unschedulable"];

    fn defaults(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        // Upstream's conversion keeps podCIDR and podCIDRs in step.
        match spec.pod_cidrs.as_deref().and_then(|l| l.first()) {
            Some(first) => spec.pod_cidr = Some(first.clone()),
            None => {
                if let Some(c) = spec.pod_cidr.clone().filter(|c| !c.is_empty()) {
                    spec.pod_cidrs = Some(vec![c]);
                }
            }
        }
        let status = self.status.get_or_insert_with(Default::default);
        if status.allocatable.is_none() {
            status.allocatable = status.capacity.clone();
        }
        canonicalize_opt_list(&mut status.capacity);
        canonicalize_opt_list(&mut status.allocatable);
        // Go's non-pointer status structs always serialize.
        let de = status
            .daemon_endpoints
            .get_or_insert_with(NodeDaemonEndpoints::default);
        de.kubelet_endpoint
            .get_or_insert_with(DaemonEndpoint::default);
        status.node_info.get_or_insert_with(Default::default);
    }

    fn prepare_for_create(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.config_source = None;
        }
        if let Some(status) = self.status.as_mut() {
            status.config = None;
        }
    }

    fn prepare_for_update(&mut self, old: &Self) {
        let old_has = old.spec.as_ref().is_some_and(|s| s.config_source.is_some());
        if !old_has {
            if let Some(spec) = self.spec.as_mut() {
                spec.config_source = None;
            }
        }
    }

    fn validate(&self, errs: &mut ErrorList) {
        let spec = self.spec.clone().unwrap_or_default();
        if let Some(t) = spec.taints.as_deref().filter(|t| !t.is_empty()) {
            validate_taints(t, &Path::new("metadata").child("taints"), errs);
        }
        validate_resources(self, errs);
        if let Some(c) = spec.pod_cidrs.as_deref().filter(|c| !c.is_empty()) {
            validate_pod_cidrs(c, errs);
        }
    }

    fn validate_update(&self, old: &Self, errs: &mut ErrorList) {
        let (spec, old_spec) = (
            self.spec.clone().unwrap_or_default(),
            old.spec.clone().unwrap_or_default(),
        );
        let mut seen = Vec::new();
        for (i, a) in self
            .status
            .iter()
            .flat_map(|st| st.addresses.iter().flatten())
            .enumerate()
        {
            if seen.contains(&a) {
                errs.push(FieldError::duplicate(
                    Path::new("status").child("addresses").index(i),
                    serde_json::to_value(a).unwrap_or(Value::Null),
                ));
            }
            seen.push(a);
        }
        let old_cidrs = old_spec.pod_cidrs.clone().unwrap_or_default();
        let new_cidrs = spec.pod_cidrs.clone().unwrap_or_default();
        if !old_cidrs.is_empty() {
            let msg = "node updates may not change podCIDR except from \"\" to valid";
            if old_cidrs.len() != new_cidrs.len() {
                errs.push(FieldError::forbidden(
                    Path::new("spec").child("podCIDRs"),
                    msg,
                ));
            } else {
                for (o, n) in old_cidrs.iter().zip(&new_cidrs) {
                    if o != n {
                        errs.push(FieldError::forbidden(
                            Path::new("spec").child("podCIDRs"),
                            msg,
                        ));
                    }
                }
            }
        }
        if !s(&old_spec.provider_id).is_empty() && old_spec.provider_id != spec.provider_id {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        if spec.external_id != old_spec.external_id {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("externalID"),
                "may not be updated",
            ));
        }
    }

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn row(&self, ctx: &RowContext) -> Vec<Value> {
        let status = self.status.clone().unwrap_or_default();
        let mut states: Vec<String> = status
            .conditions
            .iter()
            .flatten()
            .rfind(|c| c.type_ == "Ready")
            .map(|c| {
                if c.status == "True" {
                    "Ready".to_string()
                } else {
                    "NotReady".to_string()
                }
            })
            .into_iter()
            .collect();
        if states.is_empty() {
            states.push("Unknown".to_string());
        }
        if self.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            states.push("SchedulingDisabled".to_string());
        }
        let info = status.node_info.clone().unwrap_or_default();
        let address = |ty: &str| {
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == ty)
                .map(|a| a.address.clone())
                .unwrap_or_else(|| "<none>".to_string())
        };
        vec![
            json!(self.metadata.name.clone().unwrap_or_default()),
            json!(states.join(",")),
            json!(roles(self)),
            age_cell(&self.metadata, ctx),
            json!(info.kubelet_version),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(or_unknown(&info.os_image)),
            json!(or_unknown(&info.kernel_version)),
            json!(or_unknown(&info.container_runtime_version)),
        ]
    }

    fn field_value(&self, field: &str) -> Option<String> {
        match field {
            "spec.unschedulable" => Some(
                self.spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::{Strategy, Typed};

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn a_created_node_shows_upstreams_status_shape() {
        let s: &dyn Strategy = &Typed::<Node>::NEW;
        let mut unknown = Vec::new();
        let mut obj = s
            .decode(json!({"metadata": {"name": "n1"}}), &mut unknown)
            .expect("decodes");
        s.apply_defaults(&mut obj);
        s.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"], json!({}));
        assert_eq!(
            obj["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 0}})
        );
        assert_eq!(obj["status"]["nodeInfo"]["kubeletVersion"], "");
        assert_eq!(obj["status"]["nodeInfo"]["machineID"], "");
    }

    #[test]
    fn allocatable_defaults_to_capacity() {
        let mut n = node(
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4", "memory": "8192Mi"}}}),
        );
        n.defaults();
        let st = serde_json::to_value(&n.status).expect("json");
        assert_eq!(st["allocatable"], json!({"cpu": "4", "memory": "8Gi"}));
    }

    #[test]
    fn a_ready_cordoned_control_plane_node_prints_like_kubectl() {
        let n = node(
            json!({"metadata": {"name": "n1", "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                    "containerRuntimeVersion": "containerd://1.7.0", "architecture": "", "bootID": "", "kubeProxyVersion": "",
                    "machineID": "", "operatingSystem": "", "systemUUID": ""}}}),
        );
        let ctx = RowContext {
            now: "2024-01-03T00:00:00Z".parse().expect("t"),
        };
        assert_eq!(
            n.row(&ctx),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("2d"),
                json!("v1.32.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0"),
                json!("containerd://1.7.0"),
            ]
        );
        assert_eq!(n.field_value("spec.unschedulable").as_deref(), Some("true"));
    }

    #[test]
    fn a_node_without_conditions_is_unknown() {
        let n = node(json!({"metadata": {"name": "n"}}));
        assert_eq!(n.row(&RowContext::now())[1], json!("Unknown"));
        assert_eq!(n.row(&RowContext::now())[7], json!("<unknown>"));
    }

    #[test]
    fn duplicate_taints_are_rejected() {
        let n = node(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "x", "effect": "Sometimes"}]}}));
        let mut errs = Vec::new();
        n.validate(&mut errs);
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            vec![
                "metadata.taints[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"k\"}: taints must be unique by key and effect pair",
                "metadata.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
            ]
        );
    }
}
