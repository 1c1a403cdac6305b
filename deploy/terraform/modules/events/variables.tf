variable "env" {
  description = "Environment name; the topic is `{env}-kopter-events`."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,32}$", var.env))
    error_message = "env must be 1-32 characters of lowercase letters, digits and '-'."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the topic. Its key policy must let sns.amazonaws.com use it for the encrypted subscriber queues."
  type        = string
}

variable "subscriptions" {
  description = "Subscriber queues by service name: the queue's ARN and URL, and the event types (the `event_type` attribute values) it receives."
  type = map(object({
    queue_arn   = string
    queue_url   = string
    event_types = list(string)
  }))

  validation {
    condition = alltrue([
      for s in values(var.subscriptions) : length(s.event_types) > 0 && alltrue([for e in s.event_types : can(regex("^[a-z_]+\\.[a-z_]+$", e))])
    ])
    error_message = "Every subscription needs at least one event type of the form `noun.verb` (e.g. `inventory.changed`)."
  }
}

variable "tags" {
  description = "Tags applied to the topic."
  type        = map(string)
  default     = {}
}
