output "queue_name" {
  description = "Name of the work queue."
  value       = aws_sqs_queue.main.name
}

output "queue_arn" {
  description = "ARN of the work queue."
  value       = aws_sqs_queue.main.arn
}

output "queue_url" {
  description = "URL of the work queue."
  value       = aws_sqs_queue.main.id
}

output "dlq_name" {
  description = "Name of the dead-letter queue."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "alarm_arns" {
  description = "ARNs of the queue's alarms (DLQ depth, oldest message age of the queue and of the DLQ)."
  value = [
    aws_cloudwatch_metric_alarm.dlq_depth.arn,
    aws_cloudwatch_metric_alarm.oldest_message.arn,
    aws_cloudwatch_metric_alarm.dlq_oldest_message.arn,
  ]
}
