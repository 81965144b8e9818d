//! The admin kubeconfig the server writes for kubectl and client libraries.

use base64::Engine;

/// A kubeconfig (YAML) for `server` trusting `ca_pem` and authenticating with `token`.
pub fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    token: {token}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_names_server_ca_and_token() {
        let k = render("https://127.0.0.1:6443", "PEM", "tok");
        assert!(k.contains("server: https://127.0.0.1:6443"));
        assert!(k.contains("token: tok"));
        assert!(k.contains("certificate-authority-data: UEVN"));
    }
}
