//! Waste findings (`/v1/waste`): idle and forgotten resources with what
//! they cost since their condition began and what leaving them costs a
//! month (the aggregator's waste rules; `kopter_store::waste`).
//!
//! Items are flat, so the CSV export has the JSON's columns.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::waste::{FindingRow, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{DataError, Page, PageRequest};

/// Filters of `GET /v1/waste`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WasteFilter {
    /// `open` (default), `resolved` or `all`.
    pub status: Option<StatusParam>,
}

/// Which findings `GET /v1/waste` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusParam {
    Open,
    Resolved,
    All,
}

impl StatusParam {
    /// The stored status to keep; `None`: every finding.
    pub fn status(self) -> Option<Status> {
        match self {
            StatusParam::Open => Some(Status::Open),
            StatusParam::Resolved => Some(Status::Resolved),
            StatusParam::All => None,
        }
    }
}

/// One finding: a resource, a rule and the money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WasteItem {
    /// 12-digit AWS account id.
    pub account: String,
    pub region: String,
    pub resource_id: String,
    /// `instance`, `volume` or `snapshot`.
    pub kind: String,
    /// `unattached-volume`, `stopped-instance-volume`, `orphan-snapshot`,
    /// `snapshot-past-retention`, `gp2-to-gp3` or `previous-generation`.
    pub rule: String,
    /// `open` or `resolved`.
    pub status: String,
    /// When the condition began, from the state history (RFC 3339, UTC).
    pub since: DateTime<Utc>,
    /// USD the resource cost from `since` to `evaluated_at`: the sum of
    /// its priced hours. Hours without a price are not in it (see
    /// `unpriced_hours`).
    pub accrued_usd: f64,
    /// Hours since `since` without a price (unknown, not 0).
    pub unpriced_hours: u32,
    /// Why the last unpriced hour has no price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpriced_reason: Option<String>,
    /// USD a month acting would save: the current hourly price × 730 h
    /// (AWS's month of hours); for `gp2-to-gp3` and
    /// `previous-generation`, the difference to the cheaper equivalent.
    /// Absent when the current hour has no price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<f64>,
    /// The suggested action.
    pub action: String,
    /// What the rule saw.
    pub detail: String,
    /// The end of the hour whose evaluation last updated the finding.
    pub evaluated_at: DateTime<Utc>,
    /// When it was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `resource gone` or `condition ended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl From<&FindingRow> for WasteItem {
    fn from(r: &FindingRow) -> Self {
        let f = &r.finding;
        Self {
            account: f.account.to_string(),
            region: f.region.clone(),
            resource_id: f.resource_id.clone(),
            kind: f.kind.to_string(),
            rule: f.rule.to_string(),
            status: match r.status {
                Status::Open => "open",
                Status::Resolved => "resolved",
            }
            .into(),
            since: f.since,
            accrued_usd: f.accrued_usd,
            unpriced_hours: f.unpriced_hours,
            unpriced_reason: f.unpriced_reason.clone(),
            monthly_usd: f.monthly_usd,
            action: f.action.clone(),
            detail: f.detail.clone(),
            evaluated_at: r.evaluated_at,
            resolved_at: r.resolved_at,
            resolution: r.resolution.clone(),
        }
    }
}

/// Waste findings of a tenant.
pub trait WasteData {
    /// A page of the tenant's findings (by account, resource, rule), only
    /// those with `status` when given.
    fn waste<'a>(
        &'a self,
        tenant: &'a TenantId,
        status: Option<Status>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<WasteItem>, DataError>>;
}
