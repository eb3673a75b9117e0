#!/usr/bin/env bash
# The hot path against its physical limits, in one run, on one pinned core.
#
# Drives release builds of `latchkey standalone` over TLS 1.3 (HTTP/1.1 keep-alive, the access
# log on at its default level) and reads the server's CPU time from /proc, so every figure is
# per server CPU-second. With two or more CPUs the server (one worker thread) runs on CPU 0 and
# the load generators on CPU 1; raw signature rates are measured on CPU 0 too. Prints:
#   - the stack's floor: GET of the metadata (no signing);
#   - raw Ed25519, ES256 and RS256 signatures per CPU-second (aws-lc-rs), and tokens per
#     CPU-second with each algorithm;
#   - ratio A = EdDSA tokens per CPU-s / (1 / (GET CPU time + Ed25519 signature CPU time)),
#     goal >= 0.8: what a token costs beyond serving a request and making its signature;
#   - ratio B = RS256 tokens per CPU-s / raw RS256 signatures per CPU-s, goal >= 0.9;
#   - the 2-core scaling factor: EdDSA tokens per server CPU-second with two workers on two
#     cores / with one worker on one (1.0 = nothing shared slows the second core);
#   - TLS handshakes per server CPU-second, full and resumed (a new connection per request),
#     against rustls's own server-side handshake cost on the same core;
#   - latency p50/p99 at half of the measured saturation rate (open loop, fixed rate) for RS256
#     and EdDSA tokens.
# The VM's speed drifts by several percent over minutes: each ratio's two sides are measured
# back to back on the same core (raw signatures right before and right after the token loads
# they are compared with).
# Environment: BENCH_SECONDS (per load, default 10), BENCH_CONNECTIONS (16).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-16}
out=target/bench
mkdir -p "$out"
: >"$out/figures.txt"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release -p latchkey --quiet
bench_bin() { # the executable of a cargo bench target
  cargo bench -p "$1" --bench "$2" --no-run --quiet 2>/dev/null
  cargo bench -p "$1" --bench "$2" --no-run --message-format=json 2>/dev/null \
    | sed -n "s/.*\"executable\":\"\([^\"]*$2[^\"]*\)\".*/\1/p" | tail -1
}
sign_rate_bin=$(bench_bin latchkey-core sign_rate)
loadgen_bin=$(bench_bin latchkey-server loadgen)
[ -x "$sign_rate_bin" ] && [ -x "$loadgen_bin" ] || { echo "bench: benchmark binaries not found"; exit 1; }

server_cpu=""; load_cpu=""; two_cpus=""
if [ "$(nproc)" -ge 2 ]; then
  server_cpu="taskset -c 0"; load_cpu="taskset -c 1"; two_cpus="taskset -c 0,1"
fi
mode="server: 1 worker on CPU 0, load on CPU 1"
[ -n "$server_cpu" ] || mode="one CPU: server and load share it"

pids=(); dirs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

# start_server ALG WORKERS PIN: starts latchkey, sets $pid $addr $ca
start_server() {
  local alg=$1 workers=$2 pin=$3 state log
  state=$(mktemp -d); dirs+=("$state")
  log="$out/server-$alg-$workers.log"
  env TOKIO_WORKER_THREADS="$workers" $pin target/release/latchkey standalone --state-dir "$state" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json --key-alg "$alg" \
    >"$log" 2>&1 &
  pid=$!; pids+=("$pid")
  addr=""
  for _ in $(seq 1 200); do
    addr=$(grep -o '"message":"listening","listener":"token","addr":"[^"]*"' "$log" | sed 's/.*"addr":"//; s/"$//' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "bench: server did not start"; cat "$log"; exit 1; }
  ca="$state/tls.crt"
}
stop_server() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$pid/stat"; }
figure() { echo "$1=$2" | tee -a "$out/figures.txt"; }

# load NAME KIND PIN: wrk at saturation for $seconds; figures NAME_per_cpu_s and NAME_rps
load() {
  local name=$1 kind=$2 pin=$3 script="" path="" before after n
  if [ "$kind" = token ]; then script="-s tests/bench/token.lua"; else path="/.well-known/oauth-authorization-server/token"; fi
  $pin wrk -t1 -c"$connections" -d2s $script "https://$addr$path" >/dev/null
  before=$(cpu_seconds)
  $pin wrk -t1 -c"$connections" -d"${seconds}s" --latency $script "https://$addr$path" >"$out/wrk-$name.txt"
  after=$(cpu_seconds)
  if grep -q "Non-2xx" "$out/wrk-$name.txt"; then echo "bench: errors under load ($name)"; cat "$out/wrk-$name.txt"; exit 1; fi
  n=$(awk '/requests in/ { print $1 }' "$out/wrk-$name.txt")
  figure "${name}_rps" "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$out/wrk-$name.txt")"
  figure "${name}_per_cpu_s" "$(awk -v n="$n" -v a="$after" -v b="$before" 'BEGIN { printf "%.0f", n / (a - b) }')"
}
get() { sed -n "s/^$1=//p" "$out/figures.txt" | tail -1; }

# Raw signature rates drift with the VM's speed over minutes, so each ratio's two sides are
# measured back to back: signatures, RS256 tokens, signatures, GET + EdDSA + ES256 tokens,
# signatures. Ratio B uses the mean of the first two, ratio A the mean of the last two.
sign_rates() { # SUFFIX: one run of the signature benchmark on the server's core
  SIGN_RATE_SECONDS=${SIGN_RATE_SECONDS:-3} $server_cpu "$sign_rate_bin" | sed "s/=/$1=/" | tee -a "$out/figures.txt"
}
echo "bench: tokens, the GET floor and raw signatures, one worker ($mode), ${seconds}s per load"
sign_rates _s1
start_server RS256 1 "$server_cpu"
load token_RS256 token "$load_cpu"
stop_server
sign_rates _s2
start_server EdDSA 1 "$server_cpu"
load get get "$load_cpu"
load token_EdDSA token "$load_cpu"
stop_server
start_server ES256 1 "$server_cpu"
load token_ES256 token "$load_cpu"
stop_server
sign_rates _s3

# Ratio B again, as the median of three short sandwiches (raw RS256, tokens, raw RS256) on one
# server: on a VM whose speed drifts, a ratio's sides are best measured seconds apart.
echo "bench: ratio B three times back to back, median"
start_server RS256 1 "$server_cpu"
raw_rs256() { SIGN_RATE_ONLY=rs256 SIGN_RATE_SECONDS=2 $server_cpu "$sign_rate_bin" | sed -n 's/^rs256_raw_signs_per_cpu_second=//p'; }
for i in 1 2 3; do
  r1=$(raw_rs256)
  load "token_RS256_b$i" token "$load_cpu"
  r2=$(raw_rs256)
  figure "ratio_b_$i" "$(awk -v t="$(get "token_RS256_b${i}_per_cpu_s")" -v a="$r1" -v b="$r2" 'BEGIN { printf "%.3f", t / ((a + b) / 2) }')"
done
stop_server
figure ratio_b_median "$(for i in 1 2 3; do get "ratio_b_$i"; done | sort -n | sed -n 2p)"

echo "bench: two workers on two cores (load shares them)"
start_server EdDSA 2 "$two_cpus"
load token_EdDSA_2core token "$two_cpus"
stop_server

echo "bench: TLS handshakes, a new connection per request"
$server_cpu "$loadgen_bin" rustls 3 | tee -a "$out/figures.txt"
start_server EdDSA 1 "$server_cpu"
for kind in full resumed; do
  before=$(cpu_seconds)
  $load_cpu "$loadgen_bin" handshakes "$addr" "$seconds" 8 "$kind" "$ca" >"$out/handshakes-$kind.txt"
  after=$(cpu_seconds)
  cat "$out/handshakes-$kind.txt"
  n=$(sed -n 's/^connections=//p' "$out/handshakes-$kind.txt")
  figure "handshakes_${kind}_resumed" "$(sed -n 's/^resumed=//p' "$out/handshakes-$kind.txt")"
  figure "handshakes_${kind}_per_cpu_s" "$(awk -v n="$n" -v a="$after" -v b="$before" 'BEGIN { printf "%.0f", n / (a - b) }')"
done
stop_server

echo "bench: latency at half of saturation (open loop)"
for alg in RS256 EdDSA; do
  start_server "$alg" 1 "$server_cpu"
  half=$(awk -v r="$(get "token_${alg}_rps")" 'BEGIN { printf "%.0f", r / 2 }')
  $load_cpu "$loadgen_bin" rate "$addr" "$half" "$seconds" "$connections" token "$ca" >"$out/rate-$alg.txt"
  figure "half_${alg}_rps" "$(sed -n 's/^achieved_rps=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_errors" "$(sed -n 's/^errors=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_p50_ms" "$(sed -n 's/^p50_ms=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_p99_ms" "$(sed -n 's/^p99_ms=//p' "$out/rate-$alg.txt")"
  stop_server
done

f="$out/figures.txt"
awk -F= -v s="$seconds" -v mode="$mode" '
  { v[$1] = $2 }
  function mean(k, x, y) { return (v[k x] + v[k y]) / 2 }
  END {
    ed = mean("ed25519_raw_signs_per_cpu_second", "_s2", "_s3")
    es = mean("es256_raw_signs_per_cpu_second", "_s2", "_s3")
    rs = mean("rs256_raw_signs_per_cpu_second", "_s1", "_s2")
    get = v["get_per_cpu_s"]
    printf "\n== Latchkey hot path (TLS 1.3, HTTP/1.1 keep-alive, access log on, %ss per load; %s) ==\n", s, mode
    printf "%-44s %10s %10s\n", "", "per CPU-s", "per s"
    printf "%-44s %10.0f %10.0f\n", "GET metadata (the stack floor)", get, v["get_rps"]
    printf "%-44s %10.0f\n", "raw Ed25519 signatures", ed
    printf "%-44s %10.0f\n", "raw ES256 signatures", es
    printf "%-44s %10.0f\n", "raw RS256 signatures", rs
    printf "%-44s %10.0f %10.0f\n", "EdDSA tokens", v["token_EdDSA_per_cpu_s"], v["token_EdDSA_rps"]
    printf "%-44s %10.0f %10.0f\n", "ES256 tokens", v["token_ES256_per_cpu_s"], v["token_ES256_rps"]
    printf "%-44s %10.0f %10.0f\n", "RS256 tokens", v["token_RS256_per_cpu_s"], v["token_RS256_rps"]
    ideal = 1 / (1 / get + 1 / ed)
    printf "ratio A  EdDSA tokens / (1/(GET + Ed25519))  %.3f  (goal >= 0.8; ideal %.0f/CPU-s)\n", v["token_EdDSA_per_cpu_s"] / ideal, ideal
    printf "ratio B  RS256 tokens / raw RS256             %.3f  (goal >= 0.9)\n", v["token_RS256_per_cpu_s"] / rs
    printf "ratio B, median of 3 back-to-back samples     %.3f  (%s, %s, %s)\n", v["ratio_b_median"], v["ratio_b_1"], v["ratio_b_2"], v["ratio_b_3"]
    printf "2-core scaling (EdDSA, per CPU-s 2 / 1)       %.3f  (%.0f tokens/s on 2 workers, load sharing the cores)\n", v["token_EdDSA_2core_per_cpu_s"] / v["token_EdDSA_per_cpu_s"], v["token_EdDSA_2core_rps"]
    printf "TLS full handshakes per CPU-s                 %.0f  (rustls alone: %.0f, ratio %.3f)\n", v["handshakes_full_per_cpu_s"], v["rustls_full_handshakes_per_cpu_second"], v["handshakes_full_per_cpu_s"] / v["rustls_full_handshakes_per_cpu_second"]
    printf "TLS resumed handshakes per CPU-s              %.0f  (rustls alone: %.0f, ratio %.3f; %d resumed)\n", v["handshakes_resumed_per_cpu_s"], v["rustls_resumed_handshakes_per_cpu_second"], v["handshakes_resumed_per_cpu_s"] / v["rustls_resumed_handshakes_per_cpu_second"], v["handshakes_resumed_resumed"]
    printf "RS256 at half saturation (%5.0f/s)            p50 %s ms, p99 %s ms, %d errors\n", v["half_RS256_rps"], v["half_RS256_p50_ms"], v["half_RS256_p99_ms"], v["half_RS256_errors"]
    printf "EdDSA at half saturation (%5.0f/s)            p50 %s ms, p99 %s ms, %d errors\n", v["half_EdDSA_rps"], v["half_EdDSA_p50_ms"], v["half_EdDSA_p99_ms"], v["half_EdDSA_errors"]
  }' "$f" | tee "$out/summary.txt"
