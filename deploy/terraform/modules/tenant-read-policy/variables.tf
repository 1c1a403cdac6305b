variable "tenant_id" {
  description = "A fixed tenant id (lowercase letters, digits, '-'). Null: the tenant comes from the session's principal tag `tenant_tag_key`, so one policy serves every tenant."
  type        = string
  default     = null

  validation {
    condition     = var.tenant_id == null || can(regex("^[a-z0-9][a-z0-9-]{0,63}$", var.tenant_id))
    error_message = "tenant_id must be a Kopter tenant id: 1-64 lowercase letters, digits or '-', not starting with '-'."
  }
}

variable "tenant_tag_key" {
  description = "Principal (session) tag that carries the tenant id when tenant_id is null. Whoever creates the session must set it and must not let the caller choose it (no sts:TagSession for the tenant)."
  type        = string
  default     = "kopter-tenant"
}

variable "table_arns" {
  description = "Table ARN by schema suffix (the tables module's `table_arns`)."
  type        = map(string)
}

variable "index_names" {
  description = "Index names by table suffix (the tables module's `index_names`)."
  type        = map(list(string))
  default     = {}
}

variable "tables" {
  description = "Tenant-owned tables the tenant may read. `prices` is not tenant-owned and `dedup` is internal, so neither is here by default."
  type        = list(string)
  default     = ["accounts", "inventory", "ec2-events", "ec2-snapshots", "price-graph", "audit-log", "notifications"]

  validation {
    condition     = !contains(var.tables, "prices") && !contains(var.tables, "dedup")
    error_message = "prices and dedup hold no tenant-prefixed keys; they cannot be confined with LeadingKeys."
  }
}

variable "write_tables" {
  description = "Tenant-owned tables whose rows the tenant may put and update (the api's admin endpoints: tenant settings in accounts, read marks in notifications, the budget row `{tenant}#budget` in price-graph). Same LeadingKeys condition as reads. Empty: read-only."
  type        = list(string)
  default     = ["accounts", "notifications", "price-graph"]

  validation {
    condition     = !contains(var.write_tables, "prices") && !contains(var.write_tables, "dedup")
    error_message = "prices and dedup hold no tenant-prefixed keys; they cannot be confined with LeadingKeys."
  }
}

variable "read_price_catalogue" {
  description = "Also allow GetItem/Query on the prices table (the catalogue shared by every tenant, for the api's /v1/prices)."
  type        = bool
  default     = true
}

variable "excluded_indexes" {
  description = "Indexes (`table/index`) whose partition key does not start with the tenant id, never granted. `accounts/by-account` is keyed by the bare account id."
  type        = list(string)
  default     = ["accounts/by-account"]
}

variable "bucket_name" {
  description = "Bucket whose `{tenant}/` prefix the tenant may list and read. Null: no S3 access."
  type        = string
  default     = null
}

variable "policy_name" {
  description = "Create a managed policy with this name. Null: only output the JSON (to attach inline or use as a session policy)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags applied to the managed policy."
  type        = map(string)
  default     = {}
}
