//! Joining nodes: two endpoints beside the Kubernetes API.
//!
//! - `GET /v1-capstan/cacerts` (anonymous): the cluster CA. A joining agent checks it against
//!   the hash in its token (`K10<sha256 of the CA PEM>::server:<secret>`), so it can trust the
//!   server without a copy of the CA.
//! - `POST /v1-capstan/node` (the join token, user `system:node-bootstrap`, or an admin) with
//!   `{"nodeName": N, "addresses": [IP...]}`: issues the node its own credentials — an API token
//!   for user `system:node:N` (group `system:nodes`), kept in `<server>/cred/nodes/N.token` so
//!   it survives restarts — and a kubelet serving certificate for its names and addresses.
//!   Joining again under the same name replaces the node's token.
//!
//! [`install`] enables the endpoints; [`authenticate`] recognises issued node tokens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::auth::User;
use crate::error::ApiError;
use crate::handlers::{error_response, json_response, Body};
use crate::node_certs::NodeIssuer;
use crate::pki::write_private;

/// Path prefix of the join endpoints.
pub const PREFIX: &str = "/v1-capstan/";

struct Join {
    tls_dir: PathBuf,
    tokens_dir: PathBuf,
    /// token -> node name
    tokens: RwLock<HashMap<String, String>>,
}

static JOIN: OnceLock<Join> = OnceLock::new();

/// Enables the endpoints for the server whose state is in `server_dir`, loading the node
/// tokens issued before.
pub fn install(server_dir: &std::path::Path) {
    let tokens_dir = server_dir.join("cred/nodes");
    let mut tokens = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(&tokens_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let (Some(node), Ok(t)) = (
                name.strip_suffix(".token"),
                std::fs::read_to_string(e.path()),
            ) {
                tokens.insert(t.trim().to_string(), node.to_string());
            }
        }
    }
    let _ = JOIN.set(Join {
        tls_dir: server_dir.join("tls"),
        tokens_dir,
        tokens: RwLock::new(tokens),
    });
}

/// The node behind a node token, if the request carries one.
pub fn authenticate(headers: &http::HeaderMap) -> Option<User> {
    let j = JOIN.get()?;
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Bearer ")?.trim();
    let node = j.tokens.read().get(token).cloned()?;
    Some(User {
        name: format!("system:node:{node}"),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
    })
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !n.starts_with(['-', '.'])
        && !n.ends_with(['-', '.'])
}

/// Serves a request under [`PREFIX`]; `user` is who the request authenticated as.
pub async fn handle(req: Request<Incoming>, user: Option<User>) -> Response<Body> {
    let Some(j) = JOIN.get() else {
        return error_response(&ApiError::no_such_resource());
    };
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.trim_start_matches(PREFIX)) {
        (Method::GET, "cacerts") => match std::fs::read_to_string(j.tls_dir.join("ca.crt")) {
            Ok(ca) => json_response(200, ca, "application/x-pem-file"),
            Err(e) => error_response(&ApiError::internal(e)),
        },
        (Method::POST, "node") => {
            let allowed = user.as_ref().is_some_and(|u| {
                u.name == "system:node-bootstrap" || u.groups.iter().any(|g| g == "system:masters")
            });
            if !allowed {
                return error_response(&ApiError::unauthorized());
            }
            let body: Bytes = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
            };
            match issue(j, &body) {
                Ok(v) => json_response(
                    200,
                    serde_json::to_vec(&v).unwrap_or_default(),
                    "application/json",
                ),
                Err(e) => error_response(&e),
            }
        }
        _ => error_response(&ApiError::no_such_resource()),
    }
}

fn issue(j: &Join, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid join request: {e}")))?;
    let node = v["nodeName"].as_str().unwrap_or_default().to_string();
    if !valid_node_name(&node) {
        return Err(ApiError::bad_request(format!("invalid node name {node:?}")));
    }
    let ips: Vec<IpAddr> = v["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().and_then(|s| s.parse().ok()))
        .collect();
    let issuer = NodeIssuer::load(&j.tls_dir).map_err(ApiError::internal)?;
    let cert = issuer
        .kubelet_serving(&node, &ips)
        .map_err(ApiError::internal)?;
    let token = random_token();
    write_private(&j.tokens_dir.join(format!("{node}.token")), &token)
        .map_err(ApiError::internal)?;
    {
        let mut t = j.tokens.write();
        t.retain(|_, n| *n != node);
        t.insert(token.clone(), node.clone());
    }
    tracing::info!(node = %node, "issued node credentials");
    Ok(json!({
        "nodeName": node,
        "token": token,
        "caCert": issuer.ca_cert_pem,
        "kubeletCert": cert.cert_pem,
        "kubeletKey": cert.key_pem,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_dns_subdomain_rules() {
        assert!(valid_node_name("node-1.example"));
        assert!(!valid_node_name("Node"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name("../x"));
    }
}
