//! The pod state machine's decision step, pure: [`plan`] compares a pod's spec with what the
//! runtime holds ([`Observed`]) and returns what to do next, as upstream's
//! `computePodActions`: a sandbox first, then init containers one at a time in order, then every
//! app container; restarts per restartPolicy with CrashLoopBackOff delays; kills for failed
//! liveness/startup probes and changed specs; clean-up of stale sandboxes and dead containers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::observe::{CState, Ctr, Observed};
use crate::backoff::Backoff;

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run a new sandbox with this attempt number.
    CreateSandbox { attempt: u32 },
    /// Stop a sandbox (its containers are stopped first).
    StopSandbox { id: String },
    /// Create and start container `name` with `attempt`; `after_exit` is the finish time of
    /// the instance it replaces (recorded for back-off).
    Start {
        name: String,
        init: bool,
        attempt: u32,
        after_exit: Option<i64>,
    },
    /// Stop a running container.
    Kill {
        id: String,
        name: String,
        why: KillReason,
    },
    /// Remove dead containers and sandboxes that are no longer needed.
    Remove {
        containers: Vec<String>,
        sandboxes: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillReason {
    LivenessFailed,
    StartupFailed,
    SpecChanged,
    SandboxGone,
    PodFinished,
}

/// Why a container is not running now (shown as its waiting state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers held back, and why (CrashLoopBackOff, PodInitializing).
    pub waiting: HashMap<String, Waiting>,
    /// When the plan should be made again even if nothing happens (end of a back-off).
    pub wake_at: Option<SystemTime>,
}

/// Probe verdicts the planner acts on, by container id.
#[derive(Clone, Debug, Default)]
pub struct ProbeVerdicts {
    pub liveness_failed: HashSet<String>,
    pub startup_failed: HashSet<String>,
}

/// A stable hash of a container's spec (FNV-1a over its JSON): a change restarts it.
pub fn container_hash(c: &Container) -> String {
    let text = serde_json::to_string(c).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The back-off key of a container.
pub fn backoff_key(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an exited container should run again under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn nanos_time(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64)
}

/// Restart `last` now, or wait out its back-off.
/// Identifies a pod in back-off messages.
struct PodId<'a> {
    uid: &'a str,
    name: &'a str,
    ns: &'a str,
}

fn restart_or_wait(
    plan: &mut Plan,
    id: &PodId<'_>,
    last: &Ctr,
    init: bool,
    backoff: &Backoff,
    now: SystemTime,
) {
    let (uid, pod_name, ns) = (id.uid, id.name, id.ns);
    let key = backoff_key(uid, &last.name);
    let finished = nanos_time(last.finished_at);
    match backoff.waiting_since(&key, finished, now) {
        Some(until) => {
            let delay = backoff.delay(&key).unwrap_or_default();
            plan.waiting.insert(
                last.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {} restarting failed container={} pod={pod_name}_{ns}({uid})",
                        go_duration(delay),
                        last.name
                    ),
                },
            );
            plan.wake_at = Some(plan.wake_at.map_or(until, |w| w.min(until)));
        }
        None => plan.actions.push(Action::Start {
            name: last.name.clone(),
            init,
            attempt: last.attempt + 1,
            after_exit: Some(last.finished_at),
        }),
    }
}

/// Go's duration format for whole seconds and minutes ("10s", "1m20s", "5m0s").
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Whether the pod is done for good: no container will run again.
pub fn pod_finished(pod: &Pod, obs: &Observed) -> bool {
    let Some(spec) = &pod.spec else { return false };
    let policy = restart_policy(pod);
    if policy == "Always" {
        return false;
    }
    // An init container that failed with restartPolicy Never fails the pod.
    if policy == "Never" {
        for ic in spec.init_containers.iter().flatten() {
            if let Some(c) = obs.latest(&ic.name, None) {
                if c.state == CState::Exited && c.exit_code != 0 {
                    return true;
                }
            }
        }
    }
    spec.containers
        .iter()
        .all(|c| match obs.latest(&c.name, None) {
            Some(x) => x.state == CState::Exited && !should_restart(policy, x.exit_code),
            None => false,
        })
}

/// Decides the next actions for a pod that should be running (not being deleted).
pub fn plan(
    pod: &Pod,
    obs: &Observed,
    probes: &ProbeVerdicts,
    backoff: &Backoff,
    now: SystemTime,
) -> Plan {
    let mut p = Plan::default();
    let Some(spec) = &pod.spec else { return p };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let policy = restart_policy(pod);
    let finished = pod_finished(pod, obs);
    let pid = PodId { uid, name, ns };

    let Some(sb) = obs.ready_sandbox() else {
        // Upstream: a pod that never restarts gets no second sandbox once it ran containers.
        let ran = !obs.containers.is_empty();
        if finished || (policy == "Never" && !obs.sandboxes.is_empty() && ran) {
            for c in obs.running() {
                p.actions.push(Action::Kill {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    why: KillReason::SandboxGone,
                });
            }
        } else {
            for c in obs.running() {
                p.actions.push(Action::Kill {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    why: KillReason::SandboxGone,
                });
            }
            let attempt = obs
                .sandboxes
                .iter()
                .map(|s| s.attempt + 1)
                .max()
                .unwrap_or(0);
            p.actions.push(Action::CreateSandbox { attempt });
        }
        gc(&mut p, pod, obs, None);
        return p;
    };

    // Sandboxes other than the live one are stale: stop them.
    for s in obs.sandboxes.iter().filter(|s| s.ready && s.id != sb.id) {
        p.actions.push(Action::StopSandbox { id: s.id.clone() });
    }

    if finished {
        for c in obs.running() {
            p.actions.push(Action::Kill {
                id: c.id.clone(),
                name: c.name.clone(),
                why: KillReason::PodFinished,
            });
        }
        p.actions.push(Action::StopSandbox { id: sb.id.clone() });
        return p;
    }

    let in_sb = |n: &str| obs.latest(n, Some(&sb.id));
    let app_started = spec.containers.iter().any(|c| in_sb(&c.name).is_some());
    if !app_started {
        for ic in spec.init_containers.iter().flatten() {
            match in_sb(&ic.name) {
                None => {
                    let attempt = obs.latest(&ic.name, None).map_or(0, |c| c.attempt + 1);
                    p.actions.push(Action::Start {
                        name: ic.name.clone(),
                        init: true,
                        attempt,
                        after_exit: None,
                    });
                    mark_initializing(&mut p, pod);
                    return p;
                }
                Some(c) if c.state == CState::Exited && c.exit_code == 0 => continue,
                Some(c) if c.state == CState::Exited => {
                    if policy != "Never" {
                        restart_or_wait(&mut p, &pid, c, true, backoff, now);
                    }
                    mark_initializing(&mut p, pod);
                    return p;
                }
                Some(c) if c.state == CState::Created => {
                    start_again(&mut p, c, true);
                    mark_initializing(&mut p, pod);
                    return p;
                }
                Some(c) => {
                    if probes.liveness_failed.contains(&c.id) {
                        p.actions.push(Action::Kill {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            why: KillReason::LivenessFailed,
                        });
                    }
                    mark_initializing(&mut p, pod);
                    return p;
                }
            }
        }
    }

    for c in &spec.containers {
        match in_sb(&c.name) {
            None => {
                let attempt = obs.latest(&c.name, None).map_or(0, |x| x.attempt + 1);
                p.actions.push(Action::Start {
                    name: c.name.clone(),
                    init: false,
                    attempt,
                    after_exit: None,
                });
            }
            Some(x) if x.state == CState::Exited => {
                if should_restart(policy, x.exit_code) {
                    restart_or_wait(&mut p, &pid, x, false, backoff, now);
                }
            }
            Some(x) if x.state == CState::Created => start_again(&mut p, x, false),
            Some(x) => {
                let why = if !x.hash.is_empty() && x.hash != container_hash(c) {
                    Some(KillReason::SpecChanged)
                } else if probes.startup_failed.contains(&x.id) {
                    Some(KillReason::StartupFailed)
                } else if probes.liveness_failed.contains(&x.id) {
                    Some(KillReason::LivenessFailed)
                } else {
                    None
                };
                if let Some(why) = why {
                    p.actions.push(Action::Kill {
                        id: x.id.clone(),
                        name: x.name.clone(),
                        why,
                    });
                }
            }
        }
    }
    // Ephemeral containers (kubectl debug) start once in the live sandbox, never again.
    for e in spec.ephemeral_containers.iter().flatten() {
        if obs.latest(&e.name, None).is_none() {
            p.actions.push(Action::Start {
                name: e.name.clone(),
                init: false,
                attempt: 0,
                after_exit: None,
            });
        }
    }
    gc(&mut p, pod, obs, Some(&sb.id));
    p
}

/// A container that was created but never started (its start was cut short, e.g. by a
/// restart of the agent or of containerd) is started again as a new instance whatever the
/// restart policy, as upstream's kubelet does (`ShouldContainerBeRestarted`): it never ran.
/// The stale instance is removed first so it can never start late beside the new one.
fn start_again(p: &mut Plan, c: &Ctr, init: bool) {
    p.actions.push(Action::Remove {
        containers: vec![c.id.clone()],
        sandboxes: Vec::new(),
    });
    p.actions.push(Action::Start {
        name: c.name.clone(),
        init,
        attempt: c.attempt + 1,
        after_exit: None,
    });
}

fn mark_initializing(p: &mut Plan, pod: &Pod) {
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        p.waiting.entry(c.name.clone()).or_insert(Waiting {
            reason: "PodInitializing".into(),
            message: String::new(),
        });
    }
}

/// Dead containers beyond the newest two instances per name, and dead sandboxes without
/// containers, are removed (the newest exited instance feeds lastState and `logs --previous`).
fn gc(p: &mut Plan, pod: &Pod, obs: &Observed, live_sandbox: Option<&str>) {
    let _ = pod;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut containers = Vec::new();
    for c in &obs.containers {
        let n = seen.entry(c.name.as_str()).or_insert(0);
        *n += 1;
        if *n > 2 && c.state == CState::Exited {
            containers.push(c.id.clone());
        }
    }
    let sandboxes: Vec<String> = obs
        .sandboxes
        .iter()
        .filter(|s| !s.ready && Some(s.id.as_str()) != live_sandbox)
        .filter(|s| {
            obs.containers
                .iter()
                .all(|c| c.sandbox_id != s.id || containers.contains(&c.id))
        })
        .skip(if live_sandbox.is_none() { 1 } else { 0 })
        .map(|s| s.id.clone())
        .collect();
    if !containers.is_empty() || !sandboxes.is_empty() {
        p.actions.push(Action::Remove {
            containers,
            sandboxes,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::observe::Sandbox;
    use super::*;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": inits.iter().map(|n| serde_json::json!({"name": n, "image": "i"})).collect::<Vec<_>>(),
                "containers": apps.iter().map(|n| serde_json::json!({"name": n, "image": "i"})).collect::<Vec<_>>(),
            }
        }))
        .expect("pod")
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            id: "s1".into(),
            attempt: 0,
            ready: true,
            created_at: 1,
            ip: Some("10.42.0.5".into()),
            extra_ips: vec![],
        }
    }

    fn ctr(name: &str, attempt: u32, state: CState, exit: i32, finished_s: u64) -> Ctr {
        Ctr {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s1".into(),
            state,
            created_at: i64::from(attempt) + 1,
            started_at: 1,
            finished_at: (finished_s * 1_000_000_000) as i64,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "i".into(),
            image_ref: "sha256:x".into(),
            hash: String::new(),
            init: false,
            grace_secs: None,
            log_path: String::new(),
            message_file: None,
            fallback_to_logs: false,
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_first() {
        let p = plan(
            &pod("Always", &[], &["a"]),
            &Observed::default(),
            &ProbeVerdicts::default(),
            &backoff(),
            t(100),
        );
        assert_eq!(p.actions, vec![Action::CreateSandbox { attempt: 0 }]);
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order_before_app_containers() {
        let pd = pod("Always", &["i1", "i2"], &["a", "b"]);
        let mut obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![],
        };
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &backoff(), t(100));
        assert_eq!(
            p.actions,
            vec![Action::Start {
                name: "i1".into(),
                init: true,
                attempt: 0,
                after_exit: None
            }]
        );
        assert_eq!(p.waiting["a"].reason, "PodInitializing");
        obs.containers.push(ctr("i1", 0, CState::Running, 0, 0));
        assert!(
            plan(&pd, &obs, &ProbeVerdicts::default(), &backoff(), t(100))
                .actions
                .is_empty()
        );
        obs.containers[0] = ctr("i1", 0, CState::Exited, 0, 50);
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &backoff(), t(100));
        assert_eq!(
            p.actions,
            vec![Action::Start {
                name: "i2".into(),
                init: true,
                attempt: 0,
                after_exit: None
            }]
        );
        obs.containers.push(ctr("i2", 0, CState::Exited, 0, 60));
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &backoff(), t(100));
        let names: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn a_crashing_container_restarts_at_once_then_waits_out_a_growing_back_off() {
        let pd = pod("Always", &[], &["a"]);
        let mut b = backoff();
        let obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![ctr("a", 0, CState::Exited, 1, 100)],
        };
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &b, t(101));
        assert_eq!(
            p.actions,
            vec![Action::Start {
                name: "a".into(),
                init: false,
                attempt: 1,
                after_exit: Some(100_000_000_000)
            }]
        );
        b.next(&backoff_key("u1", "a"), t(100));
        let obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![ctr("a", 1, CState::Exited, 1, 102)],
        };
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &b, t(103));
        assert!(p.actions.is_empty());
        assert_eq!(p.waiting["a"].reason, "CrashLoopBackOff");
        assert_eq!(
            p.waiting["a"].message,
            "back-off 10s restarting failed container=a pod=p_ns(u1)"
        );
        assert_eq!(p.wake_at, Some(t(112)));
        let p = plan(&pd, &obs, &ProbeVerdicts::default(), &b, t(113));
        assert!(matches!(p.actions[0], Action::Start { attempt: 2, .. }));
    }

    #[test]
    fn restart_policies_decide_whether_an_exited_container_runs_again() {
        for (policy, exit, restarts) in [
            ("Always", 0, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 1, false),
        ] {
            let obs = Observed {
                sandboxes: vec![sandbox()],
                containers: vec![ctr("a", 0, CState::Exited, exit, 100)],
            };
            let p = plan(
                &pod(policy, &[], &["a"]),
                &obs,
                &ProbeVerdicts::default(),
                &backoff(),
                t(101),
            );
            let started = p.actions.iter().any(|a| matches!(a, Action::Start { .. }));
            assert_eq!(started, restarts, "{policy} exit {exit}");
        }
    }

    #[test]
    fn a_container_created_but_never_started_starts_again_whatever_the_policy() {
        for policy in ["Always", "OnFailure", "Never"] {
            let obs = Observed {
                sandboxes: vec![sandbox()],
                containers: vec![ctr("a", 0, CState::Created, 0, 0)],
            };
            let p = plan(
                &pod(policy, &[], &["a"]),
                &obs,
                &ProbeVerdicts::default(),
                &backoff(),
                t(101),
            );
            let stale = obs.containers[0].id.clone();
            assert!(
                matches!(&p.actions[..], [
                    Action::Remove { containers, .. },
                    Action::Start { name, attempt: 1, init: false, .. },
                    ..
                ] if containers == &vec![stale.clone()] && name == "a"),
                "{policy}: {:?}",
                p.actions
            );
        }
    }

    #[test]
    fn a_finished_pod_stops_its_sandbox() {
        let obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![ctr("a", 0, CState::Exited, 0, 100)],
        };
        let p = plan(
            &pod("OnFailure", &[], &["a"]),
            &obs,
            &ProbeVerdicts::default(),
            &backoff(),
            t(101),
        );
        assert_eq!(p.actions, vec![Action::StopSandbox { id: "s1".into() }]);
    }

    #[test]
    fn failed_liveness_kills_the_container() {
        let obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![ctr("a", 0, CState::Running, 0, 0)],
        };
        let mut v = ProbeVerdicts::default();
        v.liveness_failed.insert("a-0".into());
        let p = plan(&pod("Always", &[], &["a"]), &obs, &v, &backoff(), t(101));
        assert_eq!(
            p.actions,
            vec![Action::Kill {
                id: "a-0".into(),
                name: "a".into(),
                why: KillReason::LivenessFailed
            }]
        );
    }

    #[test]
    fn old_dead_instances_are_removed_keeping_the_newest_two() {
        let obs = Observed {
            sandboxes: vec![sandbox()],
            containers: vec![
                ctr("a", 2, CState::Running, 0, 0),
                ctr("a", 1, CState::Exited, 1, 90),
                ctr("a", 0, CState::Exited, 1, 80),
            ],
        };
        let p = plan(
            &pod("Always", &[], &["a"]),
            &obs,
            &ProbeVerdicts::default(),
            &backoff(),
            t(101),
        );
        assert_eq!(
            p.actions,
            vec![Action::Remove {
                containers: vec!["a-0".into()],
                sandboxes: vec![]
            }]
        );
    }

    #[test]
    fn ephemeral_containers_start_once_and_never_again() {
        let mut p = pod("Always", &[], &["app"]);
        p.spec.as_mut().expect("spec").ephemeral_containers = Some(vec![serde_json::from_value(
            serde_json::json!({"name": "debugger", "image": "i"}),
        )
        .expect("ephemeral container")]);
        let mut obs = Observed {
            sandboxes: vec![sandbox()],
            ..Default::default()
        };
        obs.containers.push(ctr("app", 0, CState::Running, 0, 0));
        let now = t(100);
        let first = plan(&p, &obs, &ProbeVerdicts::default(), &backoff(), now);
        assert!(first.actions.contains(&Action::Start {
            name: "debugger".into(),
            init: false,
            attempt: 0,
            after_exit: None
        }));
        obs.containers
            .push(ctr("debugger", 0, CState::Exited, 0, 50));
        let after = plan(&p, &obs, &ProbeVerdicts::default(), &backoff(), now);
        assert!(
            !after
                .actions
                .iter()
                .any(|a| matches!(a, Action::Start { name, .. } if name == "debugger")),
            "{after:?}"
        );
    }
}
