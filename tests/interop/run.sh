#!/usr/bin/env bash
# The interop suite: widely used OAuth client and JWT/JWKS libraries of Python, Go, Node and
# Java against the real binary over real TLS (a CA made here; no library is told to skip
# verification). Starts one standalone server per algorithm, runs each language's program,
# and prints a library x case table and `N passed, N failed`.
#
# Usage: tests/interop/run.sh [python node go java]   (default: all)
# Needs: python3 (venv), node + npm, go, java 17 + mvn, openssl, curl. Downloads are cached
# under target/interop (venv, node_modules, Go and Maven caches).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python node go java)
cache=$root/target/interop
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$cache"

bin=${LATCHKEY_BIN:-}
if [ -z "$bin" ]; then
  (cd "$root" && cargo build -q -p latchkey)
  bin=$root/target/debug/latchkey
fi

# A CA and a server certificate for localhost, made for this run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=Latchkey interop CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null

# Clients with awkward ids and secrets: a URL-shaped id, ':' and spaces; secrets with every
# character form-encoding must take care of.
cat >"$work/clients.yaml" <<'YAML'
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: url-shaped }
spec:
  clientId: "https://app.example.com/client.json"
  secretRef: { name: creds, key: url }
  scopes: ["orders:read"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: spaced }
spec:
  clientId: "my client: #1"
  secretRef: { name: creds, key: spaced }
  scopes: ["orders:read"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: plain }
spec:
  clientId: "plain-client.01"
  secretRef: { name: creds, key: plain }
  scopes: ["orders:read"]
  introspection: true
---
apiVersion: v1
kind: Secret
metadata: { name: creds }
stringData:
  url: "p@ss:w%rd+/ =&?"
  spaced: "s3cr3t with spaces:and+plus"
  plain: "Plain-Secret_0123456789"
YAML
# The first two are awkward; the last has only characters that need no encoding, for
# libraries that send HTTP Basic without RFC 6749 §2.3.1's form-encoding.
export INTEROP_CLIENTS='[{"id":"https://app.example.com/client.json","secret":"p@ss:w%rd+/ =&?"},{"id":"my client: #1","secret":"s3cr3t with spaces:and+plus"},{"id":"plain-client.01","secret":"Plain-Secret_0123456789"}]'

# Issue 11: a client without a secret that authenticates with private_key_jwt; its RSA public
# key is given inline (a JWK built from the key openssl makes here).
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/pkjwt.key" 2>/dev/null
pkjwt_n=$(openssl rsa -in "$work/pkjwt.key" -noout -modulus | cut -d= -f2 | python3 -c \
  'import sys,base64; print(base64.urlsafe_b64encode(bytes.fromhex(sys.stdin.read().strip())).rstrip(b"=").decode())')
cat >>"$work/clients.yaml" <<YAML
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: pkjwt }
spec:
  clientId: pkjwt-client
  scopes: ["orders:read"]
  jwks: { keys: [ { kty: RSA, n: "$pkjwt_n", e: AQAB, kid: pkjwt-1, use: sig, alg: RS256 } ] }
YAML
export INTEROP_PKJWT_ID=pkjwt-client INTEROP_PKJWT_KEY=$work/pkjwt.key

# Issue 12: clients that sign people in, for OpenID Connect relying-party libraries: one
# confidential (client_secret_basic, with a consent page) and one public (none, first-party).
# The users are APK's sample ones (admin/admin in org1), served without --users. Nothing
# listens at the redirect URI: the libraries' scripts play the browser and read the redirect.
cat >>"$work/clients.yaml" <<'YAML'
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: oidc-web }
spec:
  clientId: oidc-web
  secretRef: { name: creds, key: plain }
  tokenEndpointAuthMethod: client_secret_basic
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:read"]
  redirectUris: ["http://127.0.0.1:9/callback"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: oidc-spa }
spec:
  clientId: oidc-spa
  tokenEndpointAuthMethod: none
  grantTypes: [authorization_code, refresh_token]
  scopes: ["orders:read"]
  redirectUris: ["http://127.0.0.1:9/callback"]
  firstParty: true
YAML
export INTEROP_OIDC='{"redirect_uri":"http://127.0.0.1:9/callback","clients":{"basic":{"id":"oidc-web","secret":"Plain-Secret_0123456789"},"none":{"id":"oidc-spa"}}}'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One server per algorithm; thumbprint kids, a 1 s JWKS cache period so a rotation is quick.
key_flags=(--kid-strategy thumbprint --jwks-max-age 1s --rotation-period 1h --clock-skew 1s)
# Issue 13: open registration, so libraries with a DCR client can register (orders:* scopes).
reg_flags=(--registration open --registration-allowed-scope 'orders:*' --registration-rate 1000)
issuers=()
for alg in RS256 ES256 EdDSA; do
  port=$(free_port)
  admin=$(free_port)
  state=$work/state-$alg
  mkdir -p "$state"
  "$bin" standalone --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --state-dir "$state" \
    --clients "$work/clients.yaml" --issuer "https://localhost:$port/token" \
    --public-url "https://localhost:$port" --key-alg "$alg" "${key_flags[@]}" "${reg_flags[@]}" \
    --log-level warn >"$work/server-$alg.log" 2>&1 &
  pids+=($!)
  issuers+=("$alg=https://localhost:$port/token")
  echo "$state" >"$work/state-dir-$alg"
done
for i in "${!issuers[@]}"; do
  url=${issuers[$i]#*=}
  base=${url%/token}
  for _ in $(seq 100); do
    curl -sf --cacert "$work/ca.crt" "$base/oauth2/jwks" >/dev/null && break
    sleep 0.1
  done
done
export INTEROP_CA=$work/ca.crt
export INTEROP_ISSUERS=$(IFS=,; echo "${issuers[*]}")

# Rotation of the ES256 server's key: `latchkey keys rotate`, then wait until the new key
# signs (it is published two cache periods first). Each language calls it mid-run.
cat >"$work/rotate.sh" <<ROT
#!/usr/bin/env bash
set -euo pipefail
"$bin" keys rotate --state-dir "\$(cat "$work/state-dir-ES256")" --key-alg ES256 ${key_flags[*]} >/dev/null
exec python3 "$here/wait_rotation.py"
ROT
chmod +x "$work/rotate.sh"
export INTEROP_ROTATE=$work/rotate.sh

results=$work/results
: >"$results"
run_lang() {
  local lang=$1
  echo "== $lang" >&2
  if ! "$here/$lang/run.sh" "$cache" >"$work/$lang.out" 2>"$work/$lang.err"; then
    echo "RESULT $lang-runner run FAIL exited non-zero" >>"$results"
  fi
  grep '^RESULT ' "$work/$lang.out" >>"$results" || true
  if ! grep -q '^RESULT ' "$work/$lang.out"; then
    echo "RESULT $lang-runner run FAIL no results" >>"$results"
    tail -20 "$work/$lang.err" >&2
  fi
}
for lang in "${langs[@]}"; do run_lang "$lang"; done

# The table: one row per library, one column per case.
python3 - "$results" <<'PY'
import sys
rows, cases, fails = {}, [], []
for line in open(sys.argv[1]):
    _, lib, case, verdict, *detail = line.rstrip("\n").split(" ", 4)
    rows.setdefault(lib, {})[case] = verdict
    if case not in cases:
        cases.append(case)
    if verdict not in ("PASS", "SKIP"):
        fails.append(f"{lib} {case}: {' '.join(detail)}")
width = max([len(l) for l in rows] + [7])
print("library".ljust(width), *cases, sep=" | ")
for lib, r in rows.items():
    print(lib.ljust(width), *[r.get(c, "-").ljust(len(c)) for c in cases], sep=" | ")
for f in fails:
    print("FAIL", f)
passed = sum(v == "PASS" for r in rows.values() for v in r.values())
skipped = sum(v == "SKIP" for r in rows.values() for v in r.values())
failed = sum(v not in ("PASS", "SKIP") for r in rows.values() for v in r.values())
for line in open(sys.argv[1]):
    _, lib, case, verdict, *detail = line.rstrip("\n").split(" ", 4)
    if verdict == "SKIP":
        print("SKIP", f"{lib} {case}:", *detail)
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or not passed else 0)
PY
