//! Registry mirrors and credentials, configured in a YAML file in k3s's `registries.yaml`
//! format, turned into containerd's CRI registry settings by [`Registries::containerd_toml`];
//! and `kubernetes.io/dockerconfigjson` pull secrets turned into CRI credentials by
//! [`auth_from_docker_config`].
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}
//!     tls: {insecure_skip_verify: true}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the registries file; the agent refuses to start with a broken one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Auth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub identitytoken: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Tls {
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl Registries {
    /// Reads `path`; a missing file means no mirrors and no credentials.
    pub fn load(path: &Path) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Self::default()),
            Ok(text) => serde_saphyr::from_str(&text).map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// containerd 1.6's `registry.mirrors` / `registry.configs` tables.
    pub fn containerd_toml(&self) -> String {
        let mut out = String::new();
        let base = r#"[plugins."io.containerd.grpc.v1.cri".registry"#;
        for (host, m) in &self.mirrors {
            let eps: Vec<String> = m.endpoint.iter().map(|e| q(e)).collect();
            out.push_str(&format!(
                "{base}.mirrors.{}]\n  endpoint = [{}]\n",
                q(host),
                eps.join(", ")
            ));
        }
        for (host, c) in &self.configs {
            if let Some(a) = &c.auth {
                out.push_str(&format!(
                    "{base}.configs.{}.auth]\n  username = {}\n  password = {}\n  auth = {}\n  identitytoken = {}\n",
                    q(host),
                    q(&a.username),
                    q(&a.password),
                    q(&a.auth),
                    q(&a.identitytoken)
                ));
            }
            if let Some(t) = &c.tls {
                out.push_str(&format!(
                    "{base}.configs.{}.tls]\n  ca_file = {}\n  cert_file = {}\n  key_file = {}\n  insecure_skip_verify = {}\n",
                    q(host),
                    q(&t.ca_file),
                    q(&t.cert_file),
                    q(&t.key_file),
                    t.insecure_skip_verify
                ));
            }
        }
        if !out.is_empty() {
            out.insert_str(0, "\n# From the registries file.\n");
        }
        out
    }
}

/// The registry host of an image reference, as docker normalises it (`nginx` → `docker.io`).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// Credentials for `image` from a `.dockerconfigjson` (or legacy `.dockercfg`) document.
pub fn auth_from_docker_config(
    doc: &serde_json::Value,
    image: &str,
) -> Option<k8s_cri::v1::AuthConfig> {
    let host = registry_host(image);
    let auths = doc.get("auths").unwrap_or(doc).as_object()?;
    let candidates = |h: &str| -> Vec<String> {
        let mut v = vec![h.to_string(), format!("https://{h}"), format!("http://{h}")];
        if h == "docker.io" {
            v.extend([
                "index.docker.io".into(),
                "https://index.docker.io/v1/".into(),
                "registry-1.docker.io".into(),
            ]);
        }
        v
    };
    let entry = candidates(&host).into_iter().find_map(|k| {
        auths
            .iter()
            .find(|(key, _)| key.trim_end_matches('/') == k.trim_end_matches('/'))
            .map(|(_, v)| v)
    })?;
    let s = |k: &str| {
        entry
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (mut username, mut password) = (s("username"), s("password"));
    let auth = s("auth");
    if username.is_empty() && !auth.is_empty() {
        use base64::Engine;
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth.as_bytes()) {
            if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                username = u.to_string();
                password = p.to_string();
            }
        }
    }
    Some(k8s_cri::v1::AuthConfig {
        username,
        password,
        auth,
        // Left empty: containerd compares it, as a URL, with each host it contacts, and
        // "127.0.0.1:5000" or "docker.io" (reached at registry-1.docker.io) would never match.
        server_address: String::new(),
        identity_token: s("identitytoken"),
        registry_token: s("registrytoken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_style_file_becomes_containerd_mirror_and_auth_tables() {
        let r: Registries = serde_saphyr::from_str(
            "mirrors:\n  docker.io:\n    endpoint:\n      - http://127.0.0.1:5000\nconfigs:\n  127.0.0.1:5000:\n    auth:\n      username: u\n      password: p\n    tls:\n      insecure_skip_verify: true\n",
        )
        .expect("parse");
        let t = r.containerd_toml();
        assert!(t.contains(r#"[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]"#));
        assert!(t.contains(r#"endpoint = ["http://127.0.0.1:5000"]"#));
        assert!(t.contains(r#"configs."127.0.0.1:5000".auth]"#));
        assert!(t.contains("insecure_skip_verify = true"));
    }

    #[test]
    fn registry_host_follows_docker_normalisation() {
        assert_eq!(registry_host("nginx"), "docker.io");
        assert_eq!(registry_host("library/nginx:1"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/x"), "127.0.0.1:5000");
        assert_eq!(registry_host("quay.io/a/b"), "quay.io");
    }

    #[test]
    fn docker_config_json_auth_is_decoded() {
        let doc = serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}});
        let a = auth_from_docker_config(&doc, "nginx").expect("auth");
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert!(auth_from_docker_config(&doc, "quay.io/x").is_none());
    }
}
