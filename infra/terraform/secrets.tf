# The secrets of the API and the email sink, generated here and kept in Secrets Manager;
# ECS injects each as an environment variable at task start (container `secrets`), only
# into the roles that need it (local.task_secrets below), never as plain configuration.
#
# PRICEWATCH_SECRET_KEY signs the links in emails (verify, unsubscribe, manage): the API
# makes and checks them, the email sink writes them into alerts, so both get this one value
# (and refuse to start without it). The channels sink opens the channel URLs the API sealed
# with a key derived from it, so it gets it too. Replacing it (terraform apply -replace=
# random_password.secret_key) invalidates every link already emailed and every channel.
#
# PRICEWATCH_ADMIN_TOKEN is the bearer token of the admin API (/api/admin/...): generated
# and given to the API only when var.admin_api_enabled; otherwise the admin API is off (404).
# Read it with `aws secretsmanager get-secret-value --secret-id <admin_token_secret_arn>`.
#
# Both values are also in the Terraform state, like the database password.

resource "random_password" "secret_key" {
  length  = 64
  special = false # plain ASCII: the key is used as bytes, any character would do
}

resource "aws_secretsmanager_secret" "secret_key" {
  name        = "${local.name}/secret-key"
  description = "PRICEWATCH_SECRET_KEY of the Pricewatch API and email sink: signs the links in emails"
}

resource "aws_secretsmanager_secret_version" "secret_key" {
  secret_id     = aws_secretsmanager_secret.secret_key.id
  secret_string = random_password.secret_key.result
}

resource "random_password" "admin_token" {
  count   = var.admin_api_enabled ? 1 : 0
  length  = 48
  special = false # it is typed into an Authorization header
}

resource "aws_secretsmanager_secret" "admin_token" {
  count       = var.admin_api_enabled ? 1 : 0
  name        = "${local.name}/admin-token"
  description = "PRICEWATCH_ADMIN_TOKEN of the Pricewatch API: bearer token of /api/admin"
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  count         = var.admin_api_enabled ? 1 : 0
  secret_id     = aws_secretsmanager_secret.admin_token[0].id
  secret_string = random_password.admin_token[0].result
}

locals {
  # Environment variable -> the secret ECS reads into it and the roles (local.services,
  # local.setup_tasks) that get it. The execution role may read exactly these secrets.
  task_secrets = {
    PRICEWATCH_DATABASE_URL = {
      arn   = aws_secretsmanager_secret.database_url.arn
      roles = concat(keys(local.services), keys(local.setup_tasks))
    }
    PRICEWATCH_SECRET_KEY = {
      arn   = aws_secretsmanager_secret.secret_key.arn
      roles = ["api", "email-sink", "channels-sink"]
    }
    PRICEWATCH_ADMIN_TOKEN = {
      arn   = one(aws_secretsmanager_secret.admin_token[*].arn)
      roles = var.admin_api_enabled ? ["api"] : []
    }
  }

  # Role -> its container `secrets` list.
  secrets_of = {
    for role in concat(keys(local.services), keys(local.setup_tasks)) : role => [
      for name, secret in local.task_secrets : { name = name, valueFrom = secret.arn }
      if contains(secret.roles, role)
    ]
  }
}
