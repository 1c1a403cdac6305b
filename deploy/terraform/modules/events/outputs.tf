output "topic_arn" {
  description = "ARN of the `{env}-kopter-events` topic."
  value       = aws_sns_topic.events.arn
}

output "topic_name" {
  description = "Name of the topic."
  value       = aws_sns_topic.events.name
}

output "subscription_arns" {
  description = "Subscription ARN by service name."
  value       = { for k, s in aws_sns_topic_subscription.queue : k => s.arn }
}
