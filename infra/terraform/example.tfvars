# Copy to prod.tfvars and fill in: the three variables without defaults, plus any default
# to change (variables.tf describes each).
region      = "eu-west-1"
environment = "prod"

ses_domain = "alerts.example.com"
email_from = "Pricewatch <alerts@alerts.example.com>"
image_tag  = "0.1.0"

# api_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/..."
# public_base_url     = "https://pricewatch.example.com"
# admin_api_enabled   = true  # then read the token from the admin_token_secret_arn output's secret
