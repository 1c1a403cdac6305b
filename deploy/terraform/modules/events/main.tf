# The `{env}-kopter-events` topic and its queue subscriptions. Publishers set
# the `event_type` message attribute; each subscription's filter policy lists
# the event types its queue wants (libs/schema/src/queues.rs). Raw delivery:
# a queue message body is exactly the envelope JSON that was published.

resource "aws_sns_topic" "events" {
  name              = "${var.env}-kopter-events"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "queue" {
  for_each = var.subscriptions

  topic_arn            = aws_sns_topic.events.arn
  protocol             = "sqs"
  endpoint             = each.value.queue_arn
  raw_message_delivery = true
  filter_policy_scope  = "MessageAttributes"
  filter_policy        = jsonencode({ event_type = each.value.event_types })
}

# A subscribed queue accepts messages from this topic only.
data "aws_iam_policy_document" "queue" {
  for_each = var.subscriptions

  statement {
    sid       = "KopterEvents"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [each.value.queue_arn]

    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.events.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "queue" {
  for_each = var.subscriptions

  queue_url = each.value.queue_url
  policy    = data.aws_iam_policy_document.queue[each.key].json
}
