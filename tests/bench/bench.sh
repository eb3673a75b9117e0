#!/usr/bin/env bash
# The hot path against its physical limits, in one run, on one pinned core.
#
# Drives release builds of `latchkey standalone` over TLS 1.3 (HTTP/1.1 keep-alive, the access
# log on at its default level) and reads the server's CPU time from /proc, so every figure is
# per server CPU-second. With two or more CPUs the server (one serving thread) runs on CPU 0 and
# the load generators on CPU 1; raw signature rates are measured on CPU 0 too. Prints:
#   - the stack's floor: GET of the metadata (no signing);
#   - raw Ed25519, ES256 and RS256 signatures per CPU-second (aws-lc-rs), and tokens per
#     CPU-second with each algorithm;
#   - ratio A = EdDSA tokens per CPU-s / (1 / (GET CPU time + Ed25519 signature CPU time)),
#     goal >= 0.8: what a token costs beyond serving a request and making its signature;
#   - ratio B = RS256 tokens per CPU-s / raw RS256 signatures per CPU-s, goal >= 0.9;
#   - the 2-core scaling factor: EdDSA tokens per server CPU-second with two serving shards on
#     two cores (a wrk pinned on each core, as receive queues spread clients) / with one shard
#     on one core and its load on the other (1.0 = nothing shared slows the second core); and
#     the same server with one wrk floating over both cores, for what core-local serving saves;
#   - TLS handshakes per server CPU-second, full and resumed (a new connection per request),
#     against rustls's own server-side handshake cost on the same core;
#   - latency p50/p99 at half of the measured saturation rate (open loop, fixed rate) for RS256
#     and EdDSA tokens.
# This VM's speed drifts by tens of percent over minutes, so a ratio whose two sides are
# measured minutes apart says little. Every ratio is therefore also taken as the median of five
# short samples (BENCH_SAMPLES), each measuring both sides seconds apart and symmetrically
# around the load (reference, load, reference), so a drift within a sample cancels to first
# order:
#   ratio B: raw RS256, RS256 tokens, raw RS256;
#   ratio A: raw Ed25519, GET, EdDSA tokens, GET, raw Ed25519;
#   2-core:  one shard, two shards, one shard (two servers up side by side).
# The goals are judged on the medians; the one-shot table is printed for the absolute figures.
# Environment: BENCH_SECONDS (per load of the table, default 10), BENCH_SAMPLE_SECONDS (per
# load of a sample, default 4), BENCH_SAMPLES (5), BENCH_CONNECTIONS (16).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh

seconds=${BENCH_SECONDS:-10}
sample=${BENCH_SAMPLE_SECONDS:-4}
connections=${BENCH_CONNECTIONS:-16}
: >"$out/figures.txt"

cargo build --release -p latchkey --quiet
sign_rate_bin=$(bench_bin latchkey-core sign_rate)
loadgen_bin=$(bench_bin latchkey-server loadgen)
[ -x "$sign_rate_bin" ] && [ -x "$loadgen_bin" ] || { echo "bench: benchmark binaries not found"; exit 1; }

figure() { echo "$1=$2" | tee -a "$out/figures.txt"; }
get() { sed -n "s/^$1=//p" "$out/figures.txt" | tail -1; }
samples=${BENCH_SAMPLES:-5}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# all NAME: the figures NAME_1 … NAME_$samples, space-separated.
all() { local i; for i in $(seq 1 "$samples"); do printf '%s ' "$(get "$1_$i")"; done; }

# serve ALG WORKERS PIN: a server for this script's loads (sets $pid $addr $ca).
serve() { start_server "$out/server-$1-$2.log" "$2" "$3" --key-alg "$1"; }

# load NAME KIND PIN SECONDS [THREADS]: wrk at saturation against $addr / $pid; figures
# NAME_per_cpu_s and NAME_rps. KIND is token (the seed request) or get (the metadata).
load() {
  local name=$1 kind=$2 pin=$3 secs=$4 threads=${5:-1} script="" path="" result
  if [ "$kind" = token ]; then script="-s tests/bench/token.lua"; else path="/.well-known/oauth-authorization-server/token"; fi
  # A warm-up on a fresh server; the samples' later loads run on a warm one (WARM=0), so
  # the sides of a sample stay seconds apart.
  [ "${WARM:-2}" = 0 ] || $pin wrk -t"$threads" -c"$connections" -d"${WARM:-2}s" $script "https://$addr$path" >/dev/null
  result=$(wrk_per_cpu "$pid" "$out/wrk-$name.txt" \
    $pin wrk -t"$threads" -c"$connections" -d"${secs}s" --latency $script "https://$addr$path")
  figure "${name}_rps" "$(awk '/Requests\/sec/ { printf "%.0f", $2 }' "$out/wrk-$name.txt")"
  figure "${name}_per_cpu_s" "$(echo "$result" | awk '{ printf "%.0f", $1 / $2 }')"
}

# load_per_core NAME SECONDS: the token load against a two-shard $addr / $pid as two wrk, one
# pinned on each CPU with half the connections (as a NIC's receive queues spread clients over
# cores: each shard then gets the connections of its own core); figures as `load`.
load_per_core() {
  local name=$1 secs=$2 before after
  [ "${WARM:-2}" = 0 ] || wrk_per_core 2 /dev/null /dev/null
  before=$(cpu_seconds "$pid")
  wrk_per_core "$secs" "$out/wrk-$name-0.txt" "$out/wrk-$name-1.txt"
  after=$(cpu_seconds "$pid")
  if grep -q "Non-2xx" "$out/wrk-$name-0.txt" "$out/wrk-$name-1.txt"; then
    echo "bench: the server answered errors under load ($out/wrk-$name-*.txt)" >&2; exit 1
  fi
  figure "${name}_rps" "$(awk '/Requests\/sec/ { r += $2 } END { printf "%.0f", r }' "$out/wrk-$name-0.txt" "$out/wrk-$name-1.txt")"
  figure "${name}_per_cpu_s" "$(awk -v a="$after" -v b="$before" '/requests in/ { n += $1 } END { printf "%.0f", n / (a - b) }' "$out/wrk-$name-0.txt" "$out/wrk-$name-1.txt")"
}

# wrk_per_core SECONDS OUT0 OUT1: the token load on $addr, one wrk on CPU 0 and one on CPU 1
# at once, reports in OUT0 and OUT1.
wrk_per_core() {
  local w
  taskset -c 0 wrk -t1 -c$((connections / 2)) -d"$1s" -s tests/bench/token.lua "https://$addr" >"$2" &
  w=$!
  taskset -c 1 wrk -t1 -c$((connections / 2)) -d"$1s" -s tests/bench/token.lua "https://$addr" >"$3"
  wait "$w" # only this wrk: the servers are children of this shell too
}

# warm KIND PIN: 2 s of load on a fresh server before its samples.
warm() {
  local script="" path=""
  if [ "$1" = token ]; then script="-s tests/bench/token.lua"; else path="/.well-known/oauth-authorization-server/token"; fi
  $2 wrk -t1 -c"$connections" -d2s $script "https://$addr$path" >/dev/null
}

sign_rates() { # SUFFIX: one run of the signature benchmark on the server's core
  SIGN_RATE_SECONDS=${SIGN_RATE_SECONDS:-3} $server_cpu "$sign_rate_bin" | sed "s/=/$1=/" | tee -a "$out/figures.txt"
}
raw() { # rs256|es256|ed25519: a 2 s raw rate on the server's core
  SIGN_RATE_ONLY=$1 SIGN_RATE_SECONDS=2 $server_cpu "$sign_rate_bin" | sed -n "s/^$1_raw_signs_per_cpu_second=//p"
}

echo "bench: tokens, the GET floor and raw signatures ($mode), ${seconds}s per load"
sign_rates _s1
serve RS256 1 "$server_cpu"
load token_RS256 token "$load_cpu" "$seconds"
stop_server "$pid"
sign_rates _s2
serve EdDSA 1 "$server_cpu"
load get get "$load_cpu" "$seconds"
load token_EdDSA token "$load_cpu" "$seconds"
stop_server "$pid"
serve ES256 1 "$server_cpu"
load token_ES256 token "$load_cpu" "$seconds"
stop_server "$pid"
sign_rates _s3

echo "bench: ratio B, $samples samples (raw RS256, tokens, raw RS256), ${sample}s loads"
serve RS256 1 "$server_cpu"
warm token "$load_cpu"
for i in $(seq 1 "$samples"); do
  r1=$(raw rs256)
  WARM=0 load "token_RS256_b$i" token "$load_cpu" "$sample"
  r2=$(raw rs256)
  figure "ratio_b_$i" "$(awk -v t="$(get "token_RS256_b${i}_per_cpu_s")" -v a="$r1" -v b="$r2" 'BEGIN { printf "%.3f", t / ((a + b) / 2) }')"
done
stop_server "$pid"
figure ratio_b_median "$(median $(all ratio_b))"
figure ratio_b_all "$(all ratio_b)"

echo "bench: ratio A, $samples samples (raw Ed25519, GET, EdDSA tokens, GET, raw Ed25519), ${sample}s loads"
serve EdDSA 1 "$server_cpu"
warm get "$load_cpu"; warm token "$load_cpu"
for i in $(seq 1 "$samples"); do
  e1=$(raw ed25519)
  WARM=0 load "get_a${i}_1" get "$load_cpu" "$sample"
  WARM=0 load "token_EdDSA_a$i" token "$load_cpu" "$sample"
  WARM=0 load "get_a${i}_2" get "$load_cpu" "$sample"
  e2=$(raw ed25519)
  figure "ratio_a_$i" "$(awk -v t="$(get "token_EdDSA_a${i}_per_cpu_s")" -v g1="$(get "get_a${i}_1_per_cpu_s")" \
    -v g2="$(get "get_a${i}_2_per_cpu_s")" -v e1="$e1" -v e2="$e2" \
    'BEGIN { g = (g1 + g2) / 2; e = (e1 + e2) / 2; printf "%.3f", t / (1 / (1 / g + 1 / e)) }')"
done
stop_server "$pid"
figure ratio_a_median "$(median $(all ratio_a))"
figure ratio_a_all "$(all ratio_a)"

echo "bench: two shards on two cores (the load shares them), $samples samples (1, 2, 1 shards)"
serve EdDSA 1 "$server_cpu"; one_pid=$pid; one_addr=$addr
serve EdDSA 2 "$two_cpus"; two_pid=$pid; two_addr=$addr
pid=$two_pid addr=$two_addr load_per_core token_EdDSA_2core "$seconds"
# The same server with one wrk whose two threads float over both cores: no client is on its
# shard's core, so connections cross cores (what steering saves).
pid=$two_pid addr=$two_addr WARM=0 load token_EdDSA_2float token "$two_cpus" "$seconds" 2
pid=$one_pid addr=$one_addr warm token "$load_cpu"
for i in $(seq 1 "$samples"); do
  WARM=0 pid=$one_pid addr=$one_addr load "token_EdDSA_c${i}_1" token "$load_cpu" "$sample"
  WARM=0 pid=$two_pid addr=$two_addr load_per_core "token_EdDSA_c${i}_2core" "$sample"
  WARM=0 pid=$one_pid addr=$one_addr load "token_EdDSA_c${i}_1b" token "$load_cpu" "$sample"
  figure "scaling_$i" "$(awk -v t="$(get "token_EdDSA_c${i}_2core_per_cpu_s")" -v a="$(get "token_EdDSA_c${i}_1_per_cpu_s")" \
    -v b="$(get "token_EdDSA_c${i}_1b_per_cpu_s")" 'BEGIN { printf "%.3f", t / ((a + b) / 2) }')"
done
stop_server "$one_pid"; stop_server "$two_pid"
figure scaling_median "$(median $(all scaling))"
figure scaling_all "$(all scaling)"

echo "bench: TLS handshakes, a new connection per request"
$server_cpu "$loadgen_bin" rustls 3 | tee -a "$out/figures.txt"
serve EdDSA 1 "$server_cpu"
for kind in full resumed; do
  before=$(cpu_seconds "$pid")
  $load_cpu "$loadgen_bin" handshakes "$addr" "$seconds" 8 "$kind" "$ca" >"$out/handshakes-$kind.txt"
  after=$(cpu_seconds "$pid")
  cat "$out/handshakes-$kind.txt"
  n=$(sed -n 's/^connections=//p' "$out/handshakes-$kind.txt")
  figure "handshakes_${kind}_resumed" "$(sed -n 's/^resumed=//p' "$out/handshakes-$kind.txt")"
  figure "handshakes_${kind}_per_cpu_s" "$(awk -v n="$n" -v a="$after" -v b="$before" 'BEGIN { printf "%.0f", n / (a - b) }')"
done
stop_server "$pid"

echo "bench: latency at half of saturation (open loop)"
for alg in RS256 EdDSA; do
  serve "$alg" 1 "$server_cpu"
  half=$(awk -v r="$(get "token_${alg}_rps")" 'BEGIN { printf "%.0f", r / 2 }')
  $load_cpu "$loadgen_bin" rate "$addr" "$half" "$seconds" "$connections" token "$ca" >"$out/rate-$alg.txt"
  figure "half_${alg}_rps" "$(sed -n 's/^achieved_rps=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_errors" "$(sed -n 's/^errors=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_p50_ms" "$(sed -n 's/^p50_ms=//p' "$out/rate-$alg.txt")"
  figure "half_${alg}_p99_ms" "$(sed -n 's/^p99_ms=//p' "$out/rate-$alg.txt")"
  stop_server "$pid"
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
    printf "%-44s %10.0f %10.0f\n", "EdDSA tokens, 2 shards on 2 cores", v["token_EdDSA_2core_per_cpu_s"], v["token_EdDSA_2core_rps"]
    printf "%-44s %10.0f %10.0f\n", "  the same, clients floating over both cores", v["token_EdDSA_2float_per_cpu_s"], v["token_EdDSA_2float_rps"]
    printf "one shot (sides minutes apart): ratio A %.3f, ratio B %.3f, 2-core %.3f\n", v["token_EdDSA_per_cpu_s"] / ideal, v["token_RS256_per_cpu_s"] / rs, v["token_EdDSA_2core_per_cpu_s"] / v["token_EdDSA_per_cpu_s"]
    printf "ratio A  EdDSA tokens / (1/(GET + Ed25519))  %.3f  median of (%s)  goal >= 0.8\n", v["ratio_a_median"], v["ratio_a_all"]
    printf "ratio B  RS256 tokens / raw RS256             %.3f  median of (%s)  goal >= 0.9\n", v["ratio_b_median"], v["ratio_b_all"]
    printf "2-core   EdDSA per CPU-s, 2 shards / 1        %.3f  median of (%s)  goal >= 0.9\n", v["scaling_median"], v["scaling_all"]
    printf "2-core   EdDSA tokens per s, 2 shards / 1     %.3f  (the load takes part of the two cores)\n", v["token_EdDSA_2core_rps"] / v["token_EdDSA_rps"]
    printf "TLS full handshakes per CPU-s                 %.0f  (rustls alone: %.0f, ratio %.3f)\n", v["handshakes_full_per_cpu_s"], v["rustls_full_handshakes_per_cpu_second"], v["handshakes_full_per_cpu_s"] / v["rustls_full_handshakes_per_cpu_second"]
    printf "TLS resumed handshakes per CPU-s              %.0f  (rustls alone: %.0f, ratio %.3f; %d resumed)\n", v["handshakes_resumed_per_cpu_s"], v["rustls_resumed_handshakes_per_cpu_second"], v["handshakes_resumed_per_cpu_s"] / v["rustls_resumed_handshakes_per_cpu_second"], v["handshakes_resumed_resumed"]
    printf "RS256 at half saturation (%5.0f/s)            p50 %s ms, p99 %s ms, %d errors\n", v["half_RS256_rps"], v["half_RS256_p50_ms"], v["half_RS256_p99_ms"], v["half_RS256_errors"]
    printf "EdDSA at half saturation (%5.0f/s)            p50 %s ms, p99 %s ms, %d errors\n", v["half_EdDSA_rps"], v["half_EdDSA_p50_ms"], v["half_EdDSA_p99_ms"], v["half_EdDSA_errors"]
  }' "$f" | tee "$out/summary.txt"
