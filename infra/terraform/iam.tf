# One IAM role per workload, assumed only by its Kubernetes service accounts (IRSA), each allowed
# exactly what its code does. Topic and group names follow mimamori's configuration defaults.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  kafka_arn_prefix = "arn:${data.aws_partition.current.partition}:kafka:${var.region}:${data.aws_caller_identity.current.account_id}"
  kafka_topic      = "${local.kafka_arn_prefix}:topic/${module.msk.cluster_name}/${module.msk.cluster_uuid}"
  kafka_group      = "${local.kafka_arn_prefix}:group/${module.msk.cluster_name}/${module.msk.cluster_uuid}"
  topics = {
    media_scraped = "media.scraped"
    faces_indexed = "faces.indexed"
    media_dlq     = "media.dlq"
    matches       = "matches"
  }
  buckets = module.storage.bucket_arns
  # The live group and the replays' own groups (mimamori-pipeline.replay.<from>-<to>).
  pipeline_groups = "${local.kafka_group}/mimamori-pipeline*"

  roles = {
    # The pipeline: the launcher, the job server and Flink's task managers with Beam's workers.
    pipeline = {
      service_accounts = ["mimamori/mimamori-pipeline", "mimamori/mimamori-flink"]
      policy_json      = data.aws_iam_policy_document.pipeline.json
    }
    api = {
      service_accounts = ["mimamori/mimamori-api"]
      policy_json      = data.aws_iam_policy_document.api.json
    }
    exporter = {
      service_accounts = ["mimamori/mimamori-exporter"]
      policy_json      = data.aws_iam_policy_document.exporter.json
    }
    init = {
      service_accounts = ["mimamori/mimamori-init"]
      policy_json      = data.aws_iam_policy_document.init.json
    }
    milvus = {
      service_accounts = ["milvus/milvus"]
      policy_json      = data.aws_iam_policy_document.milvus.json
    }
  }
}

module "role" {
  source   = "./modules/irsa"
  for_each = local.roles

  name              = "${local.name}-${each.key}"
  oidc_provider_arn = module.eks.oidc_provider_arn
  oidc_issuer       = module.eks.oidc_issuer
  service_accounts  = each.value.service_accounts
  policy_json       = each.value.policy_json
}

data "aws_iam_policy_document" "bucket_key" {
  statement {
    sid       = "BucketEncryptionKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.storage.kms_key_arn]
  }
}

data "aws_iam_policy_document" "kafka_connect" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [module.msk.cluster_arn]
  }
}

data "aws_iam_policy_document" "pipeline" {
  source_policy_documents = [data.aws_iam_policy_document.bucket_key.json, data.aws_iam_policy_document.kafka_connect.json]

  statement {
    sid       = "ReadScrapedMedia"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = ["${local.kafka_topic}/${local.topics.media_scraped}"]
  }
  statement {
    sid       = "WriteResults"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [for key in ["faces_indexed", "media_dlq", "matches"] : "${local.kafka_topic}/${local.topics[key]}"]
  }
  statement {
    sid       = "ConsumerGroups"
    actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
    resources = [local.pipeline_groups]
  }
  statement {
    sid       = "ReadMedia"
    actions   = ["s3:GetObject"]
    resources = ["${local.buckets["media"]}/*"]
  }
  statement {
    sid       = "WriteCrops"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.buckets["crops"]}/*"]
  }
  statement {
    # The watchlist reads the cases' heads (issue 20) and reference images' keypoints (the crop
    # signal), never a reference's thumbnail or original.
    sid     = "ReadCaseModelsAndReferenceKeypoints"
    actions = ["s3:GetObject"]
    resources = [
      "${local.buckets["references"]}/cases/*/models/*",
      "${local.buckets["references"]}/cases/*/references/*/local-features.npz",
    ]
  }
  statement {
    sid       = "FlinkCheckpoints"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.buckets["flink"]}/*"]
  }
  statement {
    sid       = "ListOwnBuckets"
    actions   = ["s3:ListBucket"]
    resources = [local.buckets["crops"], local.buckets["flink"]]
  }
}

data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.bucket_key.json, data.aws_iam_policy_document.kafka_connect.json]

  statement {
    sid       = "ReferencePhotos"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.buckets["references"]}/*"]
  }
  statement {
    # Reviewers' crop links are presigned with this role; withdrawing a case deletes its crops.
    sid       = "Crops"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = ["${local.buckets["crops"]}/*"]
  }
  statement {
    sid       = "ListForDeletion"
    actions   = ["s3:ListBucket"]
    resources = [local.buckets["references"], local.buckets["crops"]]
  }
  statement {
    sid       = "PublishMatches"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = ["${local.kafka_topic}/${local.topics.matches}"]
  }
}

data "aws_iam_policy_document" "exporter" {
  source_policy_documents = [data.aws_iam_policy_document.kafka_connect.json]

  statement {
    sid       = "Lag"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:DescribeGroup"]
    resources = concat([for topic in values(local.topics) : "${local.kafka_topic}/${topic}"], [local.pipeline_groups])
  }
}

data "aws_iam_policy_document" "init" {
  source_policy_documents = [data.aws_iam_policy_document.kafka_connect.json]

  statement {
    sid       = "Topics"
    actions   = ["kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration"]
    resources = [for topic in values(local.topics) : "${local.kafka_topic}/${topic}"]
  }
  statement {
    # `stack init` checks that the buckets exist; Terraform creates them and owns their lifecycle.
    sid       = "BucketsExist"
    actions   = ["s3:ListBucket"]
    resources = [for kind in ["media", "crops", "references", "milvus"] : local.buckets[kind]]
  }
}

data "aws_iam_policy_document" "milvus" {
  source_policy_documents = [data.aws_iam_policy_document.bucket_key.json]

  statement {
    sid       = "Segments"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.buckets["milvus"]}/*"]
  }
  statement {
    sid       = "ListSegments"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [local.buckets["milvus"]]
  }
}
