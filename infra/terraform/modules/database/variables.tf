variable "name" {
  description = "Identifier of the database instance."
  type        = string
}

variable "vpc_id" {
  description = "The VPC of the database."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets the instance may be placed in."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups whose members may connect (the EKS nodes')."
  type        = list(string)
}

variable "instance_class" {
  description = "RDS instance class. Case data is small: a burstable class is enough for most teams."
  type        = string
}

variable "storage_gb" {
  description = "Allocated storage; it grows automatically up to ten times this."
  type        = number
}

variable "multi_az" {
  description = "A standby in another zone (doubles the instance cost)."
  type        = bool
}
