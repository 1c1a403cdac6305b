# One service's work queue, its dead-letter queue and the alarms on both.
# Names follow libs/schema/src/names.rs: `{env}-kopter-{service}` and
# `{env}-kopter-{service}-dlq`.

locals {
  name     = "${var.env}-kopter-${var.service}"
  dlq_name = "${var.env}-kopter-${var.service}-dlq"
}

resource "aws_sqs_queue" "dlq" {
  name                      = local.dlq_name
  message_retention_seconds = var.dlq_retention_seconds
  kms_master_key_id         = var.kms_key_arn
  # Data keys are reused for this long; fewer KMS calls, same key.
  kms_data_key_reuse_period_seconds = 3600
  tags                              = merge(var.tags, { "kopter:service" = var.service })
}

resource "aws_sqs_queue" "main" {
  name                              = local.name
  visibility_timeout_seconds        = var.visibility_timeout_seconds
  receive_wait_time_seconds         = 20
  message_retention_seconds         = var.retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = merge(var.tags, { "kopter:service" = var.service })
}

# Only the work queue may move messages into this DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main.arn]
  })
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  alarm_name          = "${local.dlq_name}-depth"
  alarm_description   = "Messages in the ${var.service} DLQ: poison messages or ones that failed ${var.max_receive_count} times. Read the service log for their ids and reasons."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dlq_depth_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name          = "${local.name}-oldest-message-age"
  alarm_description   = "The oldest message in the ${var.service} queue has waited longer than ${var.oldest_message_age_threshold_seconds}s: the service is down, stuck or cannot keep up."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_oldest_message" {
  alarm_name          = "${local.dlq_name}-oldest-message-age"
  alarm_description   = "A message has been in the ${var.service} DLQ for over ${var.dlq_oldest_message_age_threshold_seconds}s; it expires after ${var.dlq_retention_seconds}s. Redrive or discard it."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dlq_oldest_message_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}
