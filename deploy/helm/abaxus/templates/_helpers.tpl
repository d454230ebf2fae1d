{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "abaxus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name of every object. */}}
{{- define "abaxus.fullname" -}}
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

{{- define "abaxus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "abaxus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "abaxus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "abaxus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "abaxus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the pods read: the user's, or the one this chart makes. */}}
{{- define "abaxus.secretName" -}}
{{- default (include "abaxus.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret's data (shared by the release's Secret and the migrate hook's copy). */}}
{{- define "abaxus.secretData" -}}
{{- $s := .Values.secrets }}
{{- range $key, $value := dict "postgres-password" $s.postgresPassword "clickhouse-password" $s.clickhousePassword "redis-password" $s.redisPassword "bootstrap-key" $s.bootstrapKey "stripe-secret-key" $s.stripeSecretKey "stripe-webhook-secret" $s.stripeWebhookSecret }}
{{- if $value }}
{{ $key }}: {{ $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Variables the chart owns (tied to mounts, probes and the Secret): not allowed in extraEnv. */}}
{{- define "abaxus.ownedEnv" -}}
{{- list "ABAXUS_DATA_DIR" "ABAXUS_HOST" "ABAXUS_PORT" "ABAXUS_WORKER_PORT" "ABAXUS_DATABASE_URL" "ABAXUS_CLICKHOUSE_URL" "ABAXUS_KAFKA_BROKERS" "ABAXUS_KAFKA_TOPIC" "ABAXUS_KAFKA_PARTITIONS" "ABAXUS_RATE_LIMIT_STORAGE" "ABAXUS_USAGE_HOST" "ABAXUS_USAGE_PORT" "ABAXUS_USAGE_PASSWORD" "ABAXUS_BOOTSTRAP_KEY" "ABAXUS_LOG_FORMAT" "STRIPE_SECRET_KEY" "STRIPE_WEBHOOK_SECRET" | toJson }}
{{- end }}

{{/*
The environment of every Abaxus container. Call with (dict "root" $ "secret" NAME).
Passwords come from the Secret into plain variables first, so the URLs can use them through
Kubernetes' $(VAR) expansion; those helper names do not start with ABAXUS_ (Settings refuses
unknown ABAXUS_* names).
*/}}
{{- define "abaxus.env" -}}
{{- $v := .root.Values }}
{{- $secret := .secret }}
{{- range $name := include "abaxus.ownedEnv" .root | fromJsonArray }}
{{- if hasKey $v.extraEnv $name }}
{{- fail (printf "extraEnv.%s: the chart sets %s itself; use the matching value instead (see values.yaml)." $name $name) }}
{{- end }}
{{- end -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: postgres-password
- name: CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: clickhouse-password
{{- if and $v.redis.enabled $v.redis.auth }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: redis-password
{{- end }}
- name: ABAXUS_DATA_DIR
  value: {{ $v.dataDir | quote }}
- name: ABAXUS_HOST
  value: "0.0.0.0"
- name: ABAXUS_PORT
  value: "8080"
- name: ABAXUS_WORKER_PORT
  value: "8081"
- name: ABAXUS_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
- name: ABAXUS_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(POSTGRES_PASSWORD)@%s:%v/%s" $v.postgresql.user $v.postgresql.host $v.postgresql.port $v.postgresql.database | quote }}
- name: ABAXUS_CLICKHOUSE_URL
  value: {{ printf "%s://%s:$(CLICKHOUSE_PASSWORD)@%s:%v/%s" $v.clickhouse.scheme $v.clickhouse.user $v.clickhouse.host $v.clickhouse.port $v.clickhouse.database | quote }}
- name: ABAXUS_KAFKA_BROKERS
  value: {{ $v.kafka.brokers | quote }}
- name: ABAXUS_KAFKA_TOPIC
  value: {{ $v.kafka.topic | quote }}
- name: ABAXUS_KAFKA_PARTITIONS
  value: {{ $v.kafka.partitions | quote }}
- name: ABAXUS_RATE_LIMIT_STORAGE
{{- if not $v.redis.enabled }}
  value: "memory://"
{{- else if $v.redis.auth }}
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%v/%v" $v.redis.host $v.redis.port $v.redis.db | quote }}
{{- else }}
  value: {{ printf "redis://%s:%v/%v" $v.redis.host $v.redis.port $v.redis.db | quote }}
{{- end }}
# A ClickHouse server answers analysts: no chDB front in any pod.
- name: ABAXUS_USAGE_PORT
  value: "off"
- name: ABAXUS_BOOTSTRAP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: bootstrap-key
      optional: true
- name: STRIPE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: stripe-secret-key
      optional: true
- name: STRIPE_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: stripe-webhook-secret
      optional: true
{{- range $name, $value := $v.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "abaxus.podSpecCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
