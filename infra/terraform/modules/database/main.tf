# The case database (cases, consent records, matches, API keys, the audit log): PostgreSQL on RDS,
# encrypted, private, with deletion protection and a week of point-in-time recovery. The master
# password is generated and kept by RDS in Secrets Manager: it never appears in Terraform's state
# or in this repository.

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "database" {
  name_prefix = "${var.name}-db-"
  description = "The case database: PostgreSQL from the cluster's nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "PostgreSQL"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = var.client_security_group_ids
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_kms_key" "database" {
  description         = "${var.name}: case database storage encryption"
  enable_key_rotation = true
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-"
  family      = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = "16.4"
  instance_class = var.instance_class
  db_name        = "mimamori"
  username       = "mimamori"

  manage_master_user_password = true

  allocated_storage     = var.storage_gb
  max_allocated_storage = var.storage_gb * 10
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.database.arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.database.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  multi_az               = var.multi_az
  publicly_accessible    = false

  backup_retention_period   = 7
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"
  copy_tags_to_snapshot     = true

  auto_minor_version_upgrade = true
}
