output "table_names" {
  description = "Table name by schema suffix (`accounts`, `audit-log`, ...)."
  value       = { for k, t in aws_dynamodb_table.this : k => t.name }
}

output "table_arns" {
  description = "Table ARN by schema suffix. Index ARNs are `{table_arn}/index/{name}`."
  value       = { for k, t in aws_dynamodb_table.this : k => t.arn }
}

output "index_names" {
  description = "Global secondary index names by table suffix."
  value       = { for k, t in local.tables : k => [for g in t.gsis : g.name] }
}
