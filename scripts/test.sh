#!/usr/bin/env bash
# Runs every test: unit tests, the store conformance suite, and the acceptance tests that
# start real capstan servers and drive the real kubectl, kube-rs and the Python client.
# This is what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
./scripts/packages.sh

step "Python client for the compatibility tests"
python3 -c 'import kubernetes' 2>/dev/null || python3 -m pip install -q 'kubernetes==31.0.0'

step "formatting"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check || { echo "run: cargo fmt --all" >&2; exit 1; }
else
  echo "rustfmt is not installed; skipping the formatting check"
fi

step "build"
cargo build --workspace --all-targets

step "lints (clippy, warnings are errors; the lint set is [workspace.lints] in Cargo.toml)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --quiet -- -D warnings
else
  echo "clippy is not installed; skipping the lint check"
fi

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --failure-output final
else
  cargo test --workspace --no-fail-fast
fi
