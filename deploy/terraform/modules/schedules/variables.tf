variable "env" {
  description = "Environment name; schedules are named `{env}-kopter-{job}` in the group `{env}-kopter`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "queues" {
  description = "Queues by service name (at least describer, pricing, aggregator, notifier): the ARNs of the work queue and of its DLQ."
  type = map(object({
    queue_arn = string
    dlq_arn   = string
  }))

  validation {
    condition     = alltrue([for s in ["describer", "pricing", "aggregator", "notifier"] : contains(keys(var.queues), s)])
    error_message = "queues must include describer, pricing, aggregator and notifier."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the queues (the scheduler role may use it to send)."
  type        = string
}

variable "schedule_expressions" {
  description = "Overrides of the schedule expressions by job (`describe-sweep`, `pricing-refresh`, `spot-refresh`, `aggregate`, `backups`, `daily-digest`), e.g. `{ \"pricing-refresh\" = \"cron(0 4 * * ? *)\" }`."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.schedule_expressions) : contains(["describe-sweep", "pricing-refresh", "spot-refresh", "aggregate", "backups", "daily-digest"], k)])
    error_message = "Unknown job in schedule_expressions."
  }
}

variable "timezone" {
  description = "Time zone of the cron expressions. The message times are UTC either way."
  type        = string
  default     = "UTC"
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
