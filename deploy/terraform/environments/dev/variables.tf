variable "env" {
  description = "Environment name: `KOPTER_ENV` and the prefix of every resource name."
  type        = string
  default     = "dev"
}

variable "region" {
  description = "AWS region of this environment."
  type        = string
}

variable "account_id" {
  description = "AWS account this environment lives in; the provider refuses any other."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "image_repository" {
  description = "Repository of the Kopter image (all five binaries)."
  type        = string
}

variable "image_tag" {
  description = "Image tag deployed here."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository (null for a public image)."
  type        = string
  default     = null
}

variable "fleet" {
  description = "Per-service desired/min/max task counts, size, extra config keys and secrets (see modules/kopter)."
  type = map(object({
    desired_count           = optional(number, 1)
    min_count               = optional(number, 1)
    max_count               = optional(number, 4)
    cpu                     = optional(number, 256)
    memory                  = optional(number, 512)
    target_backlog_per_task = optional(number, 100)
    config                  = optional(map(string), {})
    secrets                 = optional(map(string), {})
  }))
}

variable "vpc_id" {
  description = "VPC of the service tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the service tasks."
  type        = list(string)
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups allowed to scrape the metrics ports."
  type        = list(string)
  default     = []
}

variable "trail_bucket_arns" {
  description = "Kopter-owned CloudTrail buckets that trail-ingest reads."
  type        = list(string)
  default     = []
}

variable "trail_notification_bucket_arns" {
  description = "Buckets allowed to notify the trail-ingest queue."
  type        = list(string)
  default     = []
}

variable "ses_identity_arns" {
  description = "SES identities the notifier sends email as."
  type        = list(string)
  default     = []
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys of the secrets in fleet[*].secrets."
  type        = list(string)
  default     = []
}

variable "alarm_actions" {
  description = "ARNs notified by the queue alarms."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days the service log groups keep logs."
  type        = number
  default     = 30
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags on every resource (cost centre, owner)."
  type        = map(string)
  default     = {}
}

variable "api" {
  description = "The tenant HTTP API behind a load balancer, with a Cognito user pool or another OIDC issuer (see modules/kopter `api`). Null: no api."
  type = object({
    certificate_arn       = string
    alb_subnet_ids        = list(string)
    allowed_cidrs         = list(string)
    cursor_key_secret_arn = string
    internal              = optional(bool, false)
    public_url            = optional(string)
    cors_origins          = optional(list(string), [])
    access_logs_bucket    = optional(string)
    web_acl_arn           = optional(string)
    desired_count         = optional(number, 2)
    min_count             = optional(number, 2)
    max_count             = optional(number, 6)
    cpu                   = optional(number, 256)
    memory                = optional(number, 512)
    config                = optional(map(string), {})
    secrets               = optional(map(string), {})
    cognito = optional(object({
      mfa           = optional(string, "OPTIONAL")
      callback_urls = optional(list(string), [])
      logout_urls   = optional(list(string), [])
      domain_prefix = optional(string)
    }), {})
    oidc = optional(object({
      issuers      = list(string)
      audience     = string
      tenant_claim = optional(string, "custom:tenant")
      roles_claim  = optional(string, "cognito:groups")
    }))
  })
  default = null
}
