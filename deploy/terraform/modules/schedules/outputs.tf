output "schedule_arns" {
  description = "Schedule ARN by job name."
  value       = { for k, s in aws_scheduler_schedule.tick : k => s.arn }
}

output "role_arn" {
  description = "ARN of the role Scheduler assumes to send the ticks."
  value       = aws_iam_role.scheduler.arn
}

output "disabled_jobs" {
  description = "Jobs declared but not enabled (see the module README)."
  value       = [for k, s in local.schedules : k if !s.enabled]
}

output "unscheduled_jobs" {
  description = "Jobs of `kopterctl tick` with no schedule, and why."
  value       = local.unscheduled
}
