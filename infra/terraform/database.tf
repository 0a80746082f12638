# RDS PostgreSQL in the private subnets, encrypted, backed up. The connection URL (with a
# generated password) lives in Secrets Manager and reaches the tasks as
# PRICEWATCH_DATABASE_URL through the ECS secrets mechanism, never as plain configuration.
# The password is also in the Terraform state: keep the state in an encrypted backend.

resource "random_password" "db" {
  length  = 32
  special = false # it goes into a URL unescaped
}

resource "aws_db_subnet_group" "main" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "main" {
  name   = local.name
  family = "postgres${var.db_engine_version}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
}

resource "aws_db_instance" "main" {
  identifier                   = local.name
  engine                       = "postgres"
  engine_version               = var.db_engine_version
  instance_class               = var.db_instance_class
  allocated_storage            = var.db_allocated_storage_gb
  max_allocated_storage        = var.db_allocated_storage_gb * 4
  storage_type                 = "gp3"
  storage_encrypted            = true
  db_name                      = "pricewatch"
  username                     = "pricewatch"
  password                     = random_password.db.result
  multi_az                     = var.db_multi_az
  db_subnet_group_name         = aws_db_subnet_group.main.name
  parameter_group_name         = aws_db_parameter_group.main.name
  vpc_security_group_ids       = [aws_security_group.rds.id]
  publicly_accessible          = false
  backup_retention_period      = var.db_backup_retention_days
  deletion_protection          = true
  skip_final_snapshot          = false
  final_snapshot_identifier    = "${local.name}-final"
  performance_insights_enabled = true
  auto_minor_version_upgrade   = true
  copy_tags_to_snapshot        = true
}

resource "aws_secretsmanager_secret" "database_url" {
  name        = "${local.name}/database-url"
  description = "PRICEWATCH_DATABASE_URL of the Pricewatch tasks (RDS, TLS required)"
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgresql://pricewatch:${random_password.db.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/pricewatch?sslmode=require"
}
