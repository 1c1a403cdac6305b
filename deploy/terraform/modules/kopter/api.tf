# The tenant HTTP API (modules/api) and, unless another OIDC issuer is
# given, the Cognito user pool its users sign in with (modules/cognito).
# var.api = null: no api in this environment.

locals {
  api_enabled  = var.api != null
  cognito      = local.api_enabled && try(var.api.oidc, null) == null
  api_issuers  = !local.api_enabled ? [] : local.cognito ? [module.cognito[0].issuer_url] : var.api.oidc.issuers
  api_audience = !local.api_enabled ? null : local.cognito ? module.cognito[0].client_id : var.api.oidc.audience
  # The web console signs in with the code flow + PKCE at the api's own
  # public URL: its callback and the page Cognito's logout returns to
  # (services/api/src/console/signin.rs).
  console_base          = try(trimsuffix(var.api.public_url, "/"), null)
  console_callback_urls = local.console_base == null ? [] : ["${local.console_base}/console/callback"]
  console_logout_urls   = local.console_base == null ? [] : ["${local.console_base}/console/signed-out"]
}

module "cognito" {
  source = "../cognito"
  count  = local.cognito ? 1 : 0

  env                 = var.env
  mfa                 = var.api.cognito.mfa
  callback_urls       = distinct(concat(local.console_callback_urls, var.api.cognito.callback_urls))
  logout_urls         = distinct(concat(local.console_logout_urls, var.api.cognito.logout_urls))
  domain_prefix       = var.api.cognito.domain_prefix
  deletion_protection = var.deletion_protection
  tags                = local.tags
}

module "api" {
  source = "../api"
  count  = local.api_enabled ? 1 : 0

  env                = var.env
  image              = "${var.image_repository}:${var.image_tag}"
  ecr_repository_arn = var.ecr_repository_arn

  cpu           = var.api.cpu
  memory        = var.api.memory
  desired_count = var.api.desired_count
  min_count     = var.api.min_count
  max_count     = var.api.max_count

  issuers               = local.api_issuers
  audience              = local.api_audience
  tenant_claim          = try(var.api.oidc.tenant_claim, "custom:tenant")
  roles_claim           = try(var.api.oidc.roles_claim, "cognito:groups")
  cursor_key_secret_arn = var.api.cursor_key_secret_arn
  public_url            = var.api.public_url
  cors_origins          = var.api.cors_origins
  config                = var.api.config
  secrets               = var.api.secrets
  secrets_kms_key_arns  = var.secrets_kms_key_arns

  cluster_arn                        = aws_ecs_cluster.this.arn
  cluster_name                       = aws_ecs_cluster.this.name
  vpc_id                             = var.vpc_id
  subnet_ids                         = var.subnet_ids
  alb_subnet_ids                     = var.api.alb_subnet_ids
  internal                           = var.api.internal
  allowed_cidrs                      = var.api.allowed_cidrs
  certificate_arn                    = var.api.certificate_arn
  access_logs_bucket                 = var.api.access_logs_bucket
  web_acl_arn                        = var.api.web_acl_arn
  deletion_protection                = var.deletion_protection
  metrics_scraper_security_group_ids = var.metrics_scraper_security_group_ids

  table_arns         = module.tables.table_arns
  index_names        = module.tables.index_names
  kms_key_arn        = aws_kms_key.this.arn
  log_retention_days = var.log_retention_days
  tags               = local.tags
}
