//! Inventory, resources and their state history (`/v1/inventory`, `/v1/resources/…`).
//!
//! Items are flat (no nested objects) so that the CSV export of a list has
//! the same columns as its JSON; the one nested object, a resource's tags,
//! is only in the single-resource answer. Times are RFC 3339 (UTC).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use kopter_schema::{AccountId, TenantId};
use kopter_store::inventory::{EventRow, InventoryRow, Resource, ResourceKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{DataError, Page, PageRequest};

/// Filters of `GET /v1/inventory`, as given (checked by the handler).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InventoryFilter {
    /// One account (12 digits); without it, every account of the tenant,
    /// one account after another.
    pub account: Option<String>,
    /// AWS region code, e.g. `eu-west-1`.
    pub region: Option<String>,
    /// `instance`, `volume`, `snapshot` or `host` (EC2 Dedicated Host).
    pub kind: Option<KindParam>,
    /// The resource's state as EC2 names it (`running`, `stopped`,
    /// `in-use`, `available`, `completed`, `terminated`, …).
    pub state: Option<String>,
    /// `Key=Value` (the tag has that value) or `Key` (the tag is set).
    pub tag: Option<String>,
}

/// A resource kind as a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KindParam {
    Instance,
    Volume,
    Snapshot,
    /// An EC2 Dedicated Host (billed per host-hour while allocated).
    Host,
}

impl From<KindParam> for ResourceKind {
    fn from(k: KindParam) -> Self {
        match k {
            KindParam::Instance => ResourceKind::Instance,
            KindParam::Volume => ResourceKind::Volume,
            KindParam::Snapshot => ResourceKind::Snapshot,
            KindParam::Host => ResourceKind::Host,
        }
    }
}

/// [`InventoryFilter`] checked: what the data layer takes.
#[derive(Debug, Clone, PartialEq)]
pub struct InventorySelection {
    pub account: Option<AccountId>,
    pub region: Option<String>,
    pub kind: Option<ResourceKind>,
    pub state: Option<String>,
    /// Tag key, and the value it must have (`None`: any value).
    pub tag: Option<(String, Option<String>)>,
}

/// One resource of `GET /v1/inventory`, with its last hour's cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InventoryItem {
    pub account: String,
    pub region: String,
    /// `instance`, `volume`, `snapshot` or `host`.
    pub kind: String,
    pub resource_id: String,
    /// The `Name` tag.
    pub name: Option<String>,
    pub state: String,
    /// No longer returned by EC2 (kept as history).
    pub gone: bool,
    /// Instances: the instance type (`m5.large`).
    pub instance_type: Option<String>,
    /// Instances: `on-demand`, `spot`, `scheduled`, `capacity-block`.
    pub lifecycle: Option<String>,
    /// Instances: EC2's platform details (`Linux/UNIX`, `Windows`, …).
    pub platform: Option<String>,
    /// Volumes: `gp3`, `io2`, ….
    pub volume_type: Option<String>,
    /// Volumes and snapshots: size in GiB.
    pub size_gib: Option<i64>,
    /// First seen by Kopter (RFC 3339).
    pub first_seen: String,
    /// Last seen by Kopter (RFC 3339): an unchanged resource's is
    /// refreshed every 6 hours, not at every describe.
    pub last_seen: String,
    /// Start of the last complete hour (RFC 3339): the hour the cost is of.
    pub last_hour: String,
    /// USD in `last_hour`. `null` when unknown, never 0 for unpriced:
    /// `last_hour_cost_missing` then says why.
    pub last_hour_cost_usd: Option<f64>,
    /// Why `last_hour_cost_usd` is `null`: the aggregator's price-missing
    /// reason, or that no cost was recorded for the resource in that hour.
    pub last_hour_cost_missing: Option<String>,
}

/// The missing-cost reason when the aggregator recorded nothing for a
/// resource in the hour (not computed yet, or the resource did not exist).
pub const NO_COST_ROW: &str = "no cost recorded for this resource in this hour";

/// One resource (`GET /v1/resources/{id}`): the inventory row as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceDetail {
    pub account: String,
    pub region: String,
    pub kind: String,
    pub resource_id: String,
    pub name: Option<String>,
    pub state: String,
    pub gone: bool,
    pub first_seen: String,
    pub last_seen: String,
    /// When the newest state change took effect (RFC 3339).
    pub last_change_at: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// The kind's own fields as the describer recorded them (instance:
    /// `instance_type`, `lifecycle`, `platform_details`, `launch_time`,
    /// `volume_ids`…; volume: `volume_type`, `size_gib`, `iops`,
    /// `attached_instance`…; snapshot: `volume_size_gib`, `start_time`,
    /// `volume_id`).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// One state change of a resource (`GET /v1/resources/{id}/history`),
/// with the resource's state from `at` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    /// When the change took effect (RFC 3339).
    pub at: String,
    /// When Kopter saw it (RFC 3339).
    pub observed_at: String,
    /// `launched`, `discovered`, `state_changed`, `type_changed`,
    /// `terminated`, `created`, `deleted`, `resized`, `gone`.
    pub change: String,
    pub account: String,
    pub region: String,
    pub kind: String,
    pub resource_id: String,
    pub name: Option<String>,
    pub state: String,
    pub instance_type: Option<String>,
    pub lifecycle: Option<String>,
    pub volume_type: Option<String>,
    pub size_gib: Option<i64>,
}

/// What the inventory endpoints read.
pub trait InventoryData {
    /// A page of the tenant's inventory matching `selection`, each item
    /// with its cost in the hour starting at `last_hour`. A page may hold
    /// fewer items than asked (filters apply after the read; pages do not
    /// span accounts), even none, and still have a next page.
    fn inventory<'a>(
        &'a self,
        tenant: &'a TenantId,
        selection: &'a InventorySelection,
        last_hour: DateTime<Utc>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<InventoryItem>, DataError>>;

    /// One resource of the tenant; `None` when the tenant has no resource
    /// with this id (another tenant's included).
    fn resource<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceDetail>, DataError>>;

    /// A page of a resource's state changes, oldest first; `None` when
    /// the tenant has no resource with this id.
    fn resource_history<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Option<Page<HistoryItem>>, DataError>>;
}

/// RFC 3339, UTC, seconds (milliseconds when the time has them).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The facts of a resource every flat item shows.
pub(crate) struct Facts {
    pub name: Option<String>,
    pub instance_type: Option<String>,
    pub lifecycle: Option<String>,
    pub platform: Option<String>,
    pub volume_type: Option<String>,
    pub size_gib: Option<i64>,
}

pub(crate) fn facts(r: &Resource) -> Facts {
    let mut f = Facts {
        name: None,
        instance_type: None,
        lifecycle: None,
        platform: None,
        volume_type: None,
        size_gib: None,
    };
    let tags = match r {
        Resource::Instance(i) => {
            f.instance_type = Some(i.instance_type.clone());
            f.lifecycle = Some(i.lifecycle.clone());
            f.platform = Some(i.platform_details.clone()).filter(|p| !p.is_empty());
            &i.tags
        }
        Resource::Volume(v) => {
            f.volume_type = Some(v.volume_type.clone());
            f.size_gib = Some(v.size_gib);
            &v.tags
        }
        Resource::Snapshot(s) => {
            f.size_gib = Some(s.volume_size_gib);
            &s.tags
        }
        Resource::Host(h) => {
            // The type the host is for, else the family it is priced by.
            f.instance_type = Some(if h.instance_type.is_empty() {
                h.instance_family.clone()
            } else {
                h.instance_type.clone()
            });
            &h.tags
        }
    };
    f.name = tags.get("Name").cloned();
    f
}

pub(crate) fn tags(r: &Resource) -> &BTreeMap<String, String> {
    match r {
        Resource::Instance(i) => &i.tags,
        Resource::Volume(v) => &v.tags,
        Resource::Snapshot(s) => &s.tags,
        Resource::Host(h) => &h.tags,
    }
}

impl InventoryItem {
    /// The item of `row` with its last hour's cost (`cost`: the cost row's
    /// USD and price-missing reason, `None` without a cost row).
    pub fn new(
        row: &InventoryRow,
        last_hour: DateTime<Utc>,
        cost: Option<(Option<f64>, Option<String>)>,
    ) -> Self {
        let f = facts(&row.resource);
        let (usd, missing) = match cost {
            Some((Some(usd), _)) => (Some(usd), None),
            Some((None, reason)) => (
                None,
                Some(reason.unwrap_or_else(|| "price missing".to_owned())),
            ),
            None => (None, Some(NO_COST_ROW.to_owned())),
        };
        Self {
            account: row.account.to_string(),
            region: row.region.clone(),
            kind: row.kind().as_str().to_owned(),
            resource_id: row.resource_id.clone(),
            name: f.name,
            state: row.state().to_owned(),
            gone: row.gone,
            instance_type: f.instance_type,
            lifecycle: f.lifecycle,
            platform: f.platform,
            volume_type: f.volume_type,
            size_gib: f.size_gib,
            first_seen: rfc3339(row.first_seen),
            last_seen: rfc3339(row.last_seen),
            last_hour: rfc3339(last_hour),
            last_hour_cost_usd: usd,
            last_hour_cost_missing: missing,
        }
    }
}

impl ResourceDetail {
    pub fn new(row: &InventoryRow) -> Self {
        let mut details = serde_json::to_value(&row.resource).unwrap_or_default();
        if let Some(o) = details.as_object_mut() {
            // Shown at the top level already.
            for k in ["kind", "state", "tags"] {
                o.remove(k);
            }
        }
        Self {
            account: row.account.to_string(),
            region: row.region.clone(),
            kind: row.kind().as_str().to_owned(),
            resource_id: row.resource_id.clone(),
            name: facts(&row.resource).name,
            state: row.state().to_owned(),
            gone: row.gone,
            first_seen: rfc3339(row.first_seen),
            last_seen: rfc3339(row.last_seen),
            last_change_at: row.last_change_at.map(rfc3339),
            tags: tags(&row.resource).clone(),
            details,
        }
    }
}

impl HistoryItem {
    pub fn new(e: &EventRow) -> Self {
        let f = facts(&e.resource);
        Self {
            at: rfc3339(e.at),
            observed_at: rfc3339(e.observed_at),
            change: e.change.as_str().to_owned(),
            account: e.account.to_string(),
            region: e.region.clone(),
            kind: e.resource_kind.as_str().to_owned(),
            resource_id: e.resource_id.clone(),
            name: f.name,
            state: e.resource.state().to_owned(),
            instance_type: f.instance_type,
            lifecycle: f.lifecycle,
            volume_type: f.volume_type,
            size_gib: f.size_gib,
        }
    }
}
