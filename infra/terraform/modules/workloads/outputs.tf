output "namespace" {
  description = "The namespace of mimamori's workloads."
  value       = kubernetes_namespace.this["mimamori"].metadata[0].name
}

output "milvus_uri" {
  description = "Milvus's in-cluster address."
  value       = "http://milvus.${kubernetes_namespace.this["milvus"].metadata[0].name}.svc.cluster.local:19530"
}

output "releases" {
  description = "Helm releases and their chart versions."
  value = {
    for release in concat(helm_release.nvidia_device_plugin, helm_release.milvus, helm_release.flink_operator, helm_release.monitoring, helm_release.mimamori) :
    release.name => release.version
  }
}
