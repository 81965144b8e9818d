//! The pod network: [`write_config`] writes the CNI conflist (Debian's bridge, host-local IPAM
//! over the node's podCIDR, portmap for hostPort) that containerd reads. It must be written
//! before containerd starts: containerd 1.6 misses files renamed into its conf_dir.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

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

/// Parses `a.b.c.d/len` into the network address and prefix length.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), Error> {
    let bad = || Error::BadCidr(s.to_string());
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 30 {
        return Err(bad());
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ok((Ipv4Addr::from(u32::from(ip) & mask), len))
}

/// The gateway (first address) of a CIDR: the bridge's address.
pub fn gateway(cidr: &str) -> Result<Ipv4Addr, Error> {
    let (net, _) = parse_cidr(cidr)?;
    Ok(Ipv4Addr::from(u32::from(net) + 1))
}

/// The conflist for `pod_cidr` on bridge `bridge`, IPAM state in `ipam_dir`.
pub fn conflist(pod_cidr: &str, bridge: &str, ipam_dir: &Path) -> Result<serde_json::Value, Error> {
    let (net, len) = parse_cidr(pod_cidr)?;
    let gw = gateway(pod_cidr)?;
    Ok(json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{net}/{len}"), "gateway": gw.to_string()}]],
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
        assert!(parse_cidr("10.42.3.0").is_err());
    }
}
