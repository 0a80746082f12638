# Every input of the Pricewatch deployment. Defaults suit a small production: change sizes
# and counts here, not in the resources.

variable "region" {
  description = "AWS region for every resource (SES must be out of the sandbox in it to email anyone)."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Name of this deployment (prod, staging, ...): part of every resource name."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.environment))
    error_message = "environment: lower-case letters, digits and dashes, 2-21 characters."
  }
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

# --- Network ---------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR block of the VPC; public and private subnets are carved from it."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread over (one public and one private subnet, one MSK broker each)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count: 2 or 3 (MSK needs brokers in 2 or 3 zones)."
  }
}

variable "api_allowed_cidrs" {
  description = "Client CIDR blocks allowed to reach the API's load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "api_certificate_arn" {
  description = "ACM certificate for HTTPS on the load balancer. Empty: HTTP only (not for production)."
  type        = string
  default     = ""
}

# --- Kafka (MSK) -----------------------------------------------------------------------------

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.6.0"
}

variable "kafka_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "kafka_broker_volume_gb" {
  description = "EBS storage per MSK broker, in GiB."
  type        = number
  default     = 100
}

variable "topic_partitions" {
  description = "Partitions per Pricewatch topic (PRICEWATCH_TOPIC_PARTITIONS): the most workers or scrapers that can share the work."
  type        = number
  default     = 12
}

# --- PostgreSQL (RDS) ------------------------------------------------------------------------

variable "db_engine_version" {
  description = "RDS PostgreSQL major version (16, like docker-compose and the test containers)."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_allocated_storage_gb" {
  description = "Initial RDS storage, in GiB (grows automatically up to 4x)."
  type        = number
  default     = 50
}

variable "db_multi_az" {
  description = "Run RDS with a standby in a second zone."
  type        = bool
  default     = true
}

variable "db_backup_retention_days" {
  description = "Days of RDS automated backups."
  type        = number
  default     = 14
}

# --- Archive (S3) ----------------------------------------------------------------------------

variable "archive_bucket_name" {
  description = "Name of the S3 archive bucket. Empty: pricewatch-<environment>-archive-<account id>."
  type        = string
  default     = ""
}

variable "archive_prefix" {
  description = "Key prefix of archived observations (PRICEWATCH_S3_PREFIX)."
  type        = string
  default     = "observations"
}

variable "archive_infrequent_access_after_days" {
  description = "Days after which archive objects move to S3 Standard-IA."
  type        = number
  default     = 30
}

variable "archive_glacier_after_days" {
  description = "Days after which archive objects move to S3 Glacier Instant Retrieval."
  type        = number
  default     = 90
}

variable "archive_expire_after_days" {
  description = "Days after which archive objects are deleted (0: never)."
  type        = number
  default     = 730
}

# --- Email (SES) -----------------------------------------------------------------------------

variable "ses_domain" {
  description = "Domain that sends the alert emails; its DKIM records (output ses_dkim_records) must be published in DNS."
  type        = string
}

variable "email_from" {
  description = "From header of alert emails (PRICEWATCH_EMAIL_FROM); its address must be at ses_domain."
  type        = string
}

# --- Containers (ECS Fargate) ----------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the Pricewatch image in the ECR repository this creates (output ecr_repository_url)."
  type        = string
}

variable "public_base_url" {
  description = "Base URL of links in emails (PRICEWATCH_PUBLIC_BASE_URL). Empty: the load balancer's address."
  type        = string
  default     = ""
}

variable "admin_api_enabled" {
  description = "Generate an admin token (Secrets Manager, output admin_token_secret_arn) and give it to the API as PRICEWATCH_ADMIN_TOKEN. False: the admin API is off (404)."
  type        = bool
  default     = false
}

variable "default_check_interval_seconds" {
  description = "How often a tracked product is checked (PRICEWATCH_DEFAULT_CHECK_INTERVAL_SECONDS)."
  type        = number
  default     = 300
}

variable "log_retention_days" {
  description = "Days of CloudWatch logs kept per service."
  type        = number
  default     = 30
}

variable "service_sizes" {
  description = "CPU units, memory (MiB) and autoscaling bounds per Pricewatch service. Workers and scrapers scale on CPU between min and max (max at most topic_partitions)."
  type = map(object({
    cpu    = number
    memory = number
    min    = number
    max    = number
  }))
  default = {
    api                = { cpu = 256, memory = 512, min = 2, max = 6 }
    worker             = { cpu = 1024, memory = 2048, min = 2, max = 12 }
    scraper            = { cpu = 512, memory = 1024, min = 2, max = 12 }
    postgres-sink      = { cpu = 256, memory = 512, min = 1, max = 4 }
    subscriptions-sink = { cpu = 256, memory = 512, min = 1, max = 2 }
    events-sink        = { cpu = 256, memory = 512, min = 1, max = 4 }
    email-sink         = { cpu = 256, memory = 512, min = 1, max = 4 }
    channels-sink      = { cpu = 256, memory = 512, min = 1, max = 4 }
    archive-sink       = { cpu = 256, memory = 512, min = 1, max = 4 }
  }

  validation {
    condition     = alltrue([for s in values(var.service_sizes) : s.min >= 1 && s.max >= s.min])
    error_message = "service_sizes: every service needs 1 <= min <= max."
  }
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the autoscaling policies keep each service at."
  type        = number
  default     = 60
}

# --- Observability ---------------------------------------------------------------------------

variable "grafana_authentication_providers" {
  description = "Sign-in for Amazon Managed Grafana: AWS_SSO (needs IAM Identity Center in the account) and/or SAML."
  type        = list(string)
  default     = ["AWS_SSO"]
}
