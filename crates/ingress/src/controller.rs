//! Keeping the proxy's view current ([`run`]): informers on Ingresses, IngressClasses,
//! Services, EndpointSlices and TLS Secrets wake one task that rebuilds the routing table and
//! the certificates and swaps them in whole. The same task reports problems (a missing
//! Service or Secret) as Warning Events, once per new problem, and adds this node's address
//! to the served Ingresses' `status.loadBalancer.ingress` when it is missing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use capstan_runtime::events::Recorder;
use capstan_runtime::informer::{Cache, Informer};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use parking_lot::RwLock;
use rustls::sign::CertifiedKey;
use tokio::sync::{watch, Notify};

use crate::class;
use crate::metrics::Metrics;
use crate::router::{Endpoints, Problem, Table};
use crate::tls::{self, Certs};

/// What the rebuild task reads.
struct Caches {
    ingresses: Cache<Ingress>,
    classes: Cache<IngressClass>,
    services: Cache<Service>,
    slices: Cache<EndpointSlice>,
    secrets: Cache<Secret>,
}

impl Caches {
    async fn wait_ready(&self) {
        self.ingresses.wait_ready().await;
        self.classes.wait_ready().await;
        self.services.wait_ready().await;
        self.slices.wait_ready().await;
        self.secrets.wait_ready().await;
    }
}

/// Where the results go.
pub struct Outputs {
    pub table: Arc<RwLock<Arc<Table>>>,
    pub certs: Arc<RwLock<Arc<Certs>>>,
    pub metrics: Arc<Metrics>,
}

fn informer<K>(api: Api<K>, config: watcher::Config, wake: &Arc<Notify>) -> Informer<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut inf = Informer::new(api, config);
    let wake = wake.clone();
    inf.on_change(move |_| wake.notify_one());
    inf
}

/// Runs the informers and the rebuild loop until shutdown.
pub async fn run(
    client: kube::Client,
    node_ip: IpAddr,
    out: Outputs,
    shutdown: watch::Receiver<bool>,
) {
    let wake = Arc::new(Notify::new());
    let all = watcher::Config::default();
    let ing = informer::<Ingress>(Api::all(client.clone()), all.clone(), &wake);
    let cls = informer::<IngressClass>(Api::all(client.clone()), all.clone(), &wake);
    let svc = informer::<Service>(Api::all(client.clone()), all.clone(), &wake);
    let eps = informer::<EndpointSlice>(Api::all(client.clone()), all.clone(), &wake);
    // Only TLS Secrets can serve as certificates; the others are never held in memory.
    let sec = informer::<Secret>(
        Api::all(client.clone()),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
        &wake,
    );
    let caches = Caches {
        ingresses: ing.cache(),
        classes: cls.cache(),
        services: svc.cache(),
        slices: eps.cache(),
        secrets: sec.cache(),
    };
    tokio::spawn(ing.run(shutdown.clone()));
    tokio::spawn(cls.run(shutdown.clone()));
    tokio::spawn(svc.run(shutdown.clone()));
    tokio::spawn(eps.run(shutdown.clone()));
    tokio::spawn(sec.run(shutdown.clone()));

    let mut stop = shutdown.clone();
    tokio::select! {
        _ = caches.wait_ready() => {}
        _ = crate::stopped(&mut stop) => return,
    }
    let mut state = Rebuilder {
        client: client.clone(),
        recorder: Recorder::new(client, "capstan-ingress"),
        node_ip: node_ip.to_string(),
        reported: BTreeSet::new(),
        parsed: HashMap::new(),
        out,
    };
    loop {
        state.rebuild(&caches);
        tokio::select! {
            _ = wake.notified() => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}

struct Rebuilder {
    client: kube::Client,
    recorder: Recorder,
    node_ip: String,
    /// Problems already reported, so each becomes one Event (and again only after it was fixed).
    reported: BTreeSet<Problem>,
    /// Parsed Secrets by `namespace/name`, with the resourceVersion they were parsed at.
    parsed: HashMap<String, (String, Result<Arc<CertifiedKey>, String>)>,
    out: Outputs,
}

impl Rebuilder {
    fn rebuild(&mut self, c: &Caches) {
        let classes = c.classes.list();
        let served: Vec<Arc<Ingress>> = c
            .ingresses
            .list()
            .into_iter()
            .filter(|i| class::serves(i, &classes))
            .collect();
        let eps = self.endpoints(&served, c);
        let mut table = Table::build(&served, &eps);
        let mut problems = std::mem::take(&mut table.problems);
        let certs = self.certificates(&served, &table, c, &mut problems);
        table.problems = problems;
        self.report(&served, &table.problems);
        tracing::debug!(
            ingresses = served.len(),
            backends = table.backend_count(),
            certificates = certs.len(),
            "ingress routing table rebuilt"
        );
        self.out.metrics.rebuilds.inc();
        self.out.metrics.ingresses.set(served.len() as i64);
        *self.out.table.write() = Arc::new(table);
        *self.out.certs.write() = Arc::new(certs);
        self.publish_status(&served);
    }

    /// The Services the served Ingresses name, and their EndpointSlices.
    fn endpoints(&self, served: &[Arc<Ingress>], c: &Caches) -> Endpoints {
        let mut wanted = HashSet::new();
        for ing in served {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let spec = ing.spec.as_ref();
            let backends = spec
                .and_then(|s| s.default_backend.as_ref())
                .into_iter()
                .chain(
                    spec.and_then(|s| s.rules.as_ref())
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.http.as_ref())
                        .flat_map(|h| h.paths.iter().map(|p| &p.backend)),
                );
            for b in backends {
                if let Some(s) = &b.service {
                    wanted.insert(format!("{ns}/{}", s.name));
                }
            }
        }
        let mut eps = Endpoints::default();
        for key in &wanted {
            if let Some(s) = c.services.get(key) {
                eps.services.insert(key.clone(), s);
            }
        }
        for slice in c.slices.list() {
            let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
            let svc = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::router::SERVICE_NAME_LABEL));
            if svc.is_some_and(|s| wanted.contains(&format!("{ns}/{s}"))) {
                eps.add_slice(slice);
            }
        }
        eps
    }

    /// Certificates by host from the served Ingresses' TLS sections; a missing or unusable
    /// Secret is a problem (its hosts get the default certificate).
    fn certificates(
        &mut self,
        served: &[Arc<Ingress>],
        table: &Table,
        c: &Caches,
        problems: &mut BTreeSet<Problem>,
    ) -> Certs {
        let mut certs = Certs::default();
        let mut used = HashSet::new();
        for ing in served {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let ing_key = format!("{ns}/{}", ing.metadata.name.as_deref().unwrap_or_default());
            for t in ing
                .spec
                .as_ref()
                .and_then(|s| s.tls.as_ref())
                .into_iter()
                .flatten()
            {
                let Some(secret_name) = t.secret_name.as_deref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let key = format!("{ns}/{secret_name}");
                used.insert(key.clone());
                let parsed = match c.secrets.get(&key) {
                    None => Err(format!(
                        "secret \"{key}\" not found (or not of type kubernetes.io/tls); serving the default certificate"
                    )),
                    Some(secret) => self.parse(&key, &secret),
                };
                let cert = match parsed {
                    Ok(cert) => cert,
                    Err(message) => {
                        problems.insert(Problem {
                            ingress: ing_key.clone(),
                            reason: "BadTLSSecret",
                            message,
                        });
                        continue;
                    }
                };
                let hosts = match &t.hosts {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => table.hosts.get(&ing_key).cloned().unwrap_or_default(),
                };
                for h in hosts {
                    certs.add(&h, cert.clone());
                }
            }
        }
        self.parsed.retain(|k, _| used.contains(k));
        certs
    }

    /// A Secret's certificate, parsed again only when the Secret changed.
    fn parse(&mut self, key: &str, secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
        let rv = secret.metadata.resource_version.clone().unwrap_or_default();
        if let Some((seen, res)) = self.parsed.get(key) {
            if *seen == rv {
                return res.clone();
            }
        }
        let res = tls::from_secret(secret).map_err(|e| {
            format!("secret \"{key}\" cannot be used: {e}; serving the default certificate")
        });
        match &res {
            Ok(_) => tracing::info!(secret = %key, "loaded an ingress certificate"),
            Err(e) => tracing::warn!(secret = %key, "{e}"),
        }
        self.parsed.insert(key.to_string(), (rv, res.clone()));
        res
    }

    /// One Warning Event per new problem.
    fn report(&mut self, served: &[Arc<Ingress>], problems: &BTreeSet<Problem>) {
        let by_key: HashMap<String, &Arc<Ingress>> = served
            .iter()
            .map(|i| {
                (
                    format!(
                        "{}/{}",
                        i.metadata.namespace.as_deref().unwrap_or_default(),
                        i.metadata.name.as_deref().unwrap_or_default()
                    ),
                    i,
                )
            })
            .collect();
        for p in problems.difference(&self.reported) {
            if let Some(ing) = by_key.get(&p.ingress) {
                tracing::info!(ingress = %p.ingress, reason = p.reason, "{}", p.message);
                self.recorder
                    .warning(ing.as_ref(), p.reason, p.message.clone());
            }
        }
        self.reported = problems.clone();
    }

    /// Adds this node's address to each served Ingress's status where it is missing. The
    /// patch carries the resourceVersion it was computed from: a concurrent writer (another
    /// node) makes it fail with a conflict, and the update that caused it wakes us again.
    fn publish_status(&self, served: &[Arc<Ingress>]) {
        for ing in served {
            let current: Vec<String> = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.clone())
                .collect();
            if current.contains(&self.node_ip) {
                continue;
            }
            let mut ips: BTreeSet<String> = current.into_iter().collect();
            ips.insert(self.node_ip.clone());
            let list: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": ing.metadata.resource_version},
                "status": {"loadBalancer": {"ingress": list}},
            });
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let name = ing.metadata.name.clone().unwrap_or_default();
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &ns);
            tokio::spawn(async move {
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(ingress = %format!("{ns}/{name}"), "published the ingress address")
                    }
                    Err(e) => {
                        tracing::debug!(ingress = %format!("{ns}/{name}"), error = %e, "publishing the ingress address failed; retried on the next change")
                    }
                }
            });
        }
    }
}
