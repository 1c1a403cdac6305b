output "cluster_name" {
  description = "ECS cluster of the fleet."
  value       = aws_ecs_cluster.this.name
}

output "kms_key_arn" {
  description = "The environment's KMS key."
  value       = aws_kms_key.this.arn
}

output "table_names" {
  description = "Table name by schema suffix."
  value       = module.tables.table_names
}

output "table_arns" {
  description = "Table ARN by schema suffix."
  value       = module.tables.table_arns
}

output "index_names" {
  description = "Index names by table suffix."
  value       = module.tables.index_names
}

output "queue_urls" {
  description = "Work queue URL by service."
  value       = { for k, q in module.queues : k => q.queue_url }
}

output "dlq_urls" {
  description = "DLQ URL by service."
  value       = { for k, q in module.queues : k => q.dlq_url }
}

output "trail_queue_arn" {
  description = "ARN of the trail-ingest queue, the target of CloudTrail bucket notifications."
  value       = module.queues["trail-ingest"].queue_arn
}

output "events_topic_arn" {
  description = "ARN of the `{env}-kopter-events` topic."
  value       = module.events.topic_arn
}

output "task_role_arns" {
  description = "Task role ARN by service."
  value       = { for k, s in module.services : k => s.task_role_arn }
}

output "service_names" {
  description = "ECS service name by service."
  value       = { for k, s in module.services : k => s.service_name }
}

output "schedule_arns" {
  description = "Schedule ARN by job."
  value       = module.schedules.schedule_arns
}

output "disabled_schedules" {
  description = "Jobs declared but disabled (see modules/schedules/README.md)."
  value       = module.schedules.disabled_jobs
}

output "api_url" {
  description = "HTTPS URL of the api's load balancer (null without an api)."
  value       = one(module.api[*].url)
}

output "api_dns_name" {
  description = "DNS name of the api's load balancer, for the certificate host name's record."
  value       = one(module.api[*].dns_name)
}

output "api_tenant_access_role_arn" {
  description = "The tenant-access role the api assumes per tenant."
  value       = one(module.api[*].tenant_access_role_arn)
}

output "api_issuer" {
  description = "Issuer URL(s) the api trusts."
  value       = local.api_issuers
}

output "api_audience" {
  description = "The `aud` the api requires (the Cognito app client id)."
  value       = local.api_audience
}

output "cognito_user_pool_id" {
  description = "The api's Cognito user pool (null with another OIDC issuer or no api)."
  value       = one(module.cognito[*].user_pool_id)
}
