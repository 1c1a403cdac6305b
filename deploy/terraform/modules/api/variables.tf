variable "env" {
  description = "Environment name (`KOPTER_ENV`); prefixes every resource name. At most 21 characters: the load balancer and target group names (`{env}-kopter-api`) are limited to 32."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,21}$", var.env))
    error_message = "env must be 1-21 characters of lowercase letters, digits and '-' (ALB and target group names are at most 32 characters)."
  }
}

variable "image" {
  description = "Container image with its tag or digest; it holds the `api` binary."
  type        = string
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
  description = "Port of the API's HTTP listener (`api.listen`)."
  type        = number
  default     = 8080
}

variable "telemetry_port" {
  description = "Port of `/metrics` `/healthz` `/readyz` (`telemetry.listen`; the api's default is 9106). The target group's health check calls `/readyz` here."
  type        = number
  default     = 9106
}

variable "desired_count" {
  description = "Tasks at the first apply; afterwards autoscaling owns the count."
  type        = number
  default     = 2
}

variable "min_count" {
  description = "Fewest tasks autoscaling keeps (2 or more keeps the API up while a task is replaced)."
  type        = number
  default     = 2

  validation {
    condition     = var.min_count >= 1
    error_message = "min_count must be at least 1."
  }
}

variable "max_count" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 6
}

variable "target_cpu_percent" {
  description = "Average CPU utilisation of the service that autoscaling aims for."
  type        = number
  default     = 60
}

variable "drain_seconds" {
  description = "After a task leaves the target group (deployment, scale-in), time the load balancer lets its in-flight requests (CSV/NDJSON exports included) finish before ECS sends SIGTERM; the server then drains again for up to the container's stopTimeout (30 s)."
  type        = number
  default     = 60

  validation {
    condition     = var.drain_seconds >= 0 && var.drain_seconds <= 3600
    error_message = "drain_seconds must be between 0 and 3600 (the target group's deregistration delay)."
  }
}

variable "issuers" {
  description = "Trusted OIDC issuer URLs (`api.issuers`), exactly as in tokens' `iss`: the Cognito module's `issuer_url`, or any OIDC provider's."
  type        = list(string)

  validation {
    condition     = length(var.issuers) > 0 && alltrue([for i in var.issuers : can(regex("^https://[^ ,\\[\\]]+$", i))])
    error_message = "issuers must be one or more https:// URLs (no spaces, commas or brackets)."
  }
}

variable "audience" {
  description = "The `aud` every token must carry (`api.audience`; Cognito ID tokens: the app client id)."
  type        = string
}

variable "tenant_claim" {
  description = "Claim holding the tenant id (`api.tenant_claim`)."
  type        = string
  default     = "custom:tenant"
}

variable "roles_claim" {
  description = "Claim holding the user's groups (`api.roles_claim`)."
  type        = string
  default     = "cognito:groups"
}

variable "cursor_key_secret_arn" {
  description = "Secrets Manager secret or SSM SecureString parameter ARN holding `api.cursor_key` (base64 of at least 32 random bytes: `openssl rand -base64 48`). Every task must share it, or cursors fail between replicas; required in env `prod`."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:(ssm|secretsmanager):", var.cursor_key_secret_arn))
    error_message = "cursor_key_secret_arn must be an SSM parameter or Secrets Manager secret ARN."
  }
}

variable "public_url" {
  description = "URL clients reach the API at (`api.public_url`), e.g. `https://api.kopter.example.com`. Null: the config default."
  type        = string
  default     = null
}

variable "cors_origins" {
  description = "Browser origins allowed to call the API (`api.cors_origins`). Empty: none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.cors_origins : can(regex("^https?://[^ ,\\[\\]/]+$", o))])
    error_message = "cors_origins must be origins (scheme://host[:port], no path)."
  }
}

variable "config" {
  description = "Further container environment: real Kopter config keys only (e.g. `KOPTER_API__RATE_LIMIT_PER_SECOND`), or AWS SDK variables. Unknown keys make the api exit with 2. Values set by this module win."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.config) : can(regex("^(KOPTER_[A-Z0-9_]+|AWS_[A-Z0-9_]+|RUST_LOG)$", k))])
    error_message = "config keys must be KOPTER_* config keys, AWS_* SDK variables or RUST_LOG."
  }
}

variable "secrets" {
  description = "Further config keys whose values come from SSM Parameter Store or Secrets Manager: environment name => ARN."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.secrets) : can(regex("^arn:[^:]+:(ssm|secretsmanager):", arn))])
    error_message = "secrets values must be SSM parameter or Secrets Manager secret ARNs."
  }
}

variable "secrets_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the cursor key and `secrets` (AWS-managed keys need no grant)."
  type        = list(string)
  default     = []
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster."
  type        = string
}

variable "cluster_name" {
  description = "Name of the ECS cluster (the autoscaling resource id)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and the tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks (with a route to STS, DynamoDB and the issuers' JWKS: NAT or VPC endpoints plus NAT for the issuer)."
  type        = list(string)
}

variable "alb_subnet_ids" {
  description = "Subnets of the load balancer, in at least two availability zones (public subnets for an internet-facing one)."
  type        = list(string)

  validation {
    condition     = length(var.alb_subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

variable "internal" {
  description = "An internal load balancer (reachable inside the VPC only) instead of an internet-facing one."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "IPv4 CIDRs that may reach the load balancer on 443 (and 80, which only redirects). No default: opening the API to the internet (`0.0.0.0/0`) is a decision to write down."
  type        = list(string)

  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must be one or more IPv4 CIDRs."
  }
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (the API's host name)."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "access_logs_bucket" {
  description = "S3 bucket for the load balancer's access logs (its policy must let the ELB service write). Null: no access logs."
  type        = string
  default     = null
}

variable "web_acl_arn" {
  description = "WAFv2 web ACL (regional) to associate with the load balancer. Null: none."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Load balancer deletion protection."
  type        = bool
  default     = true
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups (e.g. Prometheus) allowed to reach the telemetry port."
  type        = list(string)
  default     = []
}

variable "table_arns" {
  description = "Table ARN by schema suffix (the tables module's `table_arns`): the tenant-access role's policy grants the tenant's rows in them."
  type        = map(string)
}

variable "index_names" {
  description = "Index names by table suffix (the tables module's `index_names`)."
  type        = map(list(string))
}

variable "kms_key_arn" {
  description = "The environment's KMS key: the tables' encryption key (used through DynamoDB by the tenant-access role) and this log group's."
  type        = string
}

variable "log_retention_days" {
  description = "Days the log group keeps logs."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
