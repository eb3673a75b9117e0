#!/usr/bin/env bash
# Token throughput against the signature's own limit.
#
# Drives the release build of `latchkey standalone` over TLS with keep-alive at saturation
# (wrk), reads the server's CPU time from /proc, and measures the raw RS256 signing rate of the
# same crypto library (aws-lc-rs) on the same core just before and just after the load. Prints:
#   tokens/s, p50 and p99 latency, server CPU seconds, and
#   ratio = (tokens per server CPU-second) / (raw signatures per CPU-second, mean of both).
# With two or more CPUs the server (one worker thread) runs on CPU 0 and wrk on CPU 1, so the
# load generator neither steals the server's core nor pollutes its caches; the signing rate is
# measured on CPU 0 too. (This VM's speed drifts by ±10% over minutes: measuring the
# signature next to the load, on the same core, keeps the ratio honest.)
# Environment: BENCH_SECONDS (default 20), BENCH_CONNECTIONS (16), SIGN_RATE_SECONDS (5).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${BENCH_SECONDS:-20}
connections=${BENCH_CONNECTIONS:-16}
out=target/bench
mkdir -p "$out"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release -p latchkey --quiet
cargo bench -p latchkey-core --bench sign_rate --no-run --quiet 2>/dev/null
sign_rate_bin=$(cargo bench -p latchkey-core --bench sign_rate --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*sign_rate[^"]*\)".*/\1/p' | tail -1)
[ -x "$sign_rate_bin" ] || { echo "bench: sign_rate benchmark binary not found"; exit 1; }

server_cpu=""; wrk_cpu=""; threads=""
if [ "$(nproc)" -ge 2 ]; then
  server_cpu="taskset -c 0"; wrk_cpu="taskset -c 1"; threads="TOKIO_WORKER_THREADS=1"
fi
sign_rate() { # raw RS256 signatures per CPU-second, on the server's core
  SIGN_RATE_SECONDS=${SIGN_RATE_SECONDS:-5} $server_cpu "$sign_rate_bin" | tee -a "$out/sign_rate.txt" \
    | sed -n 's/^rs256_raw_signs_per_cpu_second=//p'
}
: > "$out/sign_rate.txt"
echo "bench: raw signing rate of aws-lc-rs before the load (one thread, CPU time)"
raw_before=$(sign_rate)

state=$(mktemp -d)
log="$out/server.log"
env $threads $server_cpu target/release/latchkey standalone --state-dir "$state" --listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 --log-format json >"$log" 2>&1 &
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

cpu_seconds() { # utime + stime of the whole process, in seconds
  awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$pid/stat"
}

echo "bench: warming up $url"
$wrk_cpu wrk -t1 -c"$connections" -d3s -s tests/bench/token.lua "$url" >/dev/null
before=$(cpu_seconds)
echo "bench: wrk -t1 -c$connections -d${seconds}s --latency (TLS, keep-alive)"
$wrk_cpu wrk -t1 -c"$connections" -d"${seconds}s" --latency -s tests/bench/token.lua "$url" | tee "$out/wrk.txt"
after=$(cpu_seconds)

if grep -q "Non-2xx" "$out/wrk.txt"; then
  echo "bench: the server answered errors under load"; exit 1
fi
requests=$(awk '/requests in/ { print $1 }' "$out/wrk.txt")
rps=$(awk '/Requests\/sec/ { print $2 }' "$out/wrk.txt")
p50=$(awk '/^ +50%/ { print $2 }' "$out/wrk.txt")
p99=$(awk '/^ +99%/ { print $2 }' "$out/wrk.txt")
cpu=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }')
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "bench: raw signing rate of aws-lc-rs after the load"
raw_after=$(sign_rate)
raw=$(awk -v a="$raw_before" -v b="$raw_after" 'BEGIN { printf "%.0f", (a + b) / 2 }')
echo "bench: raw RS256 signs per CPU-second: before $raw_before, after $raw_after"
mode="server: 1 worker on CPU 0, wrk on CPU 1"
[ -n "$server_cpu" ] || mode="one CPU: server and wrk share it"

awk -v n="$requests" -v rps="$rps" -v cpu="$cpu" -v raw="$raw" -v p50="$p50" -v p99="$p99" -v s="$seconds" -v mode="$mode" 'BEGIN {
  per_cpu = n / cpu
  printf "\n== Latchkey token benchmark (RS256-2048, TLS 1.3, HTTP/1.1 keep-alive, %ss; %s) ==\n", s, mode
  printf "tokens issued              %d\n", n
  printf "tokens/s                   %.0f\n", rps
  printf "latency p50 / p99          %s / %s\n", p50, p99
  printf "server CPU seconds         %.2f\n", cpu
  printf "tokens per server CPU-s    %.0f\n", per_cpu
  printf "raw RS256 signs per CPU-s  %.0f\n", raw
  printf "ratio                      %.3f  (goal >= 0.85)\n", per_cpu / raw
}' | tee "$out/summary.txt"
