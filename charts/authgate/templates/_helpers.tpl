{{/*
Names, labels and the values every template shares. Object names are the full name
(release + chart, or fullnameOverride) plus a suffix: keep every name at most 63 characters.
*/}}

{{- define "authgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name; the longest suffix added to it is "-sealing-keys" (13), so 50 characters. */}}
{{- define "authgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "authgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; pass a dict with "context" (the root) and "component". */}}
{{- define "authgate.labels" -}}
helm.sh/chart: {{ include "authgate.chart" .context }}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: authgate
{{- with .context.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: immutable in a Deployment, so never the version or chart. */}}
{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Component names (the app.kubernetes.io/component label). */}}
{{- define "authgate.authServiceComponent" -}}auth-service{{- end -}}
{{- define "authgate.operatorComponent" -}}operator{{- end -}}

{{- define "authgate.authServiceLabels" -}}
{{ include "authgate.labels" (dict "context" . "component" (include "authgate.authServiceComponent" .)) }}
{{- end -}}

{{- define "authgate.authServiceSelectorLabels" -}}
{{ include "authgate.selectorLabels" (dict "context" . "component" (include "authgate.authServiceComponent" .)) }}
{{- end -}}

{{- define "authgate.operatorLabels" -}}
{{ include "authgate.labels" (dict "context" . "component" (include "authgate.operatorComponent" .)) }}
{{- end -}}

{{- define "authgate.operatorSelectorLabels" -}}
{{ include "authgate.selectorLabels" (dict "context" . "component" (include "authgate.operatorComponent" .)) }}
{{- end -}}

{{- define "authgate.authServiceAccountName" -}}
{{- if .Values.authService.serviceAccount.create -}}
{{- default (include "authgate.fullname" .) .Values.authService.serviceAccount.name -}}
{{- else -}}
{{- required "authService.serviceAccount.name is required when authService.serviceAccount.create is false" .Values.authService.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "authgate.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "authgate.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Service names; examples/kubernetes/ refers to them as authgate-public, -check, -grpc. */}}
{{- define "authgate.publicServiceName" -}}{{ include "authgate.fullname" . }}-public{{- end -}}
{{- define "authgate.checkServiceName" -}}{{ include "authgate.fullname" . }}-check{{- end -}}
{{- define "authgate.grpcServiceName" -}}{{ include "authgate.fullname" . }}-grpc{{- end -}}
{{- define "authgate.adminServiceName" -}}{{ include "authgate.fullname" . }}-admin{{- end -}}
{{- define "authgate.metricsServiceName" -}}{{ include "authgate.fullname" . }}-metrics{{- end -}}

{{- define "authgate.snapshotSecretName" -}}
{{- default (printf "%s-snapshot" (include "authgate.fullname" .)) .Values.snapshot.secretName -}}
{{- end -}}

{{- define "authgate.sealingSecretName" -}}
{{- default (printf "%s-sealing-keys" (include "authgate.fullname" .)) .Values.sealingKeys.existingSecret -}}
{{- end -}}

{{- define "authgate.adminAudience" -}}
{{- default (printf "authgate.dev/admin/%s/%s" .Release.Namespace (include "authgate.fullname" .)) .Values.admin.audience -}}
{{- end -}}

{{- define "authgate.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $repository -}}
{{- end -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The Kubernetes API credentials every in-cluster client expects, as a projected volume
mounted at the standard path. ServiceAccounts and pods set automountServiceAccountToken:
false, so only the container that needs them gets them, visibly.
*/}}
{{- define "authgate.kubeApiAccessVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end -}}

{{- define "authgate.kubeApiAccessMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}
