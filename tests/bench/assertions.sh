#!/usr/bin/env bash
# Issue 11: tokens per server CPU-second for clients that authenticate by assertion, as a ratio
# to secret-based requests (the APK seed request) measured in the same run on the same server:
#   - private_key_jwt: Ed25519-signed assertions, each with its own jti;
#   - federated (ServiceAccount-like): RS256 tokens of an issuer with inline keys, the shape
#     and verification cost of a projected ServiceAccount token (RS256 from the API server).
#     A real ServiceAccount token also costs one metadata read per bound object per token per
#     3 s (crates/latchkey-server/src/service_account.rs): negligible for a gateway reusing its
#     token, and it needs a cluster, so it is not part of this standalone run.
# Every assertion is used once (replays are refused), so a pool is signed beforehand
# (tests/bench/assertions.py, PyJWT + cryptography in target/interop's venv).
# Environment: BENCH_SECONDS (default 20), BENCH_CONNECTIONS (16), BENCH_POOL (assertions per
# kind, default 100000), LATCHKEY_BIN (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/bench/lib.sh

seconds=${BENCH_SECONDS:-20}
connections=${BENCH_CONNECTIONS:-16}
pool=${BENCH_POOL:-100000}
out=target/bench/assertions
mkdir -p "$out"
[ -n "${LATCHKEY_BIN:-}" ] || cargo build --release -p latchkey --quiet
venv=target/interop/python-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/python/requirements.txt
fi

aud=https://idp.am.wso2.com/token
echo "bench: signing $pool assertions of each kind"
"$venv/bin/python" tests/bench/assertions.py "$out" "$pool" "$aud"

# The APK default client is not loaded with --clients: add it for the secret-based reference.
cat >>"$out/clients.yaml" <<'YAML'
---
{"apiVersion": "latchkey.dev/v1alpha1", "kind": "OAuthClient", "metadata": {"name": "apk"}, "spec": {"clientId": "45f1c5c8-a92e-11ed-afa1-0242ac120002", "secretRef": {"name": "apk"}}}
---
{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "apk"}, "stringData": {"clientSecret": "4fbd62ec-a92e-11ed-afa1-0242ac120002"}}
YAML
start_server "$out/server.log" 1 "$server_cpu" --auth-failure-rate 0 --clients "$out/clients.yaml"
url="https://$addr"
# Wait until the clients serve.
for _ in $(seq 1 100); do
  code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/oauth2/token" \
    -u 45f1c5c8-a92e-11ed-afa1-0242ac120002:4fbd62ec-a92e-11ed-afa1-0242ac120002 \
    -d grant_type=client_credentials || true)
  [ "$code" = 200 ] && break
  sleep 0.2
done

# run NAME SCRIPT [BODIES]: prints "NAME requests cpu_seconds"
run() {
  local name=$1 script=$2 bodies=${3:-} result
  result=$(BODIES=$bodies wrk_per_cpu "$pid" "$out/wrk-$name.txt" \
    $load_cpu wrk -t1 -c"$connections" -d"${seconds}s" -s "$script" "$url")
  echo "$name $result"
}

echo "bench: warming up"
$load_cpu wrk -t1 -c"$connections" -d3s -s tests/bench/token.lua "$url" >/dev/null
results=$out/results.txt
{
  run secret tests/bench/token.lua
  run private_key_jwt tests/bench/assertions.lua "$out/pkjwt.bodies"
  run federated tests/bench/assertions.lua "$out/federated.bodies"
  run secret_again tests/bench/token.lua
} | tee "$results"

awk -v s="$seconds" '{ n[$1] = $2; cpu[$1] = $3 } END {
  ref = (n["secret"] + n["secret_again"]) / (cpu["secret"] + cpu["secret_again"])
  printf "\n== Latchkey assertion benchmark (RS256 tokens, TLS, keep-alive, %ss each) ==\n", s
  printf "secret (reference)     %8.0f tokens per server CPU-s\n", ref
  for (k in n) if (k != "secret" && k != "secret_again") {
    per = n[k] / cpu[k]
    printf "%-22s %8.0f tokens per server CPU-s   ratio %.3f  (goal >= 0.8)\n", k, per, per / ref
  }
}' "$results" | tee "$out/summary.txt"
