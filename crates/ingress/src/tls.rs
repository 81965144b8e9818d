//! TLS for port 443: certificates from the Ingresses' `kubernetes.io/tls` Secrets chosen by
//! SNI ([`Certs`], looked up by [`SniResolver`] in the current table, so a changed Secret is
//! served from the next handshake on), and a self-signed default certificate otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a Secret cannot serve as a certificate. None is retryable: the Secret must change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("secret has no {0}")]
    MissingKey(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.key is not a PEM private key: {0}")]
    BadKey(String),
    #[error("tls.key cannot sign: {0}")]
    UnusableKey(#[source] rustls::Error),
    #[error("creating the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The certificate and key of a `kubernetes.io/tls` Secret.
pub fn from_secret(secret: &Secret) -> Result<Arc<CertifiedKey>, Error> {
    let data = secret.data.as_ref();
    let get = |k: &'static str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.clone())
            .filter(|b| !b.is_empty())
            .ok_or(Error::MissingKey(k))
    };
    certified_key(&get("tls.crt")?, &get("tls.key")?)
}

/// A certificate chain and private key in PEM.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(Error::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::BadKey(e.to_string()))?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(Error::UnusableKey)?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// The certificate served when no Secret names the requested host: self-signed, made at start.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, Error> {
    let c = rcgen::generate_simple_self_signed(vec!["capstan-ingress.local".to_string()])?;
    certified_key(
        c.cert.pem().as_bytes(),
        c.signing_key.serialize_pem().as_bytes(),
    )
}

/// Certificates by host name (`*.foo.com` patterns under `foo.com`).
#[derive(Debug, Default)]
pub struct Certs {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Certs {
    /// Adds a certificate for `host`; the first one added for a host stays.
    pub fn add(&mut self, host: &str, key: Arc<CertifiedKey>) {
        let host = crate::router::normalize_host(host);
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_string()).or_insert(key),
            None => self.exact.entry(host).or_insert(key),
        };
    }

    /// The certificate for a server name: exact, then a one-label wildcard.
    pub fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = crate::router::normalize_host(name);
        self.exact.get(&name).cloned().or_else(|| {
            name.split_once('.')
                .and_then(|(_, suffix)| self.wildcard.get(suffix).cloned())
        })
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Picks the certificate for each handshake from the current certificates.
#[derive(Debug)]
pub struct SniResolver {
    pub certs: Arc<RwLock<Arc<Certs>>>,
    pub default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.read().clone();
        hello
            .server_name()
            .and_then(|n| certs.find(n))
            .or_else(|| Some(self.default.clone()))
    }
}

/// The rustls configuration of port 443: ALPN h2 then http/1.1.
pub fn server_config(resolver: Arc<SniResolver>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = match rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_no_client_auth().with_cert_resolver(resolver),
        // The ring provider supports the default versions; this cannot fail in practice.
        Err(_) => rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(name: &str) -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        certified_key(
            c.cert.pem().as_bytes(),
            c.signing_key.serialize_pem().as_bytes(),
        )
        .expect("key")
    }

    #[test]
    fn certificates_are_found_by_exact_name_then_one_label_wildcard() {
        let mut certs = Certs::default();
        let exact = cert_for("a.foo.com");
        let wild = cert_for("*.foo.com");
        certs.add("a.foo.com", exact.clone());
        certs.add("*.foo.com", wild.clone());
        let same = |a: &Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>| {
            a.as_ref().is_some_and(|a| a.cert == b.cert)
        };
        assert!(same(&certs.find("A.foo.com"), &exact));
        assert!(same(&certs.find("b.foo.com"), &wild));
        assert!(certs.find("x.b.foo.com").is_none());
        assert!(certs.find("foo.com").is_none());
    }

    #[test]
    fn secrets_without_a_usable_pair_are_refused_with_a_reason() {
        let mut s = Secret::default();
        assert!(matches!(from_secret(&s), Err(Error::MissingKey("tls.crt"))));
        s.data = Some(
            [
                (
                    "tls.crt".to_string(),
                    k8s_openapi::ByteString(b"nope".to_vec()),
                ),
                (
                    "tls.key".to_string(),
                    k8s_openapi::ByteString(b"nope".to_vec()),
                ),
            ]
            .into_iter()
            .collect(),
        );
        assert!(matches!(from_secret(&s), Err(Error::NoCertificate)));
        assert!(default_certificate().is_ok());
    }
}
