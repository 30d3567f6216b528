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

{{/* Name of the RayCluster (ray.enabled). */}}
{{- define "plasma.rayClusterName" -}}
{{- include "plasma.name" (dict "root" . "component" "ray") -}}
{{- end -}}

{{/*
The Service KubeRay makes for the head of the RayCluster: "<cluster>-head-svc". KubeRay cuts names longer than 50
characters from the front (utils.CheckName), which would leave PLASMA_RAY_ADDRESS naming no Service: refuse those.
*/}}
{{- define "plasma.rayHeadService" -}}
{{- $service := printf "%s-head-svc" (include "plasma.rayClusterName" .) -}}
{{- if gt (len $service) 50 -}}
{{- fail (printf "ray.enabled: KubeRay would shorten the head Service name %q (%d characters, at most 50); choose a shorter release name or fullnameOverride" $service (len $service)) -}}
{{- end -}}
{{- $service -}}
{{- end -}}

{{/* The head's Ray Client server port, KubeRay's default (port "client" of its head Service). */}}
{{- define "plasma.rayClientPort" -}}
10001
{{- end -}}

{{/* PLASMA_RAY_ADDRESS of the simulator: the Ray Client server behind the head Service. */}}
{{- define "plasma.rayAddress" -}}
{{- printf "ray://%s:%s" (include "plasma.rayHeadService" .) (include "plasma.rayClientPort" .) -}}
{{- end -}}

{{/*
Refusals for ray.enabled, rendered with the simulator: its batches run on the Ray workers' CPUs, so the simulator
must not be given another device (services/simulator/config.py refuses PLASMA_RAY_ADDRESS with
PLASMA_SIMULATOR_DEVICE=cuda at start-up; the chart says it before anything is installed), and the variables the
chart sets must not be set twice through simulator.env.
*/}}
{{- define "plasma.rayChecks" -}}
{{- if .Values.ray.enabled -}}
{{- $env := .Values.simulator.env -}}
{{- $device := get $env "PLASMA_SIMULATOR_DEVICE" | toString | lower -}}
{{- if and (hasKey $env "PLASMA_SIMULATOR_DEVICE") (ne $device "cpu") -}}
{{- fail (printf "ray.enabled runs the simulator's batches on the Ray workers' CPUs: it cannot be combined with simulator.env.PLASMA_SIMULATOR_DEVICE=%s; set it to cpu (or remove it), or turn ray.enabled off" (get $env "PLASMA_SIMULATOR_DEVICE" | toString)) -}}
{{- end -}}
{{- range $name := list "PLASMA_RAY_ADDRESS" "PLASMA_SIMULATOR_BATCH_PATHS" -}}
{{- if hasKey $env $name -}}
{{- fail (printf "ray.enabled sets %s of the simulator itself (ray.*): remove simulator.env.%s" $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Pod spec of a Ray node (head or worker) from the simulator image: (dict "root" $ "image" IMAGE "node" "head"|"worker"
"resources" RESOURCES). The probes are our own, in Python: KubeRay's default ones call wget, which the image lacks
(KubeRay adds its probes only to a container that has none).
*/}}
{{- define "plasma.rayPodSpec" -}}
{{- $root := .root -}}
{{- $ray := $root.Values.ray -}}
{{- $head := eq .node "head" -}}
{{- $check := "import urllib.request; urllib.request.urlopen('http://127.0.0.1:52365/api/local_raylet_healthz', timeout=4)" -}}
{{- if $head -}}
{{- $check = printf "import socket, urllib.request; urllib.request.urlopen('http://127.0.0.1:52365/api/local_raylet_healthz', timeout=4); urllib.request.urlopen('http://127.0.0.1:8265/api/gcs_healthz', timeout=4); socket.create_connection(('127.0.0.1', %s), timeout=4).close()" (include "plasma.rayClientPort" $root) -}}
{{- end -}}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $ray.terminationGracePeriodSeconds }}
securityContext:
  {{- include "plasma.podSecurityContext" $root | nindent 2 }}
{{- with include "plasma.imagePullSecrets" $root }}
{{ . }}
{{- end }}
containers:
  - name: ray-{{ .node }}
    image: {{ .image }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    env:
      - name: RAY_USAGE_STATS_ENABLED
        value: "0"
    ports:
      {{- if $head }}
      # Named as KubeRay names them: it builds the head Service from these.
      - name: gcs-server
        containerPort: 6379
        protocol: TCP
      - name: dashboard
        containerPort: 8265
        protocol: TCP
      - name: client
        containerPort: {{ include "plasma.rayClientPort" $root }}
        protocol: TCP
      {{- end }}
      - name: metrics
        containerPort: {{ $ray.metricsPort }}
        protocol: TCP
    # The node's raylet{{ if $head }}, the GCS and the Ray Client server{{ end }}.
    readinessProbe:
      exec:
        command: ["/opt/plasma/venv/bin/python", "-c", {{ $check | quote }}]
      initialDelaySeconds: 10
      periodSeconds: 5
      timeoutSeconds: 5
      failureThreshold: 10
    # Restarted after 10 minutes without an answer (KubeRay's own default threshold): a node busy with batches is
    # not restarted for a slow answer.
    livenessProbe:
      exec:
        command: ["/opt/plasma/venv/bin/python", "-c", {{ $check | quote }}]
      initialDelaySeconds: 30
      periodSeconds: 5
      timeoutSeconds: 5
      failureThreshold: 120
    resources:
      {{- toYaml .resources | nindent 6 }}
    # Ray writes its session files (logs, sockets, spilled objects) under /tmp/ray and the home directory: the
    # root filesystem stays writable here, unlike the Plasma services' containers.
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: false
      privileged: false
      capabilities:
        drop: [ALL]
    volumeMounts:
      - name: shm
        mountPath: /dev/shm
volumes:
  # Ray's object store lives in shared memory (ray.objectStoreMemory of it); memory-backed, so it counts
  # against the container's memory limit.
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $ray.shmSize }}
{{- with $ray.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $ray.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
