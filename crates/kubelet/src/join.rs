//! Joining a cluster from another machine: [`join`] fetches the cluster CA from the server
//! (`/v1-capstan/cacerts`) and checks it against the hash in the token
//! (`K10<sha256 of the CA PEM>::server:<secret>`, as k3s), then asks the server for this
//! node's own credentials with the join secret (`/v1-capstan/node`): an API token and a kubelet
//! serving certificate. [`Credentials`] are kept under the agent's folder and reused.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};

/// Why joining failed. Network errors are worth retrying; a hash mismatch or a refused token
/// are not.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the server URL {0:?} is not https://HOST:PORT")]
    BadUrl(String),
    #[error("connecting to {url}: {message}")]
    Connect { url: String, message: String },
    #[error(
        "the server's CA does not match the hash in the token (expected {expected}, got {got})"
    )]
    CaMismatch { expected: String, got: String },
    #[error("the server refused the join request ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error("the server's answer is not understood: {0}")]
    BadAnswer(String),
    #[error("storing credentials in {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed join token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// sha256 (hex) of the CA PEM, when the token pins it.
    pub ca_hash: Option<String>,
    pub secret: String,
}

impl Token {
    pub fn parse(t: &str) -> Self {
        let t = t.trim();
        if let Some(rest) = t.strip_prefix("K10") {
            if let Some((hash, tail)) = rest.split_once("::") {
                let secret = tail.split_once(':').map_or(tail, |(_, s)| s);
                return Self {
                    ca_hash: Some(hash.to_lowercase()),
                    secret: secret.to_string(),
                };
            }
        }
        Self {
            ca_hash: None,
            secret: t.to_string(),
        }
    }
}

/// sha256 of `data`, hex.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token to give joining agents: the CA's hash pins the server.
pub fn full_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", sha256_hex(ca_pem.as_bytes()))
}

/// A node's own credentials.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub node_name: String,
    pub token: String,
    pub ca_cert: String,
    pub kubelet_cert: String,
    pub kubelet_key: String,
}

impl Credentials {
    pub fn load(path: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    /// Saves the credentials owner-only, whole or not at all (they hold the node's token and
    /// key).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        capstan_runtime::files::write_private(path, &json).map_err(|source| Error::Store {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Accepts any server certificate: used only to download the CA, which is then checked
/// against the token's hash before anything is trusted.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::BadAnswer(e.to_string()))?;
    let cfg = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let c = c.map_err(|e| Error::BadAnswer(format!("CA: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| Error::BadAnswer(format!("CA: {e}")))?;
            }
            b.with_root_certificates(roots).with_no_client_auth()
        }
        None => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// One HTTPS request; returns the status and body.
async fn request(
    url: &str,
    method: &str,
    path: &str,
    ca_pem: Option<&str>,
    bearer: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Bytes)> {
    let uri: Uri = url.parse().map_err(|_| Error::BadUrl(url.to_string()))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::BadUrl(url.to_string()))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(6443);
    let conn_err = |m: String| Error::Connect {
        url: url.to_string(),
        message: m,
    };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| conn_err(e.to_string()))?;
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls_pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| conn_err(e.to_string()))?,
    };
    let stream = tokio_rustls::TlsConnector::from(tls(ca_pem)?)
        .connect(name, tcp)
        .await
        .map_err(|e| conn_err(format!("TLS: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut rb = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        rb = rb.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = rb
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| conn_err(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| conn_err(e.to_string()))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| conn_err(e.to_string()))?
        .to_bytes();
    Ok((status, bytes))
}

/// Fetches and checks the CA, then asks for this node's credentials.
pub async fn join(
    url: &str,
    token: &Token,
    ca_pem: Option<String>,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<Credentials> {
    let ca = match ca_pem {
        Some(c) => c,
        None => {
            let (status, body) =
                request(url, "GET", "/v1-capstan/cacerts", None, None, Vec::new()).await?;
            if status != 200 {
                return Err(Error::Refused {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            let ca = String::from_utf8_lossy(&body).into_owned();
            match &token.ca_hash {
                Some(want) => {
                    let got = sha256_hex(ca.as_bytes());
                    if &got != want {
                        return Err(Error::CaMismatch { expected: want.clone(), got });
                    }
                }
                None => tracing::warn!("the join token pins no CA (use the K10... token from <data-dir>/server/node-token); trusting the server's CA on first use"),
            }
            ca
        }
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "nodeName": node_name,
        "addresses": addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
    .unwrap_or_default();
    let (status, answer) = request(
        url,
        "POST",
        "/v1-capstan/node",
        Some(&ca),
        Some(&token.secret),
        body,
    )
    .await?;
    if status != 200 {
        return Err(Error::Refused {
            status,
            body: String::from_utf8_lossy(&answer).into_owned(),
        });
    }
    let creds: Credentials =
        serde_json::from_slice(&answer).map_err(|e| Error::BadAnswer(e.to_string()))?;
    tracing::info!(
        node = node_name,
        server = url,
        "joined the cluster; node credentials issued"
    );
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_with_and_without_a_ca_hash() {
        let t = Token::parse(&full_token("pem", "s3cret"));
        assert_eq!(t.secret, "s3cret");
        assert_eq!(t.ca_hash.as_deref(), Some(sha256_hex(b"pem").as_str()));
        assert_eq!(
            Token::parse("plain"),
            Token {
                ca_hash: None,
                secret: "plain".into()
            }
        );
    }
}
