//! `pods/log`, served from the node: [`pod_log`] checks the pod and container as upstream does,
//! finds the node's kubelet (InternalIP and `daemonEndpoints.kubeletEndpoint.Port` from the Node
//! object) and streams `GET /containerLogs/{ns}/{pod}/{container}` from it over TLS: the
//! kubelet's certificate must come from the cluster CA, and the API server presents its own
//! client certificate from that CA. [`install`] sets the credentials once at start-up.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use capstan_api::catalogue::ResourceInfo;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use serde_json::Value;

use crate::codec::decode_stored;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Body;
use crate::params::Query;
use crate::registry::Registry;

/// How the API server reaches kubelets.
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

static CLIENT: OnceLock<KubeletClient> = OnceLock::new();

/// Sets the CA kubelets' certificates must chain to and the API server's client certificate.
pub fn install(ca_pem: &str, client_cert_pem: &str, client_key_pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key =
        PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .map_err(|e| e.to_string())?;
    let _ = CLIENT.set(KubeletClient { tls: Arc::new(cfg) });
    Ok(())
}

/// The query parameters kubelets understand, passed through as given.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "previous",
    "limitBytes",
];

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// GET pods/{name}/log.
pub async fn pod_log(
    reg: &Registry,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    q: &Query,
) -> ApiResult<Response<Body>> {
    let kv = reg.get(info, ns, name).await?;
    let pod = decode_stored(info, &kv)?;
    let ns = ns.unwrap_or("default");
    let container = pick_container(&pod, name, q.get("container"))?;
    let (ip, port) = kubelet_of(reg, &pod, name).await?;
    let query = {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for p in LOG_PARAMS {
            if let Some(v) = q.get(p) {
                s.append_pair(p, v);
            }
        }
        s.finish()
    };
    let path = format!("/containerLogs/{ns}/{name}/{container}?{query}");
    fetch(ip, port, &path).await
}

/// The container a pod subresource request names, or the pod's only one; upstream's messages.
pub(crate) fn pick_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let containers = names(&pod["spec"]["containers"]);
    let inits = names(&pod["spec"]["initContainers"]);
    let ephemeral = names(&pod["spec"]["ephemeralContainers"]);
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers
                .iter()
                .chain(inits.iter())
                .chain(ephemeral.iter())
                .any(|x| x == c)
            {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            Ok(c.to_string())
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut m = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                m.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            Err(ApiError::bad_request(m))
        }
    }
}

/// The address of the kubelet running `pod` (InternalIP and kubelet port of its Node).
pub(crate) async fn kubelet_of(
    reg: &Registry,
    pod: &Value,
    name: &str,
) -> ApiResult<(IpAddr, u16)> {
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = capstan_api::catalogue::lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    let node_obj = decode_stored(nodes, &reg.get(nodes, None, node).await?)?;
    let ip = node_obj["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| ApiError::internal(format!("node {node} has no InternalIP address")))?;
    let port = kubelet_port(
        node,
        &node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
    )?;
    Ok((ip, port))
}

/// The node's kubelet port from its status: unset or not positive means the default (as
/// upstream), anything above 65535 is a broken node status, not a port to wrap around.
fn kubelet_port(node: &str, v: &serde_json::Value) -> ApiResult<u16> {
    match v.as_i64() {
        None if v.is_null() => Ok(10250),
        Some(p) if p <= 0 => Ok(10250),
        Some(p) => u16::try_from(p).map_err(|_| {
            ApiError::internal(format!(
                "node {node:?} reports kubelet port {p} in status.daemonEndpoints.kubeletEndpoint.Port, which is not a valid port (1-65535)"
            ))
        }),
        None => Err(ApiError::internal(format!(
            "node {node:?} reports kubelet port {v} in status.daemonEndpoints.kubeletEndpoint.Port, which is not a valid port (1-65535)"
        ))),
    }
}

pub(crate) fn unreachable(
    ip: IpAddr,
    port: u16,
    path: &str,
    e: impl std::fmt::Display,
) -> ApiError {
    ApiError::internal(format!("Get \"https://{ip}:{port}{path}\": {e}"))
}

/// A TLS connection to a kubelet, presenting the API server's client certificate.
pub(crate) async fn dial(
    ip: IpAddr,
    port: u16,
    path: &str,
) -> ApiResult<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let client = CLIENT.get().ok_or_else(|| {
        ApiError::service_unavailable("this server has no credentials for kubelets")
    })?;
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .map_err(|_| unreachable(ip, port, path, "dial tcp: i/o timeout"))?
    .map_err(|e| {
        unreachable(
            ip,
            port,
            path,
            format!("dial tcp {ip}:{port}: connect: {e}"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(client.tls.clone());
    let server_name = rustls_pki_types::ServerName::IpAddress(ip.into());
    let _ = tcp.set_nodelay(true);
    connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(ip, port, path, format!("tls: {e}")))
}

async fn fetch(ip: IpAddr, port: u16, path: &str) -> ApiResult<Response<Body>> {
    let tls = dial(ip, port, path).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(ip, port, path, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(header::HOST, format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(ApiError::internal)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(ip, port, path, e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status {
            400 => ApiError::bad_request(msg),
            404 => ApiError::new(404, "NotFound", msg),
            code => ApiError::new(code, "InternalError", msg),
        });
    }
    // Stream the kubelet's answer as it comes; a broken upstream just ends the stream.
    let body = resp.into_body();
    let stream = futures::stream::unfold(body, |mut b| async move {
        loop {
            match b.frame().await {
                Some(Ok(f)) => {
                    if f.is_data() {
                        return Some((Ok::<_, Infallible>(f), b));
                    }
                }
                _ => return None,
            }
        }
    });
    let mut out = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_ports_out_of_range_are_refused_not_wrapped() {
        assert_eq!(kubelet_port("n", &json!(null)).expect("default"), 10250);
        assert_eq!(kubelet_port("n", &json!(0)).expect("default"), 10250);
        assert_eq!(kubelet_port("n", &json!(10251)).expect("set"), 10251);
        for bad in [json!(65536), json!(75786), json!("x")] {
            let e = kubelet_port("n", &bad).expect_err("out of range");
            assert_eq!(e.code, 500);
            assert!(e.message.contains("not a valid port"), "{}", e.message);
        }
    }
}
