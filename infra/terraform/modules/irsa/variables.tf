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
  description = "The role's own permissions, an IAM policy document (null: none)."
  type        = string
  default     = null
}

variable "managed_policy_arns" {
  description = "AWS-managed policies attached to the role as they are."
  type        = list(string)
  default     = []
}
