//! capstan's built-in Ingress controller, run by every real node agent ([`start`]): serves the
//! networking.k8s.io/v1 Ingresses of class `capstan` (and those naming no class) on the
//! node's HTTP and HTTPS ports with an in-process reverse proxy on hyper and rustls.
//!
//! - [`class`]: which Ingresses are ours.
//! - [`router`]: the routing table (hosts, paths, precedence, backends), pure.
//! - [`tls`]: certificates from Secrets by SNI, the default self-signed one.
//! - [`controller`]: informers → table and certificates, Events, Ingress status.
//! - [`proxy`]: one request: route, forward, retry, upgrade.
//! - [`server`]: the listening ports.

#![forbid(unsafe_code)]

pub mod class;
pub mod controller;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod server;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

pub use metrics::Metrics;

/// The ingress's settings (node agent flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's address, published in the Ingresses' status.
    pub node_ip: IpAddr,
    /// Plain HTTP port (80); 0 turns it off.
    pub http_port: u16,
    /// HTTPS port (443); 0 turns it off.
    pub https_port: u16,
}

/// Start-up failures: a port cannot be bound, or the default certificate cannot be made.
/// Not retryable without a change (another process holds the port).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bind(#[from] server::Error),
    #[error(transparent)]
    Tls(#[from] tls::Error),
}

/// A running ingress.
pub struct Running {
    pub metrics: Arc<Metrics>,
    /// The bound addresses (None: that port is off).
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

/// Binds the ports, then serves them and keeps the routing table current until shutdown.
/// Returns `Ok(None)` when both ports are off.
pub async fn start(
    cfg: Config,
    client: kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Running>, Error> {
    if cfg.http_port == 0 && cfg.https_port == 0 {
        tracing::info!("ingress is off (both ports are 0)");
        return Ok(None);
    }
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let http = match cfg.http_port {
        0 => None,
        p => Some(server::bind(SocketAddr::new(any, p)).await?),
    };
    let https = match cfg.https_port {
        0 => None,
        p => Some(server::bind(SocketAddr::new(any, p)).await?),
    };
    let metrics = Arc::new(Metrics::new());
    let table = Arc::new(RwLock::new(Arc::new(router::Table::default())));
    let certs = Arc::new(RwLock::new(Arc::new(tls::Certs::default())));
    let proxy = Arc::new(proxy::Proxy::new(table.clone(), metrics.clone()));
    let http_addr = http.as_ref().map(|(_, a)| *a);
    let https_addr = https.as_ref().map(|(_, a)| *a);
    if let Some((l, _)) = http {
        tokio::spawn(server::serve_http(l, proxy.clone(), shutdown.clone()));
    }
    if let Some((l, _)) = https {
        let resolver = Arc::new(tls::SniResolver {
            certs: certs.clone(),
            default: tls::default_certificate()?,
        });
        tokio::spawn(server::serve_https(
            l,
            tls::server_config(resolver),
            proxy.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(controller::run(
        client,
        cfg.node_ip,
        controller::Outputs {
            table,
            certs,
            metrics: metrics.clone(),
        },
        shutdown,
    ));
    tracing::info!(http = ?http_addr, https = ?https_addr, "ingress serving");
    Ok(Some(Running {
        metrics,
        http: http_addr,
        https: https_addr,
    }))
}

/// Resolves once `shutdown` flips to true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|v| *v).await;
}
