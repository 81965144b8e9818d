//! The routing table: [`Table::build`] turns the Ingresses this controller serves, with the
//! Services and EndpointSlices they name, into host and path rules, and [`Table::route`]
//! picks the backend for one request with upstream's precedence. Pure: no I/O, rebuilt whole
//! on every change and swapped in atomically by the controller.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, ServiceBackendPort};

/// The label an EndpointSlice names its Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long an endpoint that could not be reached is skipped. The EndpointSlice usually
/// drops a gone pod within this; until then its share of requests would each pay a retry.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

/// One Service port of one Service: where its requests go.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs and metrics.
    pub name: String,
    /// Ready endpoints (pod IP and the EndpointSlice's port), in a stable order.
    pub endpoints: Vec<SocketAddr>,
    /// Why there is no endpoint to send to, when the Ingress names something missing.
    pub problem: Option<String>,
    next: AtomicUsize,
    /// Per endpoint: skipped until this many milliseconds after `born` (0: in use).
    ejected_until: Vec<AtomicU64>,
    born: Instant,
}

impl Backend {
    pub fn new(name: String, endpoints: Vec<SocketAddr>, problem: Option<String>) -> Self {
        let ejected_until = endpoints.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            name,
            endpoints,
            problem,
            next: AtomicUsize::new(0),
            ejected_until,
            born: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn usable(&self, i: usize, now: u64) -> bool {
        self.ejected_until[i].load(Ordering::Relaxed) <= now
    }

    /// The next endpoint in round-robin order, skipping recently failed ones (unless all
    /// failed: then they are tried in turn anyway).
    pub fn pick(&self) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.usable(i, now))
            .unwrap_or(start);
        Some(self.endpoints[i])
    }

    /// The usable endpoint after `tried` (for the one retry after a failure). It does not
    /// advance the round robin, so a failing endpoint does not shift later requests.
    pub fn pick_other(&self, tried: SocketAddr) -> Option<SocketAddr> {
        let n = self.endpoints.len();
        let Some(t) = self.endpoints.iter().position(|a| *a == tried) else {
            return self.pick();
        };
        if n < 2 {
            return None;
        }
        let now = self.now_ms();
        let others = (1..n).map(|k| (t + k) % n);
        let i = others
            .clone()
            .find(|&i| self.usable(i, now))
            .or_else(|| others.clone().next())?;
        Some(self.endpoints[i])
    }

    /// Skips `addr` for [`EJECT_FOR`] after it could not be reached.
    pub fn eject(&self, addr: SocketAddr) {
        if let Some(i) = self.endpoints.iter().position(|a| *a == addr) {
            let until = self.now_ms().saturating_add(EJECT_FOR.as_millis() as u64);
            self.ejected_until[i].store(until, Ordering::Relaxed);
        }
    }
}

/// How a rule's path matches (ImplementationSpecific is served as Prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug)]
struct PathRule {
    path: String,
    kind: PathKind,
    backend: Arc<Backend>,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            PathKind::Prefix => prefix_matches(&self.path, path),
        }
    }
}

/// Element-wise prefix match as upstream defines it: `/foo/bar` matches `/foo/bar` and
/// `/foo/bar/baz` but not `/foo/barbaz`; a trailing slash on either side is ignored.
pub fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return true;
    }
    match path.strip_prefix(rule) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The paths of one host, best first: longest path, then Exact before Prefix, then the
/// oldest Ingress.
#[derive(Debug, Default)]
struct HostRules {
    paths: Vec<PathRule>,
}

impl HostRules {
    fn sort(&mut self) {
        // Stable: equal rules keep the order of the (oldest first) Ingresses.
        self.paths.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then_with(|| (a.kind == PathKind::Prefix).cmp(&(b.kind == PathKind::Prefix)))
        });
    }

    fn find(&self, path: &str) -> Option<&Arc<Backend>> {
        self.paths
            .iter()
            .find(|r| r.matches(path))
            .map(|r| &r.backend)
    }
}

/// What the proxy does with a request.
#[derive(Debug)]
pub enum Route<'a> {
    Backend(&'a Arc<Backend>),
    NotFound,
}

/// A problem with an Ingress, reported as a Warning Event on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Problem {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    pub reason: &'static str,
    pub message: String,
}

/// The Services and EndpointSlices backends are resolved against.
#[derive(Default)]
pub struct Endpoints {
    /// Services by `namespace/name`.
    pub services: HashMap<String, Arc<Service>>,
    /// EndpointSlices by the `namespace/name` of their Service.
    pub slices: HashMap<String, Vec<Arc<EndpointSlice>>>,
}

impl Endpoints {
    pub fn add_slice(&mut self, slice: Arc<EndpointSlice>) {
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            return;
        };
        self.slices
            .entry(format!("{ns}/{svc}"))
            .or_default()
            .push(slice);
    }
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Table {
    exact: HashMap<String, HostRules>,
    /// `*.foo.com` rules under `foo.com`.
    wildcard: HashMap<String, HostRules>,
    /// Rules without a host: they match any host no other rule names.
    any: HostRules,
    default_backend: Option<Arc<Backend>>,
    /// Problems found while building, for Events.
    pub problems: BTreeSet<Problem>,
    /// Hosts per Ingress (`namespace/name`), for TLS sections without hosts.
    pub hosts: HashMap<String, Vec<String>>,
}

fn ingress_key(ing: &Ingress) -> String {
    format!(
        "{}/{}",
        ing.metadata.namespace.as_deref().unwrap_or_default(),
        ing.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Host names are matched without case, port or a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| host.to_string())
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

impl Table {
    /// Builds the table from the Ingresses to serve, oldest first deciding ties.
    pub fn build(ingresses: &[Arc<Ingress>], eps: &Endpoints) -> Table {
        let mut sorted: Vec<&Arc<Ingress>> = ingresses.iter().collect();
        sorted.sort_by(|a, b| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
                .then_with(|| ingress_key(a).cmp(&ingress_key(b)))
        });
        let mut t = Table::default();
        let mut backends: HashMap<String, Arc<Backend>> = HashMap::new();
        for ing in sorted {
            let key = ingress_key(ing);
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let Some(spec) = &ing.spec else { continue };
            let mut resolve = |b: &IngressBackend, t: &mut Table| -> Option<Arc<Backend>> {
                let backend = resolve_backend(&ns, b, eps, &mut backends)?;
                if let Some(p) = &backend.problem {
                    let service_exists = b
                        .service
                        .as_ref()
                        .is_some_and(|s| eps.services.contains_key(&format!("{ns}/{}", s.name)));
                    t.problems.insert(Problem {
                        ingress: key.clone(),
                        reason: if service_exists {
                            "ServicePortNotFound"
                        } else {
                            "ServiceNotFound"
                        },
                        message: p.clone(),
                    });
                }
                Some(backend)
            };
            if let Some(db) = &spec.default_backend {
                let b = resolve(db, &mut t);
                if t.default_backend.is_none() {
                    t.default_backend = b;
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().map(normalize_host).unwrap_or_default();
                if !host.is_empty() {
                    t.hosts.entry(key.clone()).or_default().push(host.clone());
                }
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let Some(backend) = resolve(&p.backend, &mut t) else {
                        continue;
                    };
                    let kind = match p.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        _ => PathKind::Prefix,
                    };
                    let path = p.path.clone().unwrap_or_else(|| "/".into());
                    let rules = if host.is_empty() {
                        &mut t.any
                    } else if let Some(suffix) = host.strip_prefix("*.") {
                        t.wildcard.entry(suffix.to_string()).or_default()
                    } else {
                        t.exact.entry(host.clone()).or_default()
                    };
                    rules.paths.push(PathRule {
                        path,
                        kind,
                        backend,
                    });
                }
            }
        }
        t.any.sort();
        for r in t.exact.values_mut().chain(t.wildcard.values_mut()) {
            r.sort();
        }
        t
    }

    /// The backend for a request to `host` (as sent: port and case do not matter) and `path`
    /// (without the query): the exact host's rules, else the wildcard's (one label), else the
    /// rules without a host; within them the best path; else the default backend.
    pub fn route(&self, host: &str, path: &str) -> Route<'_> {
        let host = normalize_host(host);
        let rules = self
            .exact
            .get(&host)
            .or_else(|| {
                host.split_once('.')
                    .and_then(|(_, suffix)| self.wildcard.get(suffix))
            })
            .unwrap_or(&self.any);
        match rules.find(path).or(self.default_backend.as_ref()) {
            Some(b) => Route::Backend(b),
            None => Route::NotFound,
        }
    }

    /// Every backend in the table (for tests and metrics).
    pub fn backend_count(&self) -> usize {
        let mut names = BTreeSet::new();
        for r in self
            .exact
            .values()
            .chain(self.wildcard.values())
            .chain([&self.any])
        {
            for p in &r.paths {
                names.insert(p.backend.name.clone());
            }
        }
        names.len()
    }
}

fn port_label(p: &ServiceBackendPort) -> String {
    match (&p.name, p.number) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The Service port a backend names, resolved to the ready endpoints' target ports. One
/// `Backend` per Service port, shared by every rule naming it (so round robin is shared).
fn resolve_backend(
    ns: &str,
    b: &IngressBackend,
    eps: &Endpoints,
    cache: &mut HashMap<String, Arc<Backend>>,
) -> Option<Arc<Backend>> {
    // Resource backends (other kinds than Services) are not served.
    let svc = b.service.as_ref()?;
    let port = svc.port.clone().unwrap_or_default();
    let name = format!("{ns}/{}:{}", svc.name, port_label(&port));
    if let Some(b) = cache.get(&name) {
        return Some(b.clone());
    }
    let (endpoints, problem) = endpoints_of(ns, &svc.name, &port, eps);
    let backend = Arc::new(Backend::new(name.clone(), endpoints, problem));
    cache.insert(name, backend.clone());
    Some(backend)
}

fn endpoints_of(
    ns: &str,
    svc_name: &str,
    port: &ServiceBackendPort,
    eps: &Endpoints,
) -> (Vec<SocketAddr>, Option<String>) {
    let key = format!("{ns}/{svc_name}");
    let Some(svc) = eps.services.get(&key) else {
        return (Vec::new(), Some(format!("service \"{key}\" not found")));
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let sp = ports.iter().find(|sp| match (&port.name, port.number) {
        (Some(n), _) if !n.is_empty() => sp.name.as_deref() == Some(n.as_str()),
        (_, Some(n)) => sp.port == n,
        _ => false,
    });
    let Some(sp) = sp else {
        return (
            Vec::new(),
            Some(format!(
                "service \"{key}\" has no port {}",
                port_label(port)
            )),
        );
    };
    let port_name = sp.name.clone().unwrap_or_default();
    let mut out = BTreeSet::new();
    for slice in eps.slices.get(&key).into_iter().flatten() {
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let Some(target) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        let Ok(target) = u16::try_from(target) else {
            continue;
        };
        for ep in &slice.endpoints {
            // Unknown readiness counts as ready, as upstream says; terminating endpoints
            // are not ready.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.insert(SocketAddr::new(ip, target));
                }
            }
        }
    }
    (out.into_iter().collect(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, spec: serde_json::Value) -> Arc<Ingress> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec,
            }))
            .expect("ingress"),
        )
    }

    fn service(name: &str, ports: serde_json::Value) -> (String, Arc<Service>) {
        (
            format!("default/{name}"),
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"ports": ports},
                }))
                .expect("service"),
            ),
        )
    }

    fn slice(svc: &str, ports: serde_json::Value, eps: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{svc}-x"), "namespace": "default",
                             "labels": {SERVICE_NAME_LABEL: svc}},
                "addressType": "IPv4",
                "ports": ports,
                "endpoints": eps,
            }))
            .expect("slice"),
        )
    }

    /// Services `a`..`f` on port 80 (named http) with one endpoint each, 10.0.0.<n>:8080.
    fn world() -> Endpoints {
        let mut eps = Endpoints::default();
        for (i, n) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            let (k, s) = service(n, json!([{"name": "http", "port": 80}]));
            eps.services.insert(k, s);
            eps.add_slice(slice(
                n,
                json!([{"name": "http", "port": 8080}]),
                json!([{"addresses": [format!("10.0.0.{}", i + 1)]}]),
            ));
        }
        eps
    }

    fn rule(host: Option<&str>, paths: &[(&str, &str, &str)]) -> serde_json::Value {
        let paths: Vec<_> = paths
            .iter()
            .map(|(p, kind, svc)| {
                json!({"path": p, "pathType": kind,
                       "backend": {"service": {"name": svc, "port": {"number": 80}}}})
            })
            .collect();
        match host {
            Some(h) => json!({"host": h, "http": {"paths": paths}}),
            None => json!({"http": {"paths": paths}}),
        }
    }

    fn routed(t: &Table, host: &str, path: &str) -> String {
        match t.route(host, path) {
            Route::Backend(b) => b.name.split(['/', ':']).nth(1).unwrap_or("").to_string(),
            Route::NotFound => "404".into(),
        }
    }

    #[test]
    fn prefix_matching_is_element_wise() {
        let table = [
            ("/", "/anything", true),
            ("/foo", "/foo", true),
            ("/foo", "/foo/", true),
            ("/foo/", "/foo", true),
            ("/foo", "/foo/bar", true),
            ("/foo", "/foobar", false),
            ("/aaa/bb", "/aaa/bbb", false),
            ("/aaa/bbb", "/aaa/bbb/", true),
            ("/aaa/bbb/", "/aaa/bbb", true),
            ("/aaa/bbb", "/aaa/bbbxyz", false),
            ("/foo/bar", "/foo", false),
        ];
        for (rule, path, want) in table {
            assert_eq!(prefix_matches(rule, path), want, "rule {rule} path {path}");
        }
    }

    #[test]
    fn hosts_paths_and_precedence_follow_upstream() {
        let eps = world();
        let ings = vec![
            ingress(
                "one",
                json!({"rules": [
                    rule(Some("foo.com"), &[("/", "Prefix", "a"), ("/api", "Prefix", "b"),
                                            ("/api", "Exact", "c")]),
                    rule(Some("*.foo.com"), &[("/", "Prefix", "d")]),
                    rule(None, &[("/x", "ImplementationSpecific", "e")]),
                ]}),
            ),
            ingress(
                "two",
                json!({"rules": [rule(Some("exact.foo.com"), &[("/only", "Exact", "f")])]}),
            ),
        ];
        let t = Table::build(&ings, &eps);
        let cases = [
            ("foo.com", "/", "a"),
            ("FOO.com:8080", "/other", "a"),
            ("foo.com", "/api", "c"), // Exact beats Prefix at equal length
            ("foo.com", "/api/v1", "b"), // longest prefix
            ("foo.com", "/apiv1", "a"), // not an element match
            ("bar.foo.com", "/", "d"), // wildcard, one label
            ("a.bar.foo.com", "/", "404"), // more than one label: no wildcard match
            ("exact.foo.com", "/only", "f"), // exact host beats the wildcard
            ("exact.foo.com", "/", "404"), // ... and only its own paths count
            ("other.com", "/x/y", "e"), // host-less rules serve any other host
            ("other.com", "/", "404"),
        ];
        for (host, path, want) in cases {
            assert_eq!(routed(&t, host, path), want, "{host}{path}");
        }
    }

    #[test]
    fn the_default_backend_serves_what_no_rule_matches() {
        let eps = world();
        let ings = vec![ingress(
            "one",
            json!({"defaultBackend": {"service": {"name": "f", "port": {"number": 80}}},
                   "rules": [rule(Some("foo.com"), &[("/a", "Exact", "a")])]}),
        )];
        let t = Table::build(&ings, &eps);
        assert_eq!(routed(&t, "foo.com", "/a"), "a");
        assert_eq!(routed(&t, "foo.com", "/b"), "f");
        assert_eq!(routed(&t, "nothing.org", "/"), "f");
    }

    #[test]
    fn the_oldest_ingress_wins_an_equal_rule() {
        let eps = world();
        let mut newer = (*ingress(
            "aaa",
            json!({"rules": [rule(Some("h"), &[("/", "Prefix", "b")])]}),
        ))
        .clone();
        newer.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-02T00:00:00Z".parse().expect("time"),
            ));
        let mut older = (*ingress(
            "zzz",
            json!({"rules": [rule(Some("h"), &[("/", "Prefix", "a")])]}),
        ))
        .clone();
        older.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("time"),
            ));
        let t = Table::build(&[Arc::new(newer), Arc::new(older)], &eps);
        assert_eq!(routed(&t, "h", "/"), "a");
    }

    #[test]
    fn ports_resolve_by_name_or_number_to_the_slice_target_port() {
        let mut eps = Endpoints::default();
        let (k, s) = service(
            "web",
            json!([{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]),
        );
        eps.services.insert(k, s);
        eps.add_slice(slice(
            "web",
            json!([{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]),
            json!([{"addresses": ["10.1.0.1"]},
                   {"addresses": ["10.1.0.2"], "conditions": {"ready": false}},
                   {"addresses": ["10.1.0.3"], "conditions": {"ready": true}}]),
        ));
        let by = |port: serde_json::Value| {
            let ing = ingress(
                "i",
                json!({"defaultBackend": {"service": {"name": "web", "port": port}}}),
            );
            let t = Table::build(&[ing], &eps);
            match t.route("x", "/") {
                Route::Backend(b) => (b.endpoints.clone(), b.problem.clone()),
                Route::NotFound => panic!("no backend"),
            }
        };
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(
            by(json!({"number": 80})).0,
            vec![addr("10.1.0.1:8080"), addr("10.1.0.3:8080")]
        );
        assert_eq!(
            by(json!({"name": "admin"})).0,
            vec![addr("10.1.0.1:9090"), addr("10.1.0.3:9090")]
        );
        let (none, problem) = by(json!({"number": 81}));
        assert!(none.is_empty());
        assert_eq!(
            problem.as_deref(),
            Some("service \"default/web\" has no port 81")
        );
        let ing = ingress(
            "i",
            json!({"defaultBackend": {"service": {"name": "web", "port": {"name": "nope"}}}}),
        );
        let reasons: Vec<_> = Table::build(&[ing], &eps)
            .problems
            .iter()
            .map(|p| p.reason)
            .collect();
        assert_eq!(reasons, vec!["ServicePortNotFound"]);
    }

    #[test]
    fn a_missing_service_is_a_problem_and_a_backend_without_endpoints() {
        let eps = Endpoints::default();
        let ings = vec![ingress(
            "i",
            json!({"rules": [rule(Some("h"), &[("/", "Prefix", "gone")])]}),
        )];
        let t = Table::build(&ings, &eps);
        let Route::Backend(b) = t.route("h", "/") else {
            panic!("no route")
        };
        assert!(b.pick().is_none());
        let p: Vec<_> = t.problems.iter().collect();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].ingress, "default/i");
        assert_eq!(p[0].message, "service \"default/gone\" not found");
        assert_eq!(p[0].reason, "ServiceNotFound");
    }

    #[test]
    fn round_robin_visits_every_endpoint_and_retries_elsewhere() {
        let b = Backend::new(
            "x".into(),
            vec![
                "10.0.0.1:80".parse().expect("a"),
                "10.0.0.2:80".parse().expect("a"),
                "10.0.0.3:80".parse().expect("a"),
            ],
            None,
        );
        let picked: BTreeSet<_> = (0..3).filter_map(|_| b.pick()).collect();
        assert_eq!(picked.len(), 3);
        let first = b.pick().expect("one");
        assert_ne!(b.pick_other(first), Some(first));
        let single = Backend::new("y".into(), vec![first], None);
        assert_eq!(single.pick_other(first), None);
    }

    #[test]
    fn an_unreachable_endpoint_is_skipped_until_all_are() {
        let a: SocketAddr = "10.0.0.1:80".parse().expect("a");
        let b: SocketAddr = "10.0.0.2:80".parse().expect("b");
        let c: SocketAddr = "10.0.0.3:80".parse().expect("c");
        let backend = Backend::new("x".into(), vec![a, b, c], None);
        backend.eject(b);
        let picked: BTreeSet<_> = (0..6).filter_map(|_| backend.pick()).collect();
        assert_eq!(picked, [a, c].into_iter().collect());
        assert_eq!(backend.pick_other(a), Some(c));
        backend.eject(a);
        backend.eject(c);
        // Everything failed recently: still try, in turn.
        let picked: BTreeSet<_> = (0..6).filter_map(|_| backend.pick()).collect();
        assert_eq!(picked.len(), 3);
        assert_eq!(backend.pick_other(a), Some(b));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Foo.COM:443"), "foo.com");
        assert_eq!(normalize_host("foo.com."), "foo.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("10.0.0.1"), "10.0.0.1");
    }
}
