#!/usr/bin/env bash
# `make image`: an OCI image archive of the release binary, with no container engine.
# go-containerregistry's crane (built from the Go module proxy into target/image/bin) assembles
# it: one layer holding the binary, the C libraries it links (glibc, libgcc_s), CA roots and
# passwd/group entries for 65532, on an empty base; user 65532, no shell, labels and OCI
# annotations. The archive is an OCI image layout with docker's manifest.json beside it, as
# `docker save` writes it: `docker load`, `podman load`, `kind load image-archive` and
# `ctr import` all take it.
#
# Usage: image/build.sh BINARY OUTPUT.tar   (IMAGE=repository:tag, default from Cargo.toml)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?binary}
out=${2:?output archive}
crane=${CRANE:-$root/target/image/bin/crane}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
image=${IMAGE:-ghcr.io/latchkey/latchkey:$version}
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d)
reg_pid=
cleanup() {
  [ -z "$reg_pid" ] || { kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

# The root filesystem: the binary and exactly the shared objects it loads.
fs=$work/rootfs
install -D -m 0755 "$bin" "$fs/usr/local/bin/latchkey"
ldd "$bin" | awk '$2 == "=>" { print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
  [ -n "$lib" ] && [ -e "$lib" ] || continue
  install -D -m 0755 "$(readlink -f "$lib")" "$fs$lib"
done
mkdir -p "$fs/etc" "$fs/tmp" "$fs/var/lib/latchkey"
chmod 1777 "$fs/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$fs/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$fs/etc/ssl/certs/ca-certificates.crt"
fi
chown -R 0:0 "$fs"
chown 65532:65532 "$fs/var/lib/latchkey"
# Reproducible: sorted names, numeric owners, one fixed time.
tar --sort=name --numeric-owner --mtime=@0 -C "$fs" -cf "$work/layer.tar" .

# crane writes through a registry: an in-memory one on loopback, gone when this script ends.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break
  sleep 0.1
done
staging=127.0.0.1:$port/latchkey:$version
"$crane" append --oci-empty-base --platform linux/amd64 -f "$work/layer.tar" -t "$staging" >/dev/null
labels=(
  "org.opencontainers.image.title=latchkey"
  "org.opencontainers.image.description=Kubernetes-native OAuth 2.0 token issuer"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.source=https://latchkey.dev/latchkey"
  "org.opencontainers.image.licenses=Apache-2.0"
)
args=()
for l in "${labels[@]}"; do args+=(--label "$l" --annotation "$l"); done
mkdir -p "$(dirname "$out")"
final=127.0.0.1:$port/latchkey:final
"$crane" mutate "$staging" --set-platform linux/amd64 --user 65532:65532 \
  --entrypoint /usr/local/bin/latchkey --cmd run --workdir / \
  --exposed-ports 9095/tcp --exposed-ports 9096/tcp \
  --env LATCHKEY_STATE_DIR=/var/lib/latchkey \
  "${args[@]}" -t "$final" >/dev/null
# An OCI image layout (the manifest keeps the annotations) ...
"$crane" pull --format oci "$final" "$work/oci" >/dev/null
# ... named for loaders (`org.opencontainers.image.ref.name`, containerd's image name), with
# the `manifest.json` index docker's loader reads, as `docker save` writes them since v25.
python3 - "$work/oci" "$image" <<'PY'
import json, sys
oci, image = sys.argv[1], sys.argv[2]
index = json.load(open(f"{oci}/index.json"))
[entry] = index["manifests"]
tag = image.rsplit(":", 1)[1]
entry.setdefault("annotations", {}).update(
    {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": image})
json.dump(index, open(f"{oci}/index.json", "w"))
manifest = json.load(open(f"{oci}/blobs/{entry['digest'].replace(':', '/')}"))
blob = lambda d: "blobs/" + d["digest"].replace(":", "/")
json.dump([{"Config": blob(manifest["config"]), "RepoTags": [image],
            "Layers": [blob(l) for l in manifest["layers"]]}], open(f"{oci}/manifest.json", "w"))
PY
tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$work/oci" -cf "$out" .
echo "image: $out ($image)"
