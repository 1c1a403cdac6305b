# EventBridge Scheduler sends the periodic ticks straight to the services'
# queues, the AWS counterpart of `kopterctl tick`. Each message body is a v1
# envelope of libs/schema/src/messages.rs. Scheduler cannot run code, so the
# per-invocation fields come from its context attributes:
#   id      <aws.scheduler.execution-id>   unique per invocation, kept by
#                                          Scheduler's own retries (the
#                                          envelope's idempotency key)
#   sent_at <aws.scheduler.scheduled-time> RFC 3339, e.g. 2026-11-26T23:00:00Z
# tests/tests/terraform.rs substitutes both and decodes every enabled body with
# `Envelope::decode`.

locals {
  envelope = {
    v       = 1
    id      = "<aws.scheduler.execution-id>"
    sent_at = "<aws.scheduler.scheduled-time>"
  }

  schedules = {
    # The seed's hourly describer cron: one describe.account per account x region.
    "describe-sweep" = {
      service    = "describer"
      expression = "cron(0 * * * ? *)"
      enabled    = true
      input      = jsonencode(merge(local.envelope, { kind = "describe.sweep", body = {} }))
    }
    # The whole EC2 price list once a day (region files are skipped by ETag
    # when unchanged).
    "pricing-refresh" = {
      service    = "pricing"
      expression = "cron(15 2 * * ? *)"
      enabled    = true
      input      = jsonencode(merge(local.envelope, { kind = "pricing.refresh_all", body = {} }))
    }
    # Spot price history, hourly at minute 1: each run fetches only the
    # changes since the region's cursor (one paginated
    # DescribeSpotPriceHistory per region in Kopter's own account), and it
    # lands before the aggregate tick at minute 5 prices the hour that has
    # just ended. Any slower and that hour would be priced from an older
    # spot price (the aggregator does not revisit it unless backfilled).
    "spot-refresh" = {
      service    = "pricing"
      expression = "cron(1 * * * ? *)"
      enabled    = true
      input      = jsonencode(merge(local.envelope, { kind = "pricing.refresh_spot", body = { regions = [] } }))
    }
    # Five minutes past the hour. `hour` is the scheduled time, which readers
    # truncate to the hour that has just begun; backfill_hours = 1 makes the
    # aggregator (re)compute the hour that has just ended too, which is the one
    # `kopterctl tick aggregate` sends by default.
    "aggregate" = {
      service    = "aggregator"
      expression = "cron(5 * * * ? *)"
      enabled    = true
      input = jsonencode(merge(local.envelope, {
        kind = "aggregate.hour"
        body = { hour = "<aws.scheduler.scheduled-time>", backfill_hours = 1 }
      }))
    }
    # The seed's "backup-job": 0 */12 * * *.
    "backups" = {
      service    = "describer"
      expression = "cron(0 */12 * * ? *)"
      enabled    = true
      input      = jsonencode(merge(local.envelope, { kind = "backup.sweep", body = {} }))
    }
    # Organizations connected with `kopterctl org connect` are listed again
    # every 6 hours at minute 20 (off the hourly sweep): new active accounts
    # are onboarded, suspended or closed ones paused. One message covers
    # every organization (20 accounts per ListAccounts call).
    "org-discovery" = {
      service    = "describer"
      expression = "cron(20 */6 * * ? *)"
      enabled    = true
      input      = jsonencode(merge(local.envelope, { kind = "describe.org_discovery", body = {} }))
    }
    # The seed's 23:00 daily job. `day` takes Scheduler's timestamp (the
    # contract reads its UTC date).
    "daily-digest" = {
      service    = "notifier"
      expression = "cron(0 23 * * ? *)"
      enabled    = true
      input = jsonencode(merge(local.envelope, {
        kind = "notify.daily_digest"
        body = { day = "<aws.scheduler.scheduled-time>" }
      }))
    }
  }
}

# Every job `kopterctl tick` can send is either scheduled above or listed
# here with the reason it is not (tests/tests/terraform.rs checks both
# against kopterctl's list of jobs).
locals {
  unscheduled = {
    "pricing-region" = "One region on demand (an operator's retry); the daily pricing-refresh already queues a pricing.refresh_region for every region whose version changed."
  }
}

resource "aws_scheduler_schedule_group" "this" {
  name = "${var.env}-kopter"
  tags = var.tags
}

resource "aws_scheduler_schedule" "tick" {
  # checkov:skip=CKV_AWS_297:The schedule input is a fixed job envelope (kind + Scheduler placeholders), no customer data; the AWS-owned key suffices.
  for_each = local.schedules

  name                         = "${var.env}-kopter-${each.key}"
  group_name                   = aws_scheduler_schedule_group.this.name
  description                  = "Sends ${jsondecode(each.value.input).kind} to the ${each.value.service} queue."
  schedule_expression          = lookup(var.schedule_expressions, each.key, each.value.expression)
  schedule_expression_timezone = var.timezone
  state                        = each.value.enabled ? "ENABLED" : "DISABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = var.queues[each.value.service].queue_arn
    role_arn = aws_iam_role.scheduler.arn
    input    = each.value.input

    retry_policy {
      # A tick older than an hour is superseded by the next one.
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 10
    }

    # A tick that cannot be delivered lands in the service's DLQ, whose alarm
    # pages.
    dead_letter_config {
      arn = var.queues[each.value.service].dlq_arn
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_scheduler_schedule_group.this.arn]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.env}-kopter-scheduler"
  description        = "EventBridge Scheduler: send Kopter's periodic ticks to the service queues."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

locals {
  target_services = distinct([for s in values(local.schedules) : s.service])
}

data "aws_iam_policy_document" "send" {
  statement {
    sid     = "SendTicks"
    actions = ["sqs:SendMessage"]
    resources = flatten([
      for s in local.target_services : [var.queues[s].queue_arn, var.queues[s].dlq_arn]
    ])
  }

  statement {
    sid       = "EncryptedQueues"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "send" {
  name   = "send-ticks"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.send.json
}
