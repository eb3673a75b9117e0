#!/usr/bin/env bash
# Issue 13: introspections per server CPU-second.
#
# Drives the release build of `latchkey standalone` (RS256 keys, TLS, keep-alive) with wrk
# POSTing RFC 7662 introspection requests for one valid access token, authenticated by a
# resource-server client (`introspection: true`), and reads the server's CPU time from /proc.
# Each request is a client authentication (one HMAC) and one signature verification (RS256
# verify is far cheaper than signing), all in memory. Prints introspections/s, p50/p99 and
# introspections per server CPU-second. Called by the lead from bench.sh or on its own.
# Environment: BENCH_SECONDS (default 20), BENCH_CONNECTIONS (16).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${BENCH_SECONDS:-20}
connections=${BENCH_CONNECTIONS:-16}
out=target/bench
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench: wrk is missing (bench.sh installs it)"; exit 1; }
cargo build --release -p latchkey --quiet

server_cpu=""; wrk_cpu=""; threads=""
if [ "$(nproc)" -ge 2 ]; then
  server_cpu="taskset -c 0"; wrk_cpu="taskset -c 1"; threads="TOKIO_WORKER_THREADS=1"
fi

state=$(mktemp -d)
cat > "$state/clients.yaml" <<'YAML'
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: gw }
spec: { clientId: gw, secretRef: { name: gw } }
---
apiVersion: v1
kind: Secret
metadata: { name: gw }
stringData: { clientSecret: gw-secret }
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: rs }
spec: { clientId: rs, secretRef: { name: rs }, introspection: true }
---
apiVersion: v1
kind: Secret
metadata: { name: rs }
stringData: { clientSecret: rs-secret }
YAML
log="$out/introspect-server.log"
env $threads $server_cpu target/release/latchkey standalone --state-dir "$state/state" \
  --clients "$state/clients.yaml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --log-format json >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT

addr=""
for _ in $(seq 1 100); do
  addr=$(grep -o '"message":"listening","listener":"token","addr":"[^"]*"' "$log" | sed 's/.*"addr":"//; s/"$//' || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "bench: server did not start"; cat "$log"; exit 1; }
url="https://$addr"
token=$(curl -sk -u gw:gw-secret -d grant_type=client_credentials "$url/oauth2/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "bench: no token"; exit 1; }
active=$(curl -sk -u rs:rs-secret --data-urlencode "token=$token" "$url/oauth2/introspect")
case "$active" in *'"active":true'*) ;; *) echo "bench: the token is not active: $active"; exit 1;; esac

lua="$state/introspect.lua"
cat > "$lua" <<LUA
wrk.method = "POST"
wrk.path = "/oauth2/introspect"
wrk.body = "token=$token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(printf 'rs:rs-secret' | base64)"
LUA

cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$pid/stat"; }

$wrk_cpu wrk -t1 -c"$connections" -d3s -s "$lua" "$url" >/dev/null
before=$(cpu_seconds)
$wrk_cpu wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$lua" "$url" | tee "$out/introspect-wrk.txt"
after=$(cpu_seconds)
if grep -q "Non-2xx" "$out/introspect-wrk.txt"; then
  echo "bench: the server answered errors under load"; exit 1
fi
requests=$(awk '/requests in/ { print $1 }' "$out/introspect-wrk.txt")
rps=$(awk '/Requests\/sec/ { print $2 }' "$out/introspect-wrk.txt")
p50=$(awk '/^ +50%/ { print $2 }' "$out/introspect-wrk.txt")
p99=$(awk '/^ +99%/ { print $2 }' "$out/introspect-wrk.txt")
awk -v n="$requests" -v rps="$rps" -v a="$after" -v b="$before" -v p50="$p50" -v p99="$p99" -v s="$seconds" 'BEGIN {
  cpu = a - b
  printf "\n== Latchkey introspection benchmark (RS256 token, TLS 1.3, keep-alive, %ss) ==\n", s
  printf "introspections             %d\n", n
  printf "introspections/s           %.0f\n", rps
  printf "latency p50 / p99          %s / %s\n", p50, p99
  printf "server CPU seconds         %.2f\n", cpu
  printf "introspections per CPU-s   %.0f\n", n / cpu
}' | tee "$out/introspect-summary.txt"
