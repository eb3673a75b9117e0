#!/usr/bin/env bash
# Go: golang.org/x/oauth2/clientcredentials and github.com/coreos/go-oidc's RemoteKeySet,
# at the versions in go.mod (from the Go module proxy; the build is cached under target/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1/go
mkdir -p "$out"
(cd "$here" && GOFLAGS=-mod=mod go build -o "$out/interop" .) >&2
exec "$out/interop"
