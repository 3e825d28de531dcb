output "bucket_names" {
  description = "Bucket name by kind: media, crops, references, milvus, flink."
  value       = { for kind, bucket in aws_s3_bucket.this : kind => bucket.id }
}

output "bucket_arns" {
  description = "Bucket ARN by kind."
  value       = { for kind, bucket in aws_s3_bucket.this : kind => bucket.arn }
}

output "kms_key_arn" {
  description = "The key every bucket is encrypted with; readers and writers need kms:Decrypt and kms:GenerateDataKey on it."
  value       = aws_kms_key.buckets.arn
}
