//! `GET /v1/inventory`, `GET /v1/resources/{id}`,
//! `GET /v1/resources/{id}/history`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::FutureExt;
use kopter_schema::AccountId;

use crate::ApiState;
use crate::auth::Principal;
use crate::data::inventory::{
    HistoryItem, InventoryFilter, InventoryItem, InventorySelection, ResourceDetail,
};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

pub const PATH: &str = "/v1/inventory";
pub const HISTORY_PATH: &str = "/v1/resources/{id}/history";

/// The tenant's instances, volumes, snapshots and Dedicated Hosts as last seen, each with
/// its `Name` tag and its cost in the last complete hour. Pages walk the
/// accounts in id order and hold at most 100 resources; a page may be
/// short (even empty) and still have a `next_cursor`.
#[utoipa::path(
    get,
    path = "/v1/inventory",
    tag = "inventory",
    params(InventoryFilter, PageParams),
    responses(
        (status = 200, description = "A page of resources (JSON), or every resource as CSV / NDJSON",
            content(
                (ListResponse<InventoryItem> = "application/json"),
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
    query: ListQuery<InventoryFilter>,
) -> Result<Response, ApiError> {
    let selection = selection(&query.filter)?;
    let last_hour = last_hour(Utc::now());
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<InventoryItem> = list::fetch_pages(
        data,
        tenant,
        (selection, last_hour),
        |d, t, (selection, last_hour), p| d.inventory(t, selection, *last_hour, p),
    );
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}

/// One resource of the tenant as last seen, with all its tags. Another
/// tenant's resource answers 404, like a missing one.
#[utoipa::path(
    get,
    path = "/v1/resources/{id}",
    tag = "inventory",
    params(("id" = String, Path, description = "Instance, volume, snapshot or Dedicated Host id (`i-…`, `vol-…`, `snap-…`, `h-…`)")),
    responses(
        (status = 200, description = "The resource", body = ResourceDetail),
        (status = 400, description = "Not a resource id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such resource for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    resource_id(&id)?;
    match state.data().resource(&principal.tenant, &id).await? {
        Some(r) => Ok(axum::Json(r).into_response()),
        None => Err(not_found(&id)),
    }
}

/// A resource's state changes, oldest first, each with the resource's
/// state from then on.
#[utoipa::path(
    get,
    path = "/v1/resources/{id}/history",
    tag = "inventory",
    params(("id" = String, Path, description = "Instance, volume, snapshot or Dedicated Host id"), PageParams),
    responses(
        (status = 200, description = "A page of changes (JSON), or every change as CSV / NDJSON",
            content(
                (ListResponse<HistoryItem> = "application/json"),
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
pub async fn history(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    mut query: ListQuery<NoFilter>,
) -> Result<Response, ApiError> {
    resource_id(&id)?;
    bind_cursor_to(&mut query.canonical, &id);
    let data = state.data();
    let tenant = principal.tenant.clone();
    let id = Arc::new(id);
    let fetch: list::Fetch<HistoryItem> = Arc::new(move |page| {
        let (data, tenant, id) = (data.clone(), tenant.clone(), id.clone());
        async move {
            data.resource_history(&tenant, &id, page)
                .await?
                .ok_or_else(|| not_found(&id))
        }
        .boxed()
    });
    list::respond(
        state.cursors(),
        principal.tenant,
        HISTORY_PATH,
        query,
        fetch,
    )
    .await
}

/// A list without filters (only paging and format).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFilter {}

/// Binds a cursor to the resource of the path as well as to the query.
pub fn bind_cursor_to(canonical: &mut String, id: &str) {
    *canonical = format!("resource={id}&{canonical}");
}

/// The start of the last complete hour before `now`.
pub fn last_hour(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::hours(1))
        .expect("an hour truncates")
        - Duration::hours(1)
}

/// The filters of `GET /v1/inventory` checked (errors name the
/// parameter); the console's inventory page checks its form with it too.
pub fn selection(f: &InventoryFilter) -> Result<InventorySelection, ApiError> {
    let account = f
        .account
        .as_deref()
        .map(|a| {
            AccountId::new(a).map_err(|_| {
                ApiError::bad_parameter("account", format!("{a:?} is not a 12-digit account id"))
            })
        })
        .transpose()?;
    if let Some(r) = &f.region {
        super::region("region", r)?;
    }
    if let Some(s) = &f.state {
        super::short_text("state", s, 32)?;
    }
    let tag = match &f.tag {
        None => None,
        Some(t) => {
            super::short_text("tag", t, 256)?;
            let (k, v) = match t.split_once('=') {
                Some((k, v)) => (k, Some(v.to_owned())),
                None => (t.as_str(), None),
            };
            if k.is_empty() || k.len() > 128 {
                return Err(ApiError::bad_parameter(
                    "tag",
                    "must be `Key=Value` or `Key`, the key 1 to 128 characters",
                ));
            }
            Some((k.to_owned(), v))
        }
    };
    Ok(InventorySelection {
        account,
        region: f.region.clone(),
        kind: f.kind.map(Into::into),
        state: f.state.clone(),
        tag,
    })
}

/// Checks an EC2 resource id's shape (`i-0abc…`, `vol-…`, `snap-…`,
/// `h-…` for a Dedicated Host).
pub fn resource_id(id: &str) -> Result<(), ApiError> {
    let ok = ["i-", "vol-", "snap-", "h-"].iter().any(|p| {
        id.strip_prefix(p).is_some_and(|rest| {
            (1..=32).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            "id",
            format!(
                "{id:?} is not an instance, volume, snapshot or host id (i-…, vol-…, snap-…, h-…)"
            ),
        ))
    }
}

pub fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no resource {id}"))
}

#[cfg(test)]
mod tests {
    use super::resource_id;

    #[test]
    fn resource_ids_of_every_inventory_kind_are_accepted() {
        for id in ["i-0abc123", "vol-0abc", "snap-0123", "h-0f1e2d3c4b5a69788"] {
            assert!(resource_id(id).is_ok(), "{id}");
        }
        for id in ["h-", "host-1", "i-ABC", "sg-0123", "../i-1"] {
            assert!(resource_id(id).is_err(), "{id}");
        }
    }
}
