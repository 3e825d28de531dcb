variable "name" {
  description = "The IAM role's name."
  type        = string
}

variable "oidc_provider_arn" {
  description = "The EKS cluster's OIDC provider."
  type        = string
}

variable "oidc_issuer" {
  description = "The OIDC issuer without its scheme."
  type        = string
}

variable "service_accounts" {
  description = "The Kubernetes service accounts, as namespace/name, that may assume the role."
  type        = list(string)
}

variable "policy_json" {
  description = "The role's permissions, an IAM policy document."
  type        = string
}
