//! The pod network: [`write_config`] writes the CNI conflist (Debian's bridge, host-local IPAM
//! over the node's podCIDR, portmap for hostPort) that containerd reads. It must be written
//! before containerd starts: containerd 1.6 misses files renamed into its conf_dir.

use std::path::{Path, PathBuf};

use capstan_api::net::Cidr;
use serde_json::json;

/// Errors writing the network config; fatal at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the podCIDR {0:?} is not an IPv4 CIDR")]
    BadCidr(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub const CONFLIST_NAME: &str = "10-capstan.conflist";
pub const NETWORK_NAME: &str = "capstan";

/// The node's podCIDR.
fn parse_pod_cidr(s: &str) -> Result<Cidr, Error> {
    Cidr::parse(s).map_err(|_| Error::BadCidr(s.to_string()))
}

/// The conflist for `pod_cidr` on bridge `bridge`, IPAM state in `ipam_dir`.
pub fn conflist(pod_cidr: &str, bridge: &str, ipam_dir: &Path) -> Result<serde_json::Value, Error> {
    let cidr = parse_pod_cidr(pod_cidr)?;
    let gw = cidr.first_host();
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                // Pods' source NAT is the agent's (crate::masquerade): the plugin's would
                // also hide pod addresses from other nodes' pods.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": cidr.to_string(), "gateway": gw.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir.to_string_lossy(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    }))
}

/// Writes the conflist into `conf_dir` in place (never renamed in: containerd would miss it).
pub fn write_config(
    conf_dir: &Path,
    pod_cidr: &str,
    bridge: &str,
    ipam_dir: &Path,
) -> Result<PathBuf, Error> {
    let path = conf_dir.join(CONFLIST_NAME);
    let io = |source| Error::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(conf_dir).map_err(io)?;
    std::fs::create_dir_all(ipam_dir).map_err(io)?;
    let text =
        serde_json::to_string_pretty(&conflist(pod_cidr, bridge, ipam_dir)?).unwrap_or_default();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr_and_its_first_address_as_gateway() {
        let c = conflist("10.42.3.0/24", "cni0", Path::new("/x/ipam")).expect("conflist");
        let ipam = &c["plugins"][0]["ipam"];
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(ipam["ranges"][0][0]["gateway"], "10.42.3.1");
        assert_eq!(c["plugins"][1]["type"], "portmap");
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert!(conflist("10.42.3.0", "cni0", Path::new("/x/ipam")).is_err());
    }
}
