# An EKS cluster with three managed node groups (CPU, GPU, NVMe), secrets encrypted with a KMS key,
# API-mode access entries instead of the aws-auth ConfigMap, the control plane's audit log in
# CloudWatch, and an OIDC provider for IAM roles for service accounts.

data "aws_partition" "current" {}

# -- control plane ---------------------------------------------------------------------------------

# Who may assume the control plane's role and the nodes' role.
data "aws_iam_policy_document" "service_assume" {
  for_each = { cluster = "eks.amazonaws.com", node = "ec2.amazonaws.com" }

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-cluster"
  assume_role_policy = data.aws_iam_policy_document.service_assume["cluster"].json
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

resource "aws_kms_key" "secrets" {
  description         = "${var.name}: envelope encryption of Kubernetes secrets"
  enable_key_rotation = true
}

resource "aws_cloudwatch_log_group" "cluster" {
  # EKS writes here; created first so that its retention is ours, not "never expire".
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = 90
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.public_access_cidrs) > 0
    public_access_cidrs     = length(var.public_access_cidrs) > 0 ? var.public_access_cidrs : null
  }

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.secrets.arn
    }
  }

  # "audit" is the trail of who read which secret or exec'd into which pod.
  enabled_cluster_log_types = ["api", "audit", "authenticator"]

  depends_on = [aws_iam_role_policy_attachment.cluster, aws_cloudwatch_log_group.cluster]
}

resource "aws_eks_access_entry" "admin" {
  for_each = toset(var.admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
}

resource "aws_eks_access_policy_association" "admin" {
  for_each = toset(var.admin_principal_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  policy_arn    = "arn:${data.aws_partition.current.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.admin]
}

# -- IAM roles for service accounts ----------------------------------------------------------------

data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_iam_openid_connect_provider" "this" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
}

locals {
  oidc_issuer = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

# -- nodes -------------------------------------------------------------------------------------------

resource "aws_iam_role" "node" {
  name               = "${var.name}-node"
  assume_role_policy = data.aws_iam_policy_document.service_assume["node"].json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore", # shell access through Session Manager, no SSH keys
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

locals {
  node_groups = {
    cpu = {
      ami_type = "AL2023_x86_64_STANDARD"
      labels   = { "mimamori.io/pool" = "cpu" }
      taints   = []
    }
    gpu = {
      # The NVIDIA AMI carries the driver and the container toolkit; the device plugin is a Helm release.
      ami_type = "AL2023_x86_64_NVIDIA"
      labels   = { "mimamori.io/pool" = "gpu" }
      taints   = [{ key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" }]
    }
    nvme = {
      ami_type = "AL2023_x86_64_STANDARD"
      labels   = { "mimamori.io/pool" = "nvme" }
      taints   = [{ key = "mimamori.io/pool", value = "nvme", effect = "NO_SCHEDULE" }]
    }
  }
}

# The NVMe group's instance stores are striped into one RAID0 volume that becomes the kubelet's and
# containerd's storage, so an emptyDir on those nodes (Milvus's local index cache) is NVMe.
resource "aws_launch_template" "nvme" {
  name_prefix = "${var.name}-nvme-"
  user_data = base64encode(<<-EOT
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="BOUNDARY"

    --BOUNDARY
    Content-Type: application/node.eks.aws

    apiVersion: node.eks.aws/v1alpha1
    kind: NodeConfig
    spec:
      instance:
        localStorage:
          strategy: RAID0

    --BOUNDARY--
  EOT
  )

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = var.node_groups.nvme.disk_gb
      volume_type = "gp3"
      encrypted   = true
    }
  }
}

resource "aws_eks_node_group" "this" {
  for_each = local.node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  ami_type        = each.value.ami_type
  instance_types  = var.node_groups[each.key].instance_types
  # The NVMe group sets its root disk in the launch template.
  disk_size = each.key == "nvme" ? null : var.node_groups[each.key].disk_gb
  labels    = each.value.labels

  scaling_config {
    min_size     = var.node_groups[each.key].min_size
    max_size     = var.node_groups[each.key].max_size
    desired_size = var.node_groups[each.key].desired_size
  }

  dynamic "taint" {
    for_each = each.value.taints
    content {
      key    = taint.value.key
      value  = taint.value.value
      effect = taint.value.effect
    }
  }

  dynamic "launch_template" {
    for_each = each.key == "nvme" ? [aws_launch_template.nvme] : []
    content {
      id      = launch_template.value.id
      version = launch_template.value.latest_version
    }
  }

  update_config {
    max_unavailable = 1
  }

  lifecycle {
    # The cluster autoscaler owns the current size once the group exists.
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# -- add-ons -----------------------------------------------------------------------------------------

module "ebs_csi_role" {
  source = "../irsa"

  name                = "${var.name}-ebs-csi"
  oidc_provider_arn   = aws_iam_openid_connect_provider.this.arn
  oidc_issuer         = local.oidc_issuer
  service_accounts    = ["kube-system/ebs-csi-controller-sa"]
  managed_policy_arns = ["arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
}

resource "aws_eks_addon" "this" {
  for_each = {
    "vpc-cni"            = null
    "coredns"            = null
    "kube-proxy"         = null
    "aws-ebs-csi-driver" = module.ebs_csi_role.role_arn # volumes for etcd, Prometheus and Grafana
  }

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.key
  service_account_role_arn    = each.value
  resolve_conflicts_on_update = "OVERWRITE"

  depends_on = [aws_eks_node_group.this]
}
