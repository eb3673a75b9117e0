#!/usr/bin/env bash
# Issue 12: people signing in, on the release `latchkey standalone` (TLS, keep-alive, the
# server's one worker on CPU 0, the load on CPU 1), per server CPU-second and per second:
#   - logins: a whole sign-in each (authorization request, login form with one Argon2id
#     password verification at the OWASP parameters, code, redemption with PKCE);
#   - refreshes: refresh-token rotations (each one stores the family's new state);
#   - password guesses a single source gets a verdict for, against a fresh server (an attacker
#     never signed in as the user), with the guess throttle as shipped and with it turned off
#     (--login-failure-rate 0): what the throttle takes away.
# Environment: BENCH_SECONDS (per load, default 10), BENCH_GUESS_SECONDS (30: the throttle's
# burst must not dominate), LATCHKEY_BIN (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/bench/lib.sh

seconds=${BENCH_SECONDS:-10}
guess_seconds=${BENCH_GUESS_SECONDS:-30}
out=target/bench/sign-in
mkdir -p "$out"
[ -n "${LATCHKEY_BIN:-}" ] || cargo build --release -p latchkey --quiet
loadgen_bin=$(bench_bin latchkey-server loadgen)
[ -x "$loadgen_bin" ] || { echo "bench: the loadgen bench binary was not found"; exit 1; }

# A first-party client (no consent page); the users are APK's samples (admin/admin).
cat >"$out/clients.yaml" <<'YAML'
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata: { name: bench }
spec:
  clientId: bench
  secretRef: { name: bench }
  grantTypes: [authorization_code, refresh_token]
  redirectUris: ["https://bench.example/cb"]
  firstParty: true
---
apiVersion: v1
kind: Secret
metadata: { name: bench }
stringData: { clientSecret: bench-secret }
YAML
: >"$out/figures.txt"
figure() { echo "$1=$2" | tee -a "$out/figures.txt"; }

# measure NAME SECONDS CONCURRENCY MODE: one loadgen sign-in run against $pid/$addr.
measure() {
  local name=$1 secs=$2 conc=$3 what=$4 before after report="$out/$1.txt"
  before=$(cpu_seconds "$pid")
  $load_cpu "$loadgen_bin" sign-in "$addr" "$secs" "$conc" "$what" "$ca" >"$report"
  after=$(cpu_seconds "$pid")
  local done failed throttled
  done=$(sed -n 's/^done=//p' "$report"); failed=$(sed -n 's/^failed=//p' "$report")
  throttled=$(sed -n 's/^throttled=//p' "$report")
  if [ "$done" = 0 ] || [ "$failed" != 0 ]; then
    echo "bench: $name: $done done, $failed failed" >&2; cat "$report" >&2; exit 1
  fi
  figure "${name}_per_s" "$(sed -n 's/^per_second=//p' "$report")"
  figure "${name}_per_cpu_s" "$(awk -v n="$done" -v a="$after" -v b="$before" 'BEGIN { printf "%.1f", n / (a - b) }')"
  figure "${name}_throttled" "$throttled"
}

wait_ready() { # until the bench client's authorization request serves its login page
  for _ in $(seq 1 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' --cacert "$ca" \
      "https://$addr/oauth2/authorize?response_type=code&client_id=bench&code_challenge=AMwbT3_yA2xKyK2Hk8o5k_Ewrql6KhaJKgl73etBL-w&code_challenge_method=S256" || true)" = 200 ] && return
    sleep 0.2
  done
  echo "bench: the sign-in never served" >&2; exit 1
}

start_server "$out/server.log" 1 "$server_cpu" --clients "$out/clients.yaml"
wait_ready
measure logins "$seconds" 4 logins
measure refreshes "$seconds" 4 refreshes
stop_server "$pid"

start_server "$out/server-throttled.log" 1 "$server_cpu" --clients "$out/clients.yaml"
wait_ready
measure guesses_throttled "$guess_seconds" 4 guesses
stop_server "$pid"

start_server "$out/server-open.log" 1 "$server_cpu" --login-failure-rate 0 \
  --clients "$out/clients.yaml"
wait_ready
measure guesses_unthrottled "$seconds" 4 guesses
stop_server "$pid"

awk -F= -v g="$guess_seconds" -v mode="$mode" '
  { v[$1] = $2 }
  END {
    printf "\n== People signing in (TLS, keep-alive, one server worker; %s) ==\n", mode
    printf "%-52s %10s %10s\n", "", "per CPU-s", "per s"
    printf "%-52s %10.1f %10.1f\n", "logins (authorize, password, code, PKCE redemption)", v["logins_per_cpu_s"], v["logins_per_s"]
    printf "%-52s %10.1f %10.1f\n", "refresh-token rotations", v["refreshes_per_cpu_s"], v["refreshes_per_s"]
    printf "%-52s %10.1f %10.1f\n", "password guesses answered, throttle off", v["guesses_unthrottled_per_cpu_s"], v["guesses_unthrottled_per_s"]
    printf "%-52s %10s %10.2f  (%d turned away with 429 in %ss)\n", "password guesses answered, throttled (one source)", "", v["guesses_throttled_per_s"], v["guesses_throttled_throttled"], g
  }' "$out/figures.txt" | tee "$out/summary.txt"
