//! `GET /v1/cost`, `GET /v1/resources/{id}/cost`, `GET`/`PUT /v1/budgets`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::FutureExt;

use crate::ApiState;
use crate::auth::{Admin, Principal};
use crate::body::JsonBody;
use crate::data::cost::{
    BudgetInput, BudgetView, CostFilter, CostPoint, Granularity, GroupBy, HourWindow, ResourceCost,
    ResourceCostFilter, SeriesQuery,
};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};
use crate::routes::inventory::{bind_cursor_to, not_found, resource_id};

pub const PATH: &str = "/v1/cost";
pub const RESOURCE_PATH: &str = "/v1/resources/{id}/cost";

/// Longest hourly window (days).
pub const MAX_HOURLY_DAYS: i64 = 31;
/// Longest daily window (days).
pub const MAX_DAILY_DAYS: i64 = 400;

/// The tenant's cost per hour or day, grouped by account, region, family,
/// a rolled-up tag or resource, summed over accounts. Unpriced resources
/// are counted in `price_missing`, never priced at 0.
#[utoipa::path(
    get,
    path = "/v1/cost",
    tag = "cost",
    params(CostFilter, PageParams),
    responses(
        (status = 200, description = "A page of points in period order (JSON), or every point as CSV / NDJSON",
            content(
                (ListResponse<CostPoint> = "application/json"),
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
pub async fn series(
    principal: Principal,
    State(state): State<ApiState>,
    query: ListQuery<CostFilter>,
) -> Result<Response, ApiError> {
    let series = series_query(&query.filter)?;
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<CostPoint> =
        list::fetch_pages(data, tenant, series, |d, t, s, p| d.cost_series(t, s, p));
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}

/// The parameters of `GET /v1/cost` checked (errors name the
/// parameter): what [`CostData::cost_series`](crate::data::cost::CostData::cost_series)
/// takes. The console's cost page checks its form with it too.
pub fn series_query(f: &CostFilter) -> Result<SeriesQuery, ApiError> {
    let granularity = f.granularity.unwrap_or(Granularity::Day);
    let by = group_by(f.by.as_deref(), granularity)?;
    let max = match granularity {
        Granularity::Hour => MAX_HOURLY_DAYS,
        Granularity::Day => MAX_DAILY_DAYS,
    };
    let (first, last) = window(&f.from, &f.to, granularity, max)?;
    Ok(SeriesQuery {
        granularity,
        by,
        first,
        last,
    })
}

/// One resource's cost hour by hour over `from`–`to` (hours the
/// aggregator recorded; pages of at most 100 hours, which may be short).
#[utoipa::path(
    get,
    path = "/v1/resources/{id}/cost",
    tag = "cost",
    params(("id" = String, Path, description = "Instance, volume, snapshot or Dedicated Host id"), ResourceCostFilter, PageParams),
    responses(
        (status = 200, description = "A page of hours (JSON), or every hour as CSV / NDJSON",
            content(
                (ListResponse<ResourceCost> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        (status = 400, description = "A bad or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn resource(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    mut query: ListQuery<ResourceCostFilter>,
) -> Result<Response, ApiError> {
    resource_id(&id)?;
    let (first, last) = window(
        &query.filter.from,
        &query.filter.to,
        Granularity::Hour,
        MAX_HOURLY_DAYS,
    )?;
    bind_cursor_to(&mut query.canonical, &id);
    let data = state.data();
    let tenant = principal.tenant.clone();
    let id = Arc::new(id);
    let fetch: list::Fetch<ResourceCost> = Arc::new(move |page| {
        let (data, tenant, id) = (data.clone(), tenant.clone(), id.clone());
        async move {
            data.resource_cost(&tenant, &id, HourWindow { first, last }, page)
                .await?
                .ok_or_else(|| not_found(&id))
        }
        .boxed()
    });
    list::respond(
        state.cursors(),
        principal.tenant,
        RESOURCE_PATH,
        query,
        fetch,
    )
    .await
}

/// The tenant's monthly budget and the month's spend so far.
#[utoipa::path(
    get,
    path = "/v1/budgets",
    tag = "cost",
    responses(
        (status = 200, description = "The budget", body = BudgetView),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No budget is set", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_budget(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Response, ApiError> {
    match state.data().budget(&principal.tenant, Utc::now()).await? {
        Some(b) => Ok(axum::Json(b).into_response()),
        None => Err(ApiError::NotFound(
            "no budget is set; an admin sets one with PUT /v1/budgets".into(),
        )),
    }
}

/// Sets the tenant's monthly budget (admin). Idempotent: the same body
/// twice leaves the same budget.
#[utoipa::path(
    put,
    path = "/v1/budgets",
    tag = "cost",
    request_body(content = BudgetInput, content_type = "application/json"),
    responses(
        (status = 200, description = "The budget as stored", body = BudgetView),
        (status = 400, description = "A bad body (the field is named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the tenant's admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_budget(
    Admin(principal): Admin,
    State(state): State<ApiState>,
    JsonBody(input): JsonBody<BudgetInput>,
) -> Result<Response, ApiError> {
    let input = check_budget(input)?;
    let view: BudgetView = state
        .data()
        .put_budget(&principal.tenant, &input, Utc::now())
        .await?;
    Ok(axum::Json(view).into_response())
}

/// The body of `PUT /v1/budgets` (parsed by [`JsonBody`]), checked;
/// errors name the field.
pub fn check_budget(input: BudgetInput) -> Result<BudgetInput, ApiError> {
    let m = input.monthly_usd;
    if !(m.is_finite() && m > 0.0 && m <= 1e12) {
        return Err(ApiError::BadBody(format!(
            "`monthly_usd`: {m} is not an amount of USD more than 0"
        )));
    }
    if input.thresholds.is_empty() || input.thresholds.len() > 20 {
        return Err(ApiError::BadBody(
            "`thresholds`: give 1 to 20 percentages".into(),
        ));
    }
    if let Some((i, t)) = input
        .thresholds
        .iter()
        .enumerate()
        .find(|(_, t)| !(1..=1000).contains(*t))
    {
        return Err(ApiError::BadBody(format!(
            "`thresholds[{i}]`: {t} is not a percentage from 1 to 1000"
        )));
    }
    Ok(input)
}

/// `by` checked: a roll-up dimension, or `resource` (hourly only).
fn group_by(by: Option<&str>, g: Granularity) -> Result<GroupBy, ApiError> {
    match by.unwrap_or("account") {
        d @ ("account" | "region" | "family") => Ok(GroupBy::Dimension(d.to_owned())),
        "resource" if g == Granularity::Hour => Ok(GroupBy::Resource),
        "resource" => Err(ApiError::bad_parameter(
            "by",
            "`resource` needs granularity=hour (the price graph keeps per-resource cost by the hour)",
        )),
        other => match other.strip_prefix("tag:") {
            Some(key)
                if !key.is_empty() && key.len() <= 128 && !key.chars().any(char::is_control) =>
            {
                Ok(GroupBy::Dimension(other.to_owned()))
            }
            _ => Err(ApiError::bad_parameter(
                "by",
                format!("{other:?} is not one of account, region, family, tag:<key>, resource"),
            )),
        },
    }
}

/// `from`/`to` checked: RFC 3339, `from` before `to`, at most `max_days`
/// apart; the first and last period starts they cover.
fn window(
    from: &str,
    to: &str,
    g: Granularity,
    max_days: i64,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let parse = |name: &'static str, v: &str| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_parameter(
                    name,
                    format!("{v:?} is not an RFC 3339 time like 2026-11-26T17:00:00Z ({e})"),
                )
            })
    };
    let (from, to) = (parse("from", from)?, parse("to", to)?);
    if from >= to {
        return Err(ApiError::bad_parameter("to", "must be after `from`"));
    }
    if to - from > Duration::days(max_days) {
        return Err(ApiError::bad_parameter(
            "to",
            format!(
                "at most {max_days} days after `from` with granularity={}",
                g.as_str()
            ),
        ));
    }
    let unit = match g {
        Granularity::Hour => Duration::hours(1),
        Granularity::Day => Duration::days(1),
    };
    let floor = |t: DateTime<Utc>| {
        t.duration_trunc(unit)
            .map_err(|e| ApiError::bad_parameter("from", format!("out of range: {e}")))
    };
    Ok((floor(from)?, floor(to - Duration::nanoseconds(1))?))
}
