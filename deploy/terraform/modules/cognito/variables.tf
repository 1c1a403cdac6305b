variable "env" {
  description = "Environment name; the pool is `{env}-kopter`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "mfa" {
  description = "Multi-factor authentication: OPTIONAL (each user may enrol an authenticator app) or ON (every user must)."
  type        = string
  default     = "OPTIONAL"

  validation {
    condition     = contains(["OPTIONAL", "ON"], var.mfa)
    error_message = "mfa must be OPTIONAL or ON."
  }
}

variable "callback_urls" {
  description = "Where the hosted sign-in may send users back with an authorization code (the web console's `{public_url}/console/callback`, added by modules/kopter when the api's public_url is set). Empty: no OAuth flow, sign-in through the API (SRP) only."
  type        = list(string)
  default     = []
}

variable "logout_urls" {
  description = "Where the hosted sign-out may send users back (the console's `{public_url}/console/signed-out`, added by modules/kopter)."
  type        = list(string)
  default     = []
}

variable "domain_prefix" {
  description = "Prefix of the hosted sign-in domain (`{prefix}.auth.{region}.amazoncognito.com`). Null: no hosted UI."
  type        = string
  default     = null
}

variable "id_token_minutes" {
  description = "Lifetime of ID tokens (what the api accepts) in minutes, 5-1440."
  type        = number
  default     = 60

  validation {
    condition     = var.id_token_minutes >= 5 && var.id_token_minutes <= 1440
    error_message = "id_token_minutes must be between 5 and 1440."
  }
}

variable "refresh_token_days" {
  description = "Lifetime of refresh tokens in days."
  type        = number
  default     = 30
}

variable "deletion_protection" {
  description = "Refuse deleting the user pool."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags applied to the user pool."
  type        = map(string)
  default     = {}
}
