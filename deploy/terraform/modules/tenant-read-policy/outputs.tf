output "policy_json" {
  description = "The policy document (also usable as an AssumeRole session policy)."
  value       = data.aws_iam_policy_document.this.json
}

output "policy_arn" {
  description = "ARN of the managed policy, if policy_name was set."
  value       = one(aws_iam_policy.this[*].arn)
}
