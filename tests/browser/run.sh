#!/usr/bin/env bash
# A real browser walks the whole sign-in flow (issue 12): Debian's headless Chromium, driven by
# playwright-core, against the real binary over TLS. Makes a CA and a server certificate for
# this run, and has Chromium trust exactly that certificate (its SPKI hash), nothing else.
# walk.mjs starts the server and the loopback callback server, and stops both when it ends.
#
# Usage: tests/browser/run.sh        Needs: chromium (/usr/bin/chromium), node + npm, openssl.
# Writes target/browser/: node_modules (playwright-core, jose; pinned by package-lock.json) and
# the screenshots (login-page.png, wrong-password.png, consent-page.png).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/target/browser
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "browser: $chromium is missing (apt-get install chromium)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bin=${LATCHKEY_BIN:-}
if [ -z "$bin" ]; then
  (cd "$root" && cargo build -q -p latchkey)
  bin=$root/target/debug/latchkey
fi

# playwright-core and jose at the versions the lock file pins; playwright-core downloads no
# browser (Debian's chromium is used).
if ! cmp -s "$here/package-lock.json" "$out/package-lock.json" || [ ! -d "$out/node_modules" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$out/"
  (cd "$out" && npm ci --no-audit --no-fund --silent >&2)
fi
cp "$here/walk.mjs" "$out/walk.mjs"

# A CA and a server certificate for localhost, made for this run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=Latchkey browser test CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null
# Another certificate from the same CA, for a server Chromium must refuse: it trusts the one
# key named below, not the CA.
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/other.key" -out "$work/other.csr" 2>/dev/null
openssl x509 -req -in "$work/other.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/other.crt" 2>/dev/null
# What Chromium is told to trust: the SHA-256 of this certificate's SubjectPublicKeyInfo.
spki=$(openssl x509 -in "$work/tls.crt" -pubkey -noout | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)

# Node (the test's own requests) trusts the CA, as a deployment's client would.
NODE_EXTRA_CA_CERTS=$work/ca.crt CHROMIUM=$chromium LATCHKEY_BIN=$bin BROWSER_WORK=$work \
  BROWSER_OUT=$out BROWSER_SPKI=$spki node "$out/walk.mjs"
