variable "name" {
  description = "The MSK cluster's name."
  type        = string
}

variable "kafka_version" {
  description = "Apache Kafka version of the brokers."
  type        = string
}

variable "broker_instance_type" {
  description = "Broker instance type (kafka.m7g.large holds a few thousand media events a second)."
  type        = string
}

variable "broker_volume_gb" {
  description = "EBS storage per broker. Events are small (media bytes live in S3): retention, not size, drives this."
  type        = number
}

variable "vpc_id" {
  description = "The VPC of the brokers."
  type        = string
}

variable "subnet_ids" {
  description = "One private subnet per broker, each in another availability zone."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups whose members may connect (the EKS nodes')."
  type        = list(string)
}

variable "retention_hours" {
  description = "How long topics keep events: the window a replay can reach back (mimamori replay --from)."
  type        = number
}
