{{/*
The manager's image, which is also the agent's: database pods copy the agent from it.
*/}}
{{- define "myaas.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{/*
Labels of the objects the hand-written templates add (config/ has no such objects).
*/}}
{{- define "myaas.labels" -}}
app.kubernetes.io/name: myaas
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The manager pods' labels, as config/manager gives them: what the metrics Service and the
PodMonitor select.
*/}}
{{- define "myaas.selectorLabels" -}}
control-plane: controller-manager
{{- end }}

{{/*
The ServiceAccount whose token the ServiceMonitor and PodMonitor scrape the manager with (bound
to the ClusterRole metrics-reader), and the Secret holding that token.
*/}}
{{- define "myaas.metricsScraper" -}}
{{- printf "%s-metrics-scraper" .Release.Name -}}
{{- end }}
