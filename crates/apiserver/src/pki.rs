//! The cluster's certificates: a CA created on first start and reused afterwards, and the API
//! server's serving certificate signed by it, reissued when the host's names or addresses change
//! or when it expires within 90 days (checked at start, as k3s does). The CA itself is kept; a CA
//! with one of its two files missing stops the start (see [`PkiError::CaIncomplete`]).

pub mod expiry;
pub mod files;

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use files::{private_dir, restrict, write_private};

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
    /// One half of the CA is gone. Making a new CA would cut off every node and client that
    /// trusts the old one, so this is for the operator to repair.
    #[error(
        "{missing} is missing but {present} exists: refusing to create a new CA, which every \
         node and kubeconfig that trusts the old one would reject; restore {missing} from a \
         backup (remove both files only to start a new cluster)",
        missing = missing.display(),
        present = present.display()
    )]
    CaIncomplete { missing: PathBuf, present: PathBuf },
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

/// The CA in `dir`: loaded, or created when neither of its files exists.
fn load_or_create_ca(dir: &Path) -> Result<(KeyPair, String), PkiError> {
    let key_path = dir.join("ca.key");
    let cert_path = dir.join("ca.crt");
    match (read(&key_path)?, read(&cert_path)?) {
        (Some(k), Some(c)) => Ok((KeyPair::from_pem(&k)?, c)),
        (None, None) => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&key_path, &key.serialize_pem())?;
            write_private(&cert_path, &cert.pem())?;
            tracing::info!(dir = %dir.display(), "created the cluster CA");
            Ok((key, cert.pem()))
        }
        (None, Some(_)) => Err(PkiError::CaIncomplete {
            missing: key_path,
            present: cert_path,
        }),
        (Some(_), None) => Err(PkiError::CaIncomplete {
            missing: cert_path,
            present: key_path,
        }),
    }
}

impl Pki {
    /// Loads the CA from `dir` (creating it on first start) and makes sure the serving
    /// certificate covers `dns_names` and `ips` and does not expire within 90 days.
    pub fn load_or_create(
        dir: &Path,
        dns_names: &[String],
        ips: &[IpAddr],
    ) -> Result<Self, PkiError> {
        private_dir(dir)?;
        let (ca_key, ca_cert_pem) = load_or_create_ca(dir)?;
        if expiry::expires_within(&ca_cert_pem, expiry::RENEW_BEFORE) {
            // A new CA means a new trust anchor on every node: never done behind anyone's back.
            tracing::warn!(
                path = %dir.join("ca.crt").display(),
                not_after = ?expiry::not_after(&ca_cert_pem),
                "the cluster CA expires within 90 days; it is kept, renew it by hand"
            );
        }
        let mut sans: Vec<String> = dns_names.to_vec();
        sans.extend(ips.iter().map(ToString::to_string));
        sans.sort();
        sans.dedup();
        let sans_text = sans.join("\n");
        let cert_path = dir.join("serving.crt");
        let key_path = dir.join("serving.key");
        let sans_path = dir.join("serving.sans");
        let existing = match (read(&cert_path)?, read(&key_path)?, read(&sans_path)?) {
            (Some(c), Some(k), Some(s)) if s == sans_text => {
                if expiry::expires_within(&c, expiry::RENEW_BEFORE) {
                    tracing::info!(
                        path = %cert_path.display(),
                        not_after = ?expiry::not_after(&c),
                        "renewing the serving certificate: it expires within 90 days"
                    );
                    None
                } else {
                    Some((c, k))
                }
            }
            _ => None,
        };
        let (serving_cert_pem, serving_key_pem) = match existing {
            Some(pair) => pair,
            None => {
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
                expiry::leaf_validity(&mut p);
                let issuer = Issuer::new(ca_params()?, &ca_key);
                let cert = p.signed_by(&key, &issuer)?;
                // The SANs file last: should the start stop in between, the next one sees no
                // matching SANs and issues the pair again.
                write_private(&cert_path, &cert.pem())?;
                write_private(&key_path, &key.serialize_pem())?;
                write_private(&sans_path, &sans_text)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        // Files written by an older build or by hand under another umask.
        for name in [
            "ca.key",
            "ca.crt",
            "serving.crt",
            "serving.key",
            "serving.sans",
        ] {
            restrict(&dir.join(name))?;
        }
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
    use std::os::unix::fs::PermissionsExt;

    fn localhost() -> (Vec<String>, Vec<IpAddr>) {
        (
            vec!["localhost".into()],
            vec!["127.0.0.1".parse().expect("ip")],
        )
    }

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
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_serving_certificate_expiring_within_90_days_is_renewed_by_the_same_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (names, ips) = localhost();
        let first = Pki::load_or_create(dir.path(), &names, &ips).expect("create");
        // Replace the serving certificate with one of the same CA expiring in 30 days.
        let (ca_key, _) = load_or_create_ca(dir.path()).expect("ca");
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names.clone()).expect("params");
        let now = std::time::SystemTime::now();
        p.not_before = (now - std::time::Duration::from_secs(3600)).into();
        p.not_after = (now + std::time::Duration::from_secs(30 * 86400)).into();
        let short = p
            .signed_by(&key, &Issuer::new(ca_params().expect("ca params"), &ca_key))
            .expect("sign");
        write_private(&dir.path().join("serving.crt"), &short.pem()).expect("write");
        write_private(&dir.path().join("serving.key"), &key.serialize_pem()).expect("write");
        assert!(expiry::expires_within(&short.pem(), expiry::RENEW_BEFORE));

        let renewed = Pki::load_or_create(dir.path(), &names, &ips).expect("renew");
        assert_eq!(renewed.ca_cert_pem, first.ca_cert_pem, "the CA is kept");
        assert_ne!(renewed.serving_cert_pem, short.pem());
        let left = expiry::not_after(&renewed.serving_cert_pem).expect("parse")
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs() as i64;
        assert!(left > 300 * 86400, "renewed for a year, {left} s left");
    }

    #[test]
    fn a_ca_certificate_without_its_key_stops_the_start_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (names, ips) = localhost();
        let first = Pki::load_or_create(dir.path(), &names, &ips).expect("create");
        std::fs::remove_file(dir.path().join("ca.key")).expect("remove");
        let err = Pki::load_or_create(dir.path(), &names, &ips).expect_err("must refuse");
        let message = err.to_string();
        assert!(message.contains("ca.key is missing"), "{message}");
        assert!(!dir.path().join("ca.key").exists(), "no new CA was made");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt"),
            first.ca_cert_pem
        );
    }
}
