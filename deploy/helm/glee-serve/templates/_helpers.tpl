{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "glee-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Suffixes ("-grpc", "-redis-headless") are added to it, so it is kept
to 48 characters to leave room for them within the 63-character limit.
*/}}
{{- define "glee-serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "glee-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object; the component label is added by the two helpers below. */}}
{{- define "glee-serve.baseLabels" -}}
helm.sh/chart: {{ include "glee-serve.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "glee-serve.labels" -}}
{{ include "glee-serve.baseLabels" . }}
{{ include "glee-serve.selectorLabels" . }}
{{- end }}

{{- define "glee-serve.redisLabels" -}}
{{ include "glee-serve.baseLabels" . }}
{{ include "glee-serve.redisSelectorLabels" . }}
{{- end }}

{{/* Selects the server pods only (the bundled Redis has component=redis). */}}
{{- define "glee-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glee-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "glee-serve.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "glee-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "glee-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "glee-serve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference; the GPU build of a release is tagged "<version>-gpu". */}}
{{- define "glee-serve.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary "-gpu" "" .Values.gpu.enabled)) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{- define "glee-serve.redisFullname" -}}
{{- printf "%s-redis" (include "glee-serve.fullname" .) }}
{{- end }}

{{/* Name of the Secret the chart creates for API keys and the external Redis URL. */}}
{{- define "glee-serve.secretName" -}}
{{- include "glee-serve.fullname" . }}
{{- end }}

{{/* True (non-empty) when the chart's own Secret has something to hold. */}}
{{- define "glee-serve.needsSecret" -}}
{{- if or (and .Values.auth.apiKeys (not .Values.auth.existingSecret)) (and (eq .Values.redis.mode "external") (not .Values.redis.external.existingSecret)) }}true{{ end }}
{{- end }}

{{/*
A settings value as an environment string that pydantic-settings parses back to the same value: lists
comma-separated (the server's list format: GLEE_API_KEYS=key1,key2), whole numbers without the float64
exponent YAML numbers get in Helm (20971520, not 2.097152e+07).
*/}}
{{- define "glee-serve.envValue" -}}
{{- if kindIs "slice" . }}
{{- join "," . }}
{{- else if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}
