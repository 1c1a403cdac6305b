//! `GET /v1/waste`: the tenant's waste findings.

use axum::extract::State;
use axum::response::Response;

use crate::ApiState;
use crate::auth::Principal;
use crate::data::waste::{StatusParam, WasteFilter, WasteItem};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

pub const PATH: &str = "/v1/waste";

/// The tenant's waste findings — idle and forgotten resources — each with
/// since when (from the state history), what it cost since, and what
/// leaving it costs a month; open ones unless `status` says otherwise.
#[utoipa::path(
    get,
    path = "/v1/waste",
    tag = "cost",
    params(WasteFilter, PageParams),
    responses(
        (status = 200, description = "A page of findings by account, resource and rule (JSON), or every finding as CSV / NDJSON",
            content(
                (ListResponse<WasteItem> = "application/json"),
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
    query: ListQuery<WasteFilter>,
) -> Result<Response, ApiError> {
    let status = query.filter.status.unwrap_or(StatusParam::Open).status();
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<WasteItem> =
        list::fetch_pages(data, tenant, status, |d, t, s, p| d.waste(t, *s, p));
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}
