variable "kopter_account_id" {
  description = "The AWS account id Kopter runs in (the operator gives it to you)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.kopter_account_id))
    error_message = "kopter_account_id must be a 12-digit account id."
  }
}

variable "external_id" {
  description = "The ExternalId `kopterctl onboard` generated for this account."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.external_id) >= 16 && length(var.external_id) <= 1224 && can(regex("^[A-Za-z0-9+=,.@:/-]+$", var.external_id))
    error_message = "external_id must be 16-1224 characters of A-Z a-z 0-9 +=,.@:/-."
  }
}

variable "kopter_principal_arn_patterns" {
  description = "Principals of the Kopter account allowed to assume the role (default: every Kopter service task role, `{env}-kopter-{service}-task`)."
  type        = list(string)
  default     = null
  nullable    = true
}

variable "role_name" {
  description = "Role name; Kopter only assumes roles whose name starts with KopterAccess."
  type        = string
  default     = "KopterAccess"

  validation {
    condition     = startswith(var.role_name, "KopterAccess")
    error_message = "role_name must start with KopterAccess."
  }
}

variable "max_session_duration" {
  description = "Longest session Kopter may ask for, seconds (its `credentials.session_duration`, default 1 h)."
  type        = number
  default     = 3600
}

variable "trail_bucket_name" {
  description = "The bucket your CloudTrail writes to, if Kopter reads it through this role (`--trail-customer-owned`). Null: no S3 access."
  type        = string
  default     = null
}

variable "trail_prefix" {
  description = "The trail's S3 key prefix (before `AWSLogs/`), empty if none."
  type        = string
  default     = ""
}

variable "trail_kms_key_arn" {
  description = "The KMS key that encrypts the trail's files (SSE-KMS), if any."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to the role."
  type        = map(string)
  default     = {}
}
