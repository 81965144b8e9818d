//! The container runtime as the agent sees it: [`Cri`], the few CRI v1 calls the pod logic
//! needs, behind a trait so that logic can be tested with a fake; [`GrpcCri`] speaks CRI v1
//! over gRPC on a unix socket (containerd's).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as pb;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// A failed CRI call. Transport errors and `Unavailable` are retryable (containerd may be
/// restarting); `NotFound` usually means the object is already gone.
#[derive(Debug, thiserror::Error)]
#[error("CRI {op}: {status}")]
pub struct Error {
    pub op: &'static str,
    #[source]
    pub status: tonic::Status,
}

impl Error {
    pub fn new(op: &'static str, status: tonic::Status) -> Self {
        Self { op, status }
    }

    pub fn is_not_found(&self) -> bool {
        self.status.code() == tonic::Code::NotFound
            || self.status.message().contains("not found")
            || self.status.message().contains("does not exist")
    }

    pub fn message(&self) -> String {
        self.status.message().to_string()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Output of a command run in a container.
#[derive(Debug, Clone, Default)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// The CRI calls the agent makes. Method names follow the RPCs.
#[async_trait]
pub trait Cri: Send + Sync + 'static {
    async fn version(&self) -> Result<pb::VersionResponse>;
    async fn status(&self) -> Result<pb::StatusResponse>;

    async fn run_pod_sandbox(&self, config: pb::PodSandboxConfig) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<pb::PodSandboxStatus>;
    async fn list_pod_sandbox(
        &self,
        filter: Option<pb::PodSandboxFilter>,
    ) -> Result<Vec<pb::PodSandbox>>;

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: pb::ContainerConfig,
        sandbox_config: pb::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(
        &self,
        filter: Option<pb::ContainerFilter>,
    ) -> Result<Vec<pb::Container>>;
    async fn container_status(&self, id: &str) -> Result<pb::ContainerStatus>;
    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<ExecResult>;
    async fn reopen_container_log(&self, id: &str) -> Result<()>;
    /// A one-use URL on the runtime's stream server that runs `req` (SPDY or WebSocket).
    async fn exec(&self, req: pb::ExecRequest) -> Result<String>;
    /// A one-use URL on the runtime's stream server attached to a container's main process.
    async fn attach(&self, req: pb::AttachRequest) -> Result<String>;
    /// A one-use URL on the runtime's stream server forwarding ports of a pod sandbox.
    async fn port_forward(&self, req: pb::PortForwardRequest) -> Result<String>;

    async fn image_status(&self, image: &str) -> Result<Option<pb::Image>>;
    async fn pull_image(&self, image: &str, auth: Option<pb::AuthConfig>) -> Result<String>;
    async fn list_images(&self) -> Result<Vec<pb::Image>>;
}

/// How long ordinary calls may take; pulls and stops get their own.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// CRI v1 over gRPC on a unix socket. The channel connects lazily and reconnects by itself,
/// so a containerd restart only fails the calls made while it is down.
#[derive(Clone)]
pub struct GrpcCri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl GrpcCri {
    /// A client for the socket at `socket` (a path, or `unix://PATH`).
    pub fn new(socket: &Path) -> Self {
        let socket = PathBuf::from(socket.to_string_lossy().trim_start_matches("unix://"));
        let path = socket.clone();
        // The URI is required by tonic but never used: the connector dials the socket.
        let channel = Endpoint::from_static("http://[::1]:50051")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            socket,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

fn req<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

#[async_trait]
impl Cri for GrpcCri {
    async fn version(&self) -> Result<pb::VersionResponse> {
        let r = self
            .runtime
            .clone()
            .version(req(
                pb::VersionRequest {
                    version: "v1".into(),
                },
                CALL_TIMEOUT,
            ))
            .await;
        r.map(|r| r.into_inner())
            .map_err(|s| Error::new("Version", s))
    }

    async fn status(&self) -> Result<pb::StatusResponse> {
        let r = self
            .runtime
            .clone()
            .status(req(pb::StatusRequest { verbose: false }, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner())
            .map_err(|s| Error::new("Status", s))
    }

    async fn run_pod_sandbox(&self, config: pb::PodSandboxConfig) -> Result<String> {
        let msg = pb::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let r = self
            .runtime
            .clone()
            .run_pod_sandbox(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().pod_sandbox_id)
            .map_err(|s| Error::new("RunPodSandbox", s))
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let msg = pb::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let r = self
            .runtime
            .clone()
            .stop_pod_sandbox(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|_| ()).map_err(|s| Error::new("StopPodSandbox", s))
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let msg = pb::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let r = self
            .runtime
            .clone()
            .remove_pod_sandbox(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|_| ()).map_err(|s| Error::new("RemovePodSandbox", s))
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<pb::PodSandboxStatus> {
        let msg = pb::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let r = self
            .runtime
            .clone()
            .pod_sandbox_status(req(msg, CALL_TIMEOUT))
            .await;
        let r = r
            .map_err(|s| Error::new("PodSandboxStatus", s))?
            .into_inner();
        r.status.ok_or_else(|| {
            Error::new(
                "PodSandboxStatus",
                tonic::Status::not_found("no status in the answer"),
            )
        })
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<pb::PodSandboxFilter>,
    ) -> Result<Vec<pb::PodSandbox>> {
        let r = self
            .runtime
            .clone()
            .list_pod_sandbox(req(pb::ListPodSandboxRequest { filter }, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().items)
            .map_err(|s| Error::new("ListPodSandbox", s))
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: pb::ContainerConfig,
        sandbox_config: pb::PodSandboxConfig,
    ) -> Result<String> {
        let msg = pb::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let r = self
            .runtime
            .clone()
            .create_container(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().container_id)
            .map_err(|s| Error::new("CreateContainer", s))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let msg = pb::StartContainerRequest {
            container_id: id.into(),
        };
        let r = self
            .runtime
            .clone()
            .start_container(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|_| ()).map_err(|s| Error::new("StartContainer", s))
    }

    async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let msg = pb::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_secs,
        };
        let deadline = CALL_TIMEOUT + Duration::from_secs(timeout_secs.max(0) as u64);
        let r = self
            .runtime
            .clone()
            .stop_container(req(msg, deadline))
            .await;
        r.map(|_| ()).map_err(|s| Error::new("StopContainer", s))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let msg = pb::RemoveContainerRequest {
            container_id: id.into(),
        };
        let r = self
            .runtime
            .clone()
            .remove_container(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|_| ()).map_err(|s| Error::new("RemoveContainer", s))
    }

    async fn list_containers(
        &self,
        filter: Option<pb::ContainerFilter>,
    ) -> Result<Vec<pb::Container>> {
        let r = self
            .runtime
            .clone()
            .list_containers(req(pb::ListContainersRequest { filter }, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().containers)
            .map_err(|s| Error::new("ListContainers", s))
    }

    async fn container_status(&self, id: &str) -> Result<pb::ContainerStatus> {
        let msg = pb::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let r = self
            .runtime
            .clone()
            .container_status(req(msg, CALL_TIMEOUT))
            .await;
        let r = r
            .map_err(|s| Error::new("ContainerStatus", s))?
            .into_inner();
        r.status.ok_or_else(|| {
            Error::new(
                "ContainerStatus",
                tonic::Status::not_found("no status in the answer"),
            )
        })
    }

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> Result<ExecResult> {
        let msg = pb::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        };
        let r = self
            .runtime
            .clone()
            .exec_sync(req(msg, timeout + Duration::from_secs(5)))
            .await;
        let r = r.map_err(|s| Error::new("ExecSync", s))?.into_inner();
        Ok(ExecResult {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
        })
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let msg = pb::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        let r = self
            .runtime
            .clone()
            .reopen_container_log(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|_| ())
            .map_err(|s| Error::new("ReopenContainerLog", s))
    }

    async fn exec(&self, msg: pb::ExecRequest) -> Result<String> {
        let r = self.runtime.clone().exec(req(msg, CALL_TIMEOUT)).await;
        r.map(|r| r.into_inner().url)
            .map_err(|s| Error::new("Exec", s))
    }

    async fn attach(&self, msg: pb::AttachRequest) -> Result<String> {
        let r = self.runtime.clone().attach(req(msg, CALL_TIMEOUT)).await;
        r.map(|r| r.into_inner().url)
            .map_err(|s| Error::new("Attach", s))
    }

    async fn port_forward(&self, msg: pb::PortForwardRequest) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .port_forward(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().url)
            .map_err(|s| Error::new("PortForward", s))
    }

    async fn image_status(&self, image: &str) -> Result<Option<pb::Image>> {
        let msg = pb::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let r = self
            .images
            .clone()
            .image_status(req(msg, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().image)
            .map_err(|s| Error::new("ImageStatus", s))
    }

    async fn pull_image(&self, image: &str, auth: Option<pb::AuthConfig>) -> Result<String> {
        let msg = pb::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: None,
        };
        let r = self.images.clone().pull_image(req(msg, PULL_TIMEOUT)).await;
        r.map(|r| r.into_inner().image_ref)
            .map_err(|s| Error::new("PullImage", s))
    }

    async fn list_images(&self) -> Result<Vec<pb::Image>> {
        let r = self
            .images
            .clone()
            .list_images(req(pb::ListImagesRequest { filter: None }, CALL_TIMEOUT))
            .await;
        r.map(|r| r.into_inner().images)
            .map_err(|s| Error::new("ListImages", s))
    }
}

fn image_spec(image: &str) -> pb::ImageSpec {
    pb::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
