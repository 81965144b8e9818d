//! Generates crates/apiserver/src/protobuf/table.rs, the field table the API server's protobuf
//! decoder runs on. Entry point: [`main`].
//!
//! Run from the repository root:
//!
//! ```text
//! cargo run --manifest-path tools/protobuf-gen/Cargo.toml -- crates/apiserver/src/protobuf/table.rs
//! ```
//!
//! (`--check` compares instead of writing, and fails when the file is stale.) The inputs are
//! the sources of two crates.io crates, located with `cargo metadata`: k8s-pb (prost bindings
//! of Kubernetes' generated.proto: tags, wire types) and k8s-openapi (JSON property names).

#![forbid(unsafe_code)]

mod names;
mod protos;
mod table;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const COMMAND: &str =
    "cargo run --manifest-path tools/protobuf-gen/Cargo.toml -- crates/apiserver/src/protobuf/table.rs";

/// k8s-openapi's version directories, oldest first: the API server builds with v1_33, later
/// ones only fill in properties of fields newer than 1.33 that k8s-pb already has.
const OPENAPI_VERSIONS: &[&str] = &["v1_33", "v1_34", "v1_35", "v1_36", "v1_37"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("protobuf-gen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut check = false;
    let mut output = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            _ if output.is_none() => output = Some(PathBuf::from(arg)),
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?}; usage: [--check] OUTPUT"
                ))
            }
        }
    }
    let output = output.ok_or("usage: protobuf-gen [--check] OUTPUT")?;

    let pb_src = source_dir("k8s-pb")?;
    let openapi_src = source_dir("k8s-openapi")?;
    let protos = protos::read(&pb_src).map_err(|e| format!("reading k8s-pb: {e}"))?;
    let mut openapi = Vec::new();
    for version in OPENAPI_VERSIONS {
        let dir = openapi_src.join(version);
        if dir.is_dir() {
            openapi.push(names::read(&dir).map_err(|e| format!("reading k8s-openapi: {e}"))?);
        }
    }
    let text = table::build(&protos, &openapi, COMMAND)?;

    if check {
        let current = std::fs::read_to_string(&output)
            .map_err(|e| format!("reading {}: {e}", output.display()))?;
        if current != text {
            return Err(format!("{} is stale: run `{COMMAND}`", output.display()));
        }
    } else {
        std::fs::write(&output, text).map_err(|e| format!("writing {}: {e}", output.display()))?;
    }
    Ok(())
}

/// The `src` directory of a dependency of this tool, from `cargo metadata` (which downloads it
/// when missing).
fn source_dir(package: &str) -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed invalid JSON: {e}"))?;
    let manifest_path = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == package)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("cargo metadata does not list {package}"))?;
    Ok(Path::new(manifest_path)
        .parent()
        .ok_or_else(|| format!("{manifest_path} has no parent directory"))?
        .join("src"))
}
