output "address" {
  description = "The database's host name."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "The database's port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "The database inside the instance."
  value       = aws_db_instance.this.db_name
}

output "master_user_secret_arn" {
  description = "The Secrets Manager secret that holds the generated master credentials."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}
