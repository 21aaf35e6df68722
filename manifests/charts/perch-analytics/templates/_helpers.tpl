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

{{/*
Pod security, from the user a pod runs as: that user explicitly, since
several images name none (MediaMTX's is built FROM scratch, the NATS alpine
image runs as root) and runAsNonRoot alone would refuse to start them;
non-root unless the user is 0; RuntimeDefault seccomp. Call with
(list $ uid).
*/}}
{{- define "perch-analytics.podSecurity" -}}
{{- $uid := int (index . 1) -}}
securityContext:
  runAsUser: {{ $uid }}
  runAsGroup: {{ $uid }}
  runAsNonRoot: {{ ne $uid 0 }}
  {{- if ne $uid 0 }}
  fsGroup: {{ $uid }}
  {{- end }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* Every container: no privilege escalation, no capabilities (every port
is above 1024), nothing written outside its volumes. */}}
{{- define "perch-analytics.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/*
Worker slots, as YAML {slots: [{name, resource, node}]}: the fixed set of
workers streams are assigned to. In a cluster Perch gives them
(workers.perNode, workers.slots: one per share of every device of every
Ready GPU node, each pinned to its node, names kept while the node lives:
manifests.PlaceSlots). Otherwise w0 to w(N-1): every device of
gpu.resources (or gpu.count nvidia.com/gpu) gpu.sharingReplicas times, in
order, or cpuProfile.workers with no resource. Slots left without a stream
render no worker.
*/}}
{{- define "perch-analytics.slots" -}}
{{- $out := list -}}
{{- if .Values.workers.perNode -}}
{{- $out = .Values.workers.slots | default list -}}
{{- else if gt (int .Values.gpu.count) 0 -}}
{{- $res := .Values.gpu.resources -}}
{{- if not $res -}}
{{- $res = list (dict "name" "nvidia.com/gpu" "count" .Values.gpu.count) -}}
{{- end -}}
{{- range $r := $res -}}
{{- range until (mul (int $r.count) (int $.Values.gpu.sharingReplicas) | int) -}}
{{- $out = append $out (dict "name" (printf "w%d" (len $out)) "resource" $r.name) -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- range $i := until (int .Values.inference.cpuProfile.workers) -}}
{{- $out = append $out (dict "name" (printf "w%d" $i)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "slots" $out) -}}
{{- end -}}

{{/*
Stream -> worker slot, as YAML {slot: [stream names]}, slots with no stream
left out. A stream's slot (streams[].slot, which Perch sets from where it
was: manifests.Assign) is kept while the slot exists and has room; every
other stream is placed from the values alone (hand-edited values still
assign every stream once): every (stream, slot) pair is ranked by
sha256("stream/slot"), highest first, and a pair is taken when its stream
has no slot yet and its slot has room. Room is floor(streams/slots), or one
more while fewer than streams%slots slots have that many, so every slot
ends within one stream of the mean. Kept slots make a change move the
fewest streams balance allows (TestAssignMovesTheFewest); the ranking, a
property of each pair and not of the list's order, places the rest the
same way every time. Equal-length hex strings sort like the numbers they
spell; names are DNS labels, so a space separates the fields.
*/}}
{{- define "perch-analytics.assignment" -}}
{{- $names := list -}}
{{- range (include "perch-analytics.slots" . | fromYaml).slots -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- $slots := len $names -}}
{{- $n := len .Values.streams -}}
{{- $out := dict -}}
{{- if and (gt $slots 0) (gt $n 0) -}}
{{- $q := div $n $slots -}}
{{- $r := mod $n $slots -}}
{{- $pairs := list -}}
{{- range $s := .Values.streams -}}
{{- range $slot := $names -}}
{{- $pairs = append $pairs (printf "%s %s %s" (sha256sum (printf "%s/%s" $s.name $slot)) $slot $s.name) -}}
{{- end -}}
{{- end -}}
{{- $owner := dict -}}
{{- $load := dict -}}
{{- $full := 0 -}}
{{- range $s := .Values.streams -}}
{{- if and $s.slot (has (toString $s.slot) $names) -}}
{{- $l := int (get $load $s.slot | default 0) -}}
{{- if or (lt $l $q) (and (eq $l $q) (lt $full $r)) -}}
{{- if eq $l $q -}}{{- $full = add1 $full -}}{{- end -}}
{{- $_ := set $load $s.slot (add1 $l) -}}
{{- $_ := set $owner $s.name $s.slot -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $p := sortAlpha $pairs | reverse -}}
{{- $f := splitList " " $p -}}
{{- $slot := index $f 1 -}}
{{- $name := index $f 2 -}}
{{- if not (hasKey $owner $name) -}}
{{- $l := int (get $load $slot | default 0) -}}
{{- if or (lt $l $q) (and (eq $l $q) (lt $full $r)) -}}
{{- if eq $l $q -}}{{- $full = add1 $full -}}{{- end -}}
{{- $_ := set $load $slot (add1 $l) -}}
{{- $_ := set $owner $name $slot -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $s := .Values.streams -}}
{{- $slot := get $owner $s.name -}}
{{- $_ := set $out $slot (append (get $out $slot | default list) $s.name) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "perch-analytics.gatewayHost" -}}
{{- printf "%s-gateway.%s.svc" (include "perch-analytics.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "perch-analytics.natsHost" -}}
{{- printf "%s-nats.%s.svc" (include "perch-analytics.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
Scrape annotations for Prometheus's pod discovery, when monitoring is on.
Call with (list $ port "job").
*/}}
{{- define "perch-analytics.scrape" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.monitoring.enabled -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/job: {{ index . 2 }}
{{- end -}}
{{- end -}}
