# Applied by a customer in its own AWS account: the role Kopter assumes to
# read the EC2/EBS estate, take and expire Kopter-managed EBS snapshots, and
# read the account's CloudTrail files. `kopterctl onboard` prints the
# ExternalId to pass in.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition   = data.aws_partition.current.partition
  trail_key   = trimsuffix(var.trail_prefix, "/") == "" ? "AWSLogs/${data.aws_caller_identity.current.account_id}" : "${trimsuffix(var.trail_prefix, "/")}/AWSLogs/${data.aws_caller_identity.current.account_id}"
  managed_tag = "kopter:managed"
  principal_patterns = var.kopter_principal_arn_patterns != null ? var.kopter_principal_arn_patterns : [
    "arn:${data.aws_partition.current.partition}:iam::${var.kopter_account_id}:role/*-kopter-*-task",
  ]
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "KopterWithExternalId"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${var.kopter_account_id}:root"]
    }

    # Confused-deputy protection: Kopter sends the ExternalId it generated
    # for this account only.
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [var.external_id]
    }

    # Only Kopter's service task roles, not any principal of its account.
    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = local.principal_patterns
    }
  }
}

resource "aws_iam_role" "kopter" {
  name                 = var.role_name
  description          = "Kopter (account ${var.kopter_account_id}): EC2/EBS inventory, Kopter-managed EBS snapshots, CloudTrail files."
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  tags                 = var.tags
}

data "aws_iam_policy_document" "access" {
  statement {
    # EC2 Describe* calls have no resource-level permissions: AWS requires
    # "*". They read metadata only.
    sid = "DescribeEstate"
    actions = [
      "ec2:DescribeRegions",
      "ec2:DescribeInstances",
      "ec2:DescribeVolumes",
      "ec2:DescribeSnapshots",
      # Local/Wavelength Zones are priced from their own price list, and
      # Dedicated Hosts are billed per host (issue 17). Roles granted
      # before these were added keep working: the describer then tells
      # zones by name and skips hosts (logged, counted).
      "ec2:DescribeAvailabilityZones",
      "ec2:DescribeHosts",
    ]
    resources = ["*"]
  }

  statement {
    # Idle instances (issue 22): daily CPU maximum and network of running
    # instances, read at most once a day per instance. GetMetricData has no
    # resource-level permissions ("*" required). A role granted before
    # this leaves instances undecided (never reported idle), logged.
    sid       = "ReadInstanceMetrics"
    actions   = ["cloudwatch:GetMetricData"]
    resources = ["*"]
  }

  statement {
    sid       = "SnapshotAnyVolume"
    actions   = ["ec2:CreateSnapshot"]
    resources = ["arn:${local.partition}:ec2:*:*:volume/*"]
  }

  statement {
    # The snapshot itself must be created carrying kopter:managed=true.
    sid       = "CreateManagedSnapshot"
    actions   = ["ec2:CreateSnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/${local.managed_tag}"
      values   = ["true"]
    }
  }

  statement {
    # Tags only as part of CreateSnapshot, never on existing resources.
    sid       = "TagOnCreate"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateSnapshot"]
    }
  }

  statement {
    sid       = "DeleteManagedSnapshot"
    actions   = ["ec2:DeleteSnapshot"]
    resources = ["arn:${local.partition}:ec2:*::snapshot/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${local.managed_tag}"
      values   = ["true"]
    }
  }

  dynamic "statement" {
    for_each = var.trail_bucket_name == null ? [] : [var.trail_bucket_name]
    content {
      sid       = "ReadCloudTrailFiles"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::${statement.value}/${local.trail_key}/*"]
    }
  }

  dynamic "statement" {
    for_each = var.trail_kms_key_arn == null ? [] : [var.trail_kms_key_arn]
    content {
      sid       = "DecryptCloudTrailFiles"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["s3.*.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "access" {
  name   = "kopter-access"
  role   = aws_iam_role.kopter.id
  policy = data.aws_iam_policy_document.access.json
}
