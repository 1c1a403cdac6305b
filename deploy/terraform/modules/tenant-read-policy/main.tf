# A policy that confines a tenant's credentials (say, a web front end's
# per-user session) to the tenant's own DynamoDB rows and S3 prefix: the
# seed's slides 14-16, with Kopter's key layout.
#
# Every tenant-owned partition key is either the tenant id itself (accounts
# table: pk = "{tenant}") or starts with "{tenant}#" (libs/schema/src/items.rs),
# and so does the partition key of every index that is granted here.
# `dynamodb:LeadingKeys` is the whole partition key value of each item a
# request touches, so it is matched with StringLike against
# ["{tenant}", "{tenant}#*"]. See README.md for why that is tight and what
# it does not cover.

data "aws_partition" "current" {}

locals {
  # Either a fixed tenant, or the session's `kopter-tenant` principal tag
  # (one policy for every tenant; the tag is set when the session is made).
  # `$${` is HCL for a literal `${`: an IAM policy variable.
  tenant = var.tenant_id != null ? var.tenant_id : "$${aws:PrincipalTag/${var.tenant_tag_key}}"

  table_arns = [for t in var.tables : var.table_arns[t]]
  index_arns = flatten([
    for t in var.tables : [
      for i in lookup(var.index_names, t, []) : "${var.table_arns[t]}/index/${i}"
      if !contains(var.excluded_indexes, "${t}/${i}")
    ]
  ])
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "OwnRowsOnly"
    effect    = "Allow"
    actions   = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
    resources = concat(local.table_arns, local.index_arns)

    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = [local.tenant, "${local.tenant}#*"]
    }

    # ForAllValues is true for an empty set: insist that the request names
    # its partition keys (no Scan, no PartiQL).
    condition {
      test     = "Null"
      variable = "dynamodb:LeadingKeys"
      values   = ["false"]
    }
  }

  # The api's admin endpoints (budgets, channels, backup policy, marking
  # notifications read) write the tenant's own rows: the same LeadingKeys
  # condition, on the tables named in write_tables only. No DeleteItem, no
  # batch writes.
  dynamic "statement" {
    for_each = length(var.write_tables) == 0 ? [] : [1]
    content {
      sid       = "WriteOwnRows"
      effect    = "Allow"
      actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
      resources = [for t in var.write_tables : var.table_arns[t]]

      condition {
        test     = "ForAllValues:StringLike"
        variable = "dynamodb:LeadingKeys"
        values   = [local.tenant, "${local.tenant}#*"]
      }

      condition {
        test     = "Null"
        variable = "dynamodb:LeadingKeys"
        values   = ["false"]
      }
    }
  }

  # The price catalogue is the same for every tenant (not tenant-owned), so
  # it is readable whole — GetItem and Query only, never written.
  dynamic "statement" {
    for_each = var.read_price_catalogue ? [1] : []
    content {
      sid       = "ReadPriceCatalogue"
      effect    = "Allow"
      actions   = ["dynamodb:GetItem", "dynamodb:Query"]
      resources = [var.table_arns["prices"]]
    }
  }

  dynamic "statement" {
    for_each = var.bucket_name == null ? [] : [var.bucket_name]
    content {
      sid       = "ListOwnPrefix"
      effect    = "Allow"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${data.aws_partition.current.partition}:s3:::${statement.value}"]

      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${local.tenant}/*"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.bucket_name == null ? [] : [var.bucket_name]
    content {
      sid       = "ReadOwnPrefix"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = ["arn:${data.aws_partition.current.partition}:s3:::${statement.value}/${local.tenant}/*"]
    }
  }
}

resource "aws_iam_policy" "this" {
  count = var.policy_name == null ? 0 : 1

  name        = var.policy_name
  description = var.tenant_id != null ? "Read-only access to tenant ${var.tenant_id}'s Kopter rows and files." : "Read-only access to the Kopter rows and files of the tenant in the session tag ${var.tenant_tag_key}."
  policy      = data.aws_iam_policy_document.this.json
  tags        = var.tags
}
