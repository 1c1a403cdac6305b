# Three roles. The execution role is what ECS uses (image, logs, secrets).
# The task role is what the api process runs as: it may only assume the
# tenant-access role, tagging the session with the tenant of the verified
# token. The tenant-access role's policy (tenant-read-policy, keyed on that
# session tag) confines each session to its tenant's partition keys, so a
# bug in the api's own tenant checks still cannot reach another tenant's
# rows.

locals {
  # libs/runtime/src/credentials.rs TENANT_TAG: the api tags each session
  # with it, the tenant-read policy reads it back as a principal tag.
  tenant_tag = "kopter-tenant"
}

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

# --- Task role: nothing but the tenant-access role -----------------------------

resource "aws_iam_role" "task" {
  # Not `-task`: customers' KopterAccess roles trust `*-kopter-*-task`
  # (modules/customer-role), the workers that enter customer accounts. The
  # api never does, so its role stays outside that pattern as well as
  # outside its own policy.
  name               = "${local.name}-runtime"
  description        = "Runtime identity of ${local.name}: may only assume ${local.name}-tenant-access with a tenant tag."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "task" {
  statement {
    # sts:TagSession is what lets AssumeRole carry the kopter-tenant tag.
    # No DynamoDB, no KMS: the task's own credentials read nothing.
    sid       = "AssumeTenantAccess"
    actions   = ["sts:AssumeRole", "sts:TagSession"]
    resources = [aws_iam_role.tenant_access.arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- Tenant-access role --------------------------------------------------------

data "aws_iam_policy_document" "tenant_access_trust" {
  statement {
    sid     = "ApiTaskWithTenantTag"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }

    # A session without the tenant tag would match no LeadingKeys pattern
    # (the policy variable resolves to nothing), but refuse it outright.
    condition {
      test     = "Null"
      variable = "aws:RequestTag/${local.tenant_tag}"
      values   = ["false"]
    }

    # The tenant tag is the only session tag, and it cannot be empty.
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = [local.tenant_tag]
    }

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/${local.tenant_tag}"
      values   = ["?*"]
    }
  }
}

resource "aws_iam_role" "tenant_access" {
  name                 = "${local.name}-tenant-access"
  description          = "A tenant's view of Kopter's tables: assumed by ${local.name} with the session tag ${local.tenant_tag}=<tenant>."
  assume_role_policy   = data.aws_iam_policy_document.tenant_access_trust.json
  max_session_duration = 3600
  tags                 = var.tags
}

module "tenant_policy" {
  source = "../tenant-read-policy"

  # tenant_id null: the tenant comes from the session's principal tag.
  tenant_tag_key = local.tenant_tag
  table_arns     = var.table_arns
  index_names    = var.index_names
}

resource "aws_iam_role_policy" "tenant_rows" {
  name   = "tenant-rows"
  role   = aws_iam_role.tenant_access.id
  policy = module.tenant_policy.policy_json
}

data "aws_iam_policy_document" "tenant_tables_key" {
  statement {
    # The tables are encrypted with the environment's key: DynamoDB uses it
    # on the caller's behalf, so the caller needs it, through DynamoDB only.
    sid       = "TablesKeyViaDynamoDb"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [var.kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${data.aws_region.current.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "tenant_tables_key" {
  name   = "tables-key"
  role   = aws_iam_role.tenant_access.id
  policy = data.aws_iam_policy_document.tenant_tables_key.json
}
