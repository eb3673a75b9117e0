# Shared helpers for the test control-plane scripts (sourced, not executed).
# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts

TESTENV_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
TESTENV_ROOT="$(cd "$TESTENV_SRC/../.." && pwd -P)"
TESTENV_OUT="$TESTENV_ROOT/target/testenv"
TESTENV_BIN="$TESTENV_OUT/bin"
TESTENV_PKI="$TESTENV_OUT/pki"
TESTENV_PIDS="$TESTENV_OUT/pids"
TESTENV_LOGS="$TESTENV_OUT/logs"
TESTENV_ETCD_DATA="$TESTENV_OUT/etcd-data"
TESTENV_KUBECONFIG_FILE="$TESTENV_OUT/kubeconfig"
TESTENV_KCM_KUBECONFIG="$TESTENV_OUT/kube-controller-manager.kubeconfig"
TESTENV_ENV_FILE="$TESTENV_OUT/env"
TESTENV_LOCK="$TESTENV_OUT/.lock"

# Started in this order, stopped in reverse.
TESTENV_COMPONENTS=(etcd kube-apiserver kube-controller-manager)

_testenv_tag="${_testenv_tag:-testenv}"
log() { printf '[%s] %s\n' "$_testenv_tag" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$_testenv_tag" "$*" >&2; exit 1; }

# Serialise up/down so two concurrent callers cannot race each other.
testenv_lock() {
  mkdir -p "$TESTENV_OUT"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$TESTENV_LOCK"
    flock -w 300 9 || die "could not take $TESTENV_LOCK within 300s"
  fi
}

# pid_is_ours NAME PID: true when PID is alive and runs our NAME binary
# (guards against acting on a recycled pid from a stale pid file).
pid_is_ours() {
  local name="$1" pid="$2" exe
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  exe="${exe% (deleted)}"
  [[ "$exe" == "$TESTENV_BIN/$name" ]]
}

# our_pids NAME: every live process running this checkout's NAME binary, pid file or not.
our_pids() {
  local d
  for d in /proc/[0-9]*; do
    pid_is_ours "$1" "${d#/proc/}" && printf '%s\n' "${d#/proc/}"
  done
  return 0
}

# component_pid NAME: print the pid from NAME's pid file if it is ours and alive.
component_pid() {
  local f="$TESTENV_PIDS/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(<"$f")"
  pid_is_ours "$1" "$pid" || return 1
  printf '%s\n' "$pid"
}

# log_tail NAME [LINES]
log_tail() {
  local f="$TESTENV_LOGS/$1.log" n="${2:-40}"
  if [[ -f "$f" ]]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf -- '----- end of %s -----\n' "$f" >&2
  else
    printf -- '(no log file %s)\n' "$f" >&2
  fi
}
