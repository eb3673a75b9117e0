#!/usr/bin/env bash
# Stop the local test control plane started by up.sh: SIGTERM, then SIGKILL
# after a bounded wait, for kube-controller-manager, kube-apiserver and etcd
# (in that order). Removes the pid files. Exits 0 when nothing is running.
#
# Only processes running this checkout's target/testenv/bin/NAME are signalled:
# the pids recorded in target/testenv/pids/ and any other live process of that
# executable (one a test restarted); a recycled pid, or anyone else's
# etcd/kube-apiserver, is never touched.
#
# Usage: tests/testenv/down.sh [--purge]
#   --purge  also delete etcd data, certificates, kubeconfigs and the env file
#            (keeps the built binaries and the logs)
# Environment: TESTENV_STOP_TIMEOUT seconds to wait after SIGTERM (default 20)
set -euo pipefail
_testenv_tag="testenv/down"
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PURGE=0
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument: $a" ;;
  esac
done
STOP_TIMEOUT="${TESTENV_STOP_TIMEOUT:-20}"

[[ -d "$TESTENV_OUT" ]] || { log "nothing to stop"; exit 0; }
[[ "${TESTENV_LOCK_HELD:-0}" == 1 ]] || testenv_lock

# stop NAME: terminate every process of ours running NAME.
stop() {
  local name="$1" pids=() p pidfile="$TESTENV_PIDS/$1.pid"
  if p="$(component_pid "$name")"; then pids+=("$p"); fi
  # A process restarted outside up.sh (a test that kills and restarts kube-apiserver), or
  # whose pid file was lost, still runs this checkout's binary: find it by its executable.
  for p in $(our_pids "$name"); do
    [[ " ${pids[*]} " == *" $p "* ]] || pids+=("$p")
  done
  if [[ ${#pids[@]} -eq 0 ]]; then
    [[ -e "$pidfile" ]] && log "$name: not running (removing stale pid file)"
    rm -f "$pidfile"
    return 0
  fi
  log "$name: sending SIGTERM to ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) alive
  while :; do
    alive=()
    for p in "${pids[@]}"; do pid_is_ours "$name" "$p" && alive+=("$p"); done
    [[ ${#alive[@]} -eq 0 ]] && break
    if ((SECONDS >= deadline)); then
      log "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL to ${alive[*]}"
      kill -KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.5
      for p in "${alive[@]}"; do
        pid_is_ours "$name" "$p" && die "$name: pid $p survived SIGKILL"
      done
      break
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
  log "$name: stopped"
}

for ((i = ${#TESTENV_COMPONENTS[@]} - 1; i >= 0; i--)); do
  stop "${TESTENV_COMPONENTS[$i]}"
done
rm -f "$TESTENV_PIDS"/*.pid 2>/dev/null || true

if [[ $PURGE -eq 1 ]]; then
  log "purging etcd data, certificates, kubeconfigs and env file"
  rm -rf "$TESTENV_ETCD_DATA" "$TESTENV_PKI" "$TESTENV_PIDS" \
    "$TESTENV_KUBECONFIG_FILE" "$TESTENV_KCM_KUBECONFIG" "$TESTENV_ENV_FILE" \
    "$TESTENV_OUT/helm-home"
fi
log "down"
