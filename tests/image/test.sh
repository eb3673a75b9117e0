#!/usr/bin/env bash
# The image archive, taken apart as a runtime would: its layers unpacked into a root
# filesystem, the binary run from there (chroot) as uid 65532, and APK's seed request answered.
# Needs root (chroot), curl and python3. Usage: tests/image/test.sh ARCHIVE.tar
set -euo pipefail
archive=${1:?image archive}
work=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name"
    failed=$((failed + 1))
  fi
}

mkdir -p "$work/archive" "$work/rootfs"
tar -xf "$archive" -C "$work/archive"
# The OCI index -> manifest -> config and layers; the layers unpacked in order.
python3 - "$work/archive" >"$work/facts" <<'PY'
import json, sys
a = sys.argv[1]
blob = lambda d: f"{a}/blobs/{d['digest'].replace(':', '/')}"
[entry] = json.load(open(f"{a}/index.json"))["manifests"]
manifest = json.load(open(blob(entry)))
config = json.load(open(blob(manifest["config"])))
ann = manifest.get("annotations", {})
print("user", config["config"].get("User", ""))
print("entrypoint", " ".join(config["config"].get("Entrypoint") or []))
print("os", config.get("os", ""), config.get("architecture", ""))
for key in ("version", "source", "licenses", "revision"):
    print("annotation", key, ann.get(f"org.opencontainers.image.{key}", ""))
print("refname", entry.get("annotations", {}).get("org.opencontainers.image.ref.name", ""))
for layer in manifest["layers"]:
    print("layer", blob(layer))
docker = json.load(open(f"{a}/manifest.json"))
print("repotag", docker[0]["RepoTags"][0])
PY
while read -r kind path; do
  [ "$kind" = layer ] && tar -xzf "$path" -C "$work/rootfs"
done <"$work/facts"
fact() { sed -n "s/^$1 //p" "$work/facts"; }

check "runs as 65532" test "$(fact user)" = "65532:65532"
check "entrypoint is the binary" test "$(fact entrypoint)" = "/usr/local/bin/latchkey"
check "linux/amd64" test "$(fact os)" = "linux amd64"
check "annotations: version, source, licence" test -n "$(fact 'annotation version')" -a -n "$(fact 'annotation source')" -a "$(fact 'annotation licenses')" = "Apache-2.0"
check "named for loaders" test -n "$(fact refname)" -a -n "$(fact repotag)"
check "no shell" test ! -e "$work/rootfs/bin/sh" -a ! -e "$work/rootfs/usr/bin/sh" -a ! -e "$work/rootfs/bin/bash"

# Run it from the unpacked root filesystem as 65532; only its state directory is written.
find "$work/rootfs" -path "$work/rootfs/tmp" -prune -o -print | sort >"$work/before"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
admin=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot --userspec=65532:65532 "$work/rootfs" /usr/local/bin/latchkey standalone \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --state-dir /tmp/state \
  >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [ -s "$work/rootfs/tmp/state/tls.crt" ] && curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
  sleep 0.1
done
seed() {
  curl -sS --cacert "$work/rootfs/tmp/state/tls.crt" "https://localhost:$port/oauth2/token" \
    --header 'Authorization: Basic NDVmMWM1YzgtYTkyZS0xMWVkLWFmYTEtMDI0MmFjMTIwMDAyOjRmYmQ2MmVjLWE5MmUtMTFlZC1hZmExLTAyNDJhYzEyMDAwMg==' \
    --header 'Content-Type: application/x-www-form-urlencoded' \
    --data-urlencode 'grant_type=client_credentials' | grep -q '"token_type":"Bearer"'
}
check "the seed request succeeds from the image's root filesystem as 65532" seed
check "the process runs as uid 65532" test "$(awk '/^Uid:/ { print $2 }' /proc/$pid/status 2>/dev/null)" = 65532
find "$work/rootfs" -path "$work/rootfs/tmp" -prune -o -print | sort >"$work/after"
check "nothing written outside the state directory" cmp -s "$work/before" "$work/after"
[ "$failed" -eq 0 ] || tail -20 "$work/server.log"
echo "image: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
