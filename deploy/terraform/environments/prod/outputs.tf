output "cluster_name" {
  description = "ECS cluster of the fleet."
  value       = module.kopter.cluster_name
}

output "queue_urls" {
  description = "Work queue URL by service."
  value       = module.kopter.queue_urls
}

output "dlq_urls" {
  description = "DLQ URL by service."
  value       = module.kopter.dlq_urls
}

output "trail_queue_arn" {
  description = "Target of CloudTrail bucket notifications."
  value       = module.kopter.trail_queue_arn
}

output "events_topic_arn" {
  description = "The events topic."
  value       = module.kopter.events_topic_arn
}

output "table_names" {
  description = "Table name by schema suffix."
  value       = module.kopter.table_names
}

output "task_role_arns" {
  description = "Task role ARN by service (customers' roles trust these through the account root and the `*-kopter-*-task` pattern)."
  value       = module.kopter.task_role_arns
}

output "disabled_schedules" {
  description = "Tick jobs declared but disabled."
  value       = module.kopter.disabled_schedules
}

output "api_url" {
  description = "HTTPS URL of the api's load balancer; point the certificate's host name at api_dns_name."
  value       = module.kopter.api_url
}

output "api_dns_name" {
  description = "DNS name of the api's load balancer."
  value       = module.kopter.api_dns_name
}

output "api_issuer" {
  description = "Issuer URL(s) the api trusts."
  value       = module.kopter.api_issuer
}

output "api_audience" {
  description = "The `aud` the api requires (the Cognito app client id)."
  value       = module.kopter.api_audience
}

output "cognito_user_pool_id" {
  description = "The api's Cognito user pool: create users with their tenant (`custom:tenant`) and group (admin/viewer)."
  value       = module.kopter.cognito_user_pool_id
}
