{{- define "sluice.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "sluice.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service that gives each coordinator a stable DNS name. */}}
{{- define "sluice.coordinatorHeadless" -}}
{{ include "sluice.fullname" . }}-coordinator-headless
{{- end -}}

{{/* Coordinator i's address: <pod>.<headless>.<namespace>.svc.<domain>:<port>. */}}
{{- define "sluice.coordinatorAddress" -}}
{{- $root := index . 0 -}}
{{- $i := index . 1 -}}
{{ include "sluice.fullname" $root }}-coordinator-{{ $i }}.{{ include "sluice.coordinatorHeadless" $root }}.{{ $root.Release.Namespace }}.svc.{{ $root.Values.clusterDomain }}:{{ $root.Values.coordinator.port }}
{{- end -}}

{{/* --peers: ID=ADDRESS of every coordinator; pod ordinal i has id i+1. */}}
{{- define "sluice.coordinatorPeers" -}}
{{- $root := . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $peers = append $peers (printf "%d=%s" (add1 $i) (include "sluice.coordinatorAddress" (list $root $i))) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* Every coordinator's address, for workers and clients. */}}
{{- define "sluice.coordinatorAddresses" -}}
{{- $root := . -}}
{{- $addresses := list -}}
{{- range $i := until (int .Values.coordinator.replicas) -}}
{{- $addresses = append $addresses (include "sluice.coordinatorAddress" (list $root $i)) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- end -}}

{{/* Environment shared by coordinators and workers. */}}
{{- define "sluice.sharedEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "sluice.fullname" . }}-config
{{- with .Values.checkpointStore.credentialsSecret }}
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end -}}
