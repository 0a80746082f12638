# What the operator needs after `terraform apply` (README.md shows where each is used).

output "api_url" {
  description = "Base URL of the subscription API (the load balancer)."
  value       = var.api_certificate_arn == "" ? "http://${aws_lb.api.dns_name}" : "https://${aws_lb.api.dns_name}"
}

output "ecr_repository_url" {
  description = "Push the Pricewatch image here, tagged var.image_tag, before the services can start."
  value       = aws_ecr_repository.pricewatch.repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster running every Pricewatch service."
  value       = aws_ecs_cluster.main.name
}

output "setup_task_definitions" {
  description = "One-off tasks to run (in order: kafka-topics, db-migrate) before the services and after each upgrade."
  value       = { for name, task in aws_ecs_task_definition.setup : name => task.arn }
}

output "setup_task_network" {
  description = "Subnets and security group for `aws ecs run-task --network-configuration` of the setup tasks."
  value = {
    subnets         = aws_subnet.private[*].id
    security_groups = [aws_security_group.tasks.id]
  }
}

output "kafka_bootstrap_brokers" {
  description = "MSK bootstrap servers (plaintext listener, inside the VPC): PRICEWATCH_KAFKA_BOOTSTRAP_SERVERS of every task."
  value       = aws_msk_cluster.main.bootstrap_brokers
}

output "database_endpoint" {
  description = "RDS PostgreSQL host:port (database and user: pricewatch)."
  value       = aws_db_instance.main.endpoint
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding PRICEWATCH_DATABASE_URL (with the password)."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "secret_key_secret_arn" {
  description = "Secrets Manager secret holding PRICEWATCH_SECRET_KEY (signs email links; the API and the email sink get it)."
  value       = aws_secretsmanager_secret.secret_key.arn
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding PRICEWATCH_ADMIN_TOKEN (the admin API's bearer token); null unless admin_api_enabled."
  value       = one(aws_secretsmanager_secret.admin_token[*].arn)
}

output "archive_bucket" {
  description = "S3 bucket of the observation archive (PRICEWATCH_S3_BUCKET)."
  value       = aws_s3_bucket.archive.bucket
}

output "ses_dkim_records" {
  description = "CNAME records to publish in the ses_domain's DNS so SES can DKIM-sign (name -> value)."
  value = {
    for token in aws_sesv2_email_identity.domain.dkim_signing_attributes[0].tokens :
    "${token}._domainkey.${var.ses_domain}" => "${token}.dkim.amazonses.com"
  }
}

output "ses_configuration_set" {
  description = "SES configuration set applied by default to every alert email."
  value       = aws_sesv2_configuration_set.main.configuration_set_name
}

output "prometheus_workspace_endpoint" {
  description = "Amazon Managed Service for Prometheus endpoint (Grafana's Prometheus data source URL)."
  value       = aws_prometheus_workspace.main.prometheus_endpoint
}

output "grafana_url" {
  description = "Amazon Managed Grafana workspace URL."
  value       = "https://${aws_grafana_workspace.main.endpoint}"
}

output "archive_replay_role_arn" {
  description = "Task role for a one-off `pricewatch archive replay` task (reads the archive only)."
  value       = aws_iam_role.archive_replay.arn
}
