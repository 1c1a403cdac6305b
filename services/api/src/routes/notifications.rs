//! `GET /v1/notifications` and `POST /v1/notifications/{id}/read`: the
//! tenant's notification feed (what the notifier told it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::auth::Principal;
use crate::data::audit::{Notification, NotificationFilter};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

pub const PATH: &str = "/v1/notifications";

/// Filters of `GET /v1/notifications`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationParams {
    /// `true`: only notifications not marked read yet.
    unread: Option<bool>,
}

/// The tenant's notifications, newest first (any signed-in user).
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "notifications",
    params(NotificationParams, PageParams),
    responses(
        (status = 200, description = "A page of notifications (JSON), or every notification as CSV / NDJSON",
            content(
                (ListResponse<Notification> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        (status = 400, description = "A bad or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    principal: Principal,
    State(state): State<ApiState>,
    query: ListQuery<NotificationParams>,
) -> Result<Response, ApiError> {
    let filter = NotificationFilter {
        unread: query.filter.unread.unwrap_or(false),
    };
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<Notification> =
        list::fetch_pages(data, tenant, filter, |d, t, f, p| d.notifications(t, f, p));
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}

/// Marks a notification read (any signed-in user of the tenant).
/// Idempotent: marking it again changes nothing (the first read time
/// stays). Another tenant's id answers 404, like a missing one.
#[utoipa::path(
    post,
    path = "/v1/notifications/{id}/read",
    tag = "notifications",
    params(("id" = String, Path, description = "The notification's `id` from the list")),
    responses(
        (status = 204, description = "Marked read (or it already was)"),
        (status = 400, description = "Not a notification id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such notification for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn mark_read(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = super::audit::record_id("id", &id)?;
    if state
        .data()
        .mark_notification_read(&principal.tenant, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such notification".into()))
    }
}
