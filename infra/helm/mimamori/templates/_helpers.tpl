{{- define "mimamori.labels" -}}
app.kubernetes.io/part-of: mimamori
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Non-root, no privilege escalation, no capabilities: what every mimamori container runs with. */}}
{{- define "mimamori.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment, configuration and secrets shared by every mimamori container. */}}
{{- define "mimamori.env" -}}
- name: MIMAMORI_PROFILE
  value: production
- name: MIMAMORI_CONFIG
  value: /etc/mimamori/config/mimamori.yaml
- name: HOME
  value: /tmp
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "mimamori.volumeMounts" -}}
- name: config
  mountPath: /etc/mimamori/config
  readOnly: true
- name: secrets
  mountPath: /etc/mimamori/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "mimamori.volumes" -}}
- name: config
  configMap:
    name: mimamori-config
- name: secrets
  projected:
    sources:
      - secret:
          name: {{ .Values.secrets.databaseUrl }}
          items: [{key: database-url, path: database-url}]
      - secret:
          name: {{ .Values.secrets.milvusToken }}
          items: [{key: token, path: milvus-token}]
- name: tmp
  emptyDir: {}
{{- end -}}
