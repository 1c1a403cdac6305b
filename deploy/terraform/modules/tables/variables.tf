variable "env" {
  description = "Environment name; tables are named `{env}-kopter-{table}`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "kms_key_arn" {
  description = "ARN of the customer-managed KMS key that encrypts every table."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse DeleteTable on every table (turn off only to tear an environment down on purpose)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags applied to every table."
  type        = map(string)
  default     = {}
}
