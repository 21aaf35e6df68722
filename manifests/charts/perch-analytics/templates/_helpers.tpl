{{/* Release-scoped name prefix of every object. */}}
{{- define "perch-analytics.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "perch-analytics.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "perch-analytics.labels" -}}
{{ include "perch-analytics.selectorLabels" . }}
app.kubernetes.io/part-of: perch
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
Image reference. With global.imageRegistry set, an image lives in that
registry under its upstream host (airgap.Repository: the port's colon
becomes "_"), e.g. 10.0.0.1:5000/docker.io/bluenviron/mediamtx:1.9.3.
Call with (list $ .Values.x.image).
*/}}
{{- define "perch-analytics.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- $upstream := printf "%s/%s:%s" $img.registry $img.repository (toString $img.tag) -}}
{{- with $root.Values.global.imageRegistry -}}
{{- printf "%s/%s/%s:%s" (trimSuffix "/" .) ($img.registry | lower | replace ":" "_") $img.repository (toString $img.tag) -}}
{{- else -}}
{{- $upstream -}}
{{- end -}}
{{- end -}}

{{/*
What every pod of the chart shares: the one set of pull secrets (a chart
that gave them to only some pods failed on private registries) and no API
token, since nothing here talks to the API server.
*/}}
{{- define "perch-analytics.podCommon" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- end -}}

{{/* Worker slots: the fixed set of workers streams are assigned to. */}}
{{- define "perch-analytics.slotCount" -}}
{{- $cap := int .Values.inference.cpuProfile.workers -}}
{{- if gt (int .Values.gpu.count) 0 -}}
{{- $cap = mul (int .Values.gpu.count) (int .Values.gpu.sharingReplicas) -}}
{{- end -}}
{{- min $cap (len .Values.streams) -}}
{{- end -}}

{{/*
Stream -> worker slot, as YAML {slot: [stream names]}, slots with no stream
left out. Rendezvous (highest-random-weight) hashing: a stream goes to the
slot whose sha256(stream/slot) is highest. The owner of a stream depends
only on its own name and the slot count, so adding or removing other
streams never moves it, and adding a slot moves only the streams the new
slot wins. Equal-length hex strings compare like the numbers they spell.
*/}}
{{- define "perch-analytics.assignment" -}}
{{- $slots := int (include "perch-analytics.slotCount" .) -}}
{{- $out := dict -}}
{{- range $s := .Values.streams -}}
{{- $best := "" -}}
{{- $owner := "" -}}
{{- range $i := until $slots -}}
{{- $slot := printf "w%d" $i -}}
{{- $w := sha256sum (printf "%s/%s" $s.name $slot) -}}
{{- if gt $w $best -}}
{{- $best = $w -}}
{{- $owner = $slot -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $owner (append (get $out $owner | default list) $s.name) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "perch-analytics.gatewayHost" -}}
{{- printf "%s-gateway.%s.svc" (include "perch-analytics.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "perch-analytics.natsHost" -}}
{{- printf "%s-nats.%s.svc" (include "perch-analytics.fullname" .) .Release.Namespace -}}
{{- end -}}
