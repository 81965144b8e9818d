//! Source NAT for pods: traffic from this node's pods to anything outside the cluster CIDR
//! leaves with the node's address; pod-to-pod traffic, across nodes too, keeps the pod's own
//! source address (what NetworkPolicy, logs and Services expect). The CNI bridge plugin's
//! `ipMasq` cannot do this: it masquerades everything leaving the node's own podCIDR,
//! including other nodes' pods. So the conflist turns it off and the agent keeps one rule in a
//! small nftables table of its own, named after its bridge (unique per agent on a host), and
//! replaced whole in one `nft -f -` transaction.

use std::io::Write;
use std::process::{Command, Stdio};

use capstan_api::net::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected the masquerade table {table}: {stderr}")]
    Rejected { table: String, stderr: String },
}

/// The table for pods on `bridge`: letters, digits and underscores only (nft identifiers).
pub fn table_name(bridge: &str) -> String {
    let safe: String = bridge
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("capstan_masq_{safe}")
}

/// The nft script that (re)creates the table: declared, deleted and created again in the same
/// transaction, so the rule is replaced atomically whether or not the table existed.
pub fn ruleset(table: &str, pod_cidr: Cidr, cluster_cidr: Cidr) -> String {
    // Multicast stays untranslated, as the bridge plugin's ipMasq left it.
    format!(
        "table ip {table} {{}}\n\
         delete table ip {table}\n\
         table ip {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {{ {cluster_cidr}, 224.0.0.0/4 }} masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Installs the rule for pods of `pod_cidr` on `bridge`.
pub fn install(bridge: &str, pod_cidr: Cidr, cluster_cidr: Cidr) -> Result<String, Error> {
    let table = table_name(bridge);
    let script = ruleset(&table, pod_cidr, cluster_cidr);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Rejected {
            table,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_nft_identifiers() {
        assert_eq!(table_name("cni0"), "capstan_masq_cni0");
        assert_eq!(table_name("br-x.1"), "capstan_masq_br_x_1");
    }

    #[test]
    fn only_traffic_leaving_the_cluster_is_masqueraded() {
        let pod = Cidr::parse("10.42.3.0/24").expect("cidr");
        let cluster = Cidr::parse("10.42.0.0/16").expect("cidr");
        let s = ruleset("t", pod, cluster);
        assert!(s.starts_with("table ip t {}\ndelete table ip t\n"), "{s}");
        assert!(
            s.contains(
                "ip saddr 10.42.3.0/24 ip daddr != { 10.42.0.0/16, 224.0.0.0/4 } masquerade"
            ),
            "{s}"
        );
    }
}
