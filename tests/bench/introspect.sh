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

source tests/bench/lib.sh

seconds=${BENCH_SECONDS:-20}
connections=${BENCH_CONNECTIONS:-16}
cargo build --release -p latchkey --quiet

clients=$(mktemp -d); bench_dirs+=("$clients")
cat > "$clients/clients.yaml" <<'YAML'
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
start_server "$out/introspect-server.log" 1 "$server_cpu" --clients "$clients/clients.yaml"
url="https://$addr"
token=$(curl -sk -u gw:gw-secret -d grant_type=client_credentials "$url/oauth2/token" \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "bench: no token"; exit 1; }
active=$(curl -sk -u rs:rs-secret --data-urlencode "token=$token" "$url/oauth2/introspect")
case "$active" in *'"active":true'*) ;; *) echo "bench: the token is not active: $active"; exit 1;; esac

lua="$clients/introspect.lua"
cat > "$lua" <<LUA
wrk.method = "POST"
wrk.path = "/oauth2/introspect"
wrk.body = "token=$token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $(printf 'rs:rs-secret' | base64)"
LUA

$load_cpu wrk -t1 -c"$connections" -d3s -s "$lua" "$url" >/dev/null
result=$(wrk_per_cpu "$pid" "$out/introspect-wrk.txt" \
  $load_cpu wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$lua" "$url")
read -r requests cpu <<<"$result"
cat "$out/introspect-wrk.txt"
rps=$(awk '/Requests\/sec/ { print $2 }' "$out/introspect-wrk.txt")
p50=$(awk '/^ +50%/ { print $2 }' "$out/introspect-wrk.txt")
p99=$(awk '/^ +99%/ { print $2 }' "$out/introspect-wrk.txt")
awk -v n="$requests" -v rps="$rps" -v cpu="$cpu" -v p50="$p50" -v p99="$p99" -v s="$seconds" 'BEGIN {
  printf "\n== Latchkey introspection benchmark (RS256 token, TLS 1.3, keep-alive, %ss) ==\n", s
  printf "introspections             %d\n", n
  printf "introspections/s           %.0f\n", rps
  printf "latency p50 / p99          %s / %s\n", p50, p99
  printf "server CPU seconds         %.2f\n", cpu
  printf "introspections per CPU-s   %.0f\n", n / cpu
}' | tee "$out/introspect-summary.txt"
