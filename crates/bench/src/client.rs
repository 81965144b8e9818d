//! A minimal HTTPS client: one [`Conn`] is one TCP+TLS connection with one hyper connection on
//! it, opened by [`Target::connect`]. Each benchmark client owns its own connection, so 16
//! clients really are 16 independent connections (no shared pool), and the client's own
//! overhead stays small because it runs on the same two cores as the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The server's serving certificate names 127.0.0.1, and the benchmark binds the server there.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Where to connect and how: address, TLS trust, credentials and HTTP version.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    tls: TlsConnector,
    token: Option<String>,
    http2: bool,
}

/// The HTTP side of one connection.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One open connection; requests on it are sent one after another.
pub struct Conn {
    sender: Sender,
}

/// Parses the PEM certificates in `pem` (empty while a file is still being written).
pub fn parse_ca(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .context("parsing the CA certificate")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the CA file");
    Ok(certs)
}

impl Target {
    /// A target on 127.0.0.1:`port` trusting `ca`, sending `token` as a bearer token if given.
    pub fn new(
        port: u16,
        ca: Vec<CertificateDer<'static>>,
        token: Option<String>,
        http2: bool,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert).context("adding the CA certificate")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(Self {
            addr: SocketAddr::new(LOOPBACK, port),
            tls: TlsConnector::from(Arc::new(config)),
            token,
            http2,
        })
    }

    /// Like [`Target::new`], reading the CA from a PEM file.
    pub fn from_ca_file(
        port: u16,
        ca: &Path,
        token: Option<String>,
        http2: bool,
    ) -> anyhow::Result<Self> {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        Self::new(port, parse_ca(&pem)?, token, http2)
    }

    pub fn protocol(&self) -> &'static str {
        if self.http2 {
            "HTTP/2"
        } else {
            "HTTP/1.1"
        }
    }

    /// Opens a new connection: TCP, TLS handshake, HTTP handshake.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(self.addr).await?;
        // Requests are small and latency is what is measured: do not let Nagle hold them.
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::IpAddress(LOOPBACK.into()), tcp)
            .await
            .context("TLS handshake")?;
        let io = TokioIo::new(tls);
        let sender = if self.http2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .context("HTTP/2 handshake")?;
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .context("HTTP/1.1 handshake")?;
            tokio::spawn(conn);
            Sender::H1(send)
        };
        Ok(Conn { sender })
    }

    /// Builds a request for `path_and_query` with the credentials and the given headers.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        accept: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let authority = self.addr.to_string();
        // HTTP/2 carries scheme and authority as pseudo-headers taken from an absolute URI;
        // HTTP/1.1 wants the origin form plus a Host header.
        let mut builder = if self.http2 {
            Request::builder().uri(format!("https://{authority}{path_and_query}"))
        } else {
            Request::builder()
                .uri(path_and_query)
                .header(http::header::HOST, authority)
        };
        builder = builder.method(method);
        if let Some(token) = &self.token {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(accept) = accept {
            builder = builder.header(http::header::ACCEPT, accept);
        }
        if let Some(content_type) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        builder
            .body(Full::new(body))
            .expect("a request built from valid parts")
    }

    pub fn get(&self, path_and_query: &str, accept: Option<&str>) -> Request<Full<Bytes>> {
        self.request(Method::GET, path_and_query, accept, None, Bytes::new())
    }

    pub fn post_json(&self, path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
        self.request(
            Method::POST,
            path,
            Some("application/json"),
            Some("application/json"),
            body.into(),
        )
    }

    pub fn merge_patch(&self, path: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
        self.request(
            Method::PATCH,
            path,
            Some("application/json"),
            Some("application/merge-patch+json"),
            body.into(),
        )
    }
}

impl Conn {
    /// Sends one request and returns the response once its headers have arrived.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Response<Incoming>> {
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        Ok(resp)
    }

    /// Sends one request and reads the whole body.
    pub async fn call(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Like [`Conn::call`], failing unless the status is `expected`.
    pub async fn expect(
        &mut self,
        req: Request<Full<Bytes>>,
        expected: StatusCode,
    ) -> anyhow::Result<Bytes> {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = self.call(req).await?;
        anyhow::ensure!(
            status == expected,
            "{what} answered {status} (expected {expected}): {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}
