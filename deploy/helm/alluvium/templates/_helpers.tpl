{{- define "alluvium.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "alluvium.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "alluvium.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "fsmaster") */}}
{{- define "alluvium.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alluvium.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "alluvium.labels" -}}
{{ include "alluvium.selectorLabels" . }}
helm.sh/chart: {{ include "alluvium.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{- define "alluvium.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "alluvium.tokenSecret" -}}
{{- default (printf "%s-token" (include "alluvium.fullname" .)) .Values.token.existingSecret -}}
{{- end -}}

{{/* The stable DNS name of pod i of a master StatefulSet: (dict "ctx" $ "role" "fsmaster" "i" 0) */}}
{{- define "alluvium.podHost" -}}
{{- $full := include "alluvium.fullname" .ctx -}}
{{- printf "%s-%s-%d.%s-%s.%s.svc.%s" $full .role (int .i) $full .role .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* The FS masters' rpc addresses, comma-separated (Masters as lists). */}}
{{- define "alluvium.fsmasterAddrs" -}}
{{- $addrs := list -}}
{{- range $i, $_ := until (int .Values.fsmaster.replicas) -}}
{{- $addrs = append $addrs (printf "%s:%d" (include "alluvium.podHost" (dict "ctx" $ "role" "fsmaster" "i" $i)) (int $.Values.fsmaster.ports.rpc)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* The job masters' rpc addresses, comma-separated. */}}
{{- define "alluvium.jobmasterAddrs" -}}
{{- $addrs := list -}}
{{- range $i, $_ := until (int .Values.jobmaster.replicas) -}}
{{- $addrs = append $addrs (printf "%s:%d" (include "alluvium.podHost" (dict "ctx" $ "role" "jobmaster" "i" $i)) (int $.Values.jobmaster.ports.rpc)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* A raft group's peers, id=host:raftport|host:rpcport each; the id is the pod name. (dict "ctx" $ "role" "jobmaster" "n" 3 "raft" 20003 "rpc" 20001) */}}
{{- define "alluvium.peers" -}}
{{- $full := include "alluvium.fullname" .ctx -}}
{{- $peers := list -}}
{{- range $i, $_ := until (int .n) -}}
{{- $host := include "alluvium.podHost" (dict "ctx" $.ctx "role" $.role "i" $i) -}}
{{- $peers = append $peers (printf "%s-%s-%d=%s:%d|%s:%d" $full $.role $i $host (int $.raft) $host (int $.rpc)) -}}
{{- end -}}
{{- toJson $peers -}}
{{- end -}}

{{/* Checks every template runs first: what the chart refuses to render. */}}
{{- define "alluvium.validate" -}}
{{- if not .Values.ufs.uri -}}
{{- fail "ufs.uri is required: the root mount's under storage, e.g. --set ufs.uri=s3://bucket/prefix (with ufs.options s3.endpoint, s3.access-key, ...) or file:///ufs/data with ufs.volume shared by every pod" -}}
{{- end -}}
{{- $fs := int .Values.fsmaster.replicas -}}
{{- if lt $fs 1 -}}
{{- fail (printf "fsmaster.replicas=%d: want 1, or 3 or 5 FS masters" $fs) -}}
{{- end -}}
{{- if and (gt $fs 1) (eq (mod $fs 2) 0) -}}
{{- fail (printf "fsmaster.replicas=%d: a Raft group wants an odd number of members (3 or 5): %d survive no more failures than %d" $fs $fs (sub $fs 1)) -}}
{{- end -}}
{{- $jm := int .Values.jobmaster.replicas -}}
{{- if or (lt $jm 1) (and (gt $jm 1) (eq (mod $jm 2) 0)) -}}
{{- fail (printf "jobmaster.replicas=%d: want 1, 3 or 5 (a Raft group wants an odd number of members)" $jm) -}}
{{- end -}}
{{- if and (not .Values.token.existingSecret) .Values.token.value (lt (len .Values.token.value) 16) -}}
{{- fail "token.value: want at least 16 characters (or leave it empty to have one generated)" -}}
{{- end -}}
{{- range $i, $t := .Values.worker.tiers -}}
{{- if not (has $t.alias (list "MEM" "SSD" "HDD")) -}}
{{- fail (printf "worker.tiers[%d].alias=%v: want MEM, SSD or HDD" $i $t.alias) -}}
{{- end -}}
{{- if eq (len (pick $t "hostPath" "emptyDir")) 0 -}}
{{- fail (printf "worker.tiers[%d] (%s): give it emptyDir: {} (medium: Memory for MEM) or hostPath: /dir/on/the/node" $i $t.alias) -}}
{{- end -}}
{{- if eq (len (pick $t "hostPath" "emptyDir")) 2 -}}
{{- fail (printf "worker.tiers[%d] (%s): emptyDir or hostPath, not both" $i $t.alias) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What every role's config file holds. */}}
{{- define "alluvium.baseConfig" -}}
{{- $sec := dict "token-file" "/etc/alluvium/token/token" "superuser" .Values.security.superuser "supergroup" .Values.security.supergroup "permissions" .Values.security.permissions -}}
{{- if .Values.security.users }}{{ $_ := set $sec "users" .Values.security.users }}{{ end -}}
{{- if .Values.security.groups }}{{ $_ := set $sec "groups" .Values.security.groups }}{{ end -}}
{{- $c := dict "home" "/var/lib/alluvium" "log" (dict "level" .Values.log.level "format" .Values.log.format) "security" $sec -}}
{{- $_ := set $c "client" (dict "master" (include "alluvium.fsmasterAddrs" .) "job-master" (include "alluvium.jobmasterAddrs" .)) -}}
{{- toYaml $c -}}
{{- end -}}

{{/* A role's file: the base, the role's sections, then .Values.config over all. (dict "ctx" $ "sections" (dict ...)) */}}
{{- define "alluvium.configFile" -}}
{{- $c := include "alluvium.baseConfig" .ctx | fromYaml -}}
{{- $c = mustMergeOverwrite $c .sections -}}
{{- $c = mustMergeOverwrite $c (deepCopy .ctx.Values.config) -}}
{{- toYaml $c -}}
{{- end -}}

{{- define "alluvium.fsmasterConfig" -}}
{{- $v := .Values.fsmaster -}}
{{- $fs := dict "bind-host" "0.0.0.0" "rpc-port" (int $v.ports.rpc) "http-port" (int $v.ports.http) "ufs" .Values.ufs.uri "job-master" (include "alluvium.jobmasterAddrs" .) "journal" (dict "dir" "/var/lib/alluvium/journal") -}}
{{- if .Values.ufs.options }}{{ $_ := set $fs "ufs-options" .Values.ufs.options }}{{ end -}}
{{- if gt (int $v.replicas) 1 -}}
{{- $_ := set $fs.journal "type" "embedded" -}}
{{- $_ := set $fs "raft" (dict "port" (int $v.ports.raft) "peers" (include "alluvium.peers" (dict "ctx" . "role" "fsmaster" "n" $v.replicas "raft" $v.ports.raft "rpc" $v.ports.rpc) | fromJsonArray)) -}}
{{- end -}}
{{- include "alluvium.configFile" (dict "ctx" . "sections" (dict "fsmaster" (mustMergeOverwrite $fs (deepCopy $v.config)))) -}}
{{- end -}}

{{- define "alluvium.jobmasterConfig" -}}
{{- $v := .Values.jobmaster -}}
{{- $peers := include "alluvium.peers" (dict "ctx" . "role" "jobmaster" "n" $v.replicas "raft" $v.ports.raft "rpc" $v.ports.rpc) | fromJsonArray -}}
{{- $jm := dict "bind-host" "0.0.0.0" "rpc-port" (int $v.ports.rpc) "http-port" (int $v.ports.http) "master" (include "alluvium.fsmasterAddrs" .) "raft" (dict "port" (int $v.ports.raft) "dir" "/var/lib/alluvium/jobmaster" "peers" $peers) -}}
{{- include "alluvium.configFile" (dict "ctx" . "sections" (dict "jobmaster" (mustMergeOverwrite $jm (deepCopy $v.config)))) -}}
{{- end -}}

{{- define "alluvium.workerConfig" -}}
{{- $v := .Values.worker -}}
{{- $tiers := list -}}
{{- range $i, $t := $v.tiers -}}
{{- $tiers = append $tiers (dict "alias" $t.alias "path" (printf "/var/lib/alluvium/tiers/%d-%s" $i (lower $t.alias)) "quota" $t.quota) -}}
{{- end -}}
{{- $sock := "off" -}}
{{- if $v.shortCircuit.enabled }}{{ $sock = printf "%s/worker.sock" $v.shortCircuit.hostPath }}{{ end -}}
{{- $w := dict "role" "all" "bind-host" "0.0.0.0" "rpc-port" (int $v.ports.rpc) "http-port" (int $v.ports.http) "master" (include "alluvium.fsmasterAddrs" .) "dir" "/var/lib/alluvium/worker" "tiers" $tiers "domain-socket" $sock -}}
{{- $jw := dict "rpc-port" (int $v.ports.job) "job-master" (include "alluvium.jobmasterAddrs" .) -}}
{{- include "alluvium.configFile" (dict "ctx" . "sections" (dict "worker" (mustMergeOverwrite $w (deepCopy $v.config)) "jobworker" (mustMergeOverwrite $jw (deepCopy $v.jobworkerConfig)))) -}}
{{- end -}}

{{- define "alluvium.proxyConfig" -}}
{{- $v := .Values.proxy -}}
{{- $s3 := dict "region" $v.s3.region "staging-dir" "/var/lib/alluvium/proxy" -}}
{{- if $v.s3.users }}{{ $_ := set $s3 "users" $v.s3.users }}{{ end -}}
{{- $p := dict "bind-host" "0.0.0.0" "rest-port" (int $v.ports.rest) "s3-port" (int $v.ports.s3) "rest-open" $v.restOpen "s3" $s3 -}}
{{- include "alluvium.configFile" (dict "ctx" . "sections" (dict "proxy" (mustMergeOverwrite $p (deepCopy $v.config)))) -}}
{{- end -}}

{{/* Prometheus scrape annotations for a pod whose http port is .port. */}}
{{- define "alluvium.scrapeAnnotations" -}}
{{- if .ctx.Values.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* The environment every Alluvium container gets: its pod's name and IP. */}}
{{- define "alluvium.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{/* Volumes every Alluvium pod mounts: its config, the token, /tmp, the UFS volume. */}}
{{- define "alluvium.commonVolumes" -}}
- name: config
  secret:
    secretName: {{ include "alluvium.fullname" . }}-config
- name: token
  secret:
    secretName: {{ include "alluvium.tokenSecret" . }}
    items:
      - key: token
        path: token
- name: tmp
  emptyDir: {}
{{- if .Values.ufs.volume }}
- name: ufs
{{ toYaml .Values.ufs.volume | indent 2 }}
{{- end }}
{{- end -}}

{{- define "alluvium.commonMounts" -}}
- name: config
  mountPath: /etc/alluvium/config
  readOnly: true
- name: token
  mountPath: /etc/alluvium/token
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.ufs.volume }}
- name: ufs
  mountPath: {{ .Values.ufs.mountPath }}
{{- end }}
{{- end -}}

{{/* A readiness probe on /healthz of the named port. */}}
{{- define "alluvium.readiness" -}}
readinessProbe:
  httpGet:
    path: /healthz
    port: {{ . }}
  periodSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* A byte size as Alluvium reads it (4096, 64MiB, 10GB, 512k: K, M, G, T alone are binary) as a Kubernetes quantity. */}}
{{- define "alluvium.quantity" -}}
{{- $s := . | toString | upper | nospace -}}
{{- $units := list (list "KIB" "Ki") (list "MIB" "Mi") (list "GIB" "Gi") (list "TIB" "Ti") (list "KB" "k") (list "MB" "M") (list "GB" "G") (list "TB" "T") (list "K" "Ki") (list "M" "Mi") (list "G" "Gi") (list "T" "Ti") (list "B" "") -}}
{{- $out := "" -}}
{{- range $units -}}
{{- if and (not $out) (hasSuffix (index . 0) $s) -}}
{{- $out = printf "%s%s" (trimSuffix (index . 0) $s) (index . 1) -}}
{{- end -}}
{{- end -}}
{{- default $s $out -}}
{{- end -}}
