//! One pod's worker: [`run`] is the pod's state machine. Each step observes the runtime,
//! plans ([`super::plan`]), carries the actions out (sandbox, images, volumes, env, create,
//! start, hooks, kills), and when nothing is left to do reports the status (patched only when
//! it changed) and sleeps until the pod changes, the runtime changes (relist), a probe
//! flips, a back-off ends, or the periodic resync. A deleted pod is stopped within its grace
//! period, cleaned up, and removed from the API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::env::{self, Lookups};
use super::handler::{self, Handler, Verdict};
use super::observe::{self, CState, ExitedCache, Observed};
use super::plan::{self, Action, KillReason, Waiting};
use super::probes::ProbeSet;
use super::sandbox_backoff::SandboxBackoff;
use super::spec::{self, ContainerInputs};
use super::status::{self, ProbeState};
use super::volumes::{self, Objects};
use super::Shared;
use crate::images::PullPolicy;

/// What the manager tells a worker about its pod.
#[derive(Clone, Debug)]
pub enum Update {
    Pod(Box<Pod>),
    /// The pod is gone from the API (deleted, or deleted while the agent was down).
    Gone,
}

/// How often a worker re-checks a quiet pod (volumes refresh at the same pace).
const RESYNC: Duration = Duration::from_secs(10);
/// Pause after a failed step before trying again.
const RETRY: Duration = Duration::from_secs(2);

struct Worker {
    shared: Arc<Shared>,
    uid: String,
    cache: ExitedCache,
    /// Per-container reasons from failed steps (image pulls, config errors).
    errors: HashMap<String, Waiting>,
    last_status: Option<Value>,
    volumes: Option<HashMap<String, PathBuf>>,
    objects: Objects,
    volumes_at: Option<Instant>,
    service_env: Option<Vec<(String, String)>>,
    probes: ProbeSet,
    /// The pod was stopped and its API object deleted; waiting for the Delete event.
    done: bool,
    /// The back-off last reported per container (one BackOff event per back-off).
    backoff_noted: HashMap<String, String>,
    /// Waits between failed sandbox creations.
    sandbox_backoff: SandboxBackoff,
}

/// Runs the worker for pod `uid` until the pod is gone and cleaned up.
pub async fn run(
    shared: Arc<Shared>,
    uid: String,
    mut rx: watch::Receiver<Update>,
    wake: Arc<Notify>,
) {
    let mut w = Worker {
        probes: ProbeSet::new(shared.clone(), wake.clone()),
        shared,
        uid,
        cache: ExitedCache::new(),
        errors: HashMap::new(),
        last_status: None,
        volumes: None,
        objects: Objects::default(),
        volumes_at: None,
        service_env: None,
        done: false,
        backoff_noted: HashMap::new(),
        sandbox_backoff: SandboxBackoff::default(),
    };
    let mut pending_retry = false;
    loop {
        let update = rx.borrow_and_update().clone();
        let sleep_for = match update {
            Update::Gone => {
                w.teardown(None, Duration::from_secs(2)).await;
                return;
            }
            Update::Pod(pod) if pod.metadata.deletion_timestamp.is_some() => {
                if w.done || w.terminate(&pod).await {
                    // Deleted: the Delete event ends this worker.
                    w.done = true;
                    Duration::from_secs(30)
                } else {
                    RETRY
                }
            }
            Update::Pod(pod) => match w.sync(&pod, pending_retry).await {
                Ok(Some(d)) => {
                    pending_retry = false;
                    d
                }
                Ok(None) => {
                    pending_retry = false;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(pod = %pod_key(&pod), error = %e, "pod sync failed; retrying");
                    pending_retry = true;
                    RETRY
                }
            },
        };
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    // The manager dropped us (agent shutting down): leave the pod running.
                    w.probes.stop_all();
                    return;
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

fn grace_of(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}

/// A failed step of a sync; the worker retries after a pause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cri(#[from] crate::cri::Error),
    #[error("updating the pod status: {0}")]
    Status(#[source] kube::Error),
}

impl Worker {
    fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.shared.logs_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            self.uid
        ))
    }

    fn pod_dir(&self) -> PathBuf {
        self.shared.pods_dir.join(&self.uid)
    }

    /// One step. `Ok(None)`: actions were taken, step again at once. `Ok(Some(d))`: settled;
    /// sleep at most `d`.
    async fn sync(&mut self, pod: &Pod, retrying: bool) -> Result<Option<Duration>, Error> {
        let obs = observe::observe(self.shared.cri.as_ref(), &self.uid, &mut self.cache).await?;
        let verdicts = self.probes.verdicts();
        let now = SystemTime::now();
        let p = {
            let b = self.shared.backoff.lock();
            plan::plan(pod, &obs, &verdicts, &b, now)
        };
        let mut actions = p.actions.clone();
        let sandbox_wait = self.sandbox_backoff.wait_until(now);
        if sandbox_wait.is_some() {
            actions.retain(|a| !matches!(a, Action::CreateSandbox { .. }));
        }
        if !actions.is_empty() && !retrying {
            let progressed = self.execute(pod, &obs, actions.clone()).await;
            if progressed {
                return Ok(None);
            }
        } else if !actions.is_empty() {
            // Retrying after a failure: still try, but settle afterwards to avoid spinning.
            self.execute(pod, &obs, actions.clone()).await;
        }
        let obs = if actions.is_empty() {
            obs
        } else {
            observe::observe(self.shared.cri.as_ref(), &self.uid, &mut self.cache).await?
        };
        self.probes.reconcile(pod, &obs);
        if self.volumes_at.is_none_or(|t| t.elapsed() >= RESYNC)
            && obs.ready_sandbox().is_some()
            && !plan::pod_finished(pod, &obs)
        {
            // Keeps configMap/secret/downwardAPI volumes current.
            let _ = self.ensure_volumes(pod, &obs, true).await;
        }
        for (c, wt) in &p.waiting {
            if wt.reason == "CrashLoopBackOff" && self.backoff_noted.get(c) != Some(&wt.message) {
                let (pn, ns) = (
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                );
                self.shared.events.emit(
                    pod,
                    Some(c),
                    true,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {c} in pod {pn}_{ns}({})",
                        self.uid
                    ),
                );
                self.backoff_noted.insert(c.clone(), wt.message.clone());
            }
        }
        let mut waiting = p.waiting.clone();
        for (k, v) in &self.errors {
            waiting.insert(k.clone(), v.clone());
        }
        self.report(pod, &obs, &waiting, false).await?;
        let failed = !self.errors.is_empty() || (!actions.is_empty());
        let mut sleep = if failed { RETRY } else { RESYNC };
        // Without a sandbox nothing else can progress: sleep until the next attempt (or a
        // change of the pod) instead of retrying at the failed-step pace.
        let sandbox_wait = sandbox_wait.or(self.sandbox_backoff.wait_until(SystemTime::now()));
        if let Some(until) = sandbox_wait.filter(|_| obs.ready_sandbox().is_none()) {
            sleep = until.duration_since(SystemTime::now()).unwrap_or_default()
                + Duration::from_millis(50);
        }
        if let Some(at) = p.wake_at {
            let d = at.duration_since(SystemTime::now()).unwrap_or_default()
                + Duration::from_millis(50);
            sleep = sleep.min(d);
        }
        Ok(Some(sleep))
    }

    /// Patches the pod status when it differs from what was last reported.
    async fn report(
        &mut self,
        pod: &Pod,
        obs: &Observed,
        waiting: &HashMap<String, Waiting>,
        terminating: bool,
    ) -> Result<(), Error> {
        let probes: ProbeState = self.probes.state();
        let now = crate::util::rfc3339(jiff::Timestamp::now());
        let inputs = status::Inputs {
            waiting,
            probes: &probes,
            host_ip: &self.shared.host_ip,
            now: &now,
            finished: plan::pod_finished(pod, obs),
            terminating,
        };
        let st = status::build(pod, obs, &inputs);
        let comparable = strip_times(&st);
        if self.last_status.as_ref() == Some(&comparable) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let body = json!({"metadata": {"uid": self.uid}, "status": st});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                self.shared.metrics.status_updates.inc();
                self.last_status = Some(comparable);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(Error::Status(e)),
        }
    }

    /// Carries out `actions` in order; returns whether any succeeded.
    async fn execute(&mut self, pod: &Pod, obs: &Observed, actions: Vec<Action>) -> bool {
        let mut progressed = false;
        for a in actions {
            let ok = match a {
                Action::CreateSandbox { attempt } => self.create_sandbox(pod, attempt).await,
                Action::StopSandbox { id } => self.stop_sandbox(&id).await,
                Action::Start {
                    name,
                    init,
                    attempt,
                    after_exit,
                } => {
                    if let Some(t) = after_exit {
                        let key = plan::backoff_key(&self.uid, &name);
                        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(t.max(0) as u64);
                        self.shared.backoff.lock().next(&key, at);
                    }
                    let ok = self.start_container(pod, obs, &name, init, attempt).await;
                    if !ok {
                        // Later containers still start; a failed one is retried after a pause.
                        continue;
                    }
                    ok
                }
                Action::Kill { id, name, why } => {
                    let grace = match why {
                        KillReason::LivenessFailed | KillReason::StartupFailed => {
                            find_container(pod, &name)
                                .and_then(|c| {
                                    c.liveness_probe
                                        .as_ref()
                                        .and_then(|p| p.termination_grace_period_seconds)
                                })
                                .unwrap_or_else(|| grace_of(pod))
                        }
                        _ => grace_of(pod),
                    };
                    tracing::info!(pod = %pod_key(pod), container = %name, reason = ?why, "killing container");
                    let msg = match why {
                        KillReason::LivenessFailed => {
                            format!("Container {name} failed liveness probe, will be restarted")
                        }
                        KillReason::StartupFailed => {
                            format!("Container {name} failed startup probe, will be restarted")
                        }
                        KillReason::SpecChanged => {
                            format!("Container {name} definition changed, will be restarted")
                        }
                        _ => format!("Stopping container {name}"),
                    };
                    self.shared
                        .events
                        .emit(pod, Some(&name), false, "Killing", msg);
                    self.kill_container(Some(pod), &id, &name, grace, obs).await
                }
                Action::Remove {
                    containers,
                    sandboxes,
                } => {
                    for id in containers {
                        if let Err(e) = self.shared.cri.remove_container(&id).await {
                            tracing::debug!(error = %e, "removing a dead container failed");
                        }
                    }
                    for id in sandboxes {
                        if let Err(e) = self.shared.cri.remove_pod_sandbox(&id).await {
                            tracing::debug!(error = %e, "removing a dead sandbox failed");
                        }
                    }
                    // Removal alone is not progress worth an immediate re-plan.
                    false
                }
            };
            progressed |= ok;
        }
        progressed
    }

    async fn create_sandbox(&mut self, pod: &Pod, attempt: u32) -> bool {
        let log_dir = self.log_dir(pod);
        if let Err(e) =
            std::fs::create_dir_all(&log_dir).and_then(|_| std::fs::create_dir_all(self.pod_dir()))
        {
            tracing::warn!(error = %e, "creating the pod's folders failed");
            return false;
        }
        if let Some(problem) = self.shared.pause_problem.clone() {
            // containerd would try to pull the built-in name from a registry that does not
            // exist; unless someone imported the image since, say why at once.
            let present = self.shared.cri.image_status(crate::pause::BUILTIN).await;
            if !matches!(present, Ok(Some(_))) {
                // The full story was logged once at start; the events carry it to the user.
                self.sandbox_failed(
                    pod,
                    &"the built-in pause image is missing (see the agent's start-up error)",
                    format!("Failed to create pod sandbox: {problem}"),
                );
                return false;
            }
        }
        let cfg = spec::sandbox_config(pod, attempt, &log_dir, &self.shared.dns);
        let started = Instant::now();
        match self.shared.cri.run_pod_sandbox(cfg).await {
            Ok(id) => {
                self.shared
                    .metrics
                    .sandbox_seconds
                    .observe(started.elapsed().as_secs_f64());
                tracing::info!(pod = %pod_key(pod), sandbox = %short(&id), attempt, took_ms = started.elapsed().as_millis() as u64, "started pod sandbox");
                self.errors.retain(|_, w| w.reason != "ContainerCreating");
                self.sandbox_backoff.succeeded();
                true
            }
            Err(e) => {
                // Upstream's wording, with the gRPC status as the CRI client prints it.
                let message = format!(
                    "Failed to create pod sandbox: rpc error: code = {:?} desc = {}",
                    e.status.code(),
                    e.message()
                );
                self.sandbox_failed(pod, &e, message);
                false
            }
        }
    }

    /// A sandbox could not be created: one log line and one FailedCreatePodSandBox event for
    /// this back-off step; the containers wait as ContainerCreating (as upstream shows them).
    fn sandbox_failed(&mut self, pod: &Pod, error: &dyn std::fmt::Display, message: String) {
        let retry_in = self.sandbox_backoff.failed(SystemTime::now());
        tracing::warn!(pod = %pod_key(pod), error = %error, retry_in_s = retry_in.as_secs(), "creating the pod sandbox failed");
        self.shared
            .events
            .emit(pod, None, true, "FailedCreatePodSandBox", message);
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            self.errors.insert(
                c.name.clone(),
                Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new(),
                },
            );
        }
    }

    async fn stop_sandbox(&mut self, id: &str) -> bool {
        self.probes.stop_all();
        for attempt in 0..3 {
            match self.shared.cri.stop_pod_sandbox(id).await {
                Ok(()) => return true,
                Err(e) if e.is_not_found() => return true,
                Err(e) => {
                    tracing::warn!(sandbox = %short(id), attempt, error = %e, "stopping the sandbox failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        false
    }

    /// Fetches what the pod's env and volumes refer to, and lays the volumes out.
    async fn ensure_volumes(
        &mut self,
        pod: &Pod,
        obs: &Observed,
        refresh: bool,
    ) -> Result<(), volumes::Error> {
        if self.volumes.is_some() && !refresh {
            return Ok(());
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let (cms, secrets) = volumes::references(pod);
        let mut objs = Objects::default();
        let cm_api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &ns);
        for n in cms {
            objs.config_maps
                .insert(n.clone(), cm_api.get_opt(&n).await.ok().flatten());
        }
        let s_api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        for n in secrets {
            objs.secrets
                .insert(n.clone(), s_api.get_opt(&n).await.ok().flatten());
        }
        for n in volumes::claim_references(pod) {
            // A bound claim's volume does not move: resolved once, not at every refresh.
            let found = match self.objects.claims.get(&n) {
                Some(Ok(known)) => Ok(known.clone()),
                _ => crate::claims::resolve(&self.shared.client, &ns, &n).await,
            };
            objs.claims.insert(n, found);
        }
        let lookups = self.lookups(obs, &objs);
        let vols = volumes::prepare(pod, &self.pod_dir(), &objs, &lookups)?;
        self.objects = objs;
        self.volumes = Some(vols);
        self.volumes_at = Some(Instant::now());
        Ok(())
    }

    fn lookups(&self, obs: &Observed, objs: &Objects) -> Lookups {
        let sb = obs.ready_sandbox();
        let mut l = Lookups {
            host_ip: self.shared.host_ip.clone(),
            pod_ip: sb
                .and_then(|s| s.ip.clone())
                .unwrap_or_else(|| self.shared.host_ip.clone()),
            pod_ips: sb.and_then(|s| s.ip.clone()).into_iter().collect(),
            node_cpu_milli: self.shared.node_cpu_milli,
            node_memory: self.shared.node_memory,
            service_env: self.service_env.clone().unwrap_or_default(),
            ..Default::default()
        };
        objs.fill_lookups(&mut l);
        l
    }

    /// Service links: the `kubernetes` service always, the namespace's services when
    /// enableServiceLinks is on (the default).
    async fn load_service_env(&mut self, pod: &Pod) {
        if self.service_env.is_some() {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut out = Vec::new();
        let mut add = |svc: &Service| {
            let spec = svc.spec.clone().unwrap_or_default();
            let ports: Vec<(Option<String>, i32, String)> = spec
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.port,
                        p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    )
                })
                .collect();
            out.extend(env::service_env(
                svc.metadata.name.as_deref().unwrap_or_default(),
                spec.cluster_ip.as_deref().unwrap_or_default(),
                &ports,
            ));
        };
        // Services come from the agent's informer (a reflector over all Services), as
        // upstream's service lister: no API round trip on the pod start path.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.shared.services.wait_until_ready(),
        )
        .await;
        let all = self.shared.services.state();
        let is_kubernetes = |s: &Service| {
            s.metadata.namespace.as_deref() == Some("default")
                && s.metadata.name.as_deref() == Some("kubernetes")
        };
        if links {
            let mut items: Vec<&Arc<Service>> = all
                .iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns.as_str()) && !is_kubernetes(s)
                })
                .collect();
            items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            for s in items {
                add(s);
            }
        }
        if let Some(k) = all.iter().find(|s| is_kubernetes(s)) {
            add(k);
        }
        self.service_env = Some(out);
    }

    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<k8s_cri::v1::AuthConfig> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &ns);
        for r in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
            let Ok(Some(s)) = api.get_opt(&r.name).await else {
                continue;
            };
            let data = s.data.unwrap_or_default();
            let raw = data
                .get(".dockerconfigjson")
                .or_else(|| data.get(".dockercfg"));
            let Some(doc) = raw.and_then(|b| serde_json::from_slice::<Value>(&b.0).ok()) else {
                continue;
            };
            if let Some(a) = crate::registries::auth_from_docker_config(&doc, image) {
                return Some(a);
            }
        }
        None
    }

    fn set_error(&mut self, name: &str, reason: &str, message: String) {
        self.errors.insert(
            name.to_string(),
            Waiting {
                reason: reason.into(),
                message,
            },
        );
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        obs: &Observed,
        name: &str,
        init: bool,
        attempt: u32,
    ) -> bool {
        let ephemeral = spec::ephemeral_containers(pod)
            .into_iter()
            .find(|(c, _)| c.name == name);
        let Some(c) = find_container(pod, name)
            .cloned()
            .or_else(|| ephemeral.as_ref().map(|(c, _)| c.clone()))
        else {
            return false;
        };
        let Some(sb) = obs.ready_sandbox().cloned() else {
            return false;
        };
        // An ephemeral container with a target shares that container's process namespace.
        let pid_target = match ephemeral.as_ref().and_then(|(_, t)| t.as_deref()) {
            Some(t) => match obs.latest(t, Some(&sb.id)) {
                Some(x) if x.state == CState::Running => Some(x.id.clone()),
                _ => {
                    self.set_error(
                        name,
                        "CreateContainerConfigError",
                        format!("target container {t:?} is not running"),
                    );
                    return false;
                }
            },
            None => None,
        };
        let started = Instant::now();
        // Image.
        let image = c.image.clone().unwrap_or_default();
        let policy = PullPolicy::of(c.image_pull_policy.as_deref(), &image);
        let auth = if policy == PullPolicy::Never {
            None
        } else {
            self.pull_auth(pod, &image).await
        };
        if policy == PullPolicy::Always {
            self.shared.events.emit(
                pod,
                Some(name),
                false,
                "Pulling",
                format!("Pulling image {image:?}"),
            );
        }
        let image_ref = match self
            .shared
            .images
            .ensure(&self.uid, &image, policy, auth)
            .await
        {
            Ok(e) => {
                if e.pulled {
                    if policy != PullPolicy::Always {
                        self.shared.events.emit(
                            pod,
                            Some(name),
                            false,
                            "Pulling",
                            format!("Pulling image {image:?}"),
                        );
                    }
                    let took = format!("{}ms", e.took.as_millis());
                    self.shared.events.emit(pod, Some(name), false, "Pulled", format!("Successfully pulled image {image:?} in {took} ({took} including waiting)"));
                } else {
                    self.shared.events.emit(
                        pod,
                        Some(name),
                        false,
                        "Pulled",
                        format!("Container image {image:?} already present on machine"),
                    );
                }
                e.image_ref
            }
            Err(e) => {
                match &e {
                    crate::images::PullError::ImagePullBackOff(_) => {
                        self.shared.events.emit(
                            pod,
                            Some(name),
                            false,
                            "BackOff",
                            format!("Back-off pulling image {image:?}"),
                        );
                    }
                    crate::images::PullError::ErrImagePull(m) => {
                        self.shared.events.emit(
                            pod,
                            Some(name),
                            true,
                            "Failed",
                            format!("Failed to pull image {image:?}: {m}"),
                        );
                    }
                    other => {
                        self.shared
                            .events
                            .emit(pod, Some(name), true, "Failed", other.to_string());
                    }
                }
                self.shared.events.emit(
                    pod,
                    Some(name),
                    true,
                    "Failed",
                    format!("Error: {}", e.reason()),
                );
                self.set_error(name, e.reason(), e.to_string());
                return false;
            }
        };
        // Volumes, env, mounts.
        if let Err(e) = self.ensure_volumes(pod, obs, false).await {
            tracing::warn!(pod = %pod_key(pod), error = %e, "setting up volumes failed");
            self.shared
                .events
                .emit(pod, None, true, "FailedMount", e.event_message());
            self.set_error(name, "ContainerCreating", String::new());
            return false;
        }
        self.load_service_env(pod).await;
        let lookups = self.lookups(obs, &self.objects.clone());
        let env = match env::resolve(pod, &c, &lookups) {
            Ok(e) => e,
            Err(e) => {
                self.shared
                    .events
                    .emit(pod, Some(name), true, "Failed", format!("Error: {e}"));
                self.set_error(name, "CreateContainerConfigError", e.to_string());
                return false;
            }
        };
        let vols = self.volumes.clone().unwrap_or_default();
        let mut mounts = match volumes::mounts(&c, &vols, &env) {
            Ok(m) => m,
            Err(e) => {
                self.set_error(name, "CreateContainerConfigError", e.to_string());
                return false;
            }
        };
        volumes::apply_read_only(pod, &c, &mut mounts);
        let host_net = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let hosts_path = self.pod_dir().join("etc-hosts");
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            spec::hosts_file(pod, sb.ip.as_deref(), &self.shared.dns.cluster_domain)
        };
        if std::fs::read_to_string(&hosts_path).ok().as_deref() != Some(hosts.as_str()) {
            let _ = std::fs::write(&hosts_path, &hosts);
        }
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(k8s_cri::v1::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts_path.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        let msg_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        let msg_file = self
            .pod_dir()
            .join("containers")
            .join(name)
            .join(format!("{attempt}.termination-log"));
        let mut message_file = None;
        if let Some(parent) = msg_file.parent() {
            if std::fs::create_dir_all(parent)
                .and_then(|_| std::fs::write(&msg_file, b""))
                .is_ok()
                && !mounts.iter().any(|m| m.container_path == msg_path)
            {
                mounts.push(k8s_cri::v1::Mount {
                    container_path: msg_path,
                    host_path: msg_file.to_string_lossy().into_owned(),
                    ..Default::default()
                });
                message_file = Some(msg_file.to_string_lossy().into_owned());
            }
        }
        let log_dir = self.log_dir(pod);
        let _ = std::fs::create_dir_all(log_dir.join(name));
        let mut cfg = match spec::container_config(ContainerInputs {
            pod,
            container: &c,
            attempt,
            image_ref,
            env,
            mounts,
            init,
            hash: plan::container_hash(&c),
            message_file,
        }) {
            Ok(cfg) => cfg,
            Err(e) => {
                self.set_error(name, "CreateContainerConfigError", e.to_string());
                return false;
            }
        };
        if let Some(target_id) = pid_target {
            if let Some(ns) = cfg
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|sc| sc.namespace_options.as_mut())
            {
                ns.pid = k8s_cri::v1::NamespaceMode::Target as i32;
                ns.target_id = target_id;
            }
        }
        let sandbox_cfg = spec::sandbox_config(pod, sb.attempt, &log_dir, &self.shared.dns);
        let id = match self
            .shared
            .cri
            .create_container(&sb.id, cfg, sandbox_cfg)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(pod = %pod_key(pod), container = name, error = %e, "creating the container failed");
                self.set_error(name, "CreateContainerError", e.message());
                return false;
            }
        };
        self.shared.events.emit(
            pod,
            Some(name),
            false,
            "Created",
            format!("Created container {name}"),
        );
        if let Err(e) = self.shared.cri.start_container(&id).await {
            tracing::warn!(pod = %pod_key(pod), container = name, error = %e, "starting the container failed");
            self.shared.events.emit(
                pod,
                Some(name),
                true,
                "Failed",
                format!("Error: {}", e.message()),
            );
            self.set_error(name, "RunContainerError", e.message());
            let _ = self.shared.cri.remove_container(&id).await;
            return false;
        }
        self.errors.remove(name);
        self.shared.events.emit(
            pod,
            Some(name),
            false,
            "Started",
            format!("Started container {name}"),
        );
        self.shared.metrics.containers_started.inc();
        tracing::info!(pod = %pod_key(pod), container = name, attempt, took_ms = started.elapsed().as_millis() as u64, "started container");
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if let Ok(h) = Handler::from_lifecycle(h, &c) {
                let ip = sb.ip.clone().unwrap_or_else(|| self.shared.host_ip.clone());
                if let Verdict::Failure(msg) = handler::run(
                    &h,
                    self.shared.cri.as_ref(),
                    &id,
                    &ip,
                    Duration::from_secs(grace_of(pod).max(2) as u64),
                )
                .await
                {
                    tracing::warn!(pod = %pod_key(pod), container = name, message = %msg, "postStart hook failed; killing the container");
                    self.shared.events.emit(
                        pod,
                        Some(name),
                        true,
                        "FailedPostStartHook",
                        format!("PostStartHook failed: {}", msg.trim()),
                    );
                    let _ = self.shared.cri.stop_container(&id, grace_of(pod)).await;
                }
            }
        }
        true
    }

    /// Runs the preStop hook (when the spec is known), then stops the container within `grace`.
    async fn kill_container(
        &self,
        pod: Option<&Pod>,
        id: &str,
        name: &str,
        grace: i64,
        obs: &Observed,
    ) -> bool {
        let started = Instant::now();
        if let Some(c) = pod.and_then(|p| find_container(p, name)) {
            if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
                if let Ok(h) = Handler::from_lifecycle(h, c) {
                    let ip = obs
                        .ready_sandbox()
                        .and_then(|s| s.ip.clone())
                        .unwrap_or_else(|| self.shared.host_ip.clone());
                    let limit = Duration::from_secs(grace.max(1) as u64);
                    if let Verdict::Failure(m) =
                        handler::run(&h, self.shared.cri.as_ref(), id, &ip, limit).await
                    {
                        tracing::info!(container = name, message = %m, "preStop hook failed");
                    }
                }
            }
        }
        let left = (grace - started.elapsed().as_secs() as i64).max(2);
        match self.shared.cri.stop_container(id, left).await {
            Ok(()) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::warn!(container = name, error = %e, "stopping the container failed");
                false
            }
        }
    }

    /// Stops every container and sandbox of the pod; with `pod`, preStop hooks run first.
    async fn kill_all(&mut self, pod: Option<&Pod>, grace: Duration) -> Observed {
        self.probes.stop_all();
        let obs = match observe::observe(self.shared.cri.as_ref(), &self.uid, &mut self.cache).await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(uid = %self.uid, error = %e, "observing the pod for teardown failed");
                return Observed::default();
            }
        };
        let grace_s = grace.as_secs() as i64;
        let running: Vec<_> = obs.running().cloned().collect();
        if let Some(p) = pod {
            for c in &running {
                self.shared.events.emit(
                    p,
                    Some(&c.name),
                    false,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
            }
        }
        let kills = running
            .iter()
            .map(|c| self.kill_container(pod, &c.id, &c.name, grace_s, &obs));
        futures::future::join_all(kills).await;
        for s in &obs.sandboxes {
            self.stop_sandbox(&s.id).await;
        }
        obs
    }

    /// Removes everything the pod left on the node.
    async fn remove_all(&mut self, obs: &Observed, pod: Option<&Pod>) {
        for c in &obs.containers {
            let _ = self.shared.cri.remove_container(&c.id).await;
        }
        for s in &obs.sandboxes {
            let _ = self.shared.cri.remove_pod_sandbox(&s.id).await;
        }
        volumes::cleanup(&self.pod_dir());
        if let Some(p) = pod {
            let _ = std::fs::remove_dir_all(self.log_dir(p));
            crate::cgroups::remove_pod(&spec::cgroup_parent(p));
        } else {
            // Without the spec, find the pod's log folder and cgroup by uid.
            if let Ok(entries) = std::fs::read_dir(&self.shared.logs_dir) {
                for e in entries.flatten() {
                    if e.file_name()
                        .to_string_lossy()
                        .ends_with(&format!("_{}", self.uid))
                    {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
            for parent in ["/kubepods", "/kubepods/burstable", "/kubepods/besteffort"] {
                crate::cgroups::remove_pod(&format!("{parent}/pod{}", self.uid));
            }
        }
        let mut b = self.shared.backoff.lock();
        for c in &obs.containers {
            b.forget(&plan::backoff_key(&self.uid, &c.name));
        }
    }

    /// The pod is gone from the API: stop and remove whatever is left.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: Duration) {
        let obs = self.kill_all(pod, grace).await;
        self.remove_all(&obs, pod).await;
        tracing::info!(uid = %self.uid, "cleaned up pod removed from the API");
    }

    /// The pod is being deleted: stop it within its grace period, report the final status,
    /// clean up, then remove the API object. Returns whether the object was deleted.
    async fn terminate(&mut self, pod: &Pod) -> bool {
        let grace = Duration::from_secs(grace_of(pod) as u64);
        let started = Instant::now();
        let obs = self.kill_all(Some(pod), grace).await;
        tracing::info!(pod = %pod_key(pod), took_ms = started.elapsed().as_millis() as u64, "stopped pod for deletion");
        if let Ok(after) =
            observe::observe(self.shared.cri.as_ref(), &self.uid, &mut self.cache).await
        {
            let _ = self.report(pod, &after, &HashMap::new(), true).await;
        }
        self.remove_all(&obs, Some(pod)).await;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %pod_key(pod), "deleted pod");
                true
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
            Err(e) => {
                tracing::warn!(pod = %pod_key(pod), error = %e, "deleting the pod object failed; retrying");
                false
            }
        }
    }
}

/// Drops fields that change without the state changing (heartbeat-like times).
fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in cs {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastTransitionTime");
                o.remove("lastProbeTime");
            }
        }
    }
    v
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

#[allow(dead_code)]
fn is_running(c: &observe::Ctr) -> bool {
    c.state == CState::Running
}
