#!/usr/bin/env bash
# Smoke test of the local test control plane: brings it up, exercises the
# API server, RBAC, CRDs, service-account tokens, the controller-manager's
# garbage collector and namespace controller, and Helm, then brings it down
# again (also on failure). Exits non-zero on the first failed check.
set -euo pipefail
_testenv_tag="testenv/smoke"
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

NS="latchkey-smoke"
SA="smoke-sa"
passed=0
failed=0

finish() {
  local rc=$?
  trap - EXIT
  [[ $rc -ne 0 ]] && failed=$((failed + 1))
  log "bringing the control plane down"
  "$TESTENV_SRC/down.sh" || rc=1
  echo "smoke: $passed passed, $failed failed"
  exit "$rc"
}
trap finish EXIT

"$TESTENV_SRC/up.sh"

K=("$TESTENV_BIN/kubectl" --kubeconfig "$TESTENV_KUBECONFIG_FILE" --request-timeout=30s)
k() { "${K[@]}" "$@"; }
ok() { passed=$((passed + 1)); log "PASS: $*"; }
fail() { log "FAIL: $*"; exit 1; }

# poll SECONDS CMD...: retry CMD once a second until it succeeds or time is up.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

# --- versions -------------------------------------------------------------
k version
server_version="$(k get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
[[ "$server_version" == v1.* ]] || fail "unexpected server version '$server_version'"
ok "kubectl version (server $server_version)"

# --- namespaces -----------------------------------------------------------
k get namespaces
k get namespace kube-system >/dev/null || fail "kube-system namespace missing"
ok "get namespaces"

k delete namespace "$NS" --ignore-not-found --wait=true --timeout=90s
k create namespace "$NS"
poll 60 k -n "$NS" get serviceaccount default || fail "serviceaccount controller did not create $NS/default"
poll 60 k -n "$NS" get configmap kube-root-ca.crt || fail "root-ca-cert-publisher did not create $NS/kube-root-ca.crt"
ok "create namespace $NS (default ServiceAccount and kube-root-ca.crt appeared)"

# --- CustomResourceDefinition + custom resource ------------------------------
k apply -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.latchkey.test
spec:
  group: smoke.latchkey.test
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size:
                type: integer
EOF
k wait --for=condition=Established crd/widgets.smoke.latchkey.test --timeout=60s
# Discovery of a fresh CRD can lag a moment behind Established.
poll 30 k -n "$NS" get widgets || fail "widgets not served"
k -n "$NS" apply -f - <<'EOF'
apiVersion: smoke.latchkey.test/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
EOF
[[ "$(k -n "$NS" get widget w1 -o jsonpath='{.spec.size}')" == 3 ]] || fail "Widget w1 not stored"
ok "CRD widgets.smoke.latchkey.test established, Widget w1 created"

# --- ServiceAccount, RBAC, tokens -----------------------------------------
k -n "$NS" create serviceaccount "$SA"
answer="$(k auth can-i get secrets -n "$NS" --as="system:serviceaccount:$NS:$SA" 2>/dev/null || true)"
[[ "$answer" == no ]] || fail "can-i for $SA answered '$answer', expected 'no' (is RBAC on?)"
admin_answer="$(k auth can-i get secrets -n "$NS" 2>/dev/null || true)"
[[ "$admin_answer" == yes ]] || fail "can-i for admin answered '$admin_answer', expected 'yes'"
ok "RBAC: $SA may not get secrets (no), admin may (yes)"

token="$(k -n "$NS" create token "$SA" --duration=10m)"
who="$("$TESTENV_BIN/kubectl" --kubeconfig /dev/null --server "$(sed -n 's/^TESTENV_APISERVER_URL=//p' "$TESTENV_ENV_FILE")" \
  --certificate-authority "$TESTENV_PKI/ca.crt" --token "$token" \
  auth whoami -o jsonpath='{.status.userInfo.username}')"
[[ "$who" == "system:serviceaccount:$NS:$SA" ]] || fail "token authenticated as '$who'"
ok "TokenRequest token for $SA authenticates as $who"

# --- garbage collection (kube-controller-manager) --------------------------
k -n "$NS" create configmap gc-owner --from-literal=role=owner
owner_uid="$(k -n "$NS" get configmap gc-owner -o jsonpath='{.metadata.uid}')"
[[ -n "$owner_uid" ]] || fail "no uid for gc-owner"
k -n "$NS" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: gc-dependent
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: gc-owner
    uid: $owner_uid
data:
  role: dependent
EOF
k -n "$NS" get configmap gc-dependent >/dev/null
k -n "$NS" delete configmap gc-owner --wait=true
gone() { ! k -n "$NS" get configmap gc-dependent >/dev/null 2>&1; }
t=$SECONDS
poll 30 gone || fail "gc-dependent still present 30s after its owner was deleted (garbage collector not working?)"
ok "garbage collector removed gc-dependent $((SECONDS - t))s after its owner was deleted"

# --- helm -------------------------------------------------------------------
export HELM_CACHE_HOME="$TESTENV_OUT/helm-home/cache"
export HELM_CONFIG_HOME="$TESTENV_OUT/helm-home/config"
export HELM_DATA_HOME="$TESTENV_OUT/helm-home/data"
H=("$TESTENV_BIN/helm" --kubeconfig "$TESTENV_KUBECONFIG_FILE")
"${H[@]}" version
hv="$("${H[@]}" version --template '{{.Version}}')"
[[ "$hv" == v3.* ]] || fail "unexpected helm version '$hv'"
chart="$(mktemp -d)"
mkdir -p "$chart/templates"
cat >"$chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: smoke
version: 0.1.0
EOF
cat >"$chart/templates/configmap.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  hello: {{ .Values.hello | default "world" | quote }}
EOF
"${H[@]}" install smoke "$chart" -n "$NS" --wait --timeout 60s
[[ "$(k -n "$NS" get configmap smoke-cm -o jsonpath='{.data.hello}')" == world ]] || fail "helm release content missing"
"${H[@]}" list -n "$NS"
"${H[@]}" uninstall smoke -n "$NS" --wait --timeout 60s
rm -rf "$chart"
ok "helm $hv installed and uninstalled a chart"

# --- namespace deletion (namespace controller) ------------------------------
k delete namespace "$NS" --wait=true --timeout=90s || fail "namespace $NS was not deleted within 90s"
k get namespace "$NS" >/dev/null 2>&1 && fail "namespace $NS still exists"
ok "namespace $NS deleted (namespace controller finalized it)"
k delete crd widgets.smoke.latchkey.test --wait=true --timeout=60s

log "all checks passed"
