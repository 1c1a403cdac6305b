//! `GET /v1/prices`: the on-demand price catalogue in force.

use axum::extract::State;
use axum::response::Response;

use crate::ApiState;
use crate::auth::Principal;
use crate::data::{Price, PriceFilter};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

pub const PATH: &str = "/v1/prices";

/// On-demand prices in force in a region, by instance type, tenancy and
/// operating system (any signed-in user).
#[utoipa::path(
    get,
    path = "/v1/prices",
    tag = "prices",
    params(PriceFilter, PageParams),
    responses(
        (status = 200, description = "A page of prices (JSON), or every price as CSV / NDJSON",
            content(
                (ListResponse<Price> = "application/json"),
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
    query: ListQuery<PriceFilter>,
) -> Result<Response, ApiError> {
    let f = &query.filter;
    super::region("region", &f.region)?;
    if let Some(t) = &f.instance_type {
        let ok = !t.is_empty()
            && t.len() <= 32
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(ApiError::bad_parameter(
                "instance_type",
                format!("{t:?} is not an instance type like m5.large (or a family like m5.)"),
            ));
        }
    }
    if let Some(os) = &f.os {
        super::short_text("os", os, 64)?;
    }
    let data = state.data();
    let tenant = principal.tenant.clone();
    let filter = f.clone();
    let fetch: list::Fetch<Price> =
        list::fetch_pages(data, tenant, filter, |d, t, f, p| d.prices(t, f, p));
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}
