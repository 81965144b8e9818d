//! The API client in-process components use: a kube-rs Client pointed at this server over
//! HTTPS, trusting its CA and authenticating with a per-start internal token. Components talk
//! to the API exactly as they would to any Kubernetes cluster.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A kube-rs client for `url` trusting `ca_pem` and sending `token`.
pub async fn kube_client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::from_yaml(&crate::kubeconfig::render(url, ca_pem, token))
        .context("parsing the in-process kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("building the in-process client configuration")?;
    kube::Client::try_from(cfg).context("building the in-process client")
}
