#!/usr/bin/env bash
# Start the local test Kubernetes control plane: etcd, kube-apiserver and
# kube-controller-manager as background processes listening on 127.0.0.1
# only, on free ports picked at start.
#
# Writes (all under target/testenv/):
#   kubeconfig   admin kubeconfig (client cert in group system:masters)
#   env          sourceable KEY=VALUE file: ports, URLs, file paths
#   pki/         CA, serving/client certificates, service-account keypair
#   pids/ logs/  one pid file and one log per process
#   etcd-data/   etcd data directory (kept across down/up; down.sh --purge)
#
# Idempotent: exits 0 at once when the control plane is already up and
# healthy; cleans up stale pid files / half-dead processes and starts fresh.
#
# Environment knobs:
#   TESTENV_TIMEOUT  seconds to wait for each component (default 180)
#   TESTENV_SKIP_BUILD=1  do not run build.sh first
set -euo pipefail
_testenv_tag="testenv/up"
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

TIMEOUT="${TESTENV_TIMEOUT:-180}"
SERVICE_CIDR="10.96.0.0/12"
SERVICE_APISERVER_IP="10.96.0.1"   # first address of SERVICE_CIDR
SA_ISSUER="https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME="latchkey-testenv"

[[ $# -eq 0 ]] || { sed -n '2,18p' "$0"; [[ "$1" == -h || "$1" == --help ]] && exit 0; exit 2; }

if [[ "${TESTENV_SKIP_BUILD:-0}" != 1 ]]; then
  "$TESTENV_SRC/build.sh"
fi
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [[ -x "$TESTENV_BIN/$b" ]] || die "missing $TESTENV_BIN/$b (run tests/testenv/build.sh)"
done
command -v openssl >/dev/null 2>&1 || die "openssl is required (apt-get install -y openssl)"

testenv_lock

KUBECTL="$TESTENV_BIN/kubectl"

# --------------------------------------------------------------------------
# health probes

# apiserver_ready: /readyz through the admin kubeconfig.
apiserver_ready() {
  [[ -f "$TESTENV_KUBECONFIG_FILE" ]] || return 1
  [[ "$("$KUBECTL" --kubeconfig "$TESTENV_KUBECONFIG_FILE" --request-timeout=5s \
        get --raw=/readyz 2>/dev/null)" == ok ]]
}

# kcm_healthy PORT: kube-controller-manager's /healthz, using the admin
# kubeconfig's credentials and CA (its serving cert is signed by our CA).
kcm_healthy() {
  [[ "$("$KUBECTL" --kubeconfig "$TESTENV_KUBECONFIG_FILE" --server="https://127.0.0.1:$1" \
        --request-timeout=5s get --raw=/healthz 2>/dev/null </dev/null)" == ok ]]
}

# etcd_healthy PORT: plain-HTTP GET /health on loopback, using bash's /dev/tcp.
etcd_healthy() {
  local resp
  resp="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 5 cat <&3
  )" || return 1
  [[ "$resp" == *'"health":"true"'* ]]
}

all_running() {
  local c
  for c in "${TESTENV_COMPONENTS[@]}"; do
    component_pid "$c" >/dev/null || return 1
  done
}

# --------------------------------------------------------------------------
# already up?

if [[ -f "$TESTENV_ENV_FILE" ]] && all_running; then
  # shellcheck disable=SC1090
  source "$TESTENV_ENV_FILE"
  if apiserver_ready && kcm_healthy "$TESTENV_KCM_PORT"; then
    log "already up and healthy: $TESTENV_APISERVER_URL (kubeconfig: target/testenv/kubeconfig)"
    exit 0
  fi
  log "processes are running but not healthy; restarting"
fi

# Anything left over (stale pid files, some components dead): stop it all.
stale=0
for c in "${TESTENV_COMPONENTS[@]}"; do
  [[ -e "$TESTENV_PIDS/$c.pid" ]] && stale=1
done
if [[ $stale -eq 1 ]]; then
  log "cleaning up leftovers of a previous run"
  TESTENV_LOCK_HELD=1 "$TESTENV_SRC/down.sh"
fi

mkdir -p "$TESTENV_PKI" "$TESTENV_PIDS" "$TESTENV_LOGS" "$TESTENV_ETCD_DATA"
chmod 700 "$TESTENV_PKI" "$TESTENV_ETCD_DATA"

# --------------------------------------------------------------------------
# ports: reuse the previous run's ports when still free (keeps the kubeconfig
# and etcd's recorded peer URL stable), otherwise take fresh free ones.

prev=()
if [[ -f "$TESTENV_ENV_FILE" ]]; then
  prev=(
    "$(sed -n 's/^TESTENV_ETCD_PORT=//p' "$TESTENV_ENV_FILE")"
    "$(sed -n 's/^TESTENV_ETCD_PEER_PORT=//p' "$TESTENV_ENV_FILE")"
    "$(sed -n 's/^TESTENV_APISERVER_PORT=//p' "$TESTENV_ENV_FILE")"
    "$(sed -n 's/^TESTENV_KCM_PORT=//p' "$TESTENV_ENV_FILE")"
  )
fi

# pick_ports N [PREFERRED...]: print N distinct free TCP ports on 127.0.0.1.
pick_ports() {
  local n="$1"; shift
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" "$@" <<'PY'
import socket, sys
n = int(sys.argv[1])
preferred = [int(p) for p in sys.argv[2:] if p.isdigit()]
held, ports = [], []
def grab(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
for i in range(n):
    p = grab(preferred[i]) if i < len(preferred) and preferred[i] not in ports else None
    if p is None:
        p = grab(0)
    ports.append(p)
for s in held:
    s.close()
print(" ".join(str(p) for p in ports))
PY
  else
    # Fallback without python3: random ports nobody is listening on.
    local out=() p i
    for ((i = 0; i < n; i++)); do
      p="${1:-}"; shift || true
      while [[ -z "$p" || " ${out[*]} " == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        p=$((20000 + RANDOM % 12000))
      done
      out+=("$p")
    done
    echo "${out[*]}"
  fi
}

read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT < <(pick_ports 4 "${prev[@]}")
[[ -n "${KCM_PORT:-}" ]] || die "could not pick free ports"
log "ports: etcd=$ETCD_PORT etcd-peer=$ETCD_PEER_PORT kube-apiserver=$API_PORT kube-controller-manager=$KCM_PORT"

# --------------------------------------------------------------------------
# certificates (generated once, kept until down.sh --purge)

pki() { printf '%s/%s' "$TESTENV_PKI" "$1"; }

new_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# sign_cert NAME SUBJECT KIND SAN: NAME.key + NAME.crt signed by our CA.
# KIND is server or client; SAN is an openssl subjectAltName value or "".
sign_cert() {
  local name="$1" subj="$2" kind="$3" san="$4" ext eku
  [[ -s "$(pki "$name.crt")" && -s "$(pki "$name.key")" ]] && return 0
  log "generating certificate $name ($subj)"
  case "$kind" in server) eku=serverAuth ;; client) eku=clientAuth ;; esac
  ext="$(mktemp)"
  {
    echo "[ext]"
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    [[ -n "$san" ]] && echo "subjectAltName = $san"
  } >"$ext"
  new_key "$(pki "$name.key")"
  openssl req -new -key "$(pki "$name.key")" -subj "$subj" -out "$(pki "$name.csr")"
  openssl x509 -req -in "$(pki "$name.csr")" -CA "$(pki ca.crt)" -CAkey "$(pki ca.key)" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
    -extfile "$ext" -extensions ext -out "$(pki "$name.crt")" 2>/dev/null
  rm -f "$ext" "$(pki "$name.csr")"
}

if [[ ! -s "$(pki ca.crt)" || ! -s "$(pki ca.key)" ]]; then
  log "generating CA in target/testenv/pki"
  find "$TESTENV_PKI" -mindepth 1 -delete
  cacnf="$(mktemp)"
  cat >"$cacnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = latchkey-testenv-ca
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
EOF
  new_key "$(pki ca.key)"
  openssl req -x509 -new -key "$(pki ca.key)" -config "$cacnf" -extensions ca \
    -days 3650 -sha256 -out "$(pki ca.crt)"
  rm -f "$cacnf"
fi
sign_cert kube-apiserver "/CN=kube-apiserver" server \
  "IP:127.0.0.1, DNS:localhost, IP:$SERVICE_APISERVER_IP, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
sign_cert kube-controller-manager-serving "/CN=kube-controller-manager" server "IP:127.0.0.1, DNS:localhost"
sign_cert admin "/O=system:masters/CN=latchkey-testenv-admin" client ""
sign_cert kube-controller-manager "/CN=system:kube-controller-manager" client ""
if [[ ! -s "$(pki sa.key)" || ! -s "$(pki sa.pub)" ]]; then
  log "generating service-account signing keypair"
  new_key "$(pki sa.key)"
  openssl pkey -in "$(pki sa.key)" -pubout -out "$(pki sa.pub)"
fi

# --------------------------------------------------------------------------
# kubeconfigs

b64() { base64 -w0 <"$1"; }

# write_kubeconfig FILE USER CERTNAME
write_kubeconfig() {
  local file="$1" user="$2" cert="$3"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$(pki ca.crt)")
users:
- name: $user
  user:
    client-certificate-data: $(b64 "$(pki "$cert.crt")")
    client-key-data: $(b64 "$(pki "$cert.key")")
contexts:
- name: $CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: $user
current-context: $CLUSTER_NAME
EOF
  chmod 600 "$file.tmp"
  mv -f "$file.tmp" "$file"
}
write_kubeconfig "$TESTENV_KUBECONFIG_FILE" latchkey-testenv-admin admin
write_kubeconfig "$TESTENV_KCM_KUBECONFIG" system:kube-controller-manager kube-controller-manager

cat >"$TESTENV_ENV_FILE.tmp" <<EOF
# Written by tests/testenv/up.sh; sourceable from sh/bash.
TESTENV_KUBECONFIG=$TESTENV_KUBECONFIG_FILE
TESTENV_APISERVER_URL=https://127.0.0.1:$API_PORT
TESTENV_APISERVER_PORT=$API_PORT
TESTENV_ETCD_URL=http://127.0.0.1:$ETCD_PORT
TESTENV_ETCD_PORT=$ETCD_PORT
TESTENV_ETCD_PEER_PORT=$ETCD_PEER_PORT
TESTENV_KCM_PORT=$KCM_PORT
TESTENV_CA_FILE=$TESTENV_PKI/ca.crt
TESTENV_SA_ISSUER=$SA_ISSUER
TESTENV_SERVICE_CIDR=$SERVICE_CIDR
EOF
mv -f "$TESTENV_ENV_FILE.tmp" "$TESTENV_ENV_FILE"

# --------------------------------------------------------------------------
# start processes

started=()
fail() {
  local comp="$1"; shift
  printf '[%s] ERROR: %s\n' "$_testenv_tag" "$*" >&2
  log_tail "$comp" 60
  log "stopping what was started"
  TESTENV_LOCK_HELD=1 "$TESTENV_SRC/down.sh" >&2 || true
  exit 1
}

# start NAME ARGS...: run our NAME binary detached (own session, stdin from
# /dev/null), log to logs/NAME.log (previous log kept as NAME.log.1).
start() {
  local name="$1"; shift
  local logf="$TESTENV_LOGS/$name.log" pid
  [[ -f "$logf" ]] && mv -f "$logf" "$logf.1"
  log "starting $name (log: target/testenv/logs/$name.log)"
  printf '# %s: %s %s\n' "$(date -u +%FT%TZ)" "$TESTENV_BIN/$name" "$*" >"$logf"
  # setsid execs in place (we are not a process-group leader), so $! is the
  # pid of the server itself. fd 9 (the lock) must not leak into the server,
  # or the lock would stay held for as long as it runs.
  setsid "$TESTENV_BIN/$name" "$@" </dev/null >>"$logf" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$TESTENV_PIDS/$name.pid"
  started+=("$name")
  sleep 0.2
  kill -0 "$pid" 2>/dev/null || fail "$name" "$name exited right after start"
}

# wait_for NAME WHAT CMD...: poll CMD every second for up to TIMEOUT seconds;
# fail with NAME's log tail if NAME dies or the time runs out.
wait_for() {
  local name="$1" what="$2"; shift 2
  local deadline=$((SECONDS + TIMEOUT)) pid
  pid="$(<"$TESTENV_PIDS/$name.pid")"
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || fail "$name" "$name (pid $pid) died while waiting for $what"
    ((SECONDS < deadline)) || fail "$name" "timed out after ${TIMEOUT}s waiting for $what"
    sleep 1
  done
  log "$what: ok ($((SECONDS - deadline + TIMEOUT))s)"
}

t0=$SECONDS

# etcd: plain HTTP, loopback only. --unsafe-no-fsync: throwaway test data,
# fsync would only slow the tests down.
start etcd \
  --name=testenv \
  --data-dir="$TESTENV_ETCD_DATA" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster-state=new \
  --unsafe-no-fsync=true \
  --log-level=warn
wait_for etcd "etcd /health" etcd_healthy "$ETCD_PORT"

start kube-apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$API_PORT" \
  --tls-cert-file="$(pki kube-apiserver.crt)" \
  --tls-private-key-file="$(pki kube-apiserver.key)" \
  --client-ca-file="$(pki ca.crt)" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer="$SA_ISSUER" \
  --service-account-key-file="$(pki sa.pub)" \
  --service-account-signing-key-file="$(pki sa.key)" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling=false \
  --v=1
wait_for kube-apiserver "kube-apiserver /readyz" apiserver_ready

start kube-controller-manager \
  --kubeconfig="$TESTENV_KCM_KUBECONFIG" \
  --authentication-kubeconfig="$TESTENV_KCM_KUBECONFIG" \
  --authorization-kubeconfig="$TESTENV_KCM_KUBECONFIG" \
  --bind-address=127.0.0.1 \
  --secure-port="$KCM_PORT" \
  --tls-cert-file="$(pki kube-controller-manager-serving.crt)" \
  --tls-private-key-file="$(pki kube-controller-manager-serving.key)" \
  --client-ca-file="$(pki ca.crt)" \
  --root-ca-file="$(pki ca.crt)" \
  --service-account-private-key-file="$(pki sa.key)" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$(pki ca.crt)" \
  --cluster-signing-key-file="$(pki ca.key)" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --controllers='*' \
  --leader-elect=false \
  --profiling=false \
  --v=1
wait_for kube-controller-manager "kube-controller-manager /healthz" kcm_healthy "$KCM_PORT"

# The serviceaccount controller creating default/default is a cheap sign that
# the controllers are actually reconciling.
default_sa_exists() {
  "$KUBECTL" --kubeconfig "$TESTENV_KUBECONFIG_FILE" --request-timeout=5s \
    -n default get serviceaccount default >/dev/null 2>&1
}
wait_for kube-controller-manager "serviceaccount default/default" default_sa_exists

log "up in $((SECONDS - t0))s: https://127.0.0.1:$API_PORT"
log "kubeconfig: target/testenv/kubeconfig   env: target/testenv/env"
