//! Images: [`ImageManager::ensure`] makes a container's image present as its
//! imagePullPolicy says (ImageStatus first; PullImage only when needed, with upstream's
//! back-off between failed pulls), and [`import_dir`] / [`import_file`] load image tarballs
//! (the air-gap folder, `capstan images import`) into containerd's `k8s.io` namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::backoff::Backoff;
use crate::cri::Cri;

/// Why an image is not available; the variant names are the waiting reasons pods show.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PullError {
    /// A pull failed just now.
    #[error("{0}")]
    ErrImagePull(String),
    /// A recent pull failed; waiting before the next.
    #[error("Back-off pulling image {0:?}")]
    ImagePullBackOff(String),
    /// imagePullPolicy Never and the image is absent.
    #[error("Container image {0:?} is not present with pull policy of Never")]
    ErrImageNeverPull(String),
    /// The image name cannot be parsed.
    #[error("Failed to apply default image tag {0:?}: couldn't parse image name {0:?}: invalid reference format")]
    InvalidImageName(String),
}

impl PullError {
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::ErrImagePull(_) => "ErrImagePull",
            PullError::ImagePullBackOff(_) => "ImagePullBackOff",
            PullError::ErrImageNeverPull(_) => "ErrImageNeverPull",
            PullError::InvalidImageName(_) => "InvalidImageName",
        }
    }
}

/// Errors importing tarballs; reported per file, the others are still imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("running {ctr}: {source}")]
    Spawn {
        ctr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("importing {file}: {message}")]
    Failed { file: PathBuf, message: String },
}

/// The pull policy a container asks for, with upstream's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// `policy` as given, or upstream's default: Always for `:latest` or untagged images.
    pub fn of(policy: Option<&str>, image: &str) -> Self {
        match policy {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let tagged = last.contains(':') && !last.ends_with(":latest");
                if tagged || image.contains('@') {
                    Self::IfNotPresent
                } else {
                    Self::Always
                }
            }
        }
    }
}

/// Pulls images, remembering failures per image for back-off.
pub struct ImageManager {
    cri: Arc<dyn Cri>,
    backoff: Mutex<Backoff>,
}

/// What [`ImageManager::ensure`] found or did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensured {
    pub image_ref: String,
    pub pulled: bool,
    pub took: Duration,
}

impl ImageManager {
    pub fn new(cri: Arc<dyn Cri>) -> Self {
        Self {
            cri,
            backoff: Mutex::new(Backoff::new(
                Duration::from_secs(10),
                Duration::from_secs(300),
            )),
        }
    }

    /// Makes `image` present according to `policy`, pulling with `auth` when needed. Failed
    /// pulls back off per `owner` (a pod uid) and image, as upstream keys them, so one pod's
    /// failures do not hold back another pod with other credentials.
    pub async fn ensure(
        &self,
        owner: &str,
        image: &str,
        policy: PullPolicy,
        auth: Option<k8s_cri::v1::AuthConfig>,
    ) -> Result<Ensured, PullError> {
        let key = format!("{owner}_{image}");
        let started = Instant::now();
        if image.trim().is_empty() || image.contains(' ') || image.ends_with(':') {
            return Err(PullError::InvalidImageName(image.to_string()));
        }
        if policy != PullPolicy::Always {
            match self.cri.image_status(image).await {
                Ok(Some(img)) => {
                    return Ok(Ensured {
                        image_ref: img.id,
                        pulled: false,
                        took: started.elapsed(),
                    })
                }
                Ok(None) => {}
                Err(e) => return Err(PullError::ErrImagePull(e.message())),
            }
            if policy == PullPolicy::Never {
                return Err(PullError::ErrImageNeverPull(image.to_string()));
            }
        }
        if self.in_backoff(&key) {
            return Err(PullError::ImagePullBackOff(image.to_string()));
        }
        tracing::info!(image, "pulling image");
        match self.cri.pull_image(image, auth).await {
            Ok(image_ref) => {
                self.backoff.lock().forget(&key);
                tracing::info!(
                    image,
                    took_ms = started.elapsed().as_millis() as u64,
                    "pulled image"
                );
                Ok(Ensured {
                    image_ref,
                    pulled: true,
                    took: started.elapsed(),
                })
            }
            Err(e) => {
                let mut b = self.backoff.lock();
                // Entries of pods long gone expire (twice the maximum delay after their last failure).
                b.gc(SystemTime::now());
                b.next(&key, SystemTime::now());
                tracing::warn!(image, error = %e.message(), "pulling image failed");
                Err(PullError::ErrImagePull(format!(
                    "failed to pull and unpack image {image:?}: {}",
                    e.message()
                )))
            }
        }
    }

    /// Whether pulls for `key` (owner_image) are in back-off now.
    fn in_backoff(&self, key: &str) -> bool {
        let now = SystemTime::now();
        let b = self.backoff.lock();
        // The last failure is the event; waiting_since measures from it.
        b.last_event(key)
            .is_some_and(|t| b.waiting_since(key, t, now).is_some())
    }
}

/// Imports one tarball (docker-archive or OCI layout) with containerd's `ctr`.
pub async fn import_file(ctr: &str, socket: &Path, file: &Path) -> Result<String, ImportError> {
    let out = tokio::process::Command::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(file)
        .output()
        .await
        .map_err(|source| ImportError::Spawn {
            ctr: ctr.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ImportError::Failed {
            file: file.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn is_image_archive(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    [".tar", ".tar.gz", ".tgz", ".tar.zst"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Imports every tarball in `dir` not imported before in its current form (size and mtime
/// are recorded in `record`; unchanged files are skipped). Returns how many were imported.
pub async fn import_dir(ctr: &str, socket: &Path, dir: &Path, record: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut done: HashMap<String, String> = std::fs::read_to_string(record)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_image_archive(p))
        .collect();
    files.sort();
    let mut imported = 0;
    for f in files {
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = f.to_string_lossy().to_string();
        let fingerprint = format!("{}:{mtime}", meta.len());
        if done.get(&key) == Some(&fingerprint) {
            tracing::debug!(file = %f.display(), "image archive unchanged; skipped");
            continue;
        }
        let started = Instant::now();
        match import_file(ctr, socket, &f).await {
            Ok(_) => {
                tracing::info!(file = %f.display(), took_ms = started.elapsed().as_millis() as u64, "imported image archive");
                done.insert(key, fingerprint);
                imported += 1;
            }
            Err(e) => tracing::warn!(error = %e, "image archive not imported"),
        }
    }
    if let Ok(text) = serde_json::to_string_pretty(&done) {
        let _ = std::fs::write(record, text);
    }
    imported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pull_policy_is_always_for_latest_or_untagged() {
        assert_eq!(PullPolicy::of(None, "nginx"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "nginx:latest"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "nginx:1.25"), PullPolicy::IfNotPresent);
        assert_eq!(
            PullPolicy::of(None, "127.0.0.1:5000/nginx"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::of(None, "x@sha256:abc"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::of(Some("Never"), "nginx"), PullPolicy::Never);
    }
}
