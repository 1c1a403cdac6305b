variable "env" {
  description = "Environment name; prefixes every resource name (`{env}-kopter-...`). Lowercase letters, digits and '-', 1-32 characters (libs/schema EnvName)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "service" {
  description = "Service that consumes the queue (describer, pricing, aggregator, trail-ingest, notifier)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts both queues (SSE-KMS)."
  type        = string
}

variable "max_receive_count" {
  description = "Receives before a message moves to the DLQ. Must equal the services' `queues.max_receive_count`."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "visibility_timeout_seconds" {
  description = "Queue default visibility timeout. The workers set their own on receive (`worker.visibility_timeout`, default 60 s); keep the two equal."
  type        = number
  default     = 60
}

variable "retention_seconds" {
  description = "How long the work queue keeps a message (SQS default 4 days)."
  type        = number
  default     = 345600
}

variable "dlq_retention_seconds" {
  description = "How long the DLQ keeps a message; the services' `queues.dlq_retention`. Default 14 days, the SQS maximum."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_retention_seconds >= 60 && var.dlq_retention_seconds <= 1209600
    error_message = "dlq_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

variable "dlq_depth_threshold" {
  description = "The DLQ alarm fires when more than this many messages are in it."
  type        = number
  default     = 0
}

variable "oldest_message_age_threshold_seconds" {
  description = "The backlog alarm fires when the oldest message in the work queue is older than this."
  type        = number
  default     = 900
}

variable "dlq_oldest_message_age_threshold_seconds" {
  description = "The DLQ age alarm fires when a message has been in the DLQ longer than this (default 3 days), well before it expires."
  type        = number
  default     = 259200
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm changes state (e.g. an SNS topic for the on-call)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
