variable "region" {
  description = "AWS region for everything."
  type        = string
}

variable "environment" {
  description = "Environment name, part of every resource name (e.g. prod, staging)."
  type        = string
}

variable "organisation" {
  description = "Short lowercase name of the organisation; S3 bucket names are global, so they start with it."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's address range."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zone_count" {
  description = "Availability zones to use; MSK puts one broker in each."
  type        = number
  default     = 3
}

variable "single_nat_gateway" {
  description = "One NAT gateway instead of one per zone: cheaper, but a zone outage cuts egress."
  type        = bool
  default     = true
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version."
  type        = string
  default     = "1.31"
}

variable "cluster_public_access_cidrs" {
  description = "Addresses allowed to reach the Kubernetes API over the internet (your office or VPN). Empty: private endpoint only."
  type        = list(string)
  default     = []
}

variable "admin_principal_arns" {
  description = "IAM roles or users that administer the cluster (EKS access entries)."
  type        = list(string)
}

variable "cpu_nodes" {
  description = "The CPU node group: API, launcher, Flink job manager, Milvus coordinators and its etcd and Kafka, monitoring."
  type        = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
  default     = { instance_types = ["m6i.2xlarge"], min_size = 3, max_size = 6, desired_size = 3, disk_gb = 100 }
}

variable "gpu_nodes" {
  description = "The GPU node group: one Flink task manager with Beam's worker pool per node, one GPU each."
  type        = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
  default     = { instance_types = ["g5.2xlarge"], min_size = 1, max_size = 4, desired_size = 2, disk_gb = 150 }
}

variable "nvme_nodes" {
  description = "The NVMe node group: Milvus query and index nodes with the DISKANN index on instance-store NVMe."
  type        = object({ instance_types = list(string), min_size = number, max_size = number, desired_size = number, disk_gb = number })
  default     = { instance_types = ["i4i.2xlarge"], min_size = 2, max_size = 4, desired_size = 2, disk_gb = 100 }
}

variable "msk" {
  description = "Amazon MSK: Kafka version, broker type, storage per broker and retention (how far back a replay reaches)."
  type        = object({ kafka_version = string, broker_instance_type = string, broker_volume_gb = number, retention_hours = number })
  default     = { kafka_version = "3.6.0", broker_instance_type = "kafka.m7g.large", broker_volume_gb = 500, retention_hours = 720 }
}

variable "database" {
  description = "The case database on RDS PostgreSQL."
  type        = object({ instance_class = string, storage_gb = number, multi_az = bool })
  default     = { instance_class = "db.t4g.medium", storage_gb = 50, multi_az = true }
}

variable "media_expire_days" {
  description = "Days after which raw scraped media is deleted from S3 (faces, crops and sightings are kept)."
  type        = number
  default     = 90
}

variable "image_tag" {
  description = "Tag of the project's images in the ECR repositories this configuration creates."
  type        = string
}

variable "grafana_admin_secret" {
  description = "Name of the Secret (namespace monitoring) holding Grafana's admin-user and admin-password; create it before applying (docs/deploy.md)."
  type        = string
  default     = "grafana-admin"
}

variable "deploy_workloads" {
  description = "Install the Helm releases. Apply with false first, create the secrets (docs/deploy.md), then apply with true."
  type        = bool
  default     = false
}
