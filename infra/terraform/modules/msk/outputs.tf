output "bootstrap_brokers" {
  description = "Comma-separated host:port list of the IAM (SASL_SSL, AWS_MSK_IAM) listener."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "cluster_arn" {
  description = "The MSK cluster's ARN (kafka-cluster:Connect is granted on it)."
  value       = aws_msk_cluster.this.arn
}

output "cluster_name" {
  description = "The MSK cluster's name, part of its topic and group ARNs."
  value       = aws_msk_cluster.this.cluster_name
}

output "cluster_uuid" {
  description = "The MSK cluster's UUID, part of its topic and group ARNs."
  value       = aws_msk_cluster.this.cluster_uuid
}
