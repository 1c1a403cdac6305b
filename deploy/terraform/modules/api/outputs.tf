output "url" {
  description = "HTTPS URL of the load balancer (point the certificate's host name at `dns_name`)."
  value       = "https://${aws_lb.this.dns_name}"
}

output "dns_name" {
  description = "DNS name of the load balancer (for a CNAME or alias record)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Hosted zone of the load balancer (for a Route 53 alias record)."
  value       = aws_lb.this.zone_id
}

output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_role_arn" {
  description = "ARN of the api's task role (may only assume the tenant-access role)."
  value       = aws_iam_role.task.arn
}

output "tenant_access_role_arn" {
  description = "ARN of the tenant-access role (`api.tenant_role_arn`)."
  value       = aws_iam_role.tenant_access.arn
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "task_security_group_id" {
  description = "Security group of the api tasks."
  value       = aws_security_group.tasks.id
}

output "log_group_name" {
  description = "CloudWatch log group of the api."
  value       = aws_cloudwatch_log_group.this.name
}
