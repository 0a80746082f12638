# Metrics: a Prometheus agent on ECS scrapes every task's /metrics, found by DNS in Cloud
# Map (the same dns_sd_configs as infra/prometheus/prometheus.yml), and remote-writes to
# Amazon Managed Service for Prometheus. Dashboards: Amazon Managed Grafana, with that
# workspace and RDS (price history) as data sources. Import the dashboards of
# infra/grafana/dashboards into it (README.md).

resource "aws_prometheus_workspace" "main" {
  alias = local.name
}

locals {
  prometheus_jobs = {
    pricewatch-api     = { names = ["api"], port = local.metrics_port }
    pricewatch-worker  = { names = ["worker"], port = local.metrics_port }
    pricewatch-scraper = { names = ["scraper"], port = local.metrics_port }
    pricewatch-sinks = {
      names = ["postgres-sink", "subscriptions-sink", "events-sink", "email-sink", "channels-sink", "archive-sink"]
      port  = local.metrics_port
    }
  }

  prometheus_config = yamlencode({
    global = { scrape_interval = "15s" }
    scrape_configs = [
      for job, spec in local.prometheus_jobs : {
        job_name = job
        dns_sd_configs = [{
          names = [for name in spec.names : "${name}.${aws_service_discovery_private_dns_namespace.main.name}"]
          type  = "A"
          port  = spec.port
        }]
        relabel_configs = [{ source_labels = ["__meta_dns_name"], target_label = "service" }]
      }
    ]
    remote_write = [{
      url   = "${aws_prometheus_workspace.main.prometheus_endpoint}api/v1/remote_write"
      sigv4 = { region = var.region }
    }]
  })
}

resource "aws_iam_role" "prometheus_agent" {
  name               = "${local.name}-prometheus-agent"
  description        = "Prometheus agent: remote-write to the Pricewatch workspace"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "prometheus_agent" {
  statement {
    sid       = "RemoteWrite"
    actions   = ["aps:RemoteWrite"]
    resources = [aws_prometheus_workspace.main.arn]
  }
}

resource "aws_iam_role_policy" "prometheus_agent" {
  name   = "remote-write"
  role   = aws_iam_role.prometheus_agent.id
  policy = data.aws_iam_policy_document.prometheus_agent.json
}

resource "aws_ecs_task_definition" "prometheus_agent" {
  family                   = "${local.name}-prometheus-agent"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.prometheus_agent.arn

  container_definitions = jsonencode([
    {
      name      = "prometheus-agent"
      image     = "prom/prometheus:v3.0.1"
      essential = true
      # The configuration comes from Terraform (it names the workspace): written to a file
      # at start, since Prometheus reads its configuration only from a file.
      entryPoint  = ["/bin/sh", "-c"]
      command     = ["printf '%s' \"$PROMETHEUS_CONFIG\" > /tmp/prometheus.yml && exec /bin/prometheus --agent --config.file=/tmp/prometheus.yml --storage.agent.path=/tmp/agent"]
      environment = [{ name = "PROMETHEUS_CONFIG", value = local.prometheus_config }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service["prometheus-agent"].name
          awslogs-region        = var.region
          awslogs-stream-prefix = "prometheus-agent"
        }
      }
    },
  ])
}

resource "aws_ecs_service" "prometheus_agent" {
  name            = "prometheus-agent"
  cluster         = aws_ecs_cluster.main.id
  task_definition = aws_ecs_task_definition.prometheus_agent.arn
  desired_count   = 1
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
}

# --- Amazon Managed Grafana -------------------------------------------------------------------

data "aws_iam_policy_document" "grafana_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["grafana.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "grafana" {
  name               = "${local.name}-grafana"
  description        = "Amazon Managed Grafana: query the Pricewatch Prometheus workspace"
  assume_role_policy = data.aws_iam_policy_document.grafana_assume.json
}

data "aws_iam_policy_document" "grafana" {
  statement {
    sid = "QueryPricewatchMetrics"
    actions = [
      "aps:GetLabels",
      "aps:GetMetricMetadata",
      "aps:GetSeries",
      "aps:QueryMetrics",
    ]
    resources = [aws_prometheus_workspace.main.arn]
  }

  statement {
    sid       = "ListWorkspaces"
    actions   = ["aps:ListWorkspaces", "aps:DescribeWorkspace"]
    resources = ["*"] # the data source picker lists workspaces before choosing one
  }
}

resource "aws_iam_role_policy" "grafana" {
  name   = "query-prometheus"
  role   = aws_iam_role.grafana.id
  policy = data.aws_iam_policy_document.grafana.json
}

resource "aws_grafana_workspace" "main" {
  name                     = local.name
  description              = "Pricewatch dashboards: pipeline metrics and price history"
  account_access_type      = "CURRENT_ACCOUNT"
  authentication_providers = var.grafana_authentication_providers
  permission_type          = "CUSTOMER_MANAGED"
  role_arn                 = aws_iam_role.grafana.arn
  data_sources             = ["PROMETHEUS"]

  # In the VPC, so the PostgreSQL data source reaches RDS in the private subnets.
  vpc_configuration {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.grafana.id]
  }
}
