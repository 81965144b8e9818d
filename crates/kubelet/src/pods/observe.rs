//! What the runtime holds for one pod: [`observe`] lists the pod's sandboxes and containers
//! through CRI (by the pod-uid label) and reads each container's status, giving an
//! [`Observed`] snapshot the planner and the status builder work from.

use std::collections::HashMap;

use crate::cri::{api as pb, Cri};

/// Labels and annotations the agent puts on sandboxes and containers (upstream's names, so
/// tools like crictl show them the usual way).
pub mod keys {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    pub const INIT: &str = "io.capstan.container.init";
    pub const MESSAGE_FILE: &str = "io.capstan.container.terminationMessageFile";
    pub const MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    pub ip: Option<String>,
    pub extra_ips: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctr {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: CState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub hash: String,
    pub init: bool,
    pub grace_secs: Option<i64>,
    pub log_path: String,
    pub message_file: Option<String>,
    /// terminationMessagePolicy FallbackToLogsOnError.
    pub fallback_to_logs: bool,
}

/// A pod's runtime state, newest first in both lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Ctr>,
}

impl Observed {
    pub fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.iter().find(|s| s.ready)
    }

    /// The newest instance of container `name`, in sandbox `sandbox` when given.
    pub fn latest(&self, name: &str, sandbox: Option<&str>) -> Option<&Ctr> {
        self.containers
            .iter()
            .filter(|c| c.name == name && sandbox.is_none_or(|s| c.sandbox_id == s))
            .max_by_key(|c| (c.attempt, c.created_at))
    }

    /// The newest exited instance of `name` other than `except`.
    pub fn previous_exited(&self, name: &str, except: &str) -> Option<&Ctr> {
        self.containers
            .iter()
            .filter(|c| c.name == name && c.id != except && c.state == CState::Exited)
            .max_by_key(|c| (c.attempt, c.created_at))
    }

    pub fn running(&self) -> impl Iterator<Item = &Ctr> {
        self.containers
            .iter()
            .filter(|c| matches!(c.state, CState::Running | CState::Created | CState::Unknown))
    }
}

fn uid_filter(uid: &str) -> HashMap<String, String> {
    HashMap::from([(keys::POD_UID.to_string(), uid.to_string())])
}

/// Exited containers never change; their statuses are remembered between observations.
pub type ExitedCache = HashMap<String, Ctr>;

/// Reads the runtime state of the pod with `uid`.
pub async fn observe(
    cri: &dyn Cri,
    uid: &str,
    cache: &mut ExitedCache,
) -> crate::cri::Result<Observed> {
    let sandboxes = cri
        .list_pod_sandbox(Some(pb::PodSandboxFilter {
            label_selector: uid_filter(uid),
            ..Default::default()
        }))
        .await?;
    let mut out = Observed::default();
    for s in sandboxes {
        let ready = s.state == pb::PodSandboxState::SandboxReady as i32;
        let mut sb = Sandbox {
            id: s.id.clone(),
            attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
            ready,
            created_at: s.created_at,
            ip: None,
            extra_ips: Vec::new(),
        };
        if ready {
            if let Ok(st) = cri.pod_sandbox_status(&s.id).await {
                if let Some(net) = st.network {
                    if !net.ip.is_empty() {
                        sb.ip = Some(net.ip);
                    }
                    sb.extra_ips = net.additional_ips.into_iter().map(|i| i.ip).collect();
                }
            }
        }
        out.sandboxes.push(sb);
    }
    out.sandboxes
        .sort_by_key(|s| std::cmp::Reverse((s.ready, s.created_at)));
    let containers = cri
        .list_containers(Some(pb::ContainerFilter {
            label_selector: uid_filter(uid),
            ..Default::default()
        }))
        .await?;
    let live: std::collections::HashSet<String> = containers.iter().map(|c| c.id.clone()).collect();
    cache.retain(|id, _| live.contains(id));
    for c in containers {
        if let Some(done) = cache.get(&c.id) {
            out.containers.push(done.clone());
            continue;
        }
        let st = match cri.container_status(&c.id).await {
            Ok(st) => st,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let mut ctr = to_ctr(&c, st);
        if ctr.state == CState::Exited && ctr.message.is_empty() {
            ctr.message = termination_message(&ctr);
        }
        if ctr.state == CState::Exited {
            cache.insert(ctr.id.clone(), ctr.clone());
        }
        out.containers.push(ctr);
    }
    out.containers
        .sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
    Ok(out)
}

fn to_ctr(c: &pb::Container, st: pb::ContainerStatus) -> Ctr {
    let a = |k: &str| c.annotations.get(k).cloned();
    let state = match pb::ContainerState::try_from(st.state) {
        Ok(pb::ContainerState::ContainerCreated) => CState::Created,
        Ok(pb::ContainerState::ContainerRunning) => CState::Running,
        Ok(pb::ContainerState::ContainerExited) => CState::Exited,
        _ => CState::Unknown,
    };
    Ctr {
        id: c.id.clone(),
        name: c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .or_else(|| c.labels.get(keys::CONTAINER_NAME).cloned())
            .unwrap_or_default(),
        attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
        sandbox_id: c.pod_sandbox_id.clone(),
        state,
        created_at: st.created_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        reason: st.reason,
        message: st.message,
        image: c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        image_ref: if st.image_ref.is_empty() {
            c.image_ref.clone()
        } else {
            st.image_ref
        },
        hash: a(keys::CONTAINER_HASH).unwrap_or_default(),
        init: a(keys::INIT).is_some(),
        grace_secs: a(keys::GRACE_PERIOD).and_then(|v| v.parse().ok()),
        log_path: st.log_path,
        message_file: a(keys::MESSAGE_FILE),
        fallback_to_logs: a(keys::MESSAGE_POLICY).as_deref() == Some("FallbackToLogsOnError"),
    }
}

/// The container's termination message: what it wrote to its terminationMessagePath (at most
/// 4 KiB), or, when the pod asked for FallbackToLogsOnError and it failed without one, the
/// tail of its log (the annotation carries the policy).
fn termination_message(c: &Ctr) -> String {
    const MAX: usize = 4096;
    let from_file = c
        .message_file
        .as_deref()
        .and_then(|f| std::fs::read(f).ok())
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned())
        .unwrap_or_default();
    if !from_file.is_empty() || c.exit_code == 0 || !c.fallback_to_logs {
        return from_file;
    }
    let text = std::fs::read_to_string(&c.log_path).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| crate::logs::parse_line(l).map(|p| crate::logs::render(&p, false)))
        .collect();
    let tail = lines[lines.len().saturating_sub(80)..].concat();
    let start = tail.len().saturating_sub(2048);
    let mut start = start;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_string()
}
