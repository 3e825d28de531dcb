# What runs on the cluster, as Helm releases: the NVIDIA device plugin, Milvus (cluster mode, DISKANN
# on the NVMe nodes, S3 through its IAM role), the Flink Kubernetes operator, Prometheus and Grafana
# with the project's rules and dashboards, and mimamori's own chart (a Flink session cluster with
# Beam's GPU worker pool, the job server, the pipeline launcher, the API and the exporter).
#
# Chart versions are pinned here; the values are templates beside this file, one per release.
# The namespaces come first (install_releases = false): the operator puts the secrets that the
# releases read into them before the releases are installed (docs/deploy.md).

locals {
  namespaces = ["mimamori", "milvus", "flink-operator", "monitoring"]
}

resource "kubernetes_namespace" "this" {
  for_each = toset(local.namespaces)

  metadata {
    name = each.value
    labels = {
      # Pod Security Admission: baseline enforced (the monitoring stack's node exporter needs
      # host namespaces, so that namespace is privileged), warnings for anything not restricted.
      "pod-security.kubernetes.io/enforce" = each.value == "monitoring" ? "privileged" : "baseline"
      "pod-security.kubernetes.io/warn"    = "restricted"
    }
  }
}

resource "helm_release" "nvidia_device_plugin" {
  count = var.install_releases ? 1 : 0

  name       = "nvidia-device-plugin"
  namespace  = "kube-system"
  repository = "https://nvidia.github.io/k8s-device-plugin"
  chart      = "nvidia-device-plugin"
  version    = "0.17.0"

  values = [templatefile("${path.module}/values/nvidia-device-plugin.yaml.tftpl", {})]
}

resource "helm_release" "milvus" {
  count = var.install_releases ? 1 : 0

  name       = "milvus"
  namespace  = kubernetes_namespace.this["milvus"].metadata[0].name
  repository = "https://zilliztech.github.io/milvus-helm/"
  chart      = "milvus"
  version    = "4.1.36" # the last chart line for Milvus 2.3.x, the server the local stack runs
  timeout    = 1200

  values = [templatefile("${path.module}/values/milvus.yaml.tftpl", {
    region              = var.region
    bucket              = var.buckets["milvus"]
    role_arn            = var.role_arns["milvus"]
    query_node_replicas = var.milvus_query_node_replicas
  })]
}

resource "helm_release" "flink_operator" {
  count = var.install_releases ? 1 : 0

  name       = "flink-kubernetes-operator"
  namespace  = kubernetes_namespace.this["flink-operator"].metadata[0].name
  repository = "https://downloads.apache.org/flink/flink-kubernetes-operator-1.10.0/"
  chart      = "flink-kubernetes-operator"
  version    = "1.10.0"

  values = [templatefile("${path.module}/values/flink-operator.yaml.tftpl", {
    watch_namespace = kubernetes_namespace.this["mimamori"].metadata[0].name
  })]
}

resource "kubernetes_config_map" "dashboards" {
  for_each = var.install_releases ? fileset(var.dashboards_dir, "*.json") : toset([])

  metadata {
    name      = "grafana-dashboard-${trimsuffix(each.value, ".json")}"
    namespace = kubernetes_namespace.this["monitoring"].metadata[0].name
    labels    = { grafana_dashboard = "1" } # picked up by Grafana's dashboard sidecar
  }

  data = {
    (each.value) = file("${var.dashboards_dir}/${each.value}")
  }
}

resource "helm_release" "monitoring" {
  count = var.install_releases ? 1 : 0

  name       = "monitoring"
  namespace  = kubernetes_namespace.this["monitoring"].metadata[0].name
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "kube-prometheus-stack"
  version    = "65.1.1"
  timeout    = 900

  values = [templatefile("${path.module}/values/monitoring.yaml.tftpl", {
    rules                = yamlencode(yamldecode(file(var.rules_file)))
    grafana_admin_secret = var.grafana_admin_secret
  })]
}

resource "helm_release" "mimamori" {
  count = var.install_releases ? 1 : 0

  name      = "mimamori"
  namespace = kubernetes_namespace.this["mimamori"].metadata[0].name
  chart     = var.chart_path
  timeout   = 900

  values = [templatefile("${path.module}/values/mimamori.yaml.tftpl", {
    region            = var.region
    images            = var.images
    role_arns         = var.role_arns
    buckets           = var.buckets
    kafka_bootstrap   = var.kafka_bootstrap_servers
    milvus_uri        = "http://milvus.${kubernetes_namespace.this["milvus"].metadata[0].name}.svc.cluster.local:19530"
    milvus_health_url = "http://milvus.${kubernetes_namespace.this["milvus"].metadata[0].name}.svc.cluster.local:9091/healthz"
    task_managers     = var.gpu_task_managers
  })]

  # The session cluster is a FlinkDeployment, a resource of the operator; the scrape targets
  # are ServiceMonitors and PodMonitors of the Prometheus operator.
  depends_on = [helm_release.flink_operator, helm_release.monitoring, helm_release.milvus, helm_release.nvidia_device_plugin]
}
