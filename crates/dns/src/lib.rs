//! Cluster DNS, served by `capstan server` ([`run`]): the names of Services, their endpoints and
//! pods in the cluster zone, answered from informer caches as CoreDNS's kubernetes plugin answers
//! them ([`answer`]), everything else forwarded to the host's resolvers ([`forward`]), over UDP
//! and TCP on hickory-server. [`publish`] keeps `kube-system/kube-dns` (a Service without a
//! selector, its EndpointSlice pointing here) and the `cluster-dns` ConfigMap joined agents read.
#![forbid(unsafe_code)]

pub mod answer;
pub mod forward;
pub mod handler;
pub mod index;
pub mod metrics;
pub mod publish;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use capstan_runtime::{Change, Informer};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use tokio::sync::watch;

pub use answer::Zone;
pub use index::Index;

/// How long a TCP client may stay idle before its connection is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// What `capstan server` configures.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen (UDP and TCP), e.g. the server's advertise address on port 53.
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The cluster DNS Service's address (the 10th of the service CIDR).
    pub cluster_ip: IpAddr,
    /// Upstream resolvers; empty: the host's (see [`upstream::host_upstreams`]).
    pub upstreams: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Zone(#[from] answer::ZoneError),
    #[error("listening for DNS on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Sockets bound, ready to serve.
pub struct Listeners {
    pub udp: tokio::net::UdpSocket,
    pub tcp: tokio::net::TcpListener,
}

impl Listeners {
    /// Binds UDP and TCP on `addr` (port 0: the same free port for both).
    pub async fn bind(addr: SocketAddr) -> Result<Self, Error> {
        let listen = |source| Error::Listen { addr, source };
        let tcp = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
        let port = tcp.local_addr().map_err(listen)?.port();
        let udp = tokio::net::UdpSocket::bind(SocketAddr::new(addr.ip(), port))
            .await
            .map_err(listen)?;
        Ok(Self { udp, tcp })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp.local_addr().ok()
    }
}

/// Serves DNS for `index` on `listeners` until `shutdown` flips.
pub async fn serve(
    listeners: Listeners,
    index: Index,
    zone: Arc<Zone>,
    forwarder: forward::Forwarder,
    mut shutdown: watch::Receiver<bool>,
) {
    let handler = handler::Handler::new(index, zone, forwarder, metrics::global());
    let mut server = hickory_server::Server::new(handler);
    server.register_socket(listeners.udp);
    server.register_listener(listeners.tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    let stop = server.shutdown_token().clone();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|v| *v).await;
        stop.cancel();
    });
    if let Err(e) = server.block_until_done().await {
        tracing::error!(error = %e, "cluster DNS stopped");
    }
}

/// Keeps `index` in step with the cluster's Services and EndpointSlices until `shutdown`.
pub fn watch_cluster(client: &kube::Client, index: &Index, shutdown: &watch::Receiver<bool>) {
    let mut services = Informer::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let i = index.clone();
    services.on_change(move |c| match c {
        Change::Added(s) | Change::Updated { new: s, .. } => i.apply_service(s),
        Change::Deleted(s) => i.delete_service(s),
    });
    let mut slices = Informer::new(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    );
    let i = index.clone();
    slices.on_change(move |c| match c {
        Change::Added(s) | Change::Updated { new: s, .. } => i.apply_slice(s),
        Change::Deleted(s) => i.delete_slice(s),
    });
    tokio::spawn(services.run(shutdown.clone()));
    tokio::spawn(slices.run(shutdown.clone()));
}

/// Starts cluster DNS: binds (an error here is returned, nothing else runs), then watches the
/// cluster, keeps `kube-dns` published and serves until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let zone = Arc::new(Zone::new(&config.domain, vec![config.cluster_ip])?);
    let listeners = Listeners::bind(config.listen).await?;
    let bound = listeners.local_addr().unwrap_or(config.listen);
    let upstreams = if config.upstreams.is_empty() {
        match upstream::host_upstreams() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cluster DNS cannot forward names outside the cluster");
                Vec::new()
            }
        }
    } else {
        config.upstreams.clone()
    };
    let index = Index::new();
    watch_cluster(&client, &index, &shutdown);
    tokio::spawn(publish::run(
        client,
        publish::Published {
            cluster_ip: config.cluster_ip,
            endpoint: Some(bound),
            domain: config.domain.clone(),
        },
        shutdown.clone(),
    ));
    tracing::info!(
        address = %bound,
        zone = %zone.name,
        upstreams = ?upstreams,
        "cluster DNS is serving"
    );
    Ok(tokio::spawn(serve(
        listeners,
        index,
        zone,
        forward::Forwarder::new(upstreams),
        shutdown,
    )))
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod serve_tests;
