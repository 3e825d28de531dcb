# Amazon MSK: TLS between clients and brokers and between brokers, IAM authentication only (no
# unauthenticated or plaintext listener), storage encrypted with a KMS key, broker logs in
# CloudWatch and Prometheus exporters on the brokers. Topics are created by `mimamori stack init`
# (auto-creation is off, so a typo in a topic name fails instead of silently making a new topic).

resource "aws_security_group" "brokers" {
  name_prefix = "${var.name}-msk-"
  description = "MSK brokers: IAM-authenticated TLS from the cluster's nodes only"
  vpc_id      = var.vpc_id

  ingress {
    description     = "Kafka, SASL/IAM over TLS"
    from_port       = 9098
    to_port         = 9098
    protocol        = "tcp"
    security_groups = var.client_security_group_ids
  }

  ingress {
    description     = "Prometheus JMX and node exporters"
    from_port       = 11001
    to_port         = 11002
    protocol        = "tcp"
    security_groups = var.client_security_group_ids
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_kms_key" "msk" {
  description         = "${var.name}: MSK storage encryption"
  enable_key_rotation = true
}

resource "aws_cloudwatch_log_group" "brokers" {
  name              = "/aws/msk/${var.name}"
  retention_in_days = 30
}

resource "aws_msk_configuration" "this" {
  name           = var.name
  kafka_versions = [var.kafka_version]

  server_properties = <<-EOT
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
    log.retention.hours=${var.retention_hours}
  EOT

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = length(var.subnet_ids)

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.brokers.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.msk.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers.name
      }
    }
  }
}
