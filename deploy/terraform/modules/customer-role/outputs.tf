output "role_arn" {
  description = "Give this to `kopterctl onboard --role-arn`."
  value       = aws_iam_role.kopter.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.kopter.name
}
