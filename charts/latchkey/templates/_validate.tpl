{{/* Combinations of values that cannot work fail the render with a reason. */}}
{{- define "latchkey.validate" -}}
{{- if and .Values.defaultClient.enabled .Values.watchNamespaces }}
{{- if not (has (include "latchkey.defaultClientNamespace" .) .Values.watchNamespaces) }}
{{- fail (printf "defaultClient.namespace %q is not in watchNamespaces: Latchkey would never see the default client" (include "latchkey.defaultClientNamespace" .)) }}
{{- end }}
{{- end }}
{{- if and .Values.apk.enabled (eq .Values.tls.mode "perPod") (not .Values.apk.tokenIssuer.jwksTLS) }}
{{- fail "apk.enabled with tls.mode perPod: APK's gateway cannot trust a certificate made by each replica; use selfSigned, certManager or existingSecret, or set apk.tokenIssuer.jwksTLS" }}
{{- end }}
{{- if eq .Values.tls.mode "certManager" }}
{{- $_ := required "tls.certManager.issuerRef.name is required when tls.mode is certManager" .Values.tls.certManager.issuerRef.name }}
{{- end }}
{{- end }}
