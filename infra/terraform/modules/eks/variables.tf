variable "name" {
  description = "The cluster's name, also the prefix of its IAM roles."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane's interfaces and every node group."
  type        = list(string)
}

variable "public_access_cidrs" {
  description = "Who may reach the Kubernetes API from the internet; an empty list makes the endpoint private-only."
  type        = list(string)
}

variable "admin_principal_arns" {
  description = "IAM users or roles given cluster-admin through EKS access entries."
  type        = list(string)
}

variable "node_groups" {
  description = <<-EOT
    The three node groups: "cpu" (API, launcher, Flink job manager, Milvus coordinators, monitoring),
    "gpu" (Flink task managers with Beam's GPU worker pool) and "nvme" (Milvus query and index nodes:
    instance-store NVMe, striped RAID0 as the node's ephemeral storage, holds the DISKANN index).
  EOT
  type = object({
    cpu  = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
    gpu  = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
    nvme = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
  })
}
