//! The actions probes and lifecycle hooks run: exec in the container (CRI ExecSync), an HTTP
//! GET, a TCP connect, a gRPC health check, or a sleep. [`run`] gives a verdict; HTTP and TCP
//! go to the pod's IP (or the node's, for hostNetwork pods) unless a host is given.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::Cri;

/// One action, normalised from probes and lifecycle handlers.
#[derive(Clone, Debug, PartialEq)]
pub enum Handler {
    Exec(Vec<String>),
    HttpGet {
        host: Option<String>,
        port: i32,
        path: String,
        scheme: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: i32,
    },
    Grpc {
        port: i32,
        service: String,
    },
    Sleep(i64),
}

/// The outcome of running a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
}

fn resolve_port(p: &IntOrString, c: &Container) -> Result<i32, String> {
    match p {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            if let Ok(n) = s.parse::<i32>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|cp: &&ContainerPort| cp.name.as_deref() == Some(s.as_str()))
                .map(|cp| cp.container_port)
                .ok_or_else(|| format!("couldn't find port {s:?} in container {}", c.name))
        }
    }
}

impl Handler {
    /// From a probe's handler fields.
    pub fn from_probe(
        p: &k8s_openapi::api::core::v1::Probe,
        c: &Container,
    ) -> Result<Self, String> {
        if let Some(e) = &p.exec {
            return Ok(Handler::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(h) = &p.http_get {
            return Ok(Handler::HttpGet {
                host: h.host.clone().filter(|s| !s.is_empty()),
                port: resolve_port(&h.port, c)?,
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|x| (x.name.clone(), x.value.clone()))
                    .collect(),
            });
        }
        if let Some(t) = &p.tcp_socket {
            return Ok(Handler::Tcp {
                host: t.host.clone().filter(|s| !s.is_empty()),
                port: resolve_port(&t.port, c)?,
            });
        }
        if let Some(g) = &p.grpc {
            return Ok(Handler::Grpc {
                port: g.port,
                service: g.service.clone().unwrap_or_default(),
            });
        }
        Err("the probe has no handler".into())
    }

    /// From a lifecycle hook (postStart, preStop).
    pub fn from_lifecycle(
        h: &k8s_openapi::api::core::v1::LifecycleHandler,
        c: &Container,
    ) -> Result<Self, String> {
        if let Some(e) = &h.exec {
            return Ok(Handler::Exec(e.command.clone().unwrap_or_default()));
        }
        if let Some(g) = &h.http_get {
            return Ok(Handler::HttpGet {
                host: g.host.clone().filter(|s| !s.is_empty()),
                port: resolve_port(&g.port, c)?,
                path: g.path.clone().unwrap_or_else(|| "/".into()),
                scheme: g.scheme.clone().unwrap_or_else(|| "HTTP".into()),
                headers: g
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|x| (x.name.clone(), x.value.clone()))
                    .collect(),
            });
        }
        if let Some(t) = &h.tcp_socket {
            return Ok(Handler::Tcp {
                host: t.host.clone().filter(|s| !s.is_empty()),
                port: resolve_port(&t.port, c)?,
            });
        }
        if let Some(s) = &h.sleep {
            return Ok(Handler::Sleep(s.seconds));
        }
        Err("the hook has no handler".into())
    }
}

/// Runs `h` against container `id` at `ip` within `timeout`.
pub async fn run(h: &Handler, cri: &dyn Cri, id: &str, ip: &str, timeout: Duration) -> Verdict {
    match h {
        Handler::Exec(cmd) => match cri.exec_sync(id, cmd.clone(), timeout).await {
            Ok(r) if r.exit_code == 0 => Verdict::Success,
            Ok(r) => {
                let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                out.push_str(&String::from_utf8_lossy(&r.stderr));
                Verdict::Failure(if out.trim().is_empty() {
                    format!("command {cmd:?} exited with {}", r.exit_code)
                } else {
                    out
                })
            }
            Err(e) => Verdict::Failure(e.message()),
        },
        Handler::HttpGet {
            host,
            port,
            path,
            scheme,
            headers,
        } => {
            let host = host.as_deref().unwrap_or(ip);
            match tokio::time::timeout(timeout, http_get(host, *port, path, scheme, headers)).await {
                Ok(v) => v,
                Err(_) => Verdict::Failure(format!(
                    "Get \"{}://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    scheme.to_lowercase()
                )),
            }
        }
        Handler::Tcp { host, port } => {
            let host = host.as_deref().unwrap_or(ip);
            match tokio::time::timeout(timeout, TcpStream::connect((host, *port as u16))).await {
                Ok(Ok(_)) => Verdict::Success,
                Ok(Err(e)) => Verdict::Failure(format!("dial tcp {host}:{port}: connect: {e}")),
                Err(_) => Verdict::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
            }
        }
        Handler::Grpc { port, service } => {
            match tokio::time::timeout(timeout, grpc_health(ip, *port, service)).await {
                Ok(v) => v,
                Err(_) => Verdict::Failure(format!(
                    "timeout: health rpc did not complete within {}s",
                    timeout.as_secs()
                )),
            }
        }
        Handler::Sleep(s) => {
            tokio::time::sleep(Duration::from_secs((*s).max(0) as u64).min(timeout)).await;
            Verdict::Success
        }
    }
}

async fn http_get(
    host: &str,
    port: i32,
    path: &str,
    scheme: &str,
    headers: &[(String, String)],
) -> Verdict {
    let url = format!("{}://{host}:{port}{path}", scheme.to_lowercase());
    if scheme.eq_ignore_ascii_case("HTTPS") {
        // Upstream does not verify probe certificates; a TLS handshake that completes and an
        // answer count. Without a TLS client here, a connect stands in.
        return match TcpStream::connect((host, port as u16)).await {
            Ok(_) => Verdict::Success,
            Err(e) => Verdict::Failure(format!(
                "Get \"{url}\": dial tcp {host}:{port}: connect: {e}"
            )),
        };
    }
    let mut s = match TcpStream::connect((host, port as u16)).await {
        Ok(s) => s,
        Err(e) => {
            return Verdict::Failure(format!(
                "Get \"{url}\": dial tcp {host}:{port}: connect: {e}"
            ))
        }
    };
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return Verdict::Failure(format!("Get \"{url}\": {e}"));
    }
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Verdict::Failure(format!("Get \"{url}\": {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]).to_string();
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..400).contains(&code) {
        Verdict::Success
    } else if code == 0 {
        Verdict::Failure(format!("Get \"{url}\": malformed HTTP response"))
    } else {
        Verdict::Failure(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// grpc.health.v1.Health/Check over plain HTTP/2 (tonic), SERVING = success.
async fn grpc_health(ip: &str, port: i32, service: &str) -> Verdict {
    let uri = format!("http://{ip}:{port}");
    let ch = match tonic::transport::Endpoint::from_shared(uri.clone()) {
        Ok(e) => match e.connect().await {
            Ok(c) => c,
            Err(e) => {
                return Verdict::Failure(format!(
                    "failed to connect service \"{ip}:{port}\" within 1s: {e}"
                ))
            }
        },
        Err(e) => return Verdict::Failure(e.to_string()),
    };
    let mut client = tonic::client::Grpc::new(ch);
    if let Err(e) = client.ready().await {
        return Verdict::Failure(e.to_string());
    }
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let req = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    match client.unary(req, path, codec).await {
        Ok(r) if r.get_ref().status == 1 => Verdict::Success,
        Ok(r) => Verdict::Failure(format!(
            "service unhealthy (responded with \"{}\")",
            status_name(r.get_ref().status)
        )),
        Err(s) => Verdict::Failure(format!(
            "rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
    }
}

fn status_name(s: i32) -> &'static str {
    match s {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}
