//! `publish`: keeps the objects that say where cluster DNS is: `kube-system/kube-dns` (a
//! Service at the cluster DNS address, without a selector, labelled as upstream's and k3s's
//! CoreDNS Service), its EndpointSlice pointing at this server's DNS port (labelled as managed
//! by capstan, so the EndpointSlice controller leaves it alone), and the `kube-system/cluster-dns`
//! ConfigMap from which joined agents learn the DNS address and domain. Written with
//! server-side apply at start and again whenever one is missing or differs (checked every
//! [`RECHECK`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

pub const NAMESPACE: &str = "kube-system";
pub const SERVICE: &str = "kube-dns";
pub const SLICE: &str = "kube-dns-capstan";
pub const CONFIG_MAP: &str = "cluster-dns";
/// The managed-by value of the EndpointSlice (not the EndpointSlice controller's).
pub const MANAGED_BY: &str = "cluster-dns.capstan.io";
const FIELD_MANAGER: &str = "capstan-cluster-dns";
/// How often the objects are checked again.
pub const RECHECK: Duration = Duration::from_secs(30);
/// The wait after a failed write.
const RETRY: Duration = Duration::from_secs(2);

/// What is published.
#[derive(Clone, Debug)]
pub struct Published {
    pub cluster_ip: IpAddr,
    /// The address and port DNS listens on; None when DNS is off (only the ConfigMap is kept).
    pub endpoint: Option<SocketAddr>,
    pub domain: String,
}

pub fn service(p: &Published, endpoint: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/name": "CoreDNS",
            "kubernetes.io/cluster-service": "true",
        }},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": p.cluster_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": endpoint.port()},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": endpoint.port()},
            ],
        },
    })
}

pub fn slice(endpoint: SocketAddr) -> Value {
    let family = if endpoint.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": SLICE, "namespace": NAMESPACE, "labels": {
            "kubernetes.io/service-name": SERVICE,
            "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            "k8s-app": "kube-dns",
        }},
        "addressType": family,
        "endpoints": [{
            "addresses": [endpoint.ip().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
        }],
        "ports": [
            {"name": "dns", "port": endpoint.port(), "protocol": "UDP"},
            {"name": "dns-tcp", "port": endpoint.port(), "protocol": "TCP"},
        ],
    })
}

pub fn config_map(p: &Published) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
        "data": {"clusterDNS": p.cluster_ip.to_string(), "clusterDomain": p.domain},
    })
}

/// Errors are retried after [`RETRY`]; each is logged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {what}: {source}")]
    Apply {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// True when every field of `want` (recursively, objects only) has the same value in `have`.
fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| covers(hv, wv))),
        (h, w) => h == w,
    }
}

async fn ensure<K>(api: &Api<K>, name: &str, what: &'static str, want: Value) -> Result<bool, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let have = api
        .get_opt(name)
        .await
        .map_err(|source| Error::Read { what, source })?;
    if let Some(h) = have {
        let h = serde_json::to_value(&h).unwrap_or_default();
        if covers(&h, &want) {
            return Ok(false);
        }
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(want),
    )
    .await
    .map_err(|source| Error::Apply { what, source })?;
    Ok(true)
}

/// Writes what is missing or differs; true when something was written.
pub async fn sync(client: &kube::Client, p: &Published) -> Result<bool, Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let mut wrote = ensure(
        &maps,
        CONFIG_MAP,
        "the cluster-dns ConfigMap",
        config_map(p),
    )
    .await?;
    if let Some(endpoint) = p.endpoint {
        wrote |= ensure(
            &services,
            SERVICE,
            "the kube-dns Service",
            service(p, endpoint),
        )
        .await?;
        wrote |= ensure(
            &slices,
            SLICE,
            "the kube-dns EndpointSlice",
            slice(endpoint),
        )
        .await?;
    }
    Ok(wrote)
}

/// Keeps the objects published until `shutdown`.
pub async fn run(client: kube::Client, p: Published, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = match sync(&client, &p).await {
            Ok(true) => {
                tracing::info!(service = %p.cluster_ip, endpoint = ?p.endpoint, "published the cluster DNS objects (kube-dns Service, EndpointSlice, cluster-dns ConfigMap)");
                RECHECK
            }
            Ok(false) => RECHECK,
            Err(e) => {
                tracing::warn!(error = %e, "publishing cluster DNS failed; retrying");
                RETRY
            }
        };
        if capstan_runtime::sleep_or_shutdown(wait, &mut shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Published {
        Published {
            cluster_ip: "10.43.0.10".parse().expect("ip"),
            endpoint: Some("192.0.2.5:5353".parse().expect("addr")),
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn the_service_has_no_selector_and_targets_the_listening_port() {
        let at = "192.0.2.5:5353".parse().expect("addr");
        let s = service(&published(), at);
        assert!(s["spec"].get("selector").is_none());
        assert_eq!(s["spec"]["clusterIP"], "10.43.0.10");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 5353);
        assert_eq!(s["metadata"]["labels"]["k8s-app"], "kube-dns");
        let e = slice(at);
        assert_eq!(e["endpoints"][0]["addresses"][0], "192.0.2.5");
        assert_eq!(e["ports"][1]["protocol"], "TCP");
        assert_ne!(
            e["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
    }

    #[test]
    fn covers_ignores_fields_the_server_added() {
        let want = json!({"a": {"b": 1}, "c": [1, 2]});
        assert!(covers(
            &json!({"a": {"b": 1, "x": 2}, "c": [1, 2], "d": 0}),
            &want
        ));
        assert!(!covers(&json!({"a": {"b": 2}, "c": [1, 2]}), &want));
        assert!(!covers(&json!({"a": {"b": 1}}), &want));
    }
}
