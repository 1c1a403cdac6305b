//! `GET /v1/audit/aws`, `GET /v1/audit/aws/{id}` and `GET /v1/findings`:
//! the tenant's CloudTrail audit log and the security findings on it.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::auth::Principal;
use crate::data::audit::{
    AuditEvent, AuditFilter, AuditRecordDetail, Finding, FindingFilter, RecordId, Severity,
};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

pub const PATH: &str = "/v1/audit/aws";
pub const FINDINGS_PATH: &str = "/v1/findings";

/// The audit window when neither bound is given: the last 24 hours.
pub const DEFAULT_WINDOW: Duration = Duration::hours(24);

/// The widest audit window one query may ask for. A query without a
/// principal, event or resource filter reads one day partition per day of
/// the window, so a year-long window would be hundreds of near-empty
/// pages; 90 days covers an incident review and bounds that walk.
pub const MAX_WINDOW_DAYS: i64 = 90;

/// Longest `principal` or `resource` filter: it becomes the index's
/// partition key `{tenant}#{value}`, and DynamoDB refuses partition keys
/// over 2048 bytes (a 500 the client could not act on); tenant ids are at
/// most 64 bytes.
const MAX_KEYED_FILTER_BYTES: usize = 1900;

/// Filters of `GET /v1/audit/aws`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Event time at or after, RFC 3339 (`2026-11-29T10:00:00Z`). Default:
    /// 24 hours before `until`.
    since: Option<String>,
    /// Event time at or before, RFC 3339. Default: now. At most 90 days
    /// after `since`, and not before it.
    until: Option<String>,
    /// The principal, exactly: `userIdentity.arn`
    /// (`arn:aws:iam::111111111111:user/alice`), or for identities without
    /// one the form trail-ingest gives (`saml:<provider>/<user>`, …).
    principal: Option<String>,
    /// `eventName`, exactly (`RunInstances`).
    event: Option<String>,
    /// `eventSource`, exactly (`ec2.amazonaws.com`).
    source: Option<String>,
    /// A resource the record touched: an ARN or an EC2 id (`i-…`, `vol-…`,
    /// `snap-…`, `sg-…`).
    resource: Option<String>,
    /// The account the record came from (12 digits).
    account: Option<String>,
    /// The caller's account, `userIdentity.accountId` (12 digits): differs
    /// from `account` for calls from other accounts.
    caller_account: Option<String>,
}

/// The tenant's CloudTrail records, newest first (any signed-in user).
///
/// With `resource`, `principal` or `event` (in that order of preference)
/// the list reads that index; otherwise it walks the window's days. A page
/// may hold fewer items than `limit` — even none — while `next_cursor` is
/// set: follow it until it is absent. The window of the first page holds
/// for every page of its cursor.
#[utoipa::path(
    get,
    path = "/v1/audit/aws",
    tag = "audit",
    params(AuditParams, PageParams),
    responses(
        (status = 200, description = "A page of audit records (JSON), or every record as CSV / NDJSON",
            content(
                (ListResponse<AuditEvent> = "application/json"),
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
    query: ListQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let filter = audit_filter(&query.filter, Utc::now())?;
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<AuditEvent> =
        list::fetch_pages(data, tenant, filter, |d, t, f, p| d.audit_events(t, f, p));
    list::respond(state.cursors(), principal.tenant, PATH, query, fetch).await
}

/// Checks the parameters and resolves the window against `now`.
pub fn audit_filter(p: &AuditParams, now: DateTime<Utc>) -> Result<AuditFilter, ApiError> {
    let since = p.since.as_deref().map(|v| time("since", v)).transpose()?;
    let until = p.until.as_deref().map(|v| time("until", v)).transpose()?;
    let until = until.unwrap_or(now);
    let since = since.unwrap_or(until - DEFAULT_WINDOW);
    window(since, until)?;
    if until - since > Duration::days(MAX_WINDOW_DAYS) {
        return Err(ApiError::bad_parameter(
            "since",
            format!(
                "the window {since} – {until} is longer than {MAX_WINDOW_DAYS} days; \
                 query at most {MAX_WINDOW_DAYS} days at a time (or filter by resource, principal or event)"
            ),
        ));
    }
    if let Some(v) = &p.principal {
        super::short_text("principal", v, MAX_KEYED_FILTER_BYTES)?;
    }
    if let Some(v) = &p.event {
        super::short_text("event", v, 128)?;
    }
    if let Some(v) = &p.source {
        super::short_text("source", v, 128)?;
    }
    if let Some(v) = &p.resource {
        super::short_text("resource", v, MAX_KEYED_FILTER_BYTES)?;
    }
    if let Some(v) = &p.account
        && !(v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::bad_parameter(
            "account",
            format!("{v:?} is not a 12-digit AWS account id"),
        ));
    }
    if let Some(v) = &p.caller_account
        && !(v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::bad_parameter(
            "caller_account",
            format!("{v:?} is not a 12-digit AWS account id"),
        ));
    }
    Ok(AuditFilter {
        since,
        until,
        principal: p.principal.clone(),
        event: p.event.clone(),
        source: p.source.clone(),
        resource: p.resource.clone(),
        account: p.account.clone(),
        caller_account: p.caller_account.clone(),
    })
}

/// One audit record with its raw CloudTrail JSON (any signed-in user).
/// Another tenant's id answers 404, like a missing one.
#[utoipa::path(
    get,
    path = "/v1/audit/aws/{id}",
    tag = "audit",
    params(("id" = String, Path, description = "The record's `id` from the list (opaque: it names the record's time and event id)")),
    responses(
        (status = 200, description = "The record", body = AuditRecordDetail),
        (status = 400, description = "Not a record id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AuditRecordDetail>, ApiError> {
    let id = record_id("id", &id)?;
    state
        .data()
        .audit_record(&principal.tenant, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("no such audit record".into()))
}

/// Filters of `GET /v1/findings`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindingParams {
    /// Event time at or after, RFC 3339.
    since: Option<String>,
    /// Event time at or before, RFC 3339; not before `since`.
    until: Option<String>,
    /// `info`, `warning` or `critical` (exactly that severity).
    severity: Option<Severity>,
    /// Rule id, e.g. `root-activity`, `security-group-open-to-world`.
    rule: Option<String>,
}

/// Security findings on the tenant's audit log, newest first, each with
/// a link to its record (any signed-in user). Pages may be short while
/// `next_cursor` is set.
#[utoipa::path(
    get,
    path = "/v1/findings",
    tag = "audit",
    params(FindingParams, PageParams),
    responses(
        (status = 200, description = "A page of findings (JSON), or every finding as CSV / NDJSON",
            content(
                (ListResponse<Finding> = "application/json"),
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
pub async fn findings(
    principal: Principal,
    State(state): State<ApiState>,
    query: ListQuery<FindingParams>,
) -> Result<Response, ApiError> {
    let p = &query.filter;
    let since = p.since.as_deref().map(|v| time("since", v)).transpose()?;
    let until = p.until.as_deref().map(|v| time("until", v)).transpose()?;
    if let (Some(s), Some(u)) = (since, until) {
        window(s, u)?;
    }
    if let Some(r) = &p.rule {
        super::short_text("rule", r, 100)?;
    }
    let filter = FindingFilter {
        since,
        // The store's bound is exclusive; `until` is inclusive to the
        // millisecond, like the audit log's.
        until: until.map(|u| u + Duration::milliseconds(1)),
        severity: p.severity,
        rule: p.rule.clone(),
    };
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<Finding> =
        list::fetch_pages(data, tenant, filter, |d, t, f, p| d.findings(t, f, p));
    list::respond(
        state.cursors(),
        principal.tenant,
        FINDINGS_PATH,
        query,
        fetch,
    )
    .await
}

/// An RFC 3339 date-time parameter.
pub fn time(name: &'static str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_parameter(
                name,
                format!("{value:?} is not an RFC 3339 date-time like 2026-11-29T10:00:00Z ({e})"),
            )
        })
}

/// `until` must not be before `since`.
fn window(since: DateTime<Utc>, until: DateTime<Utc>) -> Result<(), ApiError> {
    if until < since {
        return Err(ApiError::bad_parameter(
            "until",
            format!("{until} is before since ({since})"),
        ));
    }
    Ok(())
}

/// A record or notification id path parameter.
pub fn record_id(name: &'static str, value: &str) -> Result<RecordId, ApiError> {
    RecordId::parse(value).ok_or_else(|| {
        ApiError::bad_parameter(
            name,
            "is not an id from a list of this API (base64url of a time and an event id)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(since: Option<&str>, until: Option<&str>) -> AuditParams {
        AuditParams {
            since: since.map(str::to_owned),
            until: until.map(str::to_owned),
            principal: None,
            event: None,
            source: None,
            resource: None,
            account: None,
            caller_account: None,
        }
    }

    fn param_of(e: ApiError) -> String {
        e.problem().parameter.unwrap_or_default()
    }

    #[test]
    fn the_window_defaults_to_the_last_day_and_is_bounded() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().unwrap();
        let f = audit_filter(&params(None, None), now).unwrap();
        assert_eq!((f.since, f.until), (now - DEFAULT_WINDOW, now));
        let f = audit_filter(&params(None, Some("2026-11-01T00:00:00+02:00")), now).unwrap();
        assert_eq!(
            f.until,
            "2026-10-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(f.since, f.until - DEFAULT_WINDOW);
        let f = audit_filter(&params(Some("2026-11-28T00:00:00Z"), None), now).unwrap();
        assert_eq!(f.until, now);

        let e = audit_filter(&params(Some("2026-01-01T00:00:00Z"), None), now).unwrap_err();
        assert!(e.to_string().contains("90 days"), "{e}");
        assert_eq!(param_of(e), "since");
        let e = audit_filter(
            &params(Some("2026-11-29T00:00:00Z"), Some("2026-11-28T00:00:00Z")),
            now,
        )
        .unwrap_err();
        assert_eq!(param_of(e), "until");
        let e = audit_filter(&params(Some("yesterday"), None), now).unwrap_err();
        assert_eq!(param_of(e), "since");
        let mut p = params(None, None);
        p.account = Some("12345".into());
        assert_eq!(param_of(audit_filter(&p, now).unwrap_err()), "account");
    }
}
