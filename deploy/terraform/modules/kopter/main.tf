# One Kopter environment: KMS key, tables, a queue + DLQ per service, the
# events topic and its subscriptions, the schedules, and one ECS service per
# binary in services/. The environments/ roots call this once each.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  tags       = merge(var.tags, { "kopter:env" = var.env })

  # The fleet, one entry per service in services/ (libs/schema/src/queues.rs
  # `Service::ALL`). `events` is the service's subscription filter: the
  # event types it receives from the topic (`Service::subscribed_events`).
  # Tables are schema suffixes; `write` implies read.
  services = {
    "describer" = {
      port                  = 9101
      events                = ["describe.targeted"]
      read_tables           = []
      write_tables          = ["accounts", "inventory", "ec2-events", "ec2-snapshots", "dedup"]
      publishes             = true
      sends_to_own_queue    = true # describe.account / backup.run fan-out
      assume_customer_roles = true
    }
    "pricing" = {
      port                  = 9102
      events                = []
      read_tables           = []
      write_tables          = ["prices"]
      publishes             = true
      sends_to_own_queue    = true # pricing.refresh_region fan-out
      assume_customer_roles = false
    }
    "aggregator" = {
      port                  = 9103
      events                = ["inventory.changed", "prices.updated"]
      read_tables           = ["accounts", "inventory", "ec2-events", "ec2-snapshots", "prices"]
      write_tables          = ["price-graph", "dedup"]
      publishes             = true
      sends_to_own_queue    = false
      assume_customer_roles = false
    }
    "trail-ingest" = {
      port                  = 9104
      events                = []
      read_tables           = ["accounts"]
      write_tables          = ["audit-log"]
      publishes             = true
      sends_to_own_queue    = false
      assume_customer_roles = true # customer-owned trail buckets
    }
    "notifier" = {
      port                  = 9105
      events                = ["security.finding", "inventory.changed", "backup.failed", "budget.crossed", "cost.spike", "account.health", "account.org_change", "waste.finding"]
      read_tables           = ["accounts", "price-graph"]
      write_tables          = ["notifications", "dedup"]
      publishes             = false
      sends_to_own_queue    = true # notify.burst_flush (delayed) and digest fan-out
      assume_customer_roles = false
    }
  }

  # Service-specific AWS APIs beyond queues, tables and the topic.
  extra_statements = {
    "describer"  = []
    "aggregator" = []
    "pricing" = [
      {
        # Price List Query API and spot price history: neither has resource
        # types, AWS requires "*". Both read public price data.
        sid       = "PriceData"
        actions   = ["pricing:ListPriceLists", "pricing:GetPriceListFileUrl", "ec2:DescribeSpotPriceHistory"]
        resources = ["*"]
      },
    ]
    "trail-ingest" = length(var.trail_bucket_arns) == 0 ? [] : [
      {
        sid       = "ReadKopterTrailBuckets"
        actions   = ["s3:GetObject"]
        resources = [for b in var.trail_bucket_arns : "${b}/*"]
      },
    ]
    "notifier" = length(var.ses_identity_arns) == 0 ? [] : [
      {
        sid       = "SendEmail"
        actions   = ["ses:SendEmail"]
        resources = var.ses_identity_arns
      },
    ]
  }
}

# --- Encryption ----------------------------------------------------------------

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the account root administering its own key is the standard delegation to IAM.
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; service principals are limited by SourceAccount/SourceArn/encryption context.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only (AWS requires "*" in key policies).
  statement {
    # The account administers the key; IAM policies grant its use (the task
    # and scheduler roles). In a key policy "*" means this key.
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "SnsDeliversToEncryptedQueues"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/kopter/${var.env}/*"]
    }
  }

  dynamic "statement" {
    # S3 event notifications from trail buckets into the encrypted
    # trail-ingest queue (possibly from customers' buckets).
    for_each = length(var.trail_notification_bucket_arns) == 0 ? [] : [1]
    content {
      sid       = "S3NotifiesTrailQueue"
      actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = var.trail_notification_bucket_arns
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "Kopter ${var.env}: queues, topic, tables, logs."
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.env}-kopter"
  target_key_id = aws_kms_key.this.key_id
}

# --- Data and messaging ----------------------------------------------------------

module "tables" {
  source = "../tables"

  env                 = var.env
  kms_key_arn         = aws_kms_key.this.arn
  deletion_protection = var.deletion_protection
  tags                = local.tags
}

module "queues" {
  source   = "../queue"
  for_each = local.services

  env                        = var.env
  service                    = each.key
  kms_key_arn                = aws_kms_key.this.arn
  max_receive_count          = var.max_receive_count
  visibility_timeout_seconds = var.visibility_timeout_seconds
  alarm_actions              = var.alarm_actions
  tags                       = local.tags
}

module "events" {
  source = "../events"

  env         = var.env
  kms_key_arn = aws_kms_key.this.arn
  subscriptions = {
    for name, s in local.services : name => {
      queue_arn   = module.queues[name].queue_arn
      queue_url   = module.queues[name].queue_url
      event_types = s.events
    } if length(s.events) > 0
  }
  tags = local.tags
}

# trail-ingest is not subscribed to the topic; its queue takes CloudTrail
# notices from the trail buckets (S3 event notifications) or topics.
data "aws_iam_policy_document" "trail_queue" {
  count = length(var.trail_notification_bucket_arns) + length(var.trail_notification_topic_arns) == 0 ? 0 : 1

  dynamic "statement" {
    for_each = length(var.trail_notification_bucket_arns) == 0 ? [] : [1]
    content {
      sid       = "TrailBucketNotifications"
      actions   = ["sqs:SendMessage"]
      resources = [module.queues["trail-ingest"].queue_arn]

      principals {
        type        = "Service"
        identifiers = ["s3.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "aws:SourceArn"
        values   = var.trail_notification_bucket_arns
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.trail_notification_topic_arns) == 0 ? [] : [1]
    content {
      sid       = "TrailTopicNotifications"
      actions   = ["sqs:SendMessage"]
      resources = [module.queues["trail-ingest"].queue_arn]

      principals {
        type        = "Service"
        identifiers = ["sns.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = var.trail_notification_topic_arns
      }
    }
  }
}

resource "aws_sqs_queue_policy" "trail" {
  count = length(data.aws_iam_policy_document.trail_queue)

  queue_url = module.queues["trail-ingest"].queue_url
  policy    = data.aws_iam_policy_document.trail_queue[0].json
}

module "schedules" {
  source = "../schedules"

  env         = var.env
  kms_key_arn = aws_kms_key.this.arn
  queues = {
    for name, q in module.queues : name => { queue_arn = q.queue_arn, dlq_arn = q.dlq_arn }
  }
  schedule_expressions = var.schedule_expressions
  tags                 = local.tags
}

# --- Compute -----------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = "${var.env}-kopter"

  # RunningTaskCount, the divisor of the backlog-per-task scaling metric,
  # comes from Container Insights.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = local.tags
}

resource "aws_security_group" "tasks" {
  name        = "${var.env}-kopter-tasks"
  description = "Kopter ${var.env} service tasks: HTTPS out (AWS APIs, price list, webhooks), metrics in from the scrapers."
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs, the public price list and customers' webhooks"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.tasks.id
  description                  = "Prometheus scrapes /metrics, /healthz, /readyz"
  ip_protocol                  = "tcp"
  from_port                    = 9101
  to_port                      = 9105
  referenced_security_group_id = each.value
}

module "services" {
  source   = "../service"
  for_each = local.services

  env                = var.env
  service            = each.key
  image              = "${var.image_repository}:${var.image_tag}"
  command            = [each.key]
  ecr_repository_arn = var.ecr_repository_arn
  port               = each.value.port

  cpu                     = var.fleet[each.key].cpu
  memory                  = var.fleet[each.key].memory
  desired_count           = var.fleet[each.key].desired_count
  min_count               = var.fleet[each.key].min_count
  max_count               = var.fleet[each.key].max_count
  target_backlog_per_task = var.fleet[each.key].target_backlog_per_task
  config                  = var.fleet[each.key].config
  secrets                 = var.fleet[each.key].secrets
  secrets_kms_key_arns    = var.secrets_kms_key_arns

  shutdown_grace_seconds     = var.shutdown_grace_seconds
  visibility_timeout_seconds = var.visibility_timeout_seconds
  max_receive_count          = var.max_receive_count

  cluster_arn        = aws_ecs_cluster.this.arn
  cluster_name       = aws_ecs_cluster.this.name
  subnet_ids         = var.subnet_ids
  security_group_ids = [aws_security_group.tasks.id]

  queue_name            = module.queues[each.key].queue_name
  queue_arn             = module.queues[each.key].queue_arn
  dlq_arn               = module.queues[each.key].dlq_arn
  send_queue_arns       = each.value.sends_to_own_queue ? [module.queues[each.key].queue_arn] : []
  read_table_arns       = [for t in each.value.read_tables : module.tables.table_arns[t]]
  write_table_arns      = [for t in each.value.write_tables : module.tables.table_arns[t]]
  publish_topic_arn     = each.value.publishes ? module.events.topic_arn : null
  assume_customer_roles = each.value.assume_customer_roles
  extra_statements      = local.extra_statements[each.key]

  kms_key_arn        = aws_kms_key.this.arn
  log_retention_days = var.log_retention_days
  tags               = local.tags
}
