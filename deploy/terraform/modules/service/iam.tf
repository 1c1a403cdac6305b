# Two roles per service. The execution role is what ECS itself uses to pull
# the image, write logs and read the secrets; the task role is what the
# service's code runs as.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

# --- Execution role ------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${local.name}-execution"
  description        = "ECS agent for ${local.name}: image pull, logs, secrets."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = var.ecr_repository_arn == null ? [] : [var.ecr_repository_arn]
    content {
      sid       = "PullImage"
      actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    # GetAuthorizationToken has no resource type: AWS requires "*".
    for_each = var.ecr_repository_arn == null ? [] : [1]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(local.ssm_secret_arns) == 0 ? [] : [1]
    content {
      sid       = "SsmSecrets"
      actions   = ["ssm:GetParameters"]
      resources = local.ssm_secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.secretsmanager_arns) == 0 ? [] : [1]
    content {
      sid       = "SecretsManagerSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secretsmanager_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.secrets_kms_key_arns) == 0 ? [] : [1]
    content {
      sid       = "DecryptSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.secrets_kms_key_arns
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- Task role -----------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  description        = "Runtime identity of ${local.name}."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

locals {
  ddb_read  = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem"]
  ddb_write = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "ConsumeOwnQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [var.queue_arn]
  }

  statement {
    # The worker reports its DLQ's depth and oldest-message age on /metrics.
    sid       = "WatchOwnDlq"
    actions   = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [var.dlq_arn]
  }

  dynamic "statement" {
    for_each = length(var.send_queue_arns) == 0 ? [] : [1]
    content {
      sid       = "SendToQueues"
      actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
      resources = var.send_queue_arns
    }
  }

  statement {
    sid       = "EncryptedQueuesTablesTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = length(var.read_table_arns) == 0 ? [] : [1]
    content {
      sid       = "ReadTables"
      actions   = local.ddb_read
      resources = flatten([for arn in var.read_table_arns : [arn, "${arn}/index/*"]])
    }
  }

  dynamic "statement" {
    for_each = length(var.write_table_arns) == 0 ? [] : [1]
    content {
      sid       = "WriteTables"
      actions   = concat(local.ddb_read, local.ddb_write)
      resources = flatten([for arn in var.write_table_arns : [arn, "${arn}/index/*"]])
    }
  }

  dynamic "statement" {
    for_each = var.publish_topic_arn == null ? [] : [var.publish_topic_arn]
    content {
      sid       = "PublishEvents"
      actions   = ["sns:Publish"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    # The runtime finds the topic ARN by name with ListTopics, which has no
    # resource type: AWS requires "*". It reveals topic ARNs only.
    for_each = var.publish_topic_arn == null ? [] : [1]
    content {
      sid       = "FindEventsTopic"
      actions   = ["sns:ListTopics"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    # Customer roles must be named KopterAccess* (kopterctl onboard checks it);
    # each customer's trust policy also demands its ExternalId.
    for_each = var.assume_customer_roles ? [1] : []
    content {
      sid       = "AssumeCustomerRoles"
      actions   = ["sts:AssumeRole"]
      resources = ["arn:${data.aws_partition.current.partition}:iam::*:role/${var.customer_role_prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = var.extra_statements
    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
