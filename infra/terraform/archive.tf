# The S3 archive of every price observation (`pricewatch sink archive`): private,
# encrypted, TLS only, versioned, and moved to cheaper storage classes as it ages.

resource "aws_s3_bucket" "archive" {
  bucket = local.archive_bucket
}

locals {
  archive_bucket = var.archive_bucket_name != "" ? var.archive_bucket_name : "${local.name}-archive-${data.aws_caller_identity.current.account_id}"
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# A redelivered batch rewrites an object with the same bytes; versioning keeps an
# accidental delete or overwrite recoverable.
resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket     = aws_s3_bucket.archive.id
  depends_on = [aws_s3_bucket_versioning.archive]

  rule {
    id     = "age-observations"
    status = "Enabled"

    filter {
      prefix = "${var.archive_prefix}/"
    }

    transition {
      days          = var.archive_infrequent_access_after_days
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = var.archive_glacier_after_days
      storage_class = "GLACIER_IR"
    }

    dynamic "expiration" {
      for_each = var.archive_expire_after_days > 0 ? [var.archive_expire_after_days] : []
      content {
        days = expiration.value
      }
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "archive_tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.archive.arn,
      "${aws_s3_bucket.archive.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket     = aws_s3_bucket.archive.id
  policy     = data.aws_iam_policy_document.archive_tls_only.json
  depends_on = [aws_s3_bucket_public_access_block.archive]
}
