output "cluster_name" {
  description = "The EKS cluster: aws eks update-kubeconfig --name <this> --region <region>."
  value       = module.eks.cluster_name
}

output "ecr_repositories" {
  description = "Where to push the images, by kind (cpu, api, gpu)."
  value       = { for kind, repository in aws_ecr_repository.images : kind => repository.repository_url }
}

output "kafka_bootstrap_servers" {
  description = "MSK's IAM listener."
  value       = module.msk.bootstrap_brokers
}

output "buckets" {
  description = "S3 bucket names by kind."
  value       = module.storage.bucket_names
}

output "database_address" {
  description = "The case database's host name."
  value       = module.database.address
}

output "database_secret_arn" {
  description = "The Secrets Manager secret with the database's generated master credentials."
  value       = module.database.master_user_secret_arn
}

output "workload_role_arns" {
  description = "IAM roles for service accounts, by workload."
  value       = { for workload, role in module.role : workload => role.role_arn }
}

output "helm_releases" {
  description = "Installed Helm releases and their chart versions (empty until deploy_workloads = true)."
  value       = module.workloads.releases
}
