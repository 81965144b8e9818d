#!/usr/bin/env bash
# The ingress benchmark (on demand; figures in BENCHMARKS.md): requests/s and latency at 64
# connections with wrk, in the same run, through
#   1. capstan's built-in ingress (Host: myapp.example.com),
#   2. Debian's nginx on the host as a reverse proxy to the same pods (keep-alive upstream),
#   3. straight to one pod,
# against 3 nginx pods (the test image docker.io/library/nginx:latest), plus the idle memory the
# ingress adds to a node agent (a `capstan agent` process joined to a `--disable-agent` server:
# its RSS with the ingress on, minus its RSS in a run with --ingress-http-port 0
# --ingress-https-port 0, both before any Ingress or traffic).
#
# Usage (as root, after scripts/packages.sh): crates/bench/ingress-bench.sh [path/to/capstan]
# Installs wrk and nginx-light when missing (not in packages.sh: Debian's nginx would start a
# service on port 80, the ingress's own port, on a machine with systemd).
#   DURATION=10s CONNECTIONS=64 THREADS=2 ROUNDS=3 to change the load and the number of
#   alternating ingress/nginx measurements.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/capstan}"
duration="${DURATION:-10s}"
conns="${CONNECTIONS:-64}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
octet=251
api_port=16443
http_port=18080
https_port=18443
nginx_port=18081
kubelet_port=10351
missing=()
for p in wrk nginx-light; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # policy-rc.d answering 101 keeps the package's nginx service from starting on port 80.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi
images="$("$repo/scripts/build-test-images.sh" >&2 && echo /var/tmp/capstan-images)"
work="$(mktemp -d /var/tmp/ingress-bench.XXXXXX)"
server_pid=""
agent_pid=""
nginx_pid=""

stop_pid() {
  if [ -n "$1" ]; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  # Containers outlive the agent (shims): let the agent remove the pods first.
  if [ -n "$agent_pid" ]; then
    kubectl delete deployment my-deployment --ignore-not-found >/dev/null 2>&1 || true
    for _ in $(seq 120); do
      [ -z "$(kubectl get pods -o name 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  stop_pid "$agent_pid"
  stop_pid "$server_pid"
  runc_root="$work/agent/agent/containerd/state/runc-root/k8s.io"
  if [ -d "$runc_root" ]; then
    for id in $(runc --root "$runc_root" list -q); do
      runc --root "$runc_root" kill --all "$id" KILL 2>/dev/null || true
      runc --root "$runc_root" delete -f "$id" 2>/dev/null || true
    done
  fi
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  ip link del "cst$octet" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" server --data-dir "$work/server" --https-listen-port "$api_port" --disable-agent \
  --cluster-cidr "10.$octet.0.0/16" >>"$work/server.log" 2>&1 &
server_pid=$!
export KUBECONFIG="$work/server/kubeconfig.yaml"
for _ in $(seq 120); do [ -s "$work/server/server/node-token" ] && kubectl get ns default >/dev/null 2>&1 && break; sleep 0.5; done

# Starts the node agent; $1 = extra flags. Waits until the node is Ready.
start_agent() {
  mkdir -p "$work/agent/agent/images"
  ln -sf "$images/nginx.tar" "$work/agent/agent/images/nginx.tar"
  # shellcheck disable=SC2086
  "$bin" agent --server "https://127.0.0.1:$api_port" --token "$(cat "$work/server/server/node-token")" \
    --data-dir "$work/agent" --node-name "bench-$octet" --kubelet-port "$kubelet_port" \
    --cni-bridge "cst$octet" $1 >>"$work/agent.log" 2>&1 &
  agent_pid=$!
  for _ in $(seq 300); do
    kubectl get node "bench-$octet" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && return 0
    sleep 0.5
  done
  echo "the node did not become Ready; see $work/agent.log" >&2
  exit 1
}

# The agent's RSS: the median of 7 samples a second apart, after 15 s to settle.
rss_kib() {
  sleep 15
  for _ in $(seq 7); do
    awk '/^VmRSS/ {print $2}' "/proc/$agent_pid/status"
    sleep 1
  done | sort -n | sed -n 4p
}

# A first start imports the images and assembles the pause image, which the later starts skip:
# it is not measured.
start_agent "--ingress-http-port 0 --ingress-https-port 0"
stop_pid "$agent_pid"
start_agent "--ingress-http-port 0 --ingress-https-port 0"
rss_off=$(rss_kib)
stop_pid "$agent_pid"
# The node is still Ready from the first run; the settling time in rss_kib covers the start.
start_agent "--ingress-http-port $http_port --ingress-https-port $https_port"
rss_on=$(rss_kib)

kubectl apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: my-deployment}
spec:
  replicas: 3
  selector: {matchLabels: {app: my-app}}
  template:
    metadata: {labels: {app: my-app}}
    spec:
      containers:
      - {name: web, image: nginx, imagePullPolicy: IfNotPresent}
EOF
kubectl apply -f "$repo/examples/service.yaml" -f "$repo/examples/ingress.yaml" >/dev/null
# The pod IPs are the Service's ready endpoints (one query: the count and the list agree).
for _ in $(seq 240); do
  ips=$(kubectl get endpointslices -l kubernetes.io/service-name=my-service -o jsonpath='{.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}')
  ready=$(wc -w <<<"$ips")
  [ "$ready" -eq 3 ] && break
  sleep 0.5
done
[ "$ready" -eq 3 ] || { echo "pods not ready" >&2; exit 1; }
until curl -sf -o /dev/null -H 'Host: myapp.example.com' "http://127.0.0.1:$http_port/"; do sleep 0.2; done

# Debian's nginx as the reference reverse proxy, configured as ingress-nginx configures an
# upstream: HTTP/1.1 keep-alive pool, round robin, the same forwarded headers.
upstreams=$(for ip in $ips; do echo "    server $ip:80;"; done)
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream pods {
$upstreams
    keepalive 256;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
EOF
nginx -c "$work/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
until curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/"; do
  kill -0 "$nginx_pid" 2>/dev/null || { echo "nginx exited; see $work/nginx-error.log" >&2; exit 1; }
  sleep 0.2
done

run() {
  local name=$1
  shift
  # Warm the pools, then measure.
  wrk -t"$threads" -c"$conns" -d2s "$@" >/dev/null
  local out
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '%-22s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
}

first_ip=${ips%% *}
echo "wrk -t$threads -c$conns -d$duration --latency, 3 nginx pods (one for direct), $rounds rounds"
# Rounds alternate the two proxies, so a change in the machine's load between measurements
# does not favour one of them.
for round in $(seq "$rounds"); do
  run "capstan ingress #$round" -H 'Host: myapp.example.com' "http://127.0.0.1:$http_port/"
  run "nginx proxy #$round" -H 'Host: myapp.example.com' "http://127.0.0.1:$nginx_port/"
done
run "direct to a pod" "http://$first_ip:80/"
echo "idle RSS of the node agent: ${rss_off} KiB with the ingress off, ${rss_on} KiB on: +$((rss_on - rss_off)) KiB"
