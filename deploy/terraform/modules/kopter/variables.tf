variable "env" {
  description = "Environment name (`dev`, `prod`, ...): `KOPTER_ENV` and the prefix of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "image_repository" {
  description = "Repository of the Kopter image, which holds all five service binaries (e.g. an ECR repository URL)."
  type        = string
}

variable "image_tag" {
  description = "Image tag (or `@sha256:` digest suffix) deployed in this environment."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository, for the execution roles' pull permission. Null for a public image."
  type        = string
  default     = null
}

variable "fleet" {
  description = "Per-service sizing and settings. Keys are the service names; every service must be present. `config` adds real Kopter config keys (`KOPTER_PRICING__REGIONS`, ...) to the container environment; `secrets` maps config keys to SSM parameter or Secrets Manager ARNs."
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

  validation {
    condition     = length(setsymmetricdifference(keys(var.fleet), ["describer", "pricing", "aggregator", "trail-ingest", "notifier"])) == 0
    error_message = "fleet must have exactly the keys describer, pricing, aggregator, trail-ingest and notifier."
  }

  validation {
    condition     = alltrue([for s in values(var.fleet) : s.min_count >= 1 && s.min_count <= s.desired_count && s.desired_count <= s.max_count])
    error_message = "Each service needs 1 <= min_count <= desired_count <= max_count."
  }
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the secrets referenced in fleet[*].secrets."
  type        = list(string)
  default     = []
}

variable "shutdown_grace_seconds" {
  description = "`worker.shutdown_grace` of every service; ECS stopTimeout is this plus 5 s."
  type        = number
  default     = 25
}

variable "visibility_timeout_seconds" {
  description = "`worker.visibility_timeout` and the queues' default visibility timeout."
  type        = number
  default     = 60
}

variable "max_receive_count" {
  description = "Receives before a message goes to its DLQ: the queues' redrive policy and the services' `queues.max_receive_count`."
  type        = number
  default     = 5
}

variable "vpc_id" {
  description = "VPC of the service tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the service tasks, with a route to the AWS APIs (NAT gateway or VPC endpoints)."
  type        = list(string)
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups (e.g. Prometheus) allowed to reach the services' metrics ports 9101-9105."
  type        = list(string)
  default     = []
}

variable "trail_bucket_arns" {
  description = "Kopter-owned buckets that receive customers' CloudTrail files (trail-ingest reads them with its own role)."
  type        = list(string)
  default     = []
}

variable "trail_notification_bucket_arns" {
  description = "Buckets whose S3 event notifications may be sent to the trail-ingest queue (Kopter's and customers')."
  type        = list(string)
  default     = []
}

variable "trail_notification_topic_arns" {
  description = "SNS topics (CloudTrail or S3 notices) allowed to deliver to the trail-ingest queue."
  type        = list(string)
  default     = []
}

variable "ses_identity_arns" {
  description = "SES identities the notifier may send email as (`notifier.email_from`). Empty: no email."
  type        = list(string)
  default     = []
}

variable "schedule_expressions" {
  description = "Overrides of the tick schedules by job (see modules/schedules)."
  type        = map(string)
  default     = {}
}

variable "alarm_actions" {
  description = "ARNs notified by the queue alarms (e.g. the on-call SNS topic)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days the service log groups keep logs."
  type        = number
  default     = 90
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection on every table."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags applied to every resource (`kopter:env` is added)."
  type        = map(string)
  default     = {}
}

variable "api" {
  description = "The tenant HTTP API (modules/api) behind a load balancer. Null: no api. `oidc` null: a Cognito user pool (modules/cognito, settings in `cognito`) issues the tokens; otherwise the given issuers and audience (any OIDC provider whose ID tokens carry the tenant and role claims)."
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

  validation {
    condition     = var.api == null || try(var.api.min_count >= 1 && var.api.min_count <= var.api.desired_count && var.api.desired_count <= var.api.max_count, false)
    error_message = "api needs 1 <= min_count <= desired_count <= max_count."
  }
}
