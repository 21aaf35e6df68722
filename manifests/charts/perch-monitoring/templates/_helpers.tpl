{{/* Release-scoped name prefix of every object. */}}
{{- define "perch-monitoring.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Call with (list $ "component"). */}}
{{- define "perch-monitoring.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end -}}

{{/* Call with (list $ "component"). */}}
{{- define "perch-monitoring.labels" -}}
{{- $root := index . 0 -}}
{{ include "perch-monitoring.selectorLabels" . }}
app.kubernetes.io/part-of: perch
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end -}}

{{/*
Image reference, as in perch-analytics: with global.imageRegistry set, an
image lives in that registry under its upstream host (the port's colon
becomes "_"). Call with (list $ .Values.x.image).
*/}}
{{- define "perch-monitoring.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- with $root.Values.global.imageRegistry -}}
{{- printf "%s/%s/%s:%s" (trimSuffix "/" .) ($img.registry | lower | replace ":" "_") $img.repository (toString $img.tag) -}}
{{- else -}}
{{- printf "%s/%s:%s" $img.registry $img.repository (toString $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "perch-monitoring.pullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod and container security from the user a pod runs as, as in
perch-analytics: that user explicitly, non-root unless it is 0, no
capabilities, a read-only root, RuntimeDefault seccomp. Call with
(list $ uid); the container part is perch-monitoring.containerSecurity.
*/}}
{{- define "perch-monitoring.podSecurity" -}}
{{- $uid := int (index . 1) -}}
securityContext:
  runAsUser: {{ $uid }}
  runAsGroup: {{ $uid }}
  fsGroup: {{ $uid }}
  runAsNonRoot: {{ ne $uid 0 }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "perch-monitoring.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/*
The annotations that make the pod-discovery job scrape a pod. Call with
(list port "job").
*/}}
{{- define "perch-monitoring.scrape" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 0 | quote }}
prometheus.io/job: {{ index . 1 }}
{{- end -}}
