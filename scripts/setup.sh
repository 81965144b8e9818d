#!/usr/bin/env bash
# Brings up a one-node capstan cluster on this machine: installs what is missing (apt),
# builds capstan (release), starts `capstan server` in the background and prints how to
# point kubectl at it. Safe to run again: it restarts the server on the same data.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${CAPSTAN_DATA_DIR:-/var/lib/capstan}"
PORT="${CAPSTAN_HTTPS_LISTEN_PORT:-6443}"

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
./scripts/packages.sh

step "building capstan (release; the first build takes several minutes on 2 cores)"
cargo build --release --locked -p capstan
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/capstan"
# Installed stripped (the release build's line tables are most of its size: 254 MB -> 51 MB).
# The debug info is kept in a separate file where gdb and addr2line look for the file the
# binary's debuglink names (/usr/lib/debug + the binary's folder).
DEBUG_DIR=/usr/lib/debug/usr/local/bin
mkdir -p "$DEBUG_DIR"
objcopy --only-keep-debug "$BIN" "$DEBUG_DIR/capstan.debug"
chmod 0644 "$DEBUG_DIR/capstan.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$DEBUG_DIR/capstan.debug" "$BIN" "$BIN.stripped"
install -m 0755 "$BIN.stripped" /usr/local/bin/capstan
rm -f "$BIN.stripped"
echo "installed /usr/local/bin/capstan ($(du -h /usr/local/bin/capstan | cut -f1); debug info in $DEBUG_DIR/capstan.debug, $(du -h "$DEBUG_DIR/capstan.debug" | cut -f1))"

step "node images (test images built from Debian packages; the pause image is built in)"
./scripts/build-test-images.sh
mkdir -p "$DATA_DIR/agent/images"
# -p keeps the mtime, so the agent skips tarballs it imported before.
for img in busybox httpd; do cp -p "/var/tmp/capstan-images/$img.tar" "$DATA_DIR/agent/images/"; done

# The examples name `nginx` (docker.io/library/nginx:latest, pulled every time): a registry on
# loopback mirrors docker.io, holding the nginx image built from Debian's package.
REGISTRY_PORT="${CAPSTAN_REGISTRY_PORT:-5000}"
step "local registry mirror for docker.io on 127.0.0.1:$REGISTRY_PORT"
REG_DIR="$DATA_DIR/registry"
mkdir -p "$REG_DIR/store"
if ! curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null; then
  cat >"$REG_DIR/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $REG_DIR/store}
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
  nohup docker-registry serve "$REG_DIR/config.yml" >>"$REG_DIR/registry.log" 2>&1 &
  echo $! >"$REG_DIR/registry.pid"
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null && break; sleep 0.1; done
fi
skopeo copy --quiet --dest-tls-verify=false docker-archive:/var/tmp/capstan-images/nginx.tar \
  "docker://127.0.0.1:$REGISTRY_PORT/library/nginx:latest"
[ -f "$DATA_DIR/registries.yaml" ] || printf 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:%s"]\n' "$REGISTRY_PORT" >"$DATA_DIR/registries.yaml"

step "starting capstan server (data in $DATA_DIR, log in $DATA_DIR/capstan.log)"
mkdir -p "$DATA_DIR"
if [ -f "$DATA_DIR/capstan.pid" ] && kill -0 "$(cat "$DATA_DIR/capstan.pid")" 2>/dev/null; then
  echo "stopping the running server (pid $(cat "$DATA_DIR/capstan.pid"))"
  kill -TERM "$(cat "$DATA_DIR/capstan.pid")"
  for _ in $(seq 1 100); do kill -0 "$(cat "$DATA_DIR/capstan.pid")" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$DATA_DIR/kubeconfig.yaml"
nohup /usr/local/bin/capstan server --data-dir "$DATA_DIR" --https-listen-port "$PORT" >>"$DATA_DIR/capstan.log" 2>&1 &
echo $! >"$DATA_DIR/capstan.pid"

for _ in $(seq 1 300); do
  [ -f "$DATA_DIR/kubeconfig.yaml" ] && break
  kill -0 "$(cat "$DATA_DIR/capstan.pid")" 2>/dev/null || { tail -n 30 "$DATA_DIR/capstan.log"; echo "capstan server exited"; exit 1; }
  sleep 0.1
done
KUBECONFIG="$DATA_DIR/kubeconfig.yaml" kubectl get --raw /readyz >/dev/null
step "ready"
echo "capstan is running (pid $(cat "$DATA_DIR/capstan.pid")). Point kubectl at it with:"
echo
echo "    export KUBECONFIG=$DATA_DIR/kubeconfig.yaml"
echo "    kubectl get nodes,namespaces"
echo "    kubectl apply -f examples/deployment.yaml -f examples/service.yaml -f examples/ingress.yaml"
echo "    curl -H 'Host: myapp.example.com' http://127.0.0.1/    # through the Ingress and the Service"
