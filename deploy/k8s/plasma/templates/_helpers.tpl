{{/* Prefix of every object name: the release name, or "<release>-plasma" when that does not contain "plasma". */}}
{{- define "plasma.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Object name of a component: (dict "root" $ "component" "simulator") */}}
{{- define "plasma.name" -}}
{{- printf "%s-%s" (include "plasma.fullname" .root) .component -}}
{{- end -}}

{{- define "plasma.selectorLabels" -}}
app.kubernetes.io/name: plasma
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "plasma.labels" -}}
{{ include "plasma.selectorLabels" . }}
app.kubernetes.io/part-of: plasma
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* <registry>/<repository>:<tag>: (dict "root" $ "image" .Values.simulator.image) */}}
{{- define "plasma.image" -}}
{{- $global := .root.Values.image -}}
{{- $tag := .image.tag | default $global.tag | default .root.Chart.AppVersion | toString -}}
{{- $repository := .image.repository -}}
{{- if $global.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $global.registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* Pod-level security: non-root uid/gid of the images, volumes group-owned by fsGroup, default seccomp. */}}
{{- define "plasma.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root filesystem, no privilege escalation, no capabilities. */}}
{{- define "plasma.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
Native gRPC probes against the standard grpc.health.v1 service every Plasma server registers: NOT_SERVING until
the server is ready, and again while it drains after SIGTERM. (dict "port" 50051 "startupSeconds" 180)
startup: up to startupSeconds for imports and store recovery; readiness: out of the Service after 2 misses;
liveness: restarted after a minute without an answer (a busy server still answers: health checks are short).
*/}}
{{- define "plasma.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: {{ max 1 (div (int .startupSeconds) 5) }}
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/* Extra environment from a name: value map. */}}
{{- define "plasma.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{ end -}}
{{- end -}}

{{- define "plasma.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSize }}
{{- end -}}

{{/* storageClassName line of a claim: the claim's own, else the chart-wide one, else none (cluster default). */}}
{{- define "plasma.storageClass" -}}
{{- $class := .store.storageClassName | default .root.Values.storageClassName -}}
{{- if $class -}}
storageClassName: {{ $class | quote }}
{{- end -}}
{{- end -}}

{{- define "plasma.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "plasma.podAnnotations" -}}
{{- with .Values.podAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
The edge runtime's container, shared by its Deployment and its DaemonSet: (dict "root" $ "edgeId" ID), ID the
edge's id in the registry ("" on the DaemonSet: each pod takes its node's name).
*/}}
{{- define "plasma.edgeContainer" -}}
{{- $root := .root -}}
{{- $edge := $root.Values.edge -}}
- name: edge
  image: {{ include "plasma.image" (dict "root" $root "image" $edge.image) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  ports:
    - name: grpc
      containerPort: {{ $edge.port }}
      protocol: TCP
    {{- if $edge.metrics.enabled }}
    - name: metrics
      containerPort: {{ $edge.metrics.port }}
      protocol: TCP
    {{- end }}
  env:
    - name: PLASMA_EDGE_ADDRESS
      value: {{ printf "%s:%v" $root.Values.listenHost $edge.port | quote }}
    - name: PLASMA_EDGE_STORE
      value: /var/lib/plasma/edge
    - name: PLASMA_EDGE_TRUSTED_KEYS
      value: {{ include "plasma.trustedKeyPaths" $root | quote }}
    {{- if $edge.metrics.enabled }}
    - name: PLASMA_EDGE_METRICS_ADDRESS
      value: {{ printf "0.0.0.0:%v" $edge.metrics.port | quote }}
    {{- end }}
    - name: PLASMA_EDGE_ORT_INTRA_THREADS
      value: {{ $edge.ortIntraThreads | quote }}
    {{- with $edge.follow.channel }}
    - name: PLASMA_EDGE_REGISTRY_TARGET
      value: {{ include "plasma.registryTarget" $root | quote }}
    - name: PLASMA_EDGE_CHANNEL
      value: {{ . | quote }}
    {{- if $.edgeId }}
    - name: PLASMA_EDGE_ID
      value: {{ $.edgeId | quote }}
    {{- else }}
    # Stable across pod restarts and unique per device: a canary that came back under a new id would be
    # "not heard from" and roll the rollout back.
    - name: PLASMA_EDGE_ID
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    {{- end }}
    {{- end }}
    - name: PLASMA_LOG_LEVEL
      value: {{ $root.Values.logLevel | quote }}
    {{- with include "plasma.extraEnv" $edge.env }}{{ . | trim | nindent 4 }}{{ end }}
  {{- include "plasma.grpcProbes" (dict "port" $edge.port "startupSeconds" $edge.startupSeconds) | nindent 2 }}
  resources:
    {{- toYaml $edge.resources | nindent 4 }}
  securityContext:
    {{- include "plasma.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - name: store
      mountPath: /var/lib/plasma/edge
    - name: trusted-keys
      mountPath: /run/plasma/trusted
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* PLASMA_EDGE_TRUSTED_KEYS: every file of the trusted-keys Secret named in signing.trustedKeyFiles. */}}
{{- define "plasma.trustedKeyPaths" -}}
{{- $paths := list -}}
{{- range .Values.signing.trustedKeyFiles -}}
{{- $paths = append $paths (printf "/run/plasma/trusted/%s" .) -}}
{{- end -}}
{{- join "," $paths -}}
{{- end -}}

{{- define "plasma.trustedKeysVolume" -}}
- name: trusted-keys
  secret:
    secretName: {{ .Values.signing.trustedKeysSecret }}
    defaultMode: 0444
    items:
      {{- range .Values.signing.trustedKeyFiles }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end -}}


{{/* host:port of the registry the edges follow: edge.follow.registryTarget, else the chart's registry Service. */}}
{{- define "plasma.registryTarget" -}}
{{- if .Values.edge.follow.registryTarget -}}
{{- .Values.edge.follow.registryTarget -}}
{{- else if .Values.registry.enabled -}}
{{- printf "%s-registry:%v" (include "plasma.fullname" .) .Values.registry.port -}}
{{- else -}}
{{- fail "edge.follow.channel needs a registry: registry.enabled=true (the chart's) or edge.follow.registryTarget (host:port of another)" -}}
{{- end -}}
{{- end -}}
