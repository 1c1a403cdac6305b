# Who may call the api: a Cognito user pool whose users carry their tenant
# in `custom:tenant` and their role in the groups `admin` / `viewer`
# (`cognito:groups`), and an app client whose ID tokens the api accepts
# (`aud` = the client id). Users are created by an administrator only; the
# tenant attribute is set at creation and can be changed by no one, so a
# user can never move into another tenant's data.

data "aws_region" "current" {}

locals {
  oauth = length(var.callback_urls) > 0
}

resource "aws_cognito_user_pool" "this" {
  name                = "${var.env}-kopter"
  deletion_protection = var.deletion_protection ? "ACTIVE" : "INACTIVE"

  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  mfa_configuration        = var.mfa

  software_token_mfa_configuration {
    enabled = true
  }

  # No self sign-up: a user exists because an administrator of Kopter
  # created them with their tenant.
  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  password_policy {
    minimum_length                   = 14
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = true
    temporary_password_validity_days = 3
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }

  # The api's `api.tenant_claim` (Cognito prefixes custom attributes with
  # `custom:`). Immutable: only AdminCreateUser can set it.
  schema {
    name                     = "tenant"
    attribute_data_type      = "String"
    mutable                  = false
    required                 = false
    developer_only_attribute = false

    string_attribute_constraints {
      min_length = 1
      max_length = 64
    }
  }

  tags = var.tags
}

# The api's roles (`api.admin_role` = admin; anyone else is a viewer).
resource "aws_cognito_user_group" "role" {
  for_each = {
    admin  = { precedence = 1, description = "Changes the tenant's settings (budgets, channels, backup policy)." }
    viewer = { precedence = 2, description = "Reads the tenant's inventory, cost, audit log and notifications." }
  }

  user_pool_id = aws_cognito_user_pool.this.id
  name         = each.key
  precedence   = each.value.precedence
  description  = each.value.description
}

resource "aws_cognito_user_pool_client" "api" {
  name         = "${var.env}-kopter-api"
  user_pool_id = aws_cognito_user_pool.this.id

  # A browser or CLI client: no secret to keep.
  generate_secret               = false
  explicit_auth_flows           = ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors = "ENABLED"
  enable_token_revocation       = true

  # Tokens may show the tenant; the client may never write it (only email).
  read_attributes  = ["email", "email_verified", "custom:tenant"]
  write_attributes = ["email"]

  id_token_validity      = var.id_token_minutes
  access_token_validity  = var.id_token_minutes
  refresh_token_validity = var.refresh_token_days

  token_validity_units {
    id_token      = "minutes"
    access_token  = "minutes"
    refresh_token = "days"
  }

  # The authorization code grant only (no implicit flow); the client has
  # no secret, so Cognito takes the console's PKCE (S256) challenge as the
  # proof that the code's redeemer is the one that asked for it.
  allowed_oauth_flows_user_pool_client = local.oauth
  allowed_oauth_flows                  = local.oauth ? ["code"] : []
  allowed_oauth_scopes                 = local.oauth ? ["openid", "email"] : []
  callback_urls                        = var.callback_urls
  logout_urls                          = var.logout_urls
  supported_identity_providers         = ["COGNITO"]
}

resource "aws_cognito_user_pool_domain" "this" {
  count = var.domain_prefix == null ? 0 : 1

  domain       = var.domain_prefix
  user_pool_id = aws_cognito_user_pool.this.id
}
