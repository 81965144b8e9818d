//! Liveness, readiness and startup probes: [`ProbeSet::reconcile`] keeps one task per probe
//! of every running container, each probing on upstream's schedule (initialDelaySeconds,
//! periodSeconds, timeoutSeconds, success and failure thresholds; liveness and readiness wait
//! for the startup probe). Results land in shared sets the worker reads; a change wakes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::handler::{self, Handler, Verdict};
use super::observe::{CState, Observed};
use super::plan::ProbeVerdicts;
use super::status::ProbeState;
use super::Shared;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

#[derive(Default)]
struct Results {
    ready: HashSet<String>,
    has_readiness: HashSet<String>,
    not_started: HashSet<String>,
    liveness_failed: HashSet<String>,
    startup_failed: HashSet<String>,
}

/// The probes of one pod.
pub struct ProbeSet {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    results: Arc<Mutex<Results>>,
    tasks: HashMap<(String, Kind), tokio::task::JoinHandle<()>>,
}

/// Upstream's defaults for unset probe fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Self {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

impl ProbeSet {
    pub fn new(shared: Arc<Shared>, wake: Arc<Notify>) -> Self {
        Self {
            shared,
            wake,
            results: Arc::new(Mutex::new(Results::default())),
            tasks: HashMap::new(),
        }
    }

    pub fn verdicts(&self) -> ProbeVerdicts {
        let r = self.results.lock();
        ProbeVerdicts {
            liveness_failed: r.liveness_failed.clone(),
            startup_failed: r.startup_failed.clone(),
        }
    }

    pub fn state(&self) -> ProbeState {
        let r = self.results.lock();
        ProbeState {
            ready: r.ready.clone(),
            not_started: r.not_started.clone(),
            has_readiness: r.has_readiness.clone(),
        }
    }

    pub fn stop_all(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
    }

    /// Starts probes for newly running containers and stops those of containers that ended.
    pub fn reconcile(&mut self, pod: &Pod, obs: &Observed) {
        let Some(sb) = obs.ready_sandbox() else {
            self.stop_all();
            return;
        };
        let ip = sb.ip.clone().unwrap_or_else(|| self.shared.host_ip.clone());
        let ip = if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            self.shared.host_ip.clone()
        } else {
            ip
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let mut live: HashSet<String> = HashSet::new();
        let pod_ref = Arc::new(Pod {
            metadata: pod.metadata.clone(),
            spec: None,
            status: None,
        });
        for c in obs
            .containers
            .iter()
            .filter(|c| c.state == CState::Running && c.sandbox_id == sb.id)
        {
            let Some(cs) = spec.containers.iter().find(|x| x.name == c.name) else {
                continue;
            };
            live.insert(c.id.clone());
            for (kind, probe) in [
                (Kind::Startup, cs.startup_probe.as_ref()),
                (Kind::Liveness, cs.liveness_probe.as_ref()),
                (Kind::Readiness, cs.readiness_probe.as_ref()),
            ] {
                let Some(probe) = probe else { continue };
                let key = (c.id.clone(), kind);
                if self.tasks.contains_key(&key) {
                    continue;
                }
                {
                    let mut r = self.results.lock();
                    match kind {
                        Kind::Startup => {
                            r.not_started.insert(c.id.clone());
                        }
                        Kind::Readiness => {
                            r.has_readiness.insert(c.id.clone());
                        }
                        Kind::Liveness => {}
                    }
                }
                let handler = match Handler::from_probe(probe, cs) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::warn!(container = %c.name, error = %e, "probe not usable");
                        continue;
                    }
                };
                let task = ProbeTask {
                    shared: self.shared.clone(),
                    wake: self.wake.clone(),
                    results: self.results.clone(),
                    container_id: c.id.clone(),
                    container: cs.clone(),
                    ip: ip.clone(),
                    kind,
                    handler,
                    timing: Timing::of(probe),
                    started_at_ns: c.started_at,
                    pod: pod_ref.clone(),
                };
                self.tasks.insert(key, tokio::spawn(task.run()));
            }
        }
        self.tasks.retain(|(id, _), t| {
            let keep = live.contains(id);
            if !keep {
                t.abort();
            }
            keep
        });
        let mut r = self.results.lock();
        r.ready.retain(|id| live.contains(id));
        r.has_readiness.retain(|id| live.contains(id));
        r.not_started.retain(|id| live.contains(id));
        r.liveness_failed.retain(|id| live.contains(id));
        r.startup_failed.retain(|id| live.contains(id));
    }
}

impl Drop for ProbeSet {
    fn drop(&mut self) {
        self.stop_all();
    }
}

struct ProbeTask {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    results: Arc<Mutex<Results>>,
    container_id: String,
    container: Container,
    ip: String,
    kind: Kind,
    handler: Handler,
    timing: Timing,
    started_at_ns: i64,
    /// The pod (for events).
    pod: Arc<Pod>,
}

impl ProbeTask {
    async fn run(self) {
        let t = &self.timing;
        // initialDelaySeconds counts from the container's start.
        let started =
            std::time::UNIX_EPOCH + Duration::from_nanos(self.started_at_ns.max(0) as u64);
        let since = std::time::SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        if t.initial_delay > since {
            tokio::time::sleep(t.initial_delay - since).await;
        }
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut interval = tokio::time::interval(t.period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if self.kind != Kind::Startup
                && self.results.lock().not_started.contains(&self.container_id)
            {
                continue;
            }
            let verdict = handler::run(
                &self.handler,
                self.shared.cri.as_ref(),
                &self.container_id,
                &self.ip,
                t.timeout,
            )
            .await;
            self.shared.metrics.probes.inc();
            match verdict {
                Verdict::Success => {
                    failures = 0;
                    successes += 1;
                    if successes >= t.success_threshold {
                        let changed = {
                            let mut r = self.results.lock();
                            match self.kind {
                                Kind::Readiness => r.ready.insert(self.container_id.clone()),
                                Kind::Startup => r.not_started.remove(&self.container_id),
                                Kind::Liveness => false,
                            }
                        };
                        if changed {
                            self.wake.notify_one();
                        }
                        if self.kind == Kind::Startup {
                            return;
                        }
                    }
                }
                Verdict::Failure(msg) => {
                    successes = 0;
                    failures += 1;
                    tracing::debug!(container = %self.container.name, kind = ?self.kind, failures, %msg, "probe failed");
                    let kind = match self.kind {
                        Kind::Liveness => "Liveness",
                        Kind::Readiness => "Readiness",
                        Kind::Startup => "Startup",
                    };
                    self.shared.events.emit(
                        &self.pod,
                        Some(&self.container.name),
                        true,
                        "Unhealthy",
                        format!("{kind} probe failed: {}", msg.trim()),
                    );
                    if failures >= t.failure_threshold {
                        let changed = {
                            let mut r = self.results.lock();
                            match self.kind {
                                Kind::Readiness => r.ready.remove(&self.container_id),
                                Kind::Startup => r.startup_failed.insert(self.container_id.clone()),
                                Kind::Liveness => {
                                    r.liveness_failed.insert(self.container_id.clone())
                                }
                            }
                        };
                        if changed {
                            tracing::info!(container = %self.container.name, kind = ?self.kind, message = %msg.trim(), "probe failed");
                            self.wake.notify_one();
                        }
                        if self.kind != Kind::Readiness {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_probe_fields_take_upstreams_defaults() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        assert_eq!(t.initial_delay, Duration::ZERO);
    }
}
