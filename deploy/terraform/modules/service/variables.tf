variable "env" {
  description = "Environment name (`KOPTER_ENV`); prefixes every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "service" {
  description = "Service name: its binary, queue suffix and metrics label (describer, pricing, aggregator, trail-ingest, notifier)."
  type        = string

  validation {
    condition     = contains(["describer", "pricing", "aggregator", "trail-ingest", "notifier"], var.service)
    error_message = "service must be one of describer, pricing, aggregator, trail-ingest, notifier."
  }
}

variable "image" {
  description = "Container image with its tag or digest (e.g. `123456789012.dkr.ecr.eu-west-1.amazonaws.com/kopter:1.4.0`)."
  type        = string
}

variable "command" {
  description = "Container command: the service's binary (the image holds all five)."
  type        = list(string)
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository the image comes from, for the execution role's pull permission. Null for a public image."
  type        = string
  default     = null
}

variable "cpu" {
  description = "Task CPU units (Fargate sizes: 256, 512, 1024, ...)."
  type        = number
  default     = 256
}

variable "memory" {
  description = "Task memory in MiB (valid for the chosen cpu)."
  type        = number
  default     = 512
}

variable "cpu_architecture" {
  description = "X86_64 or ARM64; must match the image."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "port" {
  description = "Port of the `/metrics` `/healthz` `/readyz` server (`telemetry.listen`); describer 9101 ... notifier 9105."
  type        = number
}

variable "desired_count" {
  description = "Tasks at the first apply; afterwards autoscaling owns the count."
  type        = number
  default     = 1
}

variable "min_count" {
  description = "Fewest tasks autoscaling keeps. At least 1: the backlog-per-task metric divides by the running task count."
  type        = number
  default     = 1

  validation {
    condition     = var.min_count >= 1
    error_message = "min_count must be at least 1 (backlog per task is undefined with no running task)."
  }
}

variable "max_count" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 4
}

variable "target_backlog_per_task" {
  description = "Visible messages per running task that autoscaling aims for: about (acceptable wait / average handling time) x worker.concurrency."
  type        = number
  default     = 100
}

variable "shutdown_grace_seconds" {
  description = "`worker.shutdown_grace`: on SIGTERM, time for in-flight messages before they are returned to the queue. The container's stopTimeout is this plus 5 s."
  type        = number
  default     = 25

  validation {
    condition     = var.shutdown_grace_seconds >= 1 && var.shutdown_grace_seconds <= 115
    error_message = "shutdown_grace_seconds must be between 1 and 115 (stopTimeout = grace + 5 s, at most 120 s on Fargate)."
  }
}

variable "visibility_timeout_seconds" {
  description = "`worker.visibility_timeout`; keep it equal to the queue's default visibility timeout."
  type        = number
  default     = 60
}

variable "max_receive_count" {
  description = "`queues.max_receive_count`; must equal the queue's redrive maxReceiveCount."
  type        = number
  default     = 5
}

variable "config" {
  description = "Further container environment: real Kopter config keys only (`KOPTER_<SECTION>__<KEY>`, e.g. `KOPTER_WORKER__CONCURRENCY`), or AWS SDK variables. Unknown keys make the service exit with 2."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.config) : can(regex("^(KOPTER_[A-Z0-9_]+|AWS_[A-Z0-9_]+|RUST_LOG)$", k))])
    error_message = "config keys must be KOPTER_* config keys, AWS_* SDK variables or RUST_LOG."
  }
}

variable "secrets" {
  description = "Config keys whose values come from SSM Parameter Store or Secrets Manager: environment name => parameter or secret ARN. ECS injects them at start; they never appear in the task definition."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secrets) : can(regex("^arn:[^:]+:(ssm|secretsmanager):", arn))])
    error_message = "secrets values must be SSM parameter or Secrets Manager secret ARNs."
  }
}

variable "secrets_kms_key_arns" {
  description = "KMS keys that encrypt the secrets (customer-managed keys only; AWS-managed keys need no grant)."
  type        = list(string)
  default     = []
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster (the autoscaling resource id and the Container Insights dimension)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks (they need a route to the AWS APIs: NAT or VPC endpoints)."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
}

variable "queue_name" {
  description = "Name of the service's own queue (the scaling metric's dimension)."
  type        = string
}

variable "queue_arn" {
  description = "ARN of the service's own queue: the only queue it receives from."
  type        = string
}

variable "dlq_arn" {
  description = "ARN of the service's DLQ (the worker reads its depth and age for /metrics)."
  type        = string
}

variable "send_queue_arns" {
  description = "Queues the service sends to directly (fan-out to itself, delayed messages to itself)."
  type        = list(string)
  default     = []
}

variable "read_table_arns" {
  description = "Tables the service only reads (their indexes included)."
  type        = list(string)
  default     = []
}

variable "write_table_arns" {
  description = "Tables the service reads and writes (their indexes included)."
  type        = list(string)
  default     = []
}

variable "publish_topic_arn" {
  description = "The events topic, if the service publishes to it."
  type        = string
  default     = null
}

variable "assume_customer_roles" {
  description = "Whether the service enters customer accounts (sts:AssumeRole on `role/{customer_role_prefix}*` in any account)."
  type        = bool
  default     = false
}

variable "customer_role_prefix" {
  description = "Prefix of customer role names (libs/schema `Names::customer_role_prefix`)."
  type        = string
  default     = "KopterAccess"
}

variable "extra_statements" {
  description = "Further task-role statements (service-specific APIs), each with a sid explaining it."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
  }))
  default = []
}

variable "kms_key_arn" {
  description = "The environment's KMS key (queues, topic, tables, this log group)."
  type        = string
}

variable "log_retention_days" {
  description = "Days the service's log group keeps logs."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
