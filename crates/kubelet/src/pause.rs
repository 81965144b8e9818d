//! The built-in pause image: a fresh node must run pods with no registry and no setup step, so
//! when the sandbox image is the default [`BUILTIN`] and containerd lacks it, the agent
//! assembles it at start from Debian's `catatonit` (a small static init whose `-P` mode is a
//! pause process: it holds the pod's namespaces and exits on TERM) as a docker-archive tarball
//! built in memory, and imports it the way `capstan images import` does.

use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};
use serde_json::json;

use crate::cri::Cri;

/// The default `--pause-image`: the only name the agent assembles itself.
pub const BUILTIN: &str = "capstan.local/pause:3.10";

/// Where Debian's `catatonit` package installs the binary (podman's path is a symlink to it).
pub const CANDIDATES: &[&str] = &[
    "/usr/bin/catatonit",
    "/usr/libexec/podman/catatonit",
    "/usr/local/bin/catatonit",
];

/// Where the binary lives in the image, as in upstream's pause image.
pub const ENTRYPOINT: &[&str] = &["/pause", "-P"];

/// Why the built-in pause image could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the built-in pause image {BUILTIN} cannot be assembled: catatonit is not installed (looked for {looked}); install the catatonit package, import a pause image (`capstan images import`), or name one a registry serves with --pause-image")]
    Missing { looked: String },
    #[error("the built-in pause image {BUILTIN} cannot be assembled: {path} is dynamically linked and would not run in an empty image; install Debian's catatonit package (static) or name another image with --pause-image")]
    NotStatic { path: PathBuf },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("assembling the pause image: {0}")]
    Assemble(#[source] std::io::Error),
    #[error("writing the pause image tarball {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("importing the built-in pause image: {0}")]
    Import(#[from] crate::images::ImportError),
}

/// The first of `candidates` that exists.
pub fn find_binary(candidates: &[&str]) -> Result<PathBuf, Error> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Missing {
            looked: candidates.join(", "),
        })
}

/// Whether `elf` is an ELF executable without a program interpreter (PT_INTERP): a dynamically
/// linked binary would find no loader or libraries in a one-file image.
pub fn is_static(elf: &[u8]) -> bool {
    if elf.len() < 0x40 || &elf[..4] != b"\x7fELF" {
        return false;
    }
    let big = elf[5] == 2;
    let u16_at = |o: usize| -> Option<usize> {
        let b: [u8; 2] = elf.get(o..o + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        } as usize)
    };
    let u32_at = |o: usize| -> Option<usize> {
        let b: [u8; 4] = elf.get(o..o + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        } as usize)
    };
    let u64_at = |o: usize| -> Option<usize> {
        let b: [u8; 8] = elf.get(o..o + 8)?.try_into().ok()?;
        usize::try_from(if big {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
        .ok()
    };
    // ELFCLASS64 (2) or ELFCLASS32 (1): where the program header table is described.
    let (phoff, phentsize, phnum) = match elf[4] {
        2 => (u64_at(0x20), u16_at(0x36), u16_at(0x38)),
        1 => (u32_at(0x1c), u16_at(0x2a), u16_at(0x2c)),
        _ => return false,
    };
    let (Some(phoff), Some(size), Some(num)) = (phoff, phentsize, phnum) else {
        return false;
    };
    let table_end = size.checked_mul(num).and_then(|n| n.checked_add(phoff));
    if table_end.is_none_or(|end| end > elf.len()) {
        return false;
    }
    const PT_INTERP: usize = 3;
    (0..num).all(|i| {
        phoff
            .checked_add(i * size)
            .and_then(u32_at)
            .is_some_and(|t| t != PT_INTERP)
    })
}

/// The image's platform name for this build (the import keeps only the host's platform).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    digest(&SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends a regular file owned by root with a fixed mtime, so the same binary always gives
/// the same image id (an unchanged image is never imported twice).
fn append_file(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data)
}

/// A docker-archive tarball (`manifest.json`, the config, one layer) of an image named `name`
/// whose only file is `binary` at [`ENTRYPOINT`]'s path, run as upstream's pause runs
/// (user 65535).
pub fn docker_archive(name: &str, binary: &[u8], arch: &str) -> std::io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    append_file(
        &mut layer,
        ENTRYPOINT[0].trim_start_matches('/'),
        0o755,
        binary,
    )?;
    let layer = layer.into_inner()?;
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Entrypoint": ENTRYPOINT,
            "User": "65535:65535",
            "WorkingDir": "/",
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"io.capstan.image": "built-in pause image (catatonit -P)"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "capstan node agent: catatonit as /pause"}],
    });
    let config = serde_json::to_vec(&config).map_err(std::io::Error::other)?;
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{}/layer.tar", sha256_hex(&layer));
    let manifest = json!([{"Config": config_name, "RepoTags": [name], "Layers": [layer_name]}]);
    let manifest = serde_json::to_vec(&manifest).map_err(std::io::Error::other)?;
    let mut out = tar::Builder::new(Vec::new());
    append_file(&mut out, "manifest.json", 0o644, &manifest)?;
    append_file(&mut out, &config_name, 0o644, &config)?;
    append_file(&mut out, &layer_name, 0o644, &layer)?;
    out.into_inner()
}

/// What [`ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Provided {
    /// containerd already had the image.
    Present,
    /// Assembled from this binary and imported.
    Imported(PathBuf),
}

/// Makes [`BUILTIN`] present in containerd: nothing when it is there already, else assembled
/// from the first of `candidates` and imported with `ctr` through `socket`. The tarball is
/// written under `dir` for `ctr` to read, and removed afterwards.
pub async fn ensure(
    cri: &dyn Cri,
    ctr: &str,
    socket: &Path,
    dir: &Path,
    candidates: &[&str],
) -> Result<Provided, Error> {
    if cri.image_status(BUILTIN).await.ok().flatten().is_some() {
        return Ok(Provided::Present);
    }
    let binary = find_binary(candidates)?;
    let data = std::fs::read(&binary).map_err(|source| Error::Read {
        path: binary.clone(),
        source,
    })?;
    if !is_static(&data) {
        return Err(Error::NotStatic { path: binary });
    }
    let archive = docker_archive(BUILTIN, &data, host_arch()).map_err(Error::Assemble)?;
    let file = dir.join("pause-image.tar");
    std::fs::write(&file, &archive).map_err(|source| Error::Write {
        path: file.clone(),
        source,
    })?;
    let result = crate::images::import_file(ctr, socket, &file).await;
    let _ = std::fs::remove_file(&file);
    result?;
    Ok(Provided::Imported(binary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn entries(tarball: &[u8]) -> HashMap<String, (u32, Vec<u8>)> {
        let mut a = tar::Archive::new(tarball);
        let mut out = HashMap::new();
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let mode = e.header().mode().expect("mode");
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            out.insert(path, (mode, data));
        }
        out
    }

    #[test]
    fn the_archive_holds_the_binary_where_the_entrypoint_points() {
        let binary = b"\x7fELF not really a binary".to_vec();
        let archive = docker_archive(BUILTIN, &binary, "amd64").expect("archive");
        let files = entries(&archive);
        let manifest: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"].1).expect("manifest");
        assert_eq!(manifest[0]["RepoTags"], json!([BUILTIN]));
        let config_name = manifest[0]["Config"].as_str().expect("config name");
        let config_bytes = &files[config_name].1;
        assert_eq!(
            config_name,
            format!("{}.json", sha256_hex(config_bytes)),
            "the config is named by its digest (the image id)"
        );
        let config: serde_json::Value = serde_json::from_slice(config_bytes).expect("config");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        let entrypoint: Vec<String> =
            serde_json::from_value(config["config"]["Entrypoint"].clone()).expect("entrypoint");
        assert_eq!(entrypoint, ["/pause", "-P"]);

        let layer_name = manifest[0]["Layers"][0].as_str().expect("layer name");
        let layer = &files[layer_name].1;
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([format!("sha256:{}", sha256_hex(layer))]),
            "the diff id is the digest of the uncompressed layer"
        );
        let inside = entries(layer);
        let exe = entrypoint[0].trim_start_matches('/');
        let (mode, data) = &inside[exe];
        assert_eq!(data, &binary, "the entrypoint is the binary");
        assert_eq!(mode & 0o111, 0o111, "executable");
        assert_eq!(inside.len(), 1);

        let again = docker_archive(BUILTIN, &binary, "amd64").expect("archive");
        assert_eq!(archive, again, "the same binary gives the same image");
    }

    #[test]
    fn only_binaries_without_an_interpreter_count_as_static() {
        // Built by hand: a 64-bit little-endian ELF header with one program header of type
        // `kind` right after it.
        let elf = |kind: u32| {
            let mut b = vec![0u8; 0x40 + 0x38];
            b[..4].copy_from_slice(b"\x7fELF");
            b[4] = 2;
            b[5] = 1;
            b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
            b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
            b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
            b[0x40..0x44].copy_from_slice(&kind.to_le_bytes());
            b
        };
        assert!(is_static(&elf(1)), "PT_LOAD only");
        assert!(!is_static(&elf(3)), "PT_INTERP");
        assert!(!is_static(b"#!/bin/sh\n"), "not ELF");
        let mut truncated = elf(1);
        truncated.truncate(0x50);
        assert!(!is_static(&truncated), "program headers cut off");
        // The machine's own binaries, when present: Debian's catatonit is static, its
        // /bin/sh names the dynamic loader.
        if let Ok(b) = std::fs::read("/usr/bin/catatonit") {
            assert!(is_static(&b), "catatonit");
        }
        if let Ok(b) = std::fs::read("/bin/sh") {
            if b.windows(8).any(|w| w == b"ld-linux") {
                assert!(!is_static(&b), "/bin/sh");
            }
        }
    }

    #[test]
    fn a_missing_binary_names_what_to_install() {
        let e = find_binary(&["/nonexistent/catatonit"]).expect_err("missing");
        let text = e.to_string();
        assert!(text.contains("catatonit is not installed"), "{text}");
        assert!(text.contains("/nonexistent/catatonit"), "{text}");
        assert!(text.contains("--pause-image"), "{text}");
    }
}
