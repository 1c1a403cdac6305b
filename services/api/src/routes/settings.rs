//! The tenant's settings: `GET`/`PUT /v1/channels`, `GET`/`PUT
//! /v1/backup-policy` (writes need the admin role) and `GET /v1/accounts`.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use kopter_store::channels::{ChannelUpdate, valid_email};
use kopter_store::webhook_url::WebhookUrl;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::auth::{Admin, Principal};
use crate::body::JsonBody;
use crate::data::settings::{Account, BackupPolicyBody, Channels, ChannelsUpdate};
use crate::error::{ApiError, Problem};
use crate::list::{self, ListQuery, ListResponse, PageParams};

/// Most email recipients of a tenant.
pub const MAX_EMAIL_RECIPIENTS: usize = 20;

/// The tenant's delivery channels (the webhook URL is a secret: only its
/// host is shown).
#[utoipa::path(
    get,
    path = "/v1/channels",
    tag = "settings",
    responses(
        (status = 200, description = "The tenant's channels", body = Channels),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_channels(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Channels>, ApiError> {
    let c = state.data().channels(&principal.tenant).await?;
    Ok(Json(Channels::from(&c)))
}

/// Changes the tenant's channels (admin). Fields absent stay as they are;
/// `webhook_url: null` removes the webhook, `email: []` stops email.
#[utoipa::path(
    put,
    path = "/v1/channels",
    tag = "settings",
    request_body(content = ChannelsUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "The channels after the change", body = Channels),
        (status = 400, description = "A bad field (named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the tenant's admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_channels(
    Admin(principal): Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<ChannelsUpdate>,
) -> Result<Json<Channels>, ApiError> {
    let webhook = match &body.webhook_url {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(
            WebhookUrl::parse(raw, state.webhook_policy())
                .map_err(|e| ApiError::BadBody(format!("at `webhook_url`: {e}")))?,
        )),
    };
    if let Some(list) = &body.email {
        if list.len() > MAX_EMAIL_RECIPIENTS {
            return Err(ApiError::BadBody(format!(
                "at `email`: at most {MAX_EMAIL_RECIPIENTS} recipients"
            )));
        }
        if let Some((i, bad)) = list.iter().enumerate().find(|(_, a)| !valid_email(a)) {
            return Err(ApiError::BadBody(format!(
                "at `email[{i}]`: {bad:?} is not an email address"
            )));
        }
    }
    let update = ChannelUpdate {
        webhook,
        webhook_min_severity: body.webhook_min_severity,
        email: body.email.clone(),
        email_min_severity: body.email_min_severity,
        digest: body.digest,
        reset: body.reset_failing,
    };
    let data = state.data();
    data.update_channels(&principal.tenant, &update).await?;
    let c = data.channels(&principal.tenant).await?;
    tracing::info!(tenant = %principal.tenant, subject = %principal.subject, "channels changed");
    Ok(Json(Channels::from(&c)))
}

/// The tenant's EBS backup policy (the default when never set).
#[utoipa::path(
    get,
    path = "/v1/backup-policy",
    tag = "settings",
    responses(
        (status = 200, description = "The backup policy", body = BackupPolicyBody),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token without a tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_backup_policy(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<BackupPolicyBody>, ApiError> {
    let p = state.data().backup_policy(&principal.tenant).await?;
    Ok(Json(BackupPolicyBody::from(&p)))
}

/// Replaces the tenant's backup policy (admin).
#[utoipa::path(
    put,
    path = "/v1/backup-policy",
    tag = "settings",
    request_body(content = BackupPolicyBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The policy now in force", body = BackupPolicyBody),
        (status = 400, description = "A bad field (named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the tenant's admin", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's rate limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_backup_policy(
    Admin(principal): Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<BackupPolicyBody>,
) -> Result<Json<BackupPolicyBody>, ApiError> {
    let policy = body
        .to_policy()
        .map_err(|(field, why)| ApiError::BadBody(format!("at `{field}`: {why}")))?;
    state
        .data()
        .set_backup_policy(&principal.tenant, &policy)
        .await?;
    tracing::info!(tenant = %principal.tenant, subject = %principal.subject, "backup policy changed");
    Ok(Json(BackupPolicyBody::from(&policy)))
}

/// `GET /v1/accounts` takes no filters.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoFilter {}

pub const ACCOUNTS_PATH: &str = "/v1/accounts";

/// The tenant's onboarded AWS accounts: health, regions, last describe.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "settings",
    params(PageParams),
    responses(
        (status = 200, description = "A page of accounts (JSON), or every account as CSV / NDJSON",
            content(
                (ListResponse<Account> = "application/json"),
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
pub async fn accounts(
    principal: Principal,
    State(state): State<ApiState>,
    query: ListQuery<NoFilter>,
) -> Result<Response, ApiError> {
    let data = state.data();
    let tenant = principal.tenant.clone();
    let fetch: list::Fetch<Account> =
        list::fetch_pages(data, tenant, (), |d, t, (), p| d.accounts(t, p));
    list::respond(
        state.cursors(),
        principal.tenant,
        ACCOUNTS_PATH,
        query,
        fetch,
    )
    .await
}
