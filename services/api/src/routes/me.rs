//! `GET /v1/me`: who the token says the caller is.

use axum::Json;

use crate::auth::Principal;
use crate::error::Problem;

/// The caller's tenant, subject and role, from the verified token.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "session",
    responses(
        (status = 200, description = "The verified principal", body = Principal),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(principal: Principal) -> Json<Principal> {
    Json(principal)
}
