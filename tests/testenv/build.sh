#!/usr/bin/env bash
# Build the test control-plane binaries (etcd, kube-apiserver,
# kube-controller-manager, kubectl, helm) from source via the Go module proxy
# into target/testenv/bin/.
#
# Each binary is built only when it is missing, so only a fresh machine pays
# for the compile. The Go module and build caches are the defaults
# (~/go/pkg/mod, ~/.cache/go-build) and are reused between runs.
#
# Pinned versions live in the go.mod/go.sum files of the three Go modules
# next to this script: kube/, etcd/, helm/.
#
# Usage: tests/testenv/build.sh [--force]   (--force rebuilds everything)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$ROOT/target/testenv/bin"

log() { printf '[testenv/build] %s\n' "$*" >&2; }
die() { printf '[testenv/build] ERROR: %s\n' "$*" >&2; exit 1; }

FORCE=0
case "${1:-}" in
  "") ;;
  --force) FORCE=1 ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) die "unknown argument: $1" ;;
esac

command -v go >/dev/null 2>&1 || die "go is not on PATH (need Go >= 1.26)"

# Never let the go command try to fetch another toolchain: every module here
# declares 'go 1.26.0', which the installed toolchain must satisfy.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# go.sum files are committed; refuse to silently rewrite them.
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED="${CGO_ENABLED:-0}"

goversion="$(go env GOVERSION)"
case "$goversion" in
  go1.2[6-9]*|go1.[3-9][0-9]*) ;;
  *) die "Go >= 1.26 is required, found $goversion" ;;
esac

mkdir -p "$BIN"

# module_version DIR MODULE -> version of MODULE selected in DIR's go.mod
module_version() {
  (cd "$HERE/$1" && go list -m -f '{{.Version}}' "$2")
}

# build NAME MODULE_DIR PACKAGE [extra ldflags...]
build() {
  local name="$1" dir="$2" pkg="$3"
  shift 3
  local out="$BIN/$name"
  if [[ $FORCE -eq 0 && -x "$out" ]]; then
    log "$name: present ($out), skipping"
    return 0
  fi
  local ldflags="-s -w"
  local x
  for x in "$@"; do ldflags+=" -X $x"; done
  log "$name: building $pkg (module tests/testenv/$dir) ..."
  local start=$SECONDS
  # Build to a temporary name and rename, so an interrupted build never
  # leaves a half-written binary that a later run would take as present.
  rm -f "$out.tmp"
  if ! (cd "$HERE/$dir" && go build -trimpath -ldflags="$ldflags" -o "$out.tmp" "$pkg"); then
    rm -f "$out.tmp"
    die "$name: go build $pkg failed"
  fi
  mv -f "$out.tmp" "$out"
  log "$name: built in $((SECONDS - start))s -> $out"
}

need_kube=0
for b in kube-apiserver kube-controller-manager kubectl; do
  [[ $FORCE -eq 1 || ! -x "$BIN/$b" ]] && need_kube=1
done
if [[ $need_kube -eq 1 ]]; then
  kver="$(module_version kube k8s.io/kubernetes)"
  kmajor="${kver#v}"; kmajor="${kmajor%%.*}"
  kminor="${kver#v*.}"; kminor="${kminor%%.*}"
  kube_x=()
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_x+=("$p.gitVersion=$kver" "$p.gitMajor=$kmajor" "$p.gitMinor=$kminor" "$p.gitTreeState=clean")
  done
  build kube-apiserver          kube k8s.io/kubernetes/cmd/kube-apiserver          "${kube_x[@]}"
  build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "${kube_x[@]}"
  build kubectl                 kube k8s.io/kubernetes/cmd/kubectl                 "${kube_x[@]}"
else
  log "kube-apiserver, kube-controller-manager, kubectl: present in $BIN, skipping"
fi

build etcd etcd go.etcd.io/etcd/server/v3

if [[ $FORCE -eq 1 || ! -x "$BIN/helm" ]]; then
  hver="$(module_version helm helm.sh/helm/v3)"
  # Helm's own Makefile derives the default Kubernetes version it assumes
  # (for .Capabilities and lint) from the client-go it is built with.
  cgo="$(module_version helm k8s.io/client-go)"     # v0.MINOR.PATCH
  cminor="${cgo#v0.}"; cminor="${cminor%%.*}"
  build helm helm helm.sh/helm/v3/cmd/helm \
    "helm.sh/helm/v3/internal/version.version=$hver" \
    "helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" \
    "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$cminor" \
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" \
    "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$cminor"
else
  log "helm: present ($BIN/helm), skipping"
fi

log "all binaries present in $BIN"
