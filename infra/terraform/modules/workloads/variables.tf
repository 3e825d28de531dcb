variable "region" {
  description = "The AWS region (S3 and MSK endpoints, and AWS_REGION in the pods)."
  type        = string
}

variable "chart_path" {
  description = "Path to mimamori's own Helm chart (infra/helm/mimamori)."
  type        = string
}

variable "dashboards_dir" {
  description = "Directory of the Grafana dashboards (docker/grafana/dashboards), provisioned as ConfigMaps."
  type        = string
}

variable "rules_file" {
  description = "The Prometheus alert rules (docker/prometheus/rules/mimamori.rules.yml)."
  type        = string
}

variable "images" {
  description = "Container images of the project: cpu (launcher, init, exporter), api and gpu (Beam worker pool)."
  type        = object({ cpu = string, api = string, gpu = string })
}

variable "role_arns" {
  description = "IAM role ARNs for service accounts, by workload: pipeline, api, exporter, init, milvus, flink."
  type        = map(string)
}

variable "buckets" {
  description = "S3 bucket names by kind: media, crops, references, milvus, flink."
  type        = map(string)
}

variable "kafka_bootstrap_servers" {
  description = "MSK's IAM listener, host:port,..."
  type        = string
}

variable "milvus_query_node_replicas" {
  description = "Milvus query nodes (one per NVMe node): each holds its share of the DISKANN index."
  type        = number
}

variable "gpu_task_managers" {
  description = "Flink task managers, one per GPU node, each with Beam's worker pool on one GPU."
  type        = number
}

variable "grafana_admin_secret" {
  description = "Name of a Secret in the monitoring namespace with keys admin-user and admin-password (made by the operator, never by Terraform)."
  type        = string
}

variable "install_releases" {
  description = "Install the Helm releases; false makes only the namespaces, so that secrets can be put there first."
  type        = bool
}
