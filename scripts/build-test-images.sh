#!/usr/bin/env bash
# Builds the container images capstan's node agent and its tests use, from Debian packages and
# without any registry: docker-archive tarballs that `capstan images import` (or the agent's
# air-gap folder) loads into containerd.
#
#   capstan.test/busybox:1.0     busybox-static: sh, httpd, nc, wget, nslookup, ...
#   capstan.test/httpd:1.0       busybox httpd serving /www on port 80 (hostname in index.html)
#   capstan.test/extra:1.0       busybox again under another name, kept out of the air-gap
#                                folder (tests import it with `capstan images import`)
#   docker.io/library/nginx:latest  Debian's nginx (binary, the libraries ldd lists, config and
#                                html, from `apt-get download nginx nginx-common`), serving :80
#
# Usage: scripts/build-test-images.sh [OUT_DIR]   (default /var/tmp/capstan-images)
# Idempotent and fast when nothing changed: a stamp of the inputs skips the rebuild.
set -euo pipefail

out="${1:-/var/tmp/capstan-images}"
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || busybox=/usr/bin/busybox
if ! file -L "$busybox" 2>/dev/null | grep -q "statically linked" && ! ldd "$busybox" 2>&1 | grep -q "not a dynamic"; then
  echo "build-test-images: $busybox is not static; install busybox-static" >&2
  exit 1
fi

# Bump when the image definitions below change.
recipe_version=7
stamp="$out/.stamp"
want="$recipe_version $(sha256sum "$busybox" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && [ -f "$out/busybox.tar" ] && [ -f "$out/httpd.tar" ] && [ -f "$out/extra.tar" ] \
   && [ -f "$out/nginx.tar" ]; then
  echo "test images up to date in $out"
  exit 0
fi
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A root file system with busybox and a symlink per applet.
rootfs() {
  local dir="$1"
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/var/log"
  chmod 1777 "$dir/tmp"
  cp "$busybox" "$dir/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  mkdir -p "$dir/usr"
  ln -sf ../bin "$dir/usr/bin"
  ln -sf bin "$dir/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
}

# image NAME TAG ROOTFS CMD_JSON [EXPOSED_PORTS_JSON]: writes $out/NAME.tar
image() {
  local name="$1" tag="$2" dir="$3" cmd="$4" ports="${5:-{\}}"
  local img="$work/img-$name"
  mkdir -p "$img"
  tar --sort=name --mtime='2024-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
      -C "$dir" -cf "$img/layer.tar" .
  local diff
  diff="sha256:$(sha256sum "$img/layer.tar" | cut -d' ' -f1)"
  cat >"$img/config.json" <<EOF
{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$cmd,"WorkingDir":"/","ExposedPorts":$ports,
   "Labels":{"org.opencontainers.image.title":"$name","io.capstan.image":"$tag"}},
 "rootfs":{"type":"layers","diff_ids":["$diff"]},
 "history":[{"created":"2024-01-01T00:00:00Z","created_by":"capstan scripts/build-test-images.sh"}]}
EOF
  local cfg
  cfg="$(sha256sum "$img/config.json" | cut -d' ' -f1)"
  mv "$img/config.json" "$img/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]\n' "$cfg" "$tag" >"$img/manifest.json"
  tar --sort=name --mtime='2024-01-01 00:00Z' --owner=0 --group=0 --numeric-owner \
      -C "$img" -cf "$out/$name.tar.tmp" manifest.json "$cfg.json" layer.tar
  mv "$out/$name.tar.tmp" "$out/$name.tar"
  echo "built $tag -> $out/$name.tar"
}

rootfs "$work/busybox"
image busybox capstan.test/busybox:1.0 "$work/busybox" '["sh"]'
image extra capstan.test/extra:1.0 "$work/busybox" '["sleep","3600"]'

rootfs "$work/httpd"
mkdir -p "$work/httpd/www"
# The page names the pod, so a test can tell which replica answered.
cat >"$work/httpd/bin/serve" <<'EOF'
#!/bin/sh
echo "hello from $(hostname)" >/www/index.html
# httpd as PID 1 would ignore TERM; this shell stops it at once instead.
httpd -f -p "${PORT:-80}" -h /www &
trap 'kill $! 2>/dev/null; exit 0' TERM INT
wait
EOF
chmod 755 "$work/httpd/bin/serve"
image httpd capstan.test/httpd:1.0 "$work/httpd" '["/bin/serve"]' '{"80/tcp":{}}'

# nginx from Debian's packages, without installing them on the host.
nginx_root="$work/nginx"
mkdir -p "$nginx_root" "$work/debs"
chmod 777 "$work/debs"
download() { (cd "$work/debs" && apt-get download -q nginx nginx-common >/dev/null 2>&1); }
# Without package lists (a machine where everything was already installed), fetch them once.
download || { apt-get update -qq >/dev/null 2>&1; download; } || {
  echo "build-test-images: apt-get download nginx nginx-common failed" >&2
  exit 1
}
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$nginx_root"; done
for lib in $(ldd "$nginx_root/usr/sbin/nginx" | grep -o '/[^ ]*'); do
  mkdir -p "$nginx_root$(dirname "$lib")"
  cp -L "$lib" "$nginx_root$lib"
done
mkdir -p "$nginx_root"/{tmp,run,var/log/nginx,var/lib/nginx,var/cache/nginx,etc/nginx/conf.d}
chmod 1777 "$nginx_root/tmp"
printf 'root:x:0:0:root:/root:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$nginx_root/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n' >"$nginx_root/etc/group"
cat >"$nginx_root/etc/nginx/nginx.conf" <<'EOF'
user www-data;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html;
    }
}
EOF
image nginx docker.io/library/nginx:latest "$nginx_root" '["/usr/sbin/nginx","-g","daemon off;"]' '{"80/tcp":{}}'

echo "$want" >"$stamp"
