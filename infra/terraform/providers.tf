provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "mimamori"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

# Kubernetes and Helm talk to the cluster this configuration creates, with a short-lived token
# from the AWS CLI (no kubeconfig file, no long-lived credentials).
locals {
  kubernetes_exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority)

  exec {
    api_version = local.kubernetes_exec.api_version
    command     = local.kubernetes_exec.command
    args        = local.kubernetes_exec.args
  }
}

provider "helm" {
  kubernetes {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority)

    exec {
      api_version = local.kubernetes_exec.api_version
      command     = local.kubernetes_exec.command
      args        = local.kubernetes_exec.args
    }
  }
}
