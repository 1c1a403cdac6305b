//! The on-demand price catalogue in force (`GET /v1/prices`).

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{DataError, Page, PageRequest};

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

/// What `GET /v1/prices` reads.
pub trait PriceData {
    /// On-demand prices in force in a region (catalogue rows are not
    /// tenant-owned; the tenant still chooses the credentials).
    fn prices<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a PriceFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Price>, DataError>>;
}
