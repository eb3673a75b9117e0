# Shared by the benchmark scripts (sourced, not run): where the server and the load run, how a
# release `latchkey standalone` is started and found, and how server CPU time is read, so every
# script measures the same way. Every figure is per server CPU-second, read from /proc, so the
# load generator's own cost never counts.
#
# After sourcing: $out (target/bench, created), $server_cpu / $load_cpu / $two_cpus (taskset
# prefixes: the server on CPU 0, the load on CPU 1, both; empty on a one-CPU machine) and $mode
# (a sentence saying which). Servers started here are stopped on exit.

out=target/bench
mkdir -p "$out"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

server_cpu=""; load_cpu=""; two_cpus=""
if [ "$(nproc)" -ge 2 ]; then
  server_cpu="taskset -c 0"; load_cpu="taskset -c 1"; two_cpus="taskset -c 0,1"
fi
mode="server: 1 serving thread on CPU 0, load on CPU 1"
[ -n "$server_cpu" ] || mode="one CPU: server and load share it"

bench_pids=(); bench_dirs=()
bench_cleanup() {
  for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for d in "${bench_dirs[@]}"; do rm -rf "$d"; done
}
trap bench_cleanup EXIT

# start_server LOG WORKERS PIN [FLAG…]: a release `latchkey standalone` with WORKERS serving
# threads under PIN, a fresh state dir and FLAGs; waits for its token listener and sets $pid,
# $addr (host:port), $state and $ca (its self-signed certificate).
start_server() {
  local log=$1 workers=$2 pin=$3
  shift 3
  state=$(mktemp -d); bench_dirs+=("$state")
  # WORKERS serving shards (one thread each, pinned when PIN gives exactly that many CPUs); the
  # control runtime (key rotation, reloads) needs one worker.
  env TOKIO_WORKER_THREADS=1 $pin "${LATCHKEY_BIN:-target/release/latchkey}" standalone \
    --state-dir "$state" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
    --serve-threads "$workers" "$@" \
    >"$log" 2>&1 &
  pid=$!; bench_pids+=("$pid")
  addr=""
  for _ in $(seq 1 200); do
    addr=$(grep -o '"message":"listening","listener":"token","addr":"[^"]*"' "$log" | sed 's/.*"addr":"//; s/"$//' || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "bench: server did not start"; cat "$log"; exit 1; }
  ca="$state/tls.crt"
}

# bench_bin CRATE BENCH: builds a cargo bench target (release) and prints its executable.
bench_bin() { # the executable of a cargo bench target
  cargo bench -p "$1" --bench "$2" --no-run --quiet 2>/dev/null
  cargo bench -p "$1" --bench "$2" --no-run --message-format=json 2>/dev/null \
    | sed -n "s/.*\"executable\":\"\([^\"]*$2[^\"]*\)\".*/\1/p" | tail -1
}

# stop_server PID
stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# cpu_seconds PID: user + system CPU time of every thread of the process.
cpu_seconds() { awk -v tck="$(getconf CLK_TCK)" '{ print ($14 + $15) / tck }' "/proc/$1/stat"; }

# wrk_per_cpu PID OUTPUT WRK-ARG…: runs wrk with WRK-ARGs (pin it with $load_cpu in the args'
# caller), keeps its report in OUTPUT and prints "requests server-cpu-seconds"; fails on any
# non-2xx answer.
wrk_per_cpu() {
  local p=$1 report=$2 before after
  shift 2
  before=$(cpu_seconds "$p")
  "$@" >"$report"
  after=$(cpu_seconds "$p")
  if grep -q "Non-2xx" "$report"; then
    echo "bench: the server answered errors under load ($report)" >&2; cat "$report" >&2; exit 1
  fi
  echo "$(awk '/requests in/ { print $1 }' "$report") $(awk -v a="$after" -v b="$before" 'BEGIN { print a - b }')"
}
