provider "aws" {
  region              = var.region
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = merge(var.tags, {
      "kopter:managed-by" = "terraform"
      "kopter:stack"      = "deploy/terraform/environments/prod"
    })
  }
}

module "kopter" {
  source = "../../modules/kopter"

  env                = var.env
  image_repository   = var.image_repository
  image_tag          = var.image_tag
  ecr_repository_arn = var.ecr_repository_arn
  fleet              = var.fleet

  vpc_id                             = var.vpc_id
  subnet_ids                         = var.subnet_ids
  metrics_scraper_security_group_ids = var.metrics_scraper_security_group_ids

  trail_bucket_arns              = var.trail_bucket_arns
  trail_notification_bucket_arns = var.trail_notification_bucket_arns
  ses_identity_arns              = var.ses_identity_arns
  secrets_kms_key_arns           = var.secrets_kms_key_arns

  api = var.api

  alarm_actions       = var.alarm_actions
  log_retention_days  = var.log_retention_days
  deletion_protection = var.deletion_protection
}
