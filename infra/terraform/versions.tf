# Pricewatch on AWS: the streaming shape of docker-compose.yml on managed services.
#   Kafka -> Amazon MSK, PostgreSQL -> RDS, MinIO -> S3, Mailpit -> SES,
#   containers -> ECS Fargate, Prometheus -> an agent on ECS writing to Amazon Managed
#   Service for Prometheus, Grafana -> Amazon Managed Grafana.
# See README.md in this directory for the order of operations.

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, { Application = "pricewatch", Environment = var.environment })
  }
}

data "aws_caller_identity" "current" {}

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  name = "pricewatch-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, var.az_count)
}
