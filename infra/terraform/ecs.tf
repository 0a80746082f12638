# ECS Fargate: one image, one service per Pricewatch role, as in docker-compose.yml.
# Stream workers and scrapers scale out on CPU (Kafka partitions bound how many share the
# work); the scheduler is a timer inside every worker, so it scales with them. Every task
# registers in Cloud Map (pricewatch.internal) so the Prometheus agent finds each replica by
# DNS, exactly like Prometheus does in docker-compose.

locals {
  api_port     = 8080
  metrics_port = 9100
  image        = "${aws_ecr_repository.pricewatch.repository_url}:${var.image_tag}"

  # Role -> the `pricewatch` command it runs (the image's entrypoint is `pricewatch`).
  services = {
    api                = ["api"]
    worker             = ["worker"]
    scraper            = ["scraper"]
    postgres-sink      = ["sink", "postgres"]
    subscriptions-sink = ["sink", "subscriptions"]
    events-sink        = ["sink", "events"]
    email-sink         = ["sink", "email"]
    channels-sink      = ["sink", "channels"]
    archive-sink       = ["sink", "archive"]
  }

  # One-off tasks, run before the services start and after every upgrade (README.md).
  setup_tasks = {
    kafka-topics = ["topics", "create"]
    db-migrate   = ["db", "upgrade"]
  }

  # Settings every task shares (names are pricewatch/settings.py fields).
  common_environment = {
    PRICEWATCH_KAFKA_BOOTSTRAP_SERVERS        = aws_msk_cluster.main.bootstrap_brokers
    PRICEWATCH_TOPIC_PARTITIONS               = tostring(var.topic_partitions)
    PRICEWATCH_TOPIC_REPLICATION_FACTOR       = "3"
    PRICEWATCH_DATA_DIR                       = "/var/lib/pricewatch"
    PRICEWATCH_PUBLIC_BASE_URL                = var.public_base_url != "" ? var.public_base_url : "http://${aws_lb.api.dns_name}"
    PRICEWATCH_DEFAULT_CHECK_INTERVAL_SECONDS = tostring(var.default_check_interval_seconds)
    PRICEWATCH_EMAIL_BACKEND                  = "ses"
    PRICEWATCH_EMAIL_FROM                     = var.email_from
    PRICEWATCH_SES_REGION                     = var.region
    PRICEWATCH_S3_BUCKET                      = aws_s3_bucket.archive.bucket
    PRICEWATCH_S3_PREFIX                      = var.archive_prefix
    PRICEWATCH_S3_REGION                      = var.region
    PRICEWATCH_API_HOST                       = "0.0.0.0"
    PRICEWATCH_API_PORT                       = tostring(local.api_port)
    PRICEWATCH_METRICS_HOST                   = "0.0.0.0"
    PRICEWATCH_LOG_LEVEL                      = "INFO"
  }

  # The API's own settings. The load balancer (in the public subnets) is the only proxy in
  # front of it: only its X-Forwarded-For names the client the rate limits key on.
  api_environment = {
    PRICEWATCH_TRUSTED_PROXIES = join(",", aws_subnet.public[*].cidr_block)
  }

  # Every process serves /metrics on metrics_port, the API too: never on the API's port,
  # which the load balancer routes (only the Prometheus agent reaches metrics_port).
  metrics_ports = { for name in keys(local.services) : name => local.metrics_port }
}

resource "aws_ecr_repository" "pricewatch" {
  name                 = local.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }
}

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = merge(local.services, local.setup_tasks, { prometheus-agent = [] })
  name              = "/pricewatch/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = "pricewatch.internal"
  description = "Pricewatch tasks, one A record per running task"
  vpc         = aws_vpc.main.id
}

resource "aws_service_discovery_service" "service" {
  for_each = local.services
  name     = each.key

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"

    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.services
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.service_sizes[each.key].cpu
  memory                   = var.service_sizes[each.key].memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    {
      name      = each.key
      image     = local.image
      command   = each.value
      essential = true
      user      = "10001:10001"
      environment = [
        for name, value in merge(local.common_environment, {
          PRICEWATCH_METRICS_PORT = tostring(local.metrics_ports[each.key])
        }, { for key, value in local.api_environment : key => value if each.key == "api" }) : { name = name, value = value }
      ]
      # secrets.tf: which task gets which secret.
      secrets = local.secrets_of[each.key]
      portMappings = concat(each.key == "api" ? [{ containerPort = local.api_port, protocol = "tcp" }] : [], [
        {
          containerPort = local.metrics_port
          protocol      = "tcp"
        },
      ])
      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${each.key == "api" ? local.api_port : local.metrics_port}/${each.key == "api" ? "healthz" : "metrics"}', timeout=3)"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 60
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = each.key
        }
      }
    },
  ])
}

resource "aws_ecs_task_definition" "setup" {
  for_each                 = local.setup_tasks
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn

  container_definitions = jsonencode([
    {
      name        = each.key
      image       = local.image
      command     = each.value
      essential   = true
      user        = "10001:10001"
      environment = [for name, value in local.common_environment : { name = name, value = value }]
      secrets     = local.secrets_of[each.key]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
          awslogs-region        = var.region
          awslogs-stream-prefix = each.key
        }
      }
    },
  ])
}

resource "aws_ecs_service" "service" {
  for_each               = local.services
  name                   = each.key
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.service[each.key].arn
  desired_count          = var.service_sizes[each.key].min
  launch_type            = "FARGATE"
  enable_execute_command = false
  propagate_tags         = "SERVICE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.service[each.key].arn
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = "api"
      container_port   = local.api_port
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # Autoscaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.http]
}

resource "aws_appautoscaling_target" "service" {
  for_each           = local.services
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.service[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.service_sizes[each.key].min
  # Consumers beyond the partition count would sit idle; the API is no consumer.
  max_capacity = each.key == "api" ? var.service_sizes[each.key].max : min(var.service_sizes[each.key].max, var.topic_partitions)
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each           = local.services
  name               = "${local.name}-${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.service[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.service[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.service[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# --- The API's load balancer ------------------------------------------------------------------

resource "aws_lb" "api" {
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
}

resource "aws_lb_target_group" "api" {
  name        = "${local.name}-api"
  port        = local.api_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = aws_vpc.main.id

  health_check {
    path    = "/healthz"
    matcher = "200"
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.api.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = var.api_certificate_arn == "" ? "forward" : "redirect"
    target_group_arn = var.api_certificate_arn == "" ? aws_lb_target_group.api.arn : null

    dynamic "redirect" {
      for_each = var.api_certificate_arn == "" ? [] : [1]
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = var.api_certificate_arn == "" ? 0 : 1
  load_balancer_arn = aws_lb.api.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.api_certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }
}
