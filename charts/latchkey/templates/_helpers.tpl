{{/* Names */}}
{{- define "latchkey.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "latchkey.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the release namespace: two releases never collide. */}}
{{- define "latchkey.clusterName" -}}
{{- printf "%s-%s" (include "latchkey.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "latchkey.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "latchkey.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: latchkey
{{- end }}

{{- define "latchkey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "latchkey.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "latchkey.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "latchkey.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "latchkey.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the serving certificate, when there is one. */}}
{{- define "latchkey.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- required "tls.existingSecret is required when tls.mode is existingSecret" .Values.tls.existingSecret }}
{{- else if or (eq .Values.tls.mode "selfSigned") (eq .Values.tls.mode "certManager") }}
{{- printf "%s-tls" (include "latchkey.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Service's DNS names, then idp.am.wso2.com (APK's IdP host name), then extraSANs. */}}
{{- define "latchkey.dnsNames" -}}
{{- $svc := include "latchkey.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) "idp.am.wso2.com" }}
{{- range .Values.tls.extraSANs }}
{{- $names = append $names . }}
{{- end }}
{{- toJson ($names | uniq) }}
{{- end }}

{{- define "latchkey.scheme" -}}
{{- if eq .Values.tls.mode "plaintext" }}http{{ else }}https{{ end }}
{{- end }}

{{/* Base URL of the token listener inside the cluster. */}}
{{- define "latchkey.inClusterUrl" -}}
{{- printf "%s://%s.%s.svc:%d" (include "latchkey.scheme" .) (include "latchkey.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}

{{- define "latchkey.tokenUrl" -}}
{{- default (printf "%s/oauth2/token" (include "latchkey.inClusterUrl" .)) .Values.tokenUrl }}
{{- end }}

{{/* Base URL the metadata advertises: publicUrl, else the Service's cluster DNS name, so the
     metadata never follows a request's Host. */}}
{{- define "latchkey.publicUrl" -}}
{{- $fqdn := printf "%s.%s.svc.%s" (include "latchkey.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- default (printf "%s://%s:%d" (include "latchkey.scheme" .) $fqdn (int .Values.service.port)) .Values.publicUrl }}
{{- end }}

{{- define "latchkey.jwksUrl" -}}
{{- $fqdn := printf "%s.%s.svc.%s" (include "latchkey.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- default (printf "%s://%s:%d/oauth2/jwks" (include "latchkey.scheme" .) $fqdn (int .Values.service.port)) .Values.apk.tokenIssuer.jwksUrl }}
{{- end }}

{{/* Namespace of the default non-production client. */}}
{{- define "latchkey.defaultClientNamespace" -}}
{{- default .Release.Namespace .Values.defaultClient.namespace }}
{{- end }}

{{/*
The self-signed serving certificate (tls.mode selfSigned), made once per release and reused:
an existing Secret is kept while its names match. Returns a dict with crt and key (PEM), so
the Secret and the TokenIssuer's inline trust show the same certificate in one render.
*/}}
{{- define "latchkey.selfSignedCert" -}}
{{- if not (hasKey .Values.tls "_selfSigned") }}
{{- $name := include "latchkey.tlsSecretName" . }}
{{- $names := include "latchkey.dnsNames" . | fromJsonArray }}
{{- $digest := $names | join "," | sha256sum | trunc 16 }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $annotations := dig "metadata" "annotations" dict ($existing | default dict) }}
{{- $out := "" }}
{{- if and $existing (eq (index $annotations "latchkey.dev/sans-digest" | default "") $digest) (hasKey ($existing.data | default dict) "tls.crt") }}
{{- $out = dict "crt" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) "digest" $digest | toJson }}
{{- else }}
{{- $cert := genSelfSignedCert (index $names 2) nil $names (int .Values.tls.validityDays) }}
{{- $out = dict "crt" $cert.Cert "key" $cert.Key "digest" $digest | toJson }}
{{- end }}
{{- /* Made once per render: the Secret and the TokenIssuer must show the same certificate. */}}
{{- $_ := set .Values.tls "_selfSigned" $out }}
{{- end }}
{{- .Values.tls._selfSigned }}
{{- end }}

{{/* What the operator does in a watched namespace (rbac.yaml). */}}
{{- define "latchkey.clientRules" -}}
- apiGroups: ["latchkey.dev"]
  resources: ["oauthclients"]
  verbs: ["list", "watch"]
- apiGroups: ["latchkey.dev"]
  resources: ["oauthclients/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Issue 12: people who sign in.
- apiGroups: ["latchkey.dev"]
  resources: ["users"]
  verbs: ["list", "watch"]
- apiGroups: ["latchkey.dev"]
  resources: ["users/status"]
  verbs: ["patch"]
{{- end }}

{{/* --verifier-cache in seconds (0: leave the flag out, two jwksMaxAge). With apk.enabled, at
least APK's router JWKS cache plus margin: it never refetches before then. */}}
{{- define "latchkey.verifierCacheSeconds" -}}
{{- $seconds := int (.Values.signingKeys.verifierCacheSeconds | default 0) }}
{{- if .Values.apk.enabled }}
{{- $seconds = max $seconds (int (.Values.apk.verifierCacheSeconds | default 7800)) }}
{{- end }}
{{- $seconds }}
{{- end }}
