//! `upstreams`: where names outside the cluster zone are forwarded: the host's resolvers from
//! /etc/resolv.conf. A loopback resolver there (systemd-resolved's 127.0.0.53 stub) is useless
//! to pods and would loop through the host's stub, so, as k3s does, the real upstream list in
//! /run/systemd/resolve/resolv.conf is used instead when it exists.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable nameserver in {0} (only loopback or none)")]
    NoNameserver(String),
}

/// The `nameserver` lines of a resolv.conf, on port 53.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            // A scoped IPv6 address (fe80::1%eth0) cannot be parsed as an IpAddr: skipped.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The host's upstream resolvers: /etc/resolv.conf's non-loopback nameservers, or the
/// systemd-resolved upstream list when /etc/resolv.conf only names loopback stubs.
pub fn host_upstreams() -> Result<Vec<SocketAddr>, Error> {
    host_upstreams_from(Path::new(RESOLV_CONF), Path::new(SYSTEMD_RESOLV_CONF))
}

pub fn host_upstreams_from(resolv: &Path, systemd: &Path) -> Result<Vec<SocketAddr>, Error> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| parse_resolv_conf(&t))
            .unwrap_or_default()
    };
    let primary: Vec<SocketAddr> = read(resolv)
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    if !primary.is_empty() {
        return Ok(primary);
    }
    let fallback: Vec<SocketAddr> = read(systemd)
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect();
    if fallback.is_empty() {
        return Err(Error::NoNameserver(format!(
            "{} and {}",
            resolv.display(),
            systemd.display()
        )));
    }
    Ok(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_are_read_and_comments_ignored() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2 # primary\n\
                    nameserver   2001:db8::1\nnameserver fe80::1%eth0\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.2:53".parse().expect("addr"),
                "[2001:db8::1]:53".parse().expect("addr")
            ]
        );
    }

    #[test]
    fn a_loopback_stub_falls_back_to_the_systemd_resolved_list() {
        let dir = std::env::temp_dir().join(format!("capstan-dns-upstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let resolv = dir.join("resolv.conf");
        let systemd = dir.join("systemd.conf");
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").expect("write");
        assert!(host_upstreams_from(&resolv, &systemd).is_err());
        std::fs::write(&systemd, "nameserver 192.0.2.1\n").expect("write");
        assert_eq!(
            host_upstreams_from(&resolv, &systemd).expect("fallback"),
            vec!["192.0.2.1:53".parse().expect("addr")]
        );
        std::fs::write(&resolv, "nameserver 198.51.100.7\n").expect("write");
        assert_eq!(
            host_upstreams_from(&resolv, &systemd).expect("primary"),
            vec!["198.51.100.7:53".parse().expect("addr")]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
