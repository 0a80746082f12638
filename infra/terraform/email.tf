# SES: the sending domain (DKIM-signed) and a configuration set that is the identity's
# default, so every alert email is tracked without Pricewatch naming the set. Publish the
# DKIM records (output ses_dkim_records) in the domain's DNS, and request production
# access for the account, before emails reach anyone outside the SES sandbox.

resource "aws_sesv2_configuration_set" "main" {
  configuration_set_name = local.name

  delivery_options {
    tls_policy = "REQUIRE"
  }

  reputation_options {
    reputation_metrics_enabled = true
  }

  sending_options {
    sending_enabled = true
  }

  suppression_options {
    suppressed_reasons = ["BOUNCE", "COMPLAINT"]
  }
}

resource "aws_sesv2_configuration_set_event_destination" "cloudwatch" {
  configuration_set_name = aws_sesv2_configuration_set.main.configuration_set_name
  event_destination_name = "cloudwatch"

  event_destination {
    enabled              = true
    matching_event_types = ["SEND", "DELIVERY", "BOUNCE", "COMPLAINT", "REJECT"]

    cloud_watch_destination {
      dimension_configuration {
        default_dimension_value = "pricewatch"
        dimension_name          = "application"
        dimension_value_source  = "MESSAGE_TAG"
      }
    }
  }
}

resource "aws_sesv2_email_identity" "domain" {
  email_identity         = var.ses_domain
  configuration_set_name = aws_sesv2_configuration_set.main.configuration_set_name
}
