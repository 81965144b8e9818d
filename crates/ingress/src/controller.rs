//! Keeping the proxy's view current ([`run`]): informers on Ingresses, IngressClasses,
//! Services, EndpointSlices and TLS Secrets wake one task that rebuilds the routing table and
//! the certificates and swaps them in whole. The same task reports problems (a missing
//! Service or Secret) as Warning Events, once per new problem, and adds this node's address
//! to the served Ingresses' `status.loadBalancer.ingress` when it is missing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use capstan_runtime::events::Recorder;
use capstan_runtime::informer::{key_of, Cache, Informer};
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

/// An informer waking the rebuild when a change concerns it (`relevant` on the old or new
/// object).
fn informer<K>(
    api: Api<K>,
    config: watcher::Config,
    wake: &Arc<Notify>,
    relevant: impl Fn(&K) -> bool + Send + Sync + 'static,
) -> Informer<K>
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
    inf.on_change(move |change| {
        if change.objects().iter().any(|o| relevant(o)) {
            wake.notify_one();
        }
    });
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
    let wanted = Arc::new(RwLock::new(Wanted::default()));
    let all = watcher::Config::default();
    let ing = informer::<Ingress>(Api::all(client.clone()), all.clone(), &wake, |_| true);
    let cls = informer::<IngressClass>(Api::all(client.clone()), all.clone(), &wake, |_| true);
    let w = wanted.clone();
    let svc = informer::<Service>(Api::all(client.clone()), all.clone(), &wake, move |s| {
        w.read().services.contains(&key_of(s))
    });
    let w = wanted.clone();
    let eps = informer::<EndpointSlice>(Api::all(client.clone()), all.clone(), &wake, move |s| {
        slice_service(s).is_some_and(|k| w.read().services.contains(&k))
    });
    // Only TLS Secrets can serve as certificates; the others are never held in memory.
    let w = wanted.clone();
    let sec = informer::<Secret>(
        Api::all(client.clone()),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
        &wake,
        move |s| w.read().secrets.contains(&key_of(s)),
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
        wanted,
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

/// The Services and Secrets the served Ingresses name: changes to other ones do not wake the
/// rebuild, so a busy cluster's endpoint churn costs the ingress nothing.
#[derive(Default)]
pub struct Wanted {
    /// `namespace/name` of Services.
    services: HashSet<String>,
    /// `namespace/name` of TLS Secrets.
    secrets: HashSet<String>,
}

impl Wanted {
    fn of(served: &[Arc<Ingress>]) -> Self {
        let mut w = Wanted::default();
        for ing in served {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            let backends = spec.default_backend.iter().chain(
                spec.rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.http.as_ref())
                    .flat_map(|h| h.paths.iter().map(|p| &p.backend)),
            );
            for b in backends {
                if let Some(s) = &b.service {
                    w.services.insert(format!("{ns}/{}", s.name));
                }
            }
            for t in spec.tls.iter().flatten() {
                if let Some(name) = t.secret_name.as_deref().filter(|n| !n.is_empty()) {
                    w.secrets.insert(format!("{ns}/{name}"));
                }
            }
        }
        w
    }
}

/// `namespace/name` of the Service an EndpointSlice belongs to.
fn slice_service(slice: &EndpointSlice) -> Option<String> {
    let svc = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::router::SERVICE_NAME_LABEL))?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

struct Rebuilder {
    client: kube::Client,
    wanted: Arc<RwLock<Wanted>>,
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
        // Published before the caches are read: a change to a named object after this point
        // wakes the next rebuild, one before it is in what this rebuild reads.
        *self.wanted.write() = Wanted::of(&served);
        let services = self.wanted.read().services.clone();
        let eps = self.endpoints(&services, c);
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

    /// The named Services' objects and EndpointSlices.
    fn endpoints(&self, wanted: &HashSet<String>, c: &Caches) -> Endpoints {
        let mut eps = Endpoints::default();
        for key in wanted {
            if let Some(s) = c.services.get(key) {
                eps.services.insert(key.clone(), s);
            }
        }
        for slice in c.slices.list() {
            if slice_service(&slice).is_some_and(|k| wanted.contains(&k)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_services_and_secrets_ingresses_name_are_wanted() {
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "i", "namespace": "ns"},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "tls": [{"hosts": ["a.test"], "secretName": "a-tls"}, {"hosts": ["b.test"]}],
                "rules": [{"host": "a.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}],
            },
        }))
        .expect("ingress");
        let w = Wanted::of(&[Arc::new(ing)]);
        let mut services: Vec<_> = w.services.iter().cloned().collect();
        services.sort();
        assert_eq!(services, vec!["ns/fallback", "ns/web"]);
        assert_eq!(w.secrets.iter().collect::<Vec<_>>(), vec!["ns/a-tls"]);
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [],
        }))
        .expect("slice");
        assert_eq!(slice_service(&slice).as_deref(), Some("ns/web"));
    }
}
