# Least privilege. The execution role (used by ECS to start tasks) may pull this image,
# write these log groups and read exactly the secrets the tasks get (the database URL, the
# link-signing key, the admin token when enabled: secrets.tf). Which task gets which secret
# is the task definition's `secrets`; the containers themselves cannot use the execution
# role, and their task roles read no secret. Each service has its own task
# role: only the archive sink may write to the bucket (under its prefix), only the email
# sink may send from the SES identity, only the Prometheus agent may write metrics. The
# API, workers, scrapers and the other sinks get no AWS permissions at all.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  description        = "ECS starts Pricewatch tasks: image pull, logs, the tasks' secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # this action has no resource-level scoping
  }

  statement {
    sid = "PullPricewatchImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.pricewatch.arn]
  }

  statement {
    sid     = "WriteOwnLogs"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [
      for group in aws_cloudwatch_log_group.service : "${group.arn}:*"
    ]
  }

  statement {
    sid       = "ReadTaskSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for secret in values(local.task_secrets) : secret.arn if length(secret.roles) > 0]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pricewatch-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "task" {
  for_each           = local.services
  name               = "${local.name}-${each.key}"
  description        = "Pricewatch ${each.key}: only the AWS access this role needs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "archive_sink" {
  statement {
    sid       = "WriteArchiveObjects"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "archive_sink" {
  name   = "write-archive"
  role   = aws_iam_role.task["archive-sink"].id
  policy = data.aws_iam_policy_document.archive_sink.json
}

data "aws_iam_policy_document" "email_sink" {
  statement {
    sid     = "SendFromPricewatchIdentity"
    actions = ["ses:SendEmail", "ses:SendRawEmail"]
    resources = [
      aws_sesv2_email_identity.domain.arn,
      aws_sesv2_configuration_set.main.arn,
    ]
  }
}

resource "aws_iam_role_policy" "email_sink" {
  name   = "send-email"
  role   = aws_iam_role.task["email-sink"].id
  policy = data.aws_iam_policy_document.email_sink.json
}

# Replaying the archive (`pricewatch archive replay`) is an operator's one-off task: this
# role reads the archive, and nothing else.
resource "aws_iam_role" "archive_replay" {
  name               = "${local.name}-archive-replay"
  description        = "Pricewatch archive replay: read the archive"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "archive_replay" {
  statement {
    sid       = "ListArchive"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.archive.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.archive_prefix}/*"]
    }
  }

  statement {
    sid       = "ReadArchiveObjects"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.archive.arn}/${var.archive_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "archive_replay" {
  name   = "read-archive"
  role   = aws_iam_role.archive_replay.id
  policy = data.aws_iam_policy_document.archive_replay.json
}
