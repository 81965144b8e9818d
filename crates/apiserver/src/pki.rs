//! The cluster's certificates: a CA created on first start and reused afterwards, and the API
//! server's serving certificate signed by it, reissued when the host's names or addresses change.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading or writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// PEM-encoded material for serving TLS and for kubeconfigs.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    dir: PathBuf,
}

const CA_NAME: &str = "capstan-server-ca";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = std::time::SystemTime::now();
    p.not_before = (now - std::time::Duration::from_secs(3600)).into();
    p.not_after = (now + std::time::Duration::from_secs(10 * 365 * 86400)).into();
    Ok(p)
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a file readable only by its owner (keys and credentials).
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

impl Pki {
    /// Loads the CA from `dir` (creating it on first start) and makes sure the serving
    /// certificate covers `dns_names` and `ips`.
    pub fn load_or_create(
        dir: &Path,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<Self, PkiError> {
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.crt");
        let (ca_key, ca_cert_pem) = match (read(&ca_key_path)?, read(&ca_cert_path)?) {
            (Some(k), Some(c)) => (KeyPair::from_pem(&k)?, c),
            _ => {
                let key = KeyPair::generate()?;
                let cert = ca_params()?.self_signed(&key)?;
                write_private(&ca_key_path, &key.serialize_pem())?;
                write_private(&ca_cert_path, &cert.pem())?;
                (key, cert.pem())
            }
        };
        let mut sans: Vec<String> = dns_names.to_vec();
        sans.extend(ips.iter().map(ToString::to_string));
        sans.sort();
        sans.dedup();
        let sans_text = sans.join("\n");
        let cert_path = dir.join("serving.crt");
        let key_path = dir.join("serving.key");
        let sans_path = dir.join("serving.sans");
        let (serving_cert_pem, serving_key_pem) =
            match (read(&cert_path)?, read(&key_path)?, read(&sans_path)?) {
                (Some(c), Some(k), Some(s)) if s == sans_text => (c, k),
                _ => {
                    let key = KeyPair::generate()?;
                    let mut p = CertificateParams::new(dns_names.to_vec())?;
                    for ip in ips {
                        p.subject_alt_names.push(SanType::IpAddress(*ip));
                    }
                    let mut dn = DistinguishedName::new();
                    dn.push(DnType::CommonName, "capstan-apiserver");
                    p.distinguished_name = dn;
                    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                    p.key_usages = vec![
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyEncipherment,
                    ];
                    let now = std::time::SystemTime::now();
                    p.not_before = (now - std::time::Duration::from_secs(3600)).into();
                    p.not_after = (now + std::time::Duration::from_secs(365 * 86400)).into();
                    let issuer = Issuer::new(ca_params()?, &ca_key);
                    let cert = p.signed_by(&key, &issuer)?;
                    write_private(&cert_path, &cert.pem())?;
                    write_private(&key_path, &key.serialize_pem())?;
                    write_private(&sans_path, &sans_text)?;
                    (cert.pem(), key.serialize_pem())
                }
            };
        Ok(Self {
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip")];
        let a = Pki::load_or_create(dir.path(), &["localhost".into()], &ips).expect("create");
        let b = Pki::load_or_create(dir.path(), &["localhost".into()], &ips).expect("reuse");
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        let c = Pki::load_or_create(dir.path(), &["localhost".into(), "other".into()], &ips)
            .expect("reissue");
        assert_eq!(a.ca_cert_pem, c.ca_cert_pem);
        assert_ne!(a.serving_cert_pem, c.serving_cert_pem);
        let mode = std::fs::metadata(dir.path().join("ca.key")).expect("meta");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}
