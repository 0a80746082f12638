# Amazon MSK (provisioned), one broker per availability zone.
#
# Why not MSK Serverless: it accepts IAM authentication only, and Pricewatch speaks plain
# Kafka (aiokafka/Faust with no SASL/TLS settings yet). So the brokers' plaintext listener
# (9092) is on, reachable only from the tasks' security group inside the private subnets;
# broker-to-broker traffic and storage are encrypted. When Pricewatch gains Kafka TLS/SASL
# settings, switch client_broker to "TLS" and use bootstrap_brokers_tls.

resource "aws_msk_configuration" "main" {
  name           = local.name
  kafka_versions = [var.kafka_version]

  # Topics are created by `pricewatch topics create` (the kafka-topics task) with their
  # partition counts; Faust creates its changelogs. Nothing relies on auto-creation.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    offsets.topic.replication.factor=3
    transaction.state.log.replication.factor=3
    transaction.state.log.min.isr=2
  PROPERTIES
}

resource "aws_msk_cluster" "main" {
  cluster_name           = local.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.az_count

  broker_node_group_info {
    instance_type   = var.kafka_broker_instance_type
    client_subnets  = aws_subnet.private[*].id
    security_groups = [aws_security_group.msk.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_broker_volume_gb
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.main.arn
    revision = aws_msk_configuration.main.latest_revision
  }

  encryption_info {
    encryption_in_transit {
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = true
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk.name
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "msk" {
  name              = "/pricewatch/${var.environment}/msk"
  retention_in_days = var.log_retention_days
}
