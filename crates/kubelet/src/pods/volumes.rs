//! Pod volumes on the node: [`prepare`] lays out every volume of a pod under its directory
//! (emptyDir, also on tmpfs for medium Memory; configMap, secret, downwardAPI and projected
//! written atomically through a `..data` symlink swap, as upstream's AtomicWriter, so a
//! changed ConfigMap or Secret appears in running containers, secrets on tmpfs; hostPath with its type checks),
//! and [`mounts`] turns a container's volumeMounts (subPath, readOnly) into CRI mounts.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};

use super::env::{self, Lookups};
use crate::cri::api as pb;

/// A volume that cannot be set up; the pod's containers wait (ContainerCreating) and the
/// set-up is retried at the next sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    #[error("secret references non-existent secret key: {0}")]
    SecretKey(String),
    #[error("hostPath type check failed: {path} is not a {want}")]
    HostPathType { path: String, want: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting tmpfs at {0}: {1}")]
    Tmpfs(PathBuf, String),
    #[error("subPath {0:?} must be a relative path inside the volume")]
    BadSubPath(String),
    #[error("volume {0:?} is not defined in the pod")]
    NoSuchVolume(String),
    /// A persistentVolumeClaim volume whose claim cannot be used yet (upstream's volume
    /// manager wording; the pod waits in ContainerCreating).
    #[error("unmounted volumes=[{volume}], unattached volumes=[{volume}], failed to process volumes=[{volume}]: error processing PVC {claim}: {reason}")]
    Claim {
        volume: String,
        claim: String,
        reason: String,
    },
}

impl Error {
    /// The FailedMount event's message, as upstream's kubelet words it.
    pub fn event_message(&self) -> String {
        match self {
            Error::Claim { .. } => format!("Unable to attach or mount volumes: {self}"),
            other => format!("MountVolume.SetUp failed: {other}"),
        }
    }
}

/// Where a claim's volume lives on this node: its PV's hostPath or local path (and the
/// hostPath type to check), or why it cannot be used yet.
pub type ClaimVolume = std::result::Result<(PathBuf, String), String>;

/// The claims a pod's volumes use (persistentVolumeClaim and ephemeral volumes).
pub fn claim_references(pod: &Pod) -> Vec<String> {
    capstan_api::volume::pod_claims(pod)
        .into_iter()
        .map(|c| c.claim)
        .collect()
}

/// Marks read-only the mounts of volumes whose source says `readOnly` (a claim's).
pub fn apply_read_only(pod: &Pod, c: &Container, mounts: &mut [pb::Mount]) {
    let read_only: Vec<String> = capstan_api::volume::pod_claims(pod)
        .into_iter()
        .filter(|c| c.read_only)
        .map(|c| c.volume)
        .collect();
    for m in c.volume_mounts.iter().flatten() {
        if read_only.contains(&m.name) {
            for out in mounts
                .iter_mut()
                .filter(|o| o.container_path == m.mount_path)
            {
                out.readonly = true;
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ConfigMaps and Secrets a pod refers to, fetched by the worker. `None` = not found.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    /// persistentVolumeClaim volumes, by claim name.
    pub claims: HashMap<String, ClaimVolume>,
}

impl Objects {
    fn cm_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let cm = self.config_maps.get(name)?.as_ref()?;
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        Some(out)
    }

    fn secret_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let s = self.secrets.get(name)?.as_ref()?;
        let mut out: BTreeMap<String, Vec<u8>> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        for (k, v) in s.string_data.iter().flatten() {
            out.insert(k.clone(), v.clone().into_bytes());
        }
        Some(out)
    }

    /// String views for env resolution.
    pub fn fill_lookups(&self, l: &mut Lookups) {
        let text = |m: BTreeMap<String, Vec<u8>>| -> BTreeMap<String, String> {
            m.into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect()
        };
        for name in self.config_maps.keys() {
            l.config_maps
                .insert(name.clone(), self.cm_data(name).map(text));
        }
        for name in self.secrets.keys() {
            l.secrets
                .insert(name.clone(), self.secret_data(name).map(text));
        }
    }
}

/// Names of the ConfigMaps and Secrets the pod's volumes and env refer to.
pub fn references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = &pod.spec else {
        return (cms, secrets);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                cms.push(c.name.clone());
            }
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let (a, b) = env::references(c);
        cms.extend(a);
        secrets.extend(b);
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// Writes `files` into `dir` atomically: a new hidden timestamped folder, then the `..data`
/// symlink swapped to it, and one symlink per top-level entry. Returns whether anything changed.
pub fn write_atomic(dir: &Path, files: &Payload) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let data_link = dir.join("..data");
    if let Ok(target) = std::fs::read_link(&data_link) {
        let cur = dir.join(&target);
        let same = files.iter().all(|(p, (bytes, mode))| {
            let f = cur.join(p);
            std::fs::read(&f).ok().as_deref() == Some(bytes.as_slice())
                && std::fs::metadata(&f)
                    .map(|m| m.permissions().mode() & 0o7777)
                    .ok()
                    == Some(*mode)
        }) && count_files(&cur) == files.len();
        if same {
            return Ok(false);
        }
    }
    let stamp = format!(
        "..{}",
        jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S.%f")
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir_all(&new_dir).map_err(io("creating", &new_dir))?;
    for (p, (bytes, mode)) in files {
        let f = new_dir.join(p);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&f, bytes).map_err(io("writing", &f))?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode))
            .map_err(io("chmod", &f))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(io("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io("renaming", &data_link))?;
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for t in &tops {
        let l = dir.join(t);
        if std::fs::symlink_metadata(&l).is_err() {
            std::os::unix::fs::symlink(format!("..data/{t}"), &l).map_err(io("linking", &l))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !tops.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        if old != Path::new(&stamp) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn project_keys(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    out: &mut Payload,
    missing: impl Fn(String) -> Error,
    optional: bool,
) -> Result<()> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            (v.clone(), it.mode.map_or(default_mode, |m| m as u32)),
                        );
                    }
                    None if optional => {}
                    None => return Err(missing(it.key.clone())),
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), default_mode));
            }
        }
    }
    Ok(())
}

fn downward_files(
    pod: &Pod,
    files: &[DownwardAPIVolumeFile],
    default_mode: u32,
    l: &Lookups,
    out: &mut Payload,
) -> Result<()> {
    for f in files {
        let value = if let Some(r) = &f.field_ref {
            env::field_value(pod, &r.field_path, l).unwrap_or_default()
        } else if let Some(r) = &f.resource_field_ref {
            let c = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .cloned()
                .unwrap_or_default();
            env::resource_value(pod, &c, r, l).unwrap_or_default()
        } else {
            String::new()
        };
        out.insert(
            f.path.clone(),
            (
                value.into_bytes(),
                f.mode.map_or(default_mode, |m| m as u32),
            ),
        );
    }
    Ok(())
}

/// An object's keys and their bytes.
type KeyData = BTreeMap<String, Vec<u8>>;

/// Where a volume's files come from: a ConfigMap's or a Secret's keys.
struct KeySource {
    data: fn(&Objects, &str) -> Option<KeyData>,
    missing_key: fn(String) -> Error,
    not_found: fn(String) -> Error,
}

const CONFIG_MAP: KeySource = KeySource {
    data: Objects::cm_data,
    missing_key: Error::ConfigMapKey,
    not_found: Error::ConfigMapNotFound,
};

const SECRET: KeySource = KeySource {
    data: Objects::secret_data,
    missing_key: Error::SecretKey,
    not_found: Error::SecretNotFound,
};

impl KeySource {
    /// Adds the files of object `name` (its `items`, or every key) to `out`; a missing object
    /// or key is an error unless `optional`.
    fn project(
        &self,
        objs: &Objects,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        mode: u32,
        optional: bool,
        out: &mut Payload,
    ) -> Result<()> {
        match (self.data)(objs, name) {
            Some(d) => project_keys(&d, items, mode, out, self.missing_key, optional),
            None if optional => Ok(()),
            None => Err((self.not_found)(name.to_string())),
        }
    }
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.map_or(0o644, |m| m as u32)
}

/// The payload of a configMap, secret, downwardAPI or projected volume (None for other kinds).
fn payload(pod: &Pod, v: &Volume, objs: &Objects, l: &Lookups) -> Result<Option<Payload>> {
    let mut out = Payload::new();
    if let Some(c) = &v.config_map {
        let mode = mode_or_default(c.default_mode);
        let optional = c.optional == Some(true);
        CONFIG_MAP.project(objs, &c.name, c.items.as_ref(), mode, optional, &mut out)?;
        return Ok(Some(out));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let mode = mode_or_default(s.default_mode);
        let optional = s.optional == Some(true);
        SECRET.project(objs, &name, s.items.as_ref(), mode, optional, &mut out)?;
        return Ok(Some(out));
    }
    if let Some(d) = &v.downward_api {
        let items = d.items.as_deref().unwrap_or_default();
        downward_files(pod, items, mode_or_default(d.default_mode), l, &mut out)?;
        return Ok(Some(out));
    }
    if let Some(p) = &v.projected {
        let mode = mode_or_default(p.default_mode);
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                // The service-account CA bundle may not be published by every server.
                let absent_root_ca = c.name == "kube-root-ca.crt"
                    && !objs.config_maps.get(&c.name).is_some_and(Option::is_some);
                if !absent_root_ca {
                    let optional = c.optional == Some(true);
                    CONFIG_MAP.project(
                        objs,
                        &c.name,
                        c.items.as_ref(),
                        mode,
                        optional,
                        &mut out,
                    )?;
                }
            }
            if let Some(s) = &src.secret {
                let optional = s.optional == Some(true);
                SECRET.project(objs, &s.name, s.items.as_ref(), mode, optional, &mut out)?;
            }
            if let Some(d) = &src.downward_api {
                let items = d.items.as_deref().unwrap_or_default();
                downward_files(pod, items, mode, l, &mut out)?;
            }
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn plugin_dir(v: &Volume) -> &'static str {
    if v.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if v.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if v.secret.is_some() {
        "kubernetes.io~secret"
    } else if v.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if v.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        "kubernetes.io~other"
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = p.to_string_lossy();
    text.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(&want))
}

/// Mounts a tmpfs at `dir` unless one is there already.
fn mount_tmpfs(dir: &Path, mode: &str, size: Option<i64>) -> Result<()> {
    if is_mountpoint(dir) {
        return Ok(());
    }
    let mut opts = mode.to_string();
    if let Some(b) = size {
        opts.push_str(&format!(",size={b}"));
    }
    let res = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| Error::Tmpfs(dir.to_path_buf(), e.to_string()))?;
    if !res.status.success() {
        return Err(Error::Tmpfs(
            dir.to_path_buf(),
            String::from_utf8_lossy(&res.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

fn check_host_path(path: &Path, kind: &str) -> Result<()> {
    let meta = std::fs::metadata(path);
    let want = |w: &str| Error::HostPathType {
        path: path.display().to_string(),
        want: w.to_string(),
    };
    match kind {
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(path).map_err(io("creating", path))?;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
        }
        "Directory" if !meta.as_ref().is_ok_and(|m| m.is_dir()) => return Err(want("directory")),
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            std::fs::write(path, b"").map_err(io("creating", path))?;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
        }
        "File" if !meta.as_ref().is_ok_and(|m| m.is_file()) => return Err(want("file")),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => return Err(want(kind)),
        _ => {}
    }
    Ok(())
}

/// Sets up (or refreshes) every volume of `pod` under `pod_dir`; returns each volume's path on
/// the host. Idempotent: unchanged content is left alone.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    objs: &Objects,
    l: &Lookups,
) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let Some(spec) = &pod.spec else {
        return Ok(out);
    };
    let claims = capstan_api::volume::pod_claims(pod);
    for v in spec.volumes.iter().flatten() {
        if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            check_host_path(&p, h.type_.as_deref().unwrap_or(""))?;
            out.insert(v.name.clone(), p);
            continue;
        }
        if let Some(c) = claims.iter().find(|c| c.volume == v.name) {
            let claim = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                c.claim
            );
            let (path, kind) = match objs.claims.get(&c.claim) {
                Some(Ok(found)) => found.clone(),
                Some(Err(reason)) => {
                    return Err(Error::Claim {
                        volume: v.name.clone(),
                        claim,
                        reason: reason.clone(),
                    })
                }
                None => {
                    return Err(Error::Claim {
                        volume: v.name.clone(),
                        claim,
                        reason: "PVC is not bound".into(),
                    })
                }
            };
            check_host_path(&path, &kind)?;
            out.insert(v.name.clone(), path);
            continue;
        }
        let dir = pod_dir.join("volumes").join(plugin_dir(v)).join(&v.name);
        if let Some(e) = &v.empty_dir {
            std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
            if e.medium.as_deref() == Some("Memory") {
                let size = e
                    .size_limit
                    .as_ref()
                    .and_then(|q| capstan_api::kinds::core::quantity::value_of(&q.0));
                mount_tmpfs(&dir, "mode=1777", size)?;
            }
            out.insert(v.name.clone(), dir);
            continue;
        }
        if let Some(files) = payload(pod, v, objs, l)? {
            // Secrets (and projected volumes, which may carry them) stay off the disk, as
            // upstream keeps them: on a tmpfs.
            if v.secret.is_some() || v.projected.is_some() {
                std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
                mount_tmpfs(&dir, "mode=0755", None)?;
            }
            write_atomic(&dir, &files)?;
            out.insert(v.name.clone(), dir);
            continue;
        }
        // Other volume kinds (PVCs, CSI, ...) have no plugin here: an empty folder stands in.
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

/// Unmounts tmpfs volumes and removes the pod's volume folders (hostPath untouched).
pub fn cleanup(pod_dir: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = pod_dir.to_string_lossy().to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&p)
            .status();
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// The CRI mounts for `c`'s volumeMounts. `env` feeds subPathExpr.
pub fn mounts(
    c: &Container,
    volumes: &HashMap<String, PathBuf>,
    env: &[(String, String)],
) -> Result<Vec<pb::Mount>> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| Error::NoSuchVolume(m.name.clone()))?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(env::expand(e, &vars)),
            _ => None,
        };
        let host = match sub {
            Some(s) => {
                if s.starts_with('/') || s.split('/').any(|x| x == "..") {
                    return Err(Error::BadSubPath(s));
                }
                let p = base.join(&s);
                if std::fs::symlink_metadata(&p).is_err() {
                    // Upstream creates a missing subPath as a folder.
                    std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
                }
                // Resolve symlinks (configMap keys): the bind mount takes the file itself.
                std::fs::canonicalize(&p).map_err(io("resolving", &p))?
            }
            None => base.clone(),
        };
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => pb::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => pb::MountPropagation::PropagationBidirectional,
            _ => pb::MountPropagation::PropagationPrivate,
        };
        out.push(pb::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only == Some(true),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(v: serde_json::Value) -> Volume {
        serde_json::from_value(v).expect("volume")
    }

    fn files(v: serde_json::Value, objs: &Objects) -> Result<Vec<(String, u32)>> {
        let p = payload(&Pod::default(), &volume(v), objs, &Lookups::default())?;
        Ok(p.unwrap_or_default()
            .into_iter()
            .map(|(k, (_, mode))| (k, mode))
            .collect())
    }

    #[test]
    fn config_map_and_secret_volumes_need_their_object_and_keys_unless_optional() {
        let mut objs = Objects::default();
        objs.config_maps.insert(
            "cm".into(),
            Some(
                serde_json::from_value(serde_json::json!({"data": {"a": "1", "b": "2"}}))
                    .expect("cm"),
            ),
        );
        objs.secrets.insert("gone".into(), None);
        let cm = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"name": "v", "configMap": {"name": "cm"}});
            v["configMap"]
                .as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            v
        };
        assert_eq!(
            files(cm(serde_json::json!({"defaultMode": 0o400})), &objs).expect("all keys"),
            [("a".to_string(), 0o400), ("b".to_string(), 0o400)]
        );
        assert!(matches!(
            files(cm(serde_json::json!({"items": [{"key": "x", "path": "x"}]})), &objs),
            Err(Error::ConfigMapKey(k)) if k == "x"
        ));
        assert!(matches!(
            files(serde_json::json!({"name": "v", "configMap": {"name": "nope"}}), &objs),
            Err(Error::ConfigMapNotFound(n)) if n == "nope"
        ));
        assert!(matches!(
            files(serde_json::json!({"name": "v", "secret": {"secretName": "gone"}}), &objs),
            Err(Error::SecretNotFound(n)) if n == "gone"
        ));
        assert_eq!(
            files(serde_json::json!({"name": "v", "secret": {"secretName": "gone", "optional": true}}), &objs)
                .expect("optional"),
            []
        );
        // A projected volume tolerates a missing kube-root-ca.crt, not other missing objects.
        let projected = |cm: &str| {
            serde_json::json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": cm}},
                {"configMap": {"name": "cm", "items": [{"key": "a", "path": "dir/a"}]}}]}})
        };
        assert_eq!(
            files(projected("kube-root-ca.crt"), &objs).expect("projected"),
            [("dir/a".to_string(), 0o440)]
        );
        assert!(matches!(
            files(projected("other"), &objs),
            Err(Error::ConfigMapNotFound(n)) if n == "other"
        ));
    }

    #[test]
    fn atomic_writes_swap_the_data_link_and_skip_unchanged_content() {
        let d = tempfile::tempdir().expect("tmp");
        let dir = d.path().join("v");
        let mut files = Payload::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        assert!(write_atomic(&dir, &files).expect("write"));
        assert_eq!(std::fs::read(dir.join("a")).expect("a"), b"1");
        assert_eq!(std::fs::read(dir.join("sub/b")).expect("b"), b"2");
        assert!(!write_atomic(&dir, &files).expect("again"));
        files.insert("a".into(), (b"changed".to_vec(), 0o644));
        files.remove("sub/b");
        assert!(write_atomic(&dir, &files).expect("update"));
        assert_eq!(std::fs::read(dir.join("a")).expect("a"), b"changed");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        let hidden = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
            .count();
        assert_eq!(hidden, 1, "the old generation is removed");
    }

    #[test]
    fn config_map_volumes_project_items_with_modes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/one", "subPath": "k1"}
            ]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cm", "defaultMode": 0o400}}]}
        }))
        .expect("pod");
        let mut objs = Objects::default();
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "cm"}, "data": {"k1": "v1", "k2": "v2"}}),
        )
        .expect("cm");
        objs.config_maps.insert("cm".into(), Some(cm));
        let d = tempfile::tempdir().expect("tmp");
        let vols = prepare(&pod, d.path(), &objs, &Lookups::default()).expect("prepare");
        let dir = &vols["cfg"];
        assert_eq!(std::fs::read_to_string(dir.join("k2")).expect("k2"), "v2");
        let mode = std::fs::metadata(dir.join("k1"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let ms = mounts(c, &vols, &[]).expect("mounts");
        assert!(ms[0].readonly);
        assert!(ms[1].host_path.ends_with("/k1"), "{}", ms[1].host_path);
        assert!(
            !ms[1].host_path.contains("..data/"),
            "subPath resolves to the file itself"
        );
    }
}
