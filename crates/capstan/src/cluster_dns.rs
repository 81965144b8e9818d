//! Cluster DNS inside `capstan server` (crates/dns): its flags, where it listens (the advertise
//! address), and what joined agents learn from it (the `kube-system/cluster-dns` ConfigMap).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;

/// The domain when neither the server nor the agent is given `--cluster-domain`.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// The cluster DNS address when an agent cannot learn it from its server (k3s's default).
pub const FALLBACK_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);

#[derive(Args, Debug, Clone)]
pub struct DnsArgs {
    /// Port cluster DNS listens on (UDP and TCP) at the advertise address; the kube-dns Service
    /// (the 10th address of --service-cidr, port 53) points there. 0 disables cluster DNS.
    #[arg(long, env = "CAPSTAN_CLUSTER_DNS_PORT", default_value_t = 53)]
    pub cluster_dns_port: u16,

    /// Tests and benchmarks: resolvers to forward names outside the cluster domain to
    /// (ip:port, repeatable), instead of the host's from /etc/resolv.conf.
    #[arg(long, env = "CAPSTAN_DNS_UPSTREAM", value_delimiter = ',', hide = true)]
    pub dns_upstream: Vec<SocketAddr>,
}

/// The cluster DNS address: the 10th address of the service CIDR, as kubeadm and k3s choose it.
pub fn cluster_ip(service_cidr: &str) -> Option<Ipv4Addr> {
    let c = capstan_api::net::Cidr::parse(service_cidr).ok()?;
    (c.size() > 11).then(|| Ipv4Addr::from(u32::from(c.network()) + 10))
}

/// Checks the flags cluster DNS takes, so that a mistake stops the start with a message.
pub fn validate(args: &crate::server::ServerArgs) -> anyhow::Result<()> {
    if let Some(domain) = &args.node.cluster_domain {
        capstan_dns::Zone::new(domain, Vec::new())
            .map_err(|e| anyhow::anyhow!("--cluster-domain: {e}"))?;
    }
    Ok(())
}

/// Starts cluster DNS unless disabled; a port that cannot be bound is logged and the server
/// goes on without DNS (pods then fail to resolve, which their own logs show).
pub async fn start(
    ctx: &crate::components::Context,
    args: &crate::server::ServerArgs,
    advertise: IpAddr,
) {
    let Some(ip) = cluster_ip(&args.service_cidr) else {
        tracing::warn!(cidr = %args.service_cidr, "the service CIDR has no 10th address; cluster DNS is off");
        return;
    };
    let domain = args
        .node
        .cluster_domain
        .clone()
        .unwrap_or_else(|| DEFAULT_DOMAIN.into());
    let client = ctx.client_as("capstan-dns");
    // Without DNS here (off, or its port taken), agents still learn the address and domain: a
    // DNS server the user runs behind kube-dns may serve them.
    let settings_only = |client: kube::Client, domain: String| {
        tokio::spawn(capstan_dns::publish::run(
            client,
            capstan_dns::publish::Published {
                cluster_ip: IpAddr::V4(ip),
                endpoint: None,
                domain,
            },
            ctx.shutdown.clone(),
        ));
    };
    if args.dns.cluster_dns_port == 0 {
        tracing::info!("cluster DNS is disabled (--cluster-dns-port 0)");
        settings_only(client, domain);
        return;
    }
    capstan_apiserver::metrics::add_exposition(capstan_dns::metrics::render_global);
    let config = capstan_dns::Config {
        listen: SocketAddr::new(advertise, args.dns.cluster_dns_port),
        domain: domain.clone(),
        cluster_ip: IpAddr::V4(ip),
        upstreams: args.dns.dns_upstream.clone(),
    };
    if let Err(e) = capstan_dns::run(client.clone(), config, ctx.shutdown.clone()).await {
        tracing::error!(error = %e, "cluster DNS is not running");
        settings_only(client, domain);
    }
}

/// A joined agent's cluster DNS address and domain: its flags, else what its server publishes,
/// else k3s's defaults.
pub async fn learn(
    client: &kube::Client,
    flags: &crate::node_agent::NodeArgs,
) -> (Vec<IpAddr>, String) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let mut published = BTreeMap::new();
    if flags.cluster_dns.is_empty() || flags.cluster_domain.is_none() {
        let api: kube::Api<ConfigMap> =
            kube::Api::namespaced(client.clone(), capstan_dns::publish::NAMESPACE);
        match api.get_opt(capstan_dns::publish::CONFIG_MAP).await {
            Ok(Some(cm)) => published = cm.data.unwrap_or_default(),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the server's cluster DNS settings"),
        }
    }
    let (ips, domain) = choose(
        &flags.cluster_dns,
        flags.cluster_domain.as_deref(),
        &published,
    );
    if flags.cluster_dns.is_empty() && !published.contains_key("clusterDNS") {
        tracing::warn!(fallback = %FALLBACK_IP, "the server publishes no cluster DNS address");
    }
    tracing::info!(cluster_dns = ?ips, cluster_domain = %domain, "cluster DNS settings");
    (ips, domain)
}

/// Flags first, then the server's `cluster-dns` ConfigMap data, then the defaults.
fn choose(
    flag_ips: &[IpAddr],
    flag_domain: Option<&str>,
    published: &BTreeMap<String, String>,
) -> (Vec<IpAddr>, String) {
    let ips = if flag_ips.is_empty() {
        let ip = published
            .get("clusterDNS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(IpAddr::V4(FALLBACK_IP));
        vec![ip]
    } else {
        flag_ips.to_vec()
    };
    let domain = flag_domain
        .map(str::to_string)
        .or_else(|| published.get("clusterDomain").cloned())
        .unwrap_or_else(|| DEFAULT_DOMAIN.into());
    (ips, domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_address_is_the_tenth_of_the_service_cidr() {
        assert_eq!(
            cluster_ip("10.43.0.0/16"),
            Some(Ipv4Addr::new(10, 43, 0, 10))
        );
        assert_eq!(
            cluster_ip("10.96.0.0/12"),
            Some(Ipv4Addr::new(10, 96, 0, 10))
        );
        assert_eq!(cluster_ip("192.168.7.0/29"), None);
        assert_eq!(cluster_ip("nonsense"), None);
    }

    #[test]
    fn agents_take_flags_then_the_servers_settings_then_defaults() {
        let published: BTreeMap<String, String> = [
            ("clusterDNS".to_string(), "10.77.0.10".to_string()),
            ("clusterDomain".to_string(), "corp.internal".to_string()),
        ]
        .into();
        let flag: IpAddr = "10.1.0.10".parse().expect("ip");
        assert_eq!(
            choose(&[], None, &published),
            (
                vec!["10.77.0.10".parse().expect("ip")],
                "corp.internal".into()
            )
        );
        assert_eq!(
            choose(&[flag], Some("x.local"), &published),
            (vec![flag], "x.local".into())
        );
        assert_eq!(
            choose(&[], None, &BTreeMap::new()),
            (vec![IpAddr::V4(FALLBACK_IP)], DEFAULT_DOMAIN.into())
        );
    }
}
