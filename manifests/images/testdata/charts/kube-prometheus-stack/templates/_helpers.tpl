{{/* an image block as registry/repository:tag, tag defaulting to the app version */}}
{{- define "kps.image" -}}
{{- $reg := .root.Values.global.imageRegistry | default .image.registry -}}
{{- printf "%s/%s:%s" $reg .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
