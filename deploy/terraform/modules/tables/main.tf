# Every DynamoDB table of one environment, exactly as libs/schema/src/tables.rs
# declares them (tests/tests/terraform.rs checks that the two agree). All key
# attributes are strings. The audit log's indexes project keys only (a copy
# of a record's row would cost 2 write units per index, a keys-only copy
# 1); changing an index's projection makes Terraform delete and recreate
# that index (DynamoDB cannot change a projection in place): searches that
# use it fail until it is ACTIVE again (minutes per GB of table).

locals {
  tables = {
    "accounts" = {
      hash_key  = "pk"
      range_key = "sk"
      gsis = [
        { name = "by-account", hash_key = "account_id", range_key = null, projection = "ALL" },
      ]
      ttl_attribute = null
    }
    "inventory" = {
      hash_key      = "pk"
      range_key     = "sk"
      gsis          = []
      ttl_attribute = null
    }
    "ec2-events" = {
      hash_key  = "pk"
      range_key = "sk"
      gsis = [
        { name = "by-resource", hash_key = "resource_key", range_key = "sk", projection = "ALL" },
      ]
      ttl_attribute = null
    }
    "ec2-snapshots" = {
      hash_key  = "pk"
      range_key = "sk"
      gsis = [
        { name = "by-volume", hash_key = "volume_key", range_key = "created_at", projection = "ALL" },
      ]
      ttl_attribute = null
    }
    "prices" = {
      hash_key      = "pk"
      range_key     = "sk"
      gsis          = []
      ttl_attribute = null
    }
    "price-graph" = {
      hash_key      = "pk"
      range_key     = "sk"
      gsis          = []
      ttl_attribute = "expires_at"
    }
    "audit-log" = {
      hash_key  = "pk"
      range_key = "sk"
      # No indexes: searches read the segments' summaries
      # (libs/store/src/audit/design.md).
      gsis          = []
      ttl_attribute = "expires_at"
    }
    "notifications" = {
      hash_key  = "pk"
      range_key = "sk"
      gsis = [
        # Sparse: `unread_key` is set only while unread.
        { name = "unread", hash_key = "unread_key", range_key = "sk", projection = "ALL" },
      ]
      ttl_attribute = "expires_at"
    }
    "dedup" = {
      hash_key      = "pk"
      range_key     = null
      gsis          = []
      ttl_attribute = "expires_at"
    }
  }

  # DynamoDB wants exactly the attributes used in a key schema.
  key_attributes = {
    for suffix, t in local.tables : suffix => distinct(compact(concat(
      [t.hash_key, t.range_key],
      flatten([for g in t.gsis : [g.hash_key, g.range_key]]),
    )))
  }
}

resource "aws_dynamodb_table" "this" {
  for_each = local.tables

  name                        = "${var.env}-kopter-${each.key}"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = each.value.hash_key
  range_key                   = each.value.range_key
  deletion_protection_enabled = var.deletion_protection

  dynamic "attribute" {
    for_each = local.key_attributes[each.key]
    content {
      name = attribute.value
      type = "S"
    }
  }

  dynamic "global_secondary_index" {
    for_each = each.value.gsis
    content {
      name            = global_secondary_index.value.name
      hash_key        = global_secondary_index.value.hash_key
      range_key       = global_secondary_index.value.range_key
      projection_type = global_secondary_index.value.projection
    }
  }

  dynamic "ttl" {
    for_each = each.value.ttl_attribute == null ? [] : [each.value.ttl_attribute]
    content {
      attribute_name = ttl.value
      enabled        = true
    }
  }

  # Recreating an index (a projection change) backfills it from the whole
  # table, one index after another; the provider's default 60 minutes can
  # run out on a table of some GB. A timed-out apply leaves DynamoDB
  # working: run it again and it converges.
  timeouts {
    update = "6h"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = merge(var.tags, { "kopter:table" = each.key })
}
