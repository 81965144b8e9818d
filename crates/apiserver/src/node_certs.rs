//! Certificates for nodes, signed by the cluster CA: a kubelet serving certificate per node
//! (its names and addresses), and the API server's client certificate for talking to
//! kubelets (clientAuth usage; kubelets admit only certificates from the CA with that usage).

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::pki::PkiError;

/// A certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Signs node certificates with the CA kept in the server's tls folder.
pub struct NodeIssuer {
    ca_key: KeyPair,
    pub ca_cert_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    // The issuer's name must match the CA certificate's subject (see pki.rs).
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "capstan-server-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Ok(p)
}

impl NodeIssuer {
    /// Loads the CA from `tls_dir` (ca.crt, ca.key).
    pub fn load(tls_dir: &Path) -> Result<Self, PkiError> {
        let read = |name: &str| {
            let path = tls_dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
        };
        Ok(Self {
            ca_key: KeyPair::from_pem(&read("ca.key")?)?,
            ca_cert_pem: read("ca.crt")?,
        })
    }

    fn sign(&self, p: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params()?, &self.ca_key);
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The serving certificate of node `name`'s kubelet port.
    pub fn kubelet_serving(&self, name: &str, ips: &[IpAddr]) -> Result<Issued, PkiError> {
        let mut p = CertificateParams::new(vec![name.to_string(), "localhost".to_string()])?;
        for ip in ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("system:node:{name}"));
        dn.push(DnType::OrganizationName, "system:nodes");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        crate::pki::expiry::leaf_validity(&mut p);
        self.sign(p)
    }

    /// The API server's client certificate for kubelets.
    pub fn apiserver_kubelet_client(&self) -> Result<Issued, PkiError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "capstan-apiserver-kubelet-client");
        dn.push(DnType::OrganizationName, "system:masters");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        crate::pki::expiry::leaf_validity(&mut p);
        self.sign(p)
    }
}
