output "issuer_url" {
  description = "The tokens' `iss` (`api.issuers`): `https://cognito-idp.{region}.amazonaws.com/{pool id}`; its JWKS is at `{issuer_url}/.well-known/jwks.json`."
  value       = "https://cognito-idp.${data.aws_region.current.region}.amazonaws.com/${aws_cognito_user_pool.this.id}"
}

output "client_id" {
  description = "The app client id: the `aud` of its ID tokens (`api.audience`)."
  value       = aws_cognito_user_pool_client.api.id
}

output "user_pool_id" {
  description = "The user pool id (create users with `aws cognito-idp admin-create-user ... custom:tenant=<tenant>`)."
  value       = aws_cognito_user_pool.this.id
}

output "user_pool_arn" {
  description = "The user pool ARN."
  value       = aws_cognito_user_pool.this.arn
}

output "hosted_ui_domain" {
  description = "The hosted sign-in domain, if domain_prefix was set."
  value       = one(aws_cognito_user_pool_domain.this[*].domain)
}
