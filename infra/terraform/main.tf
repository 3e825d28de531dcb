# mimamori on AWS: the data flow of the local stack, on managed parts.
#
#   scrapers -> S3 (media) + MSK (media.scraped) -> Flink on EKS with Beam's GPU workers
#            -> Milvus on EKS (DISKANN on NVMe, segments in S3) + S3 (crops) + RDS (cases, matches)
#
# docs/deploy.md walks through it from an empty account; the modules are one concern each.

locals {
  name = "mimamori-${var.environment}"
}

module "network" {
  source = "./modules/network"

  name                    = local.name
  cidr_block              = var.vpc_cidr
  availability_zone_count = var.availability_zone_count
  single_nat_gateway      = var.single_nat_gateway
}

module "eks" {
  source = "./modules/eks"

  name                 = local.name
  kubernetes_version   = var.kubernetes_version
  subnet_ids           = module.network.private_subnet_ids
  public_access_cidrs  = var.cluster_public_access_cidrs
  admin_principal_arns = var.admin_principal_arns
  node_groups = {
    cpu  = var.cpu_nodes
    gpu  = var.gpu_nodes
    nvme = var.nvme_nodes
  }
}

module "msk" {
  source = "./modules/msk"

  name                      = local.name
  kafka_version             = var.msk.kafka_version
  broker_instance_type      = var.msk.broker_instance_type
  broker_volume_gb          = var.msk.broker_volume_gb
  retention_hours           = var.msk.retention_hours
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
}

module "storage" {
  source = "./modules/storage"

  name                   = "${var.organisation}-${local.name}"
  media_expire_days      = var.media_expire_days
  checkpoint_expire_days = 14
}

module "database" {
  source = "./modules/database"

  name                      = local.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.eks.cluster_security_group_id]
  instance_class            = var.database.instance_class
  storage_gb                = var.database.storage_gb
  multi_az                  = var.database.multi_az
}

module "workloads" {
  source = "./modules/workloads"

  install_releases = var.deploy_workloads
  region           = var.region
  chart_path       = "${path.root}/../helm/mimamori"
  dashboards_dir   = "${path.root}/../../docker/grafana/dashboards"
  rules_file       = "${path.root}/../../docker/prometheus/rules/mimamori.rules.yml"
  images = {
    cpu = "${aws_ecr_repository.images["cpu"].repository_url}:${var.image_tag}"
    api = "${aws_ecr_repository.images["api"].repository_url}:${var.image_tag}"
    gpu = "${aws_ecr_repository.images["gpu"].repository_url}:${var.image_tag}"
  }
  role_arns = {
    pipeline = module.role["pipeline"].role_arn
    flink    = module.role["pipeline"].role_arn
    api      = module.role["api"].role_arn
    exporter = module.role["exporter"].role_arn
    init     = module.role["init"].role_arn
    milvus   = module.role["milvus"].role_arn
  }
  buckets                    = module.storage.bucket_names
  kafka_bootstrap_servers    = module.msk.bootstrap_brokers
  milvus_query_node_replicas = var.nvme_nodes.desired_size
  gpu_task_managers          = var.gpu_nodes.desired_size
  grafana_admin_secret       = var.grafana_admin_secret

  depends_on = [module.eks]
}

# -- images ------------------------------------------------------------------------------------------

resource "aws_ecr_repository" "images" {
  for_each = toset(["cpu", "api", "gpu"])

  name                 = "${local.name}/${each.value}"
  image_tag_mutability = "IMMUTABLE" # a tag names one build forever: rollbacks are exact

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
  }
}

resource "aws_ecr_lifecycle_policy" "images" {
  for_each = aws_ecr_repository.images

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last 20 images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 20 }
      action       = { type = "expire" }
    }]
  })
}
