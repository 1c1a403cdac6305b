//! The seam between the HTTP layer and the tables: what every endpoint
//! reads or writes, always for one tenant — the verified token's — passed
//! as an argument on every call. [`crate::dynamo`] implements it on
//! `kopter-store` with tenant-scoped DynamoDB credentials;
//! [`crate::memory`] is an in-memory fake for the HTTP layer's tests and
//! the benchmark.

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// Where a page starts: the store's own position (DynamoDB's
/// `LastEvaluatedKey`, as JSON). Carried to clients inside a sealed cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageKey(pub serde_json::Value);

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageKey>,
}

/// A page request: at most `limit` items after `after`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub after: Option<PageKey>,
    /// 1–1000.
    pub limit: u32,
}

/// Filters of `GET /v1/prices`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PriceFilter {
    /// AWS region code, e.g. `eu-west-1`.
    pub region: String,
    /// Instance type (`m5.large`), or a family prefix ending in `.`
    /// (`m5.`).
    pub instance_type: Option<String>,
    /// Operating system as the price list names it: `Linux`, `Windows`,
    /// `RHEL`, `SUSE`, `Red Hat Enterprise Linux with HA`, `Ubuntu Pro`.
    pub os: Option<String>,
}

/// One on-demand price of the catalogue in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Price {
    pub region: String,
    /// The price-list version in force (its publication id).
    pub version: String,
    pub instance_type: String,
    /// `Shared`, `Dedicated` or `Host`.
    pub tenancy: String,
    /// DescribeInstances' `UsageOperation` (`RunInstances:0002` = Windows).
    pub operation: String,
    pub operating_system: String,
    pub license_model: String,
    pub pre_installed_sw: String,
    /// USD per instance-hour.
    pub usd_per_hour: f64,
    /// The term's effective date (RFC 3339).
    pub effective: String,
}

/// Why a data call failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Transient (throttling, DynamoDB or STS unreachable): 503.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<DataError> for ApiError {
    fn from(e: DataError) -> Self {
        match e {
            DataError::Unavailable(m) => ApiError::Unavailable(m),
            DataError::Other(e) => ApiError::Internal(e),
        }
    }
}

/// Everything the endpoints read and write. Every method takes the tenant
/// of the verified token first; an implementation confines itself to it.
pub trait TenantData: Send + Sync + 'static {
    /// On-demand prices in force in a region (catalogue rows are not
    /// tenant-owned; the tenant still chooses the credentials).
    fn prices<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a PriceFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Price>, DataError>>;
}
