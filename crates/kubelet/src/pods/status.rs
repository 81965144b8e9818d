//! The pod status the agent reports, built from the runtime's view: [`build`] gives phase
//! (upstream's `getPhase`), conditions (PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready; PodScheduled kept), container statuses with state, lastState,
//! restartCount, ready and started, pod IPs, host IPs and startTime.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use super::observe::{CState, Ctr, Observed};
use super::plan::Waiting;
use crate::util::rfc3339_nanos;

/// Readiness and startup verdicts by container id.
#[derive(Clone, Debug, Default)]
pub struct ProbeState {
    /// Containers whose readiness probe passes (containers without one are not listed).
    pub ready: HashSet<String>,
    /// Containers whose startup probe has not passed yet.
    pub not_started: HashSet<String>,
    /// Containers that have a readiness probe.
    pub has_readiness: HashSet<String>,
}

/// What [`build`] needs besides the pod and the runtime view.
pub struct Inputs<'a> {
    pub waiting: &'a HashMap<String, Waiting>,
    pub probes: &'a ProbeState,
    pub host_ip: &'a str,
    pub now: &'a str,
    /// The pod will run no container again (set by the worker).
    pub finished: bool,
    /// Whether a sandbox is being created (containers wait as ContainerCreating).
    pub terminating: bool,
}

fn terminated(c: &Ctr) -> Value {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": c.exit_code,
        "reason": reason,
        "containerID": format!("containerd://{}", c.id),
    });
    if let Some(s) = rfc3339_nanos(c.started_at) {
        t["startedAt"] = json!(s);
    }
    if let Some(f) = rfc3339_nanos(c.finished_at) {
        t["finishedAt"] = json!(f);
    }
    if !c.message.is_empty() {
        t["message"] = json!(c.message);
    }
    json!({"terminated": t})
}

fn container_status(
    spec: &Container,
    obs: &Observed,
    sandbox: Option<&str>,
    inp: &Inputs<'_>,
    init: bool,
) -> Value {
    let latest = obs.latest(&spec.name, None);
    let mut s = json!({
        "name": spec.name,
        "image": spec.image.clone().unwrap_or_default(),
        "imageID": "",
        "ready": false,
        "restartCount": 0,
        "started": false,
        "lastState": {},
        "state": {"waiting": {"reason": if init { "PodInitializing" } else { "ContainerCreating" }}},
    });
    if init {
        s["state"] = json!({"waiting": {"reason": "PodInitializing"}});
    }
    let Some(c) = latest else {
        if let Some(w) = inp.waiting.get(&spec.name) {
            s["state"] = waiting(w);
        } else if init {
            s["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        }
        if !init && sandbox.is_some() && inp.waiting.get(&spec.name).is_none() {
            s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        }
        return s;
    };
    s["restartCount"] = json!(c.attempt);
    s["imageID"] = json!(c.image_ref);
    s["containerID"] = json!(format!("containerd://{}", c.id));
    match c.state {
        CState::Running => {
            let mut run = json!({});
            if let Some(t) = rfc3339_nanos(c.started_at) {
                run["startedAt"] = json!(t);
            }
            s["state"] = json!({"running": run});
            let started = !inp.probes.not_started.contains(&c.id);
            s["started"] = json!(started);
            let ready = started
                && (!inp.probes.has_readiness.contains(&c.id) || inp.probes.ready.contains(&c.id));
            s["ready"] = json!(ready && !inp.terminating);
            if let Some(prev) = obs.previous_exited(&spec.name, &c.id) {
                s["lastState"] = terminated(prev);
            }
        }
        CState::Exited => match inp.waiting.get(&spec.name) {
            // Waiting to restart: the exited instance becomes lastState.
            Some(w) if !inp.finished => {
                s["state"] = waiting(w);
                s["lastState"] = terminated(c);
            }
            _ => {
                s["state"] = terminated(c);
                if let Some(prev) = obs.previous_exited(&spec.name, &c.id) {
                    s["lastState"] = terminated(prev);
                }
            }
        },
        CState::Created | CState::Unknown => {
            s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
        }
    }
    s
}

fn waiting(w: &Waiting) -> Value {
    let mut v = json!({"reason": w.reason});
    if !w.message.is_empty() {
        v["message"] = json!(w.message);
    }
    json!({"waiting": v})
}

/// Upstream's `getPhase` over the statuses just built.
pub fn phase(policy: &str, init: &[Value], app: &[Value]) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        let st = &s["state"];
        if st.get("running").is_some() {
            pending_init += 1;
        } else if let Some(t) = st.get("terminated") {
            if t["exitCode"] != 0 {
                failed_init += 1;
            }
        } else if st.get("waiting").is_some() {
            let last_failed = s["lastState"]
                .get("terminated")
                .is_some_and(|t| t["exitCode"] != 0);
            if last_failed {
                failed_init += 1;
            } else {
                pending_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for s in app {
        let st = &s["state"];
        if st.get("running").is_some() {
            running += 1;
        } else if let Some(t) = st.get("terminated") {
            stopped += 1;
            if t["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if st.get("waiting").is_some() {
            if s["lastState"].get("terminated").is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    old: &Value,
    t: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let prev = old["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .cloned();
    let since = match &prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let mut c =
        json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// The status of `pod` given the runtime view.
pub fn build(pod: &Pod, obs: &Observed, inp: &Inputs<'_>) -> Value {
    let old = pod
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let sandbox = obs.ready_sandbox();
    let sb_id = sandbox.map(|s| s.id.as_str());
    let inits: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, obs, sb_id, inp, true))
        .collect();
    let apps: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_status(c, obs, sb_id, inp, false))
        .collect();
    let old_phase = old["phase"].as_str().unwrap_or("Pending");
    let mut phase = phase(&policy, &inits, &apps);
    // A terminal phase is final (upstream's status manager refuses to leave it).
    if matches!(old_phase, "Succeeded" | "Failed") {
        phase = if old_phase == "Succeeded" {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let inits_done = spec.init_containers.iter().flatten().count() == 0
        || inits
            .iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == 0)
        || apps.iter().any(|s| s["containerID"].is_string());
    let incomplete: Vec<String> = inits
        .iter()
        .filter(|s| s["state"]["terminated"]["exitCode"] != 0)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let unready: Vec<String> = apps
        .iter()
        .filter(|s| s["ready"] != true)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let now = inp.now;
    let completed = if terminal { Some("PodCompleted") } else { None };
    let mut conditions = vec![
        condition(
            &old,
            "PodReadyToStartContainers",
            sandbox.is_some() && !terminal,
            None,
            None,
            now,
        ),
        if inits_done {
            condition(&old, "Initialized", true, completed, None, now)
        } else {
            condition(
                &old,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
                now,
            )
        },
    ];
    let all_ready = unready.is_empty() && !terminal;
    let not_ready_msg = Some(format!(
        "containers with unready status: [{}]",
        unready.join(" ")
    ));
    if all_ready {
        conditions.push(condition(&old, "ContainersReady", true, None, None, now));
        conditions.push(condition(&old, "Ready", true, None, None, now));
    } else if terminal {
        conditions.push(condition(
            &old,
            "ContainersReady",
            false,
            Some("PodCompleted"),
            None,
            now,
        ));
        conditions.push(condition(
            &old,
            "Ready",
            false,
            Some("PodCompleted"),
            None,
            now,
        ));
    } else {
        conditions.push(condition(
            &old,
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            not_ready_msg.clone(),
            now,
        ));
        conditions.push(condition(
            &old,
            "Ready",
            false,
            Some("ContainersNotReady"),
            not_ready_msg,
            now,
        ));
    }
    // Conditions owned by others (PodScheduled, readiness gates, DisruptionTarget) are kept.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ];
    for c in old["conditions"].as_array().into_iter().flatten() {
        if !ours.contains(&c["type"].as_str().unwrap_or_default()) {
            conditions.push(c.clone());
        }
    }
    if !conditions.iter().any(|c| c["type"] == "PodScheduled") {
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
    }
    let order = |t: &str| match t {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    };
    conditions.sort_by_key(|c| order(c["type"].as_str().unwrap_or_default()));

    let mut st = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": inp.host_ip,
        "hostIPs": [{"ip": inp.host_ip}],
        "startTime": old.get("startTime").cloned().unwrap_or_else(|| json!(now)),
        "containerStatuses": apps,
        "qosClass": super::spec::qos_class(pod),
    });
    if !inits.is_empty() {
        st["initContainerStatuses"] = Value::Array(inits);
    }
    let ephemeral: Vec<Value> = super::spec::ephemeral_containers(pod)
        .iter()
        .map(|(c, _)| container_status(c, obs, sb_id, inp, false))
        .collect();
    if !ephemeral.is_empty() {
        st["ephemeralContainerStatuses"] = Value::Array(ephemeral);
    }
    let host_net = spec.host_network.unwrap_or(false);
    let ip = if host_net {
        Some(inp.host_ip.to_string())
    } else {
        sandbox
            .and_then(|s| s.ip.clone())
            .or_else(|| old["podIP"].as_str().map(str::to_string))
    };
    if let Some(ip) = ip {
        let mut ips = vec![json!({"ip": ip})];
        if let Some(s) = sandbox {
            ips.extend(s.extra_ips.iter().map(|i| json!({"ip": i})));
        }
        st["podIP"] = json!(ip);
        st["podIPs"] = Value::Array(ips);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Value) -> Value {
        v
    }

    #[test]
    fn phase_follows_upstream_get_phase() {
        let running = s(json!({"state": {"running": {}}, "lastState": {}}));
        let ok = s(json!({"state": {"terminated": {"exitCode": 0}}, "lastState": {}}));
        let bad = s(json!({"state": {"terminated": {"exitCode": 1}}, "lastState": {}}));
        let backoff = s(
            json!({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}),
        );
        let creating =
            s(json!({"state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}));
        assert_eq!(
            phase("Always", &[], std::slice::from_ref(&running)),
            "Running"
        );
        assert_eq!(
            phase("Always", &[], std::slice::from_ref(&backoff)),
            "Running"
        );
        assert_eq!(
            phase("Always", &[], std::slice::from_ref(&creating)),
            "Pending"
        );
        assert_eq!(phase("Never", &[], std::slice::from_ref(&ok)), "Succeeded");
        assert_eq!(phase("Never", &[], &[ok.clone(), bad.clone()]), "Failed");
        assert_eq!(
            phase("OnFailure", &[], std::slice::from_ref(&bad)),
            "Running"
        );
        assert_eq!(
            phase(
                "Never",
                std::slice::from_ref(&bad),
                std::slice::from_ref(&creating)
            ),
            "Failed"
        );
        assert_eq!(
            phase(
                "Always",
                std::slice::from_ref(&running),
                std::slice::from_ref(&creating)
            ),
            "Pending"
        );
    }
}
