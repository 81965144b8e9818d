//! The API client in-process components use: a kube-rs Client pointed at this server over
//! HTTPS, trusting its CA and authenticating with a per-start internal token. Components talk
//! to the API exactly as they would to any Kubernetes cluster.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A kube-rs client configuration for `url` trusting `ca_pem` and sending `token`.
pub async fn kube_config(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Config> {
    let kc = Kubeconfig::from_yaml(&crate::kubeconfig::render(url, ca_pem, token))
        .context("parsing the in-process kubeconfig")?;
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("building the in-process client configuration")
}

/// A kube-rs client for `url` trusting `ca_pem` and sending `token`.
pub async fn kube_client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(kube_config(url, ca_pem, token).await?)
        .context("building the in-process client")
}

/// A client that names itself `agent` in its User-Agent, which is what the API server records
/// as the field manager of its writes (as upstream shows "kube-scheduler", "kubelet", ...).
pub fn client_as(config: &kube::Config, agent: &str) -> anyhow::Result<kube::Client> {
    let mut cfg = config.clone();
    let value = http::HeaderValue::from_str(&format!("{agent}/v1.32.0 (linux/amd64) capstan"))
        .context("building the User-Agent header")?;
    cfg.headers.push((http::header::USER_AGENT, value));
    kube::Client::try_from(cfg).context("building the in-process client")
}
