#!/usr/bin/env bash
# Installs the system packages capstan and its tests need, with apt, only when missing.
set -euo pipefail

packages=(
  build-essential   # cc for crates that build C (SQLite is bundled)
  pkg-config
  curl
  ca-certificates
  python3-pip       # the Python kubernetes client used by the tests
  protobuf-compiler # protoc, for the CRI protos (k8s-cri) at build time
  containerd        # the node agent's container runtime (CRI v1)
  runc
  catatonit         # static init; its pause mode is the agent's built-in pause image
  containernetworking-plugins  # bridge, host-local, portmap, loopback (/usr/lib/cni)
  iptables          # masquerade and hostPort rules the CNI plugins write
  nftables
  conntrack         # the service proxy deletes stale UDP conntrack entries
  iproute2
  busybox-static    # the test images (scripts/build-test-images.sh)
  docker-registry   # a registry on loopback for the registry-mirror test
  skopeo            # pushes test images into it
  apache2-utils     # htpasswd, for the registry that requires credentials
  mount             # mount, umount, losetup: the full-disk (tmpfs) and power-loss (loop device) tests
  e2fsprogs         # mkfs.ext4, for the power-loss test's loop device
  openssl           # reads the served certificate in the certificate renewal test
  bind9-dnsutils    # dig, for the cluster DNS test
  dnsperf           # the cluster DNS benchmark (an ignored test; BENCHMARKS.md)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all system packages present"
fi
command -v kubectl >/dev/null || { echo "kubectl is not on PATH; install kubectl 1.32" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo is not on PATH; install Rust with rustup" >&2; exit 1; }
