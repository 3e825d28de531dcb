# S3 buckets, one per kind of data, all encrypted with a customer-managed KMS key, private, TLS-only.
#
# No bucket is versioned on purpose: withdrawing a case deletes its reference photos and crops, and
# in a versioned bucket a delete only hides the object behind a marker. Here a delete deletes.
# Raw media (the bulk of the bytes) expires after `media_expire_days`.

locals {
  buckets = {
    media      = { expire_days = var.media_expire_days, purpose = "raw scraped media, written by the scrapers" }
    crops      = { expire_days = null, purpose = "face crops for reviewers" }
    references = { expire_days = null, purpose = "enrolled reference photos of consenting clients" }
    milvus     = { expire_days = null, purpose = "Milvus segments, index files and binlogs" }
    flink      = { expire_days = var.checkpoint_expire_days, purpose = "Flink checkpoints and savepoints" }
  }
}

resource "aws_kms_key" "buckets" {
  description         = "${var.name}: S3 bucket encryption"
  enable_key_rotation = true
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets

  bucket = "${var.name}-${each.key}"
  tags   = { Purpose = each.value.purpose }
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.buckets.arn
    }
    bucket_key_enabled = true # one KMS call per bucket key, not per object: KMS bills per request
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  dynamic "rule" {
    for_each = local.buckets[each.key].expire_days == null ? [] : [local.buckets[each.key].expire_days]
    content {
      id     = "expire-after-${rule.value}d"
      status = "Enabled"
      filter {}
      expiration {
        days = rule.value
      }
    }
  }
}

data "aws_iam_policy_document" "tls_only" {
  for_each = aws_s3_bucket.this

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    resources = [each.value.arn, "${each.value.arn}/*"]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
