//! Cost series, per-resource cost and budgets (`/v1/cost`, `/v1/resources/{id}/cost`, `/v1/budgets`).
//!
//! Money is USD. A cost the aggregator could not price is never shown as
//! 0: a resource's hour has `cost_usd: null` and the reason; a series
//! point counts its unpriced resources in `price_missing` (its `cost_usd`
//! is the priced part, `null` when nothing in it was priced). A resource
//! billed for some components only (a volume whose IOPS have no price,
//! say) keeps the known part in `cost_usd`, names the rest in
//! `price_missing_part` and is counted in a point's `price_partial`.
//!
//! Every list item serializes each field, `null` when absent, so a CSV
//! export has the same columns on every row.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::graph;
use kopter_store::graph::{ResourceHourRow, RollupRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::inventory::rfc3339;
use super::{DataError, Page, PageRequest};

/// Parameters of `GET /v1/cost`, as given (checked by the handler).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostFilter {
    /// Start (RFC 3339): periods that end after it are included.
    pub from: String,
    /// End (RFC 3339, exclusive): periods that start before it are
    /// included. At most 31 days after `from` hourly, 400 days daily.
    pub to: String,
    /// `hour` or `day` (default `day`).
    pub granularity: Option<Granularity>,
    /// `account`, `region`, `family`, `tag:<key>` (a tag key the
    /// aggregator rolls up, `aggregator.rollup_tags`) or `resource`
    /// (hourly only). Default `account`.
    pub by: Option<String>,
}

/// Period length of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }
}

/// How a series is grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// A roll-up dimension the aggregator writes: `account`, `region`,
    /// `family`, `tag:<key>`.
    Dimension(String),
    /// Every resource (hourly resource rows, account by account).
    Resource,
}

/// A checked series request: periods `first..=last` (period starts).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub granularity: Granularity,
    pub by: GroupBy,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// One point of `GET /v1/cost`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostPoint {
    /// Start of the hour or day (RFC 3339).
    pub period: String,
    /// The group's value: account id, region, family (`m5`, `ebs-gp3`),
    /// tag value (`(untagged)` without the tag) or resource id.
    pub group: String,
    /// Accounts' priced cost summed, USD; `null` when no resource of the
    /// point was priced.
    pub cost_usd: Option<f64>,
    /// The same usage at reserved rates where one exists, USD; `null`
    /// like `cost_usd`.
    pub reserved_usd: Option<f64>,
    /// Resources whose price is unknown (not in `cost_usd`); for a day,
    /// unpriced resource-hours.
    pub price_missing: u64,
    /// Resources billed for some components only: their known components
    /// are in `cost_usd`, the others are not (for a day, such
    /// resource-hours). The aggregator's roll-up `price_partial`.
    pub price_partial: u64,
    /// Resources in the point (for a day: the most in any hour, per
    /// account).
    pub resources: u64,
    /// `by=resource`: the account of the resource.
    pub account: Option<String>,
    /// `by=resource`: why the price is unknown.
    pub price_missing_reason: Option<String>,
    /// `by=resource`: the components without a price when the others are
    /// priced (`price_partial` is then 1).
    pub price_missing_part: Option<String>,
    /// `by=resource`: why the amount is not the plain price × usage (an
    /// instance on a Dedicated Host, in a capacity reservation).
    pub note: Option<String>,
}

impl CostPoint {
    /// The point of `rows` (one period and group, any accounts).
    pub fn of_rollups(period: DateTime<Utc>, rows: &[RollupRow]) -> Self {
        let first = &rows[0];
        let (mut cost, mut reserved, mut missing, mut partial, mut resources) = (0.0, 0.0, 0, 0, 0);
        for r in rows {
            cost += r.cost_usd;
            reserved += r.reserved_usd;
            missing += r.price_missing;
            partial += r.price_partial;
            resources += r.resources;
        }
        // A day's `price_missing` counts unpriced resource-hours while its
        // `resources` is the most in any hour, so "some resource priced"
        // is also read from the money itself: a priced amount means the
        // point is priced (in part), whatever the counts say.
        let priced = missing == 0 || missing < resources || cost > 0.0 || reserved > 0.0;
        Self {
            period: rfc3339(period),
            group: first.group.clone(),
            cost_usd: priced.then_some(cost),
            reserved_usd: priced.then_some(reserved),
            price_missing: missing,
            price_partial: partial,
            resources,
            account: None,
            price_missing_reason: None,
            price_missing_part: None,
            note: None,
        }
    }

    /// The point of one resource's hour.
    pub fn of_resource(period: DateTime<Utc>, r: &ResourceHourRow) -> Self {
        Self {
            period: rfc3339(period),
            group: r.resource_id.clone(),
            cost_usd: r.cost_usd,
            reserved_usd: r.cost_usd.map(|c| r.reserved_usd.unwrap_or(c)),
            price_missing: u64::from(r.cost_usd.is_none()),
            price_partial: u64::from(missing_part(r).is_some()),
            resources: 1,
            account: Some(r.account.to_string()),
            price_missing_reason: r.cost_usd.is_none().then(|| {
                r.price_missing
                    .clone()
                    .unwrap_or_else(|| "price missing".into())
            }),
            price_missing_part: missing_part(r),
            note: r.note.clone(),
        }
    }
}

/// Parameters of `GET /v1/resources/{id}/cost`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResourceCostFilter {
    /// Start (RFC 3339): hours that end after it.
    pub from: String,
    /// End (RFC 3339, exclusive): hours that start before it; at most 31
    /// days after `from`.
    pub to: String,
}

/// Hours `first..=last` (hour starts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourWindow {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// What one resource cost in one hour (`GET /v1/resources/{id}/cost`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceCost {
    /// Start of the hour (RFC 3339).
    pub hour: String,
    pub account: String,
    pub region: String,
    pub kind: String,
    pub resource_id: String,
    /// Instance: running hours; volume, snapshot: GB-hours.
    pub usage: f64,
    /// Unit of `usage` (`Hrs`, `GB-Hours`…).
    pub unit: String,
    /// USD; `null` when the price is unknown (`price_missing` says why).
    pub cost_usd: Option<f64>,
    /// On-demand instances: the same seconds at the 1-year reserved rate.
    pub reserved_usd: Option<f64>,
    pub price_missing: Option<String>,
    /// The components without a price when the others are priced (a
    /// volume's IOPS, say): `cost_usd` is the known components only.
    pub price_missing_part: Option<String>,
    /// `m5`, `ebs-gp3`, `ebs-snapshot`.
    pub family: String,
    /// Instance type or volume type at the end of the hour.
    pub detail: String,
    pub lifecycle: String,
    /// Why the amount is what it is when it is not price × usage (an
    /// instance on a Dedicated Host: the host carries the charge; one in
    /// an On-Demand Capacity Reservation: billed at the on-demand rate).
    /// `null` otherwise — always present, so CSV rows keep one shape.
    #[serde(default)]
    pub note: Option<String>,
}

impl ResourceCost {
    pub fn new(r: &ResourceHourRow, hour: DateTime<Utc>) -> Self {
        Self {
            hour: rfc3339(hour),
            account: r.account.to_string(),
            region: r.region.clone(),
            kind: r.kind.clone(),
            resource_id: r.resource_id.clone(),
            usage: r.usage,
            unit: r.unit.clone(),
            cost_usd: r.cost_usd,
            reserved_usd: r.reserved_usd,
            price_missing: r.cost_usd.is_none().then(|| {
                r.price_missing
                    .clone()
                    .unwrap_or_else(|| "price missing".into())
            }),
            price_missing_part: missing_part(r),
            family: r.family.clone(),
            detail: r.detail.clone(),
            lifecycle: r.lifecycle.clone(),
            note: r.note.clone(),
        }
    }
}

/// The row's unpriced components, when the rest is priced. A row without
/// any price carries its reason in `price_missing` instead.
fn missing_part(r: &ResourceHourRow) -> Option<String> {
    r.cost_usd.and(r.price_missing_part.clone())
}

/// A tenant's monthly budget (`GET`/`PUT /v1/budgets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    /// USD per calendar month (UTC), more than 0.
    pub monthly_usd: f64,
    /// Percentages of `monthly_usd` at which the tenant is notified,
    /// each 1–1000 (default 50, 80, 100); stored sorted, duplicates once.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<u32>,
}

fn default_thresholds() -> Vec<u32> {
    vec![50, 80, 100]
}

/// The budget as stored, with the month's spend so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub monthly_usd: f64,
    pub thresholds: Vec<u32>,
    /// The current month (`2026-11`, UTC).
    pub month: String,
    /// Priced cost of the month so far, every account, USD.
    pub month_to_date_usd: f64,
}

/// What the cost endpoints read and write.
pub trait CostData {
    /// A page of a cost series.
    fn cost_series<'a>(
        &'a self,
        tenant: &'a TenantId,
        query: &'a SeriesQuery,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<CostPoint>, DataError>>;

    /// A page of one resource's hourly cost rows in `window`, oldest
    /// first (hours without a row are left out, so a page may be short or
    /// empty); `None` when the tenant has no resource with this id.
    fn resource_cost<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
        window: HourWindow,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Option<Page<ResourceCost>>, DataError>>;

    /// The tenant's budget and its month-to-date spend at `now`; `None`
    /// when no budget is set.
    fn budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<BudgetView>, DataError>>;

    /// Sets the tenant's budget (a checked `input`; idempotent) and
    /// returns it as [`CostData::budget`] would.
    fn put_budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        input: &'a BudgetInput,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<BudgetView, DataError>>;
}

/// Hours per resource-cost page: one `BatchGetItem` reads at most 100 keys.
pub const RESOURCE_COST_PAGE: u32 = 100;

/// The hour `n` hours after `t`.
pub fn hours_after(t: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    t + Duration::hours(n)
}

/// The price graph's key of the period starting at `t`.
pub fn period_key(t: DateTime<Utc>, g: Granularity) -> String {
    match g {
        Granularity::Hour => graph::hour_key(t),
        Granularity::Day => graph::day_key(t),
    }
}

/// The start of a period from its key (`2026-11-26T17`, `2026-11-26`).
pub fn parse_period(key: &str, g: Granularity) -> Result<DateTime<Utc>, DataError> {
    let parsed = match g {
        Granularity::Hour => {
            NaiveDateTime::parse_from_str(&format!("{key}:00:00"), "%Y-%m-%dT%H:%M:%S").ok()
        }
        Granularity::Day => NaiveDate::parse_from_str(key, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    parsed
        .map(|t| t.and_utc())
        .ok_or_else(|| DataError::Other(anyhow::anyhow!("bad period key {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cost: f64, missing: u64, resources: u64) -> RollupRow {
        RollupRow {
            pk: "acme#rollup#account".into(),
            sk: "2026-11-29#111111111111#111111111111".into(),
            tenant: TenantId::new("acme").unwrap(),
            account: kopter_schema::AccountId::new("111111111111").unwrap(),
            dimension: "account".into(),
            period: "2026-11-29".into(),
            group: "111111111111".into(),
            cost_usd: cost,
            reserved_usd: cost,
            price_missing: missing,
            price_partial: 0,
            resources,
            expires_at: 0,
        }
    }

    #[test]
    fn a_day_with_unpriced_hours_keeps_its_priced_cost() {
        let day: DateTime<Utc> = "2026-11-29T00:00:00Z".parse().unwrap();
        // Two resources each hour; one of them unpriced for 3 hours: the
        // day's row counts 3 unpriced resource-hours against 2 resources.
        let p = CostPoint::of_rollups(day, &[row(2.304, 3, 2)]);
        assert_eq!(p.cost_usd, Some(2.304));
        assert_eq!(p.price_missing, 3);
        // Nothing priced at all: no amount, never 0.
        let p = CostPoint::of_rollups(day, &[row(0.0, 48, 2)]);
        assert_eq!(p.cost_usd, None);
        // Everything priced, even at 0 (a stopped instance's hour).
        let p = CostPoint::of_rollups(day, &[row(0.0, 0, 1)]);
        assert_eq!(p.cost_usd, Some(0.0));
    }

    fn hour_row(
        cost: Option<f64>,
        missing_part: Option<&str>,
        note: Option<&str>,
    ) -> ResourceHourRow {
        ResourceHourRow {
            pk: "acme#111111111111#res#2026-11-29T10".into(),
            sk: "volume#vol-1".into(),
            tenant: TenantId::new("acme").unwrap(),
            account: kopter_schema::AccountId::new("111111111111").unwrap(),
            region: "us-east-1".into(),
            resource_id: "vol-1".into(),
            kind: "volume".into(),
            hour: "2026-11-29T10".into(),
            usage: 500.0,
            unit: "GB-Hours".into(),
            cost_usd: cost,
            reserved_usd: None,
            price_missing: cost.is_none().then(|| "no price for io2".into()),
            price_missing_part: missing_part.map(str::to_owned),
            family: "ebs-io2".into(),
            detail: "io2".into(),
            lifecycle: String::new(),
            tags: Default::default(),
            note: note.map(str::to_owned),
            expires_at: 0,
        }
    }

    #[test]
    fn partial_prices_are_counted_and_named_next_to_missing_ones() {
        let hour: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().unwrap();
        // Two accounts' rows of one group: 1 + 2 partially priced resources.
        let mut a = row(1.5, 1, 4);
        a.price_partial = 1;
        let mut b = row(2.5, 0, 3);
        b.price_partial = 2;
        let p = CostPoint::of_rollups(hour, &[a, b]);
        assert_eq!((p.price_missing, p.price_partial), (1, 3));
        assert_eq!(p.cost_usd, Some(4.0));
        assert_eq!(p.price_missing_part, None);

        // A volume billed for its storage only: the known part, the rest named.
        let r = hour_row(Some(0.0856), Some("IOPS above 32000: no price"), None);
        let p = CostPoint::of_resource(hour, &r);
        assert_eq!((p.price_missing, p.price_partial), (0, 1));
        assert_eq!(p.cost_usd, Some(0.0856));
        assert_eq!(
            p.price_missing_part.as_deref(),
            Some("IOPS above 32000: no price")
        );
        let c = ResourceCost::new(&r, hour);
        assert_eq!(
            c.price_missing_part.as_deref(),
            Some("IOPS above 32000: no price")
        );
        assert_eq!(c.price_missing, None);

        // Unpriced as a whole: missing, not partial, whatever the row says.
        let r = hour_row(None, Some("IOPS"), None);
        let p = CostPoint::of_resource(hour, &r);
        assert_eq!((p.price_missing, p.price_partial), (1, 0));
        assert_eq!(p.price_missing_reason.as_deref(), Some("no price for io2"));
        assert_eq!(ResourceCost::new(&r, hour).price_missing_part, None);
    }

    #[test]
    fn rows_with_and_without_a_note_export_the_same_csv_columns() {
        let hour: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().unwrap();
        let plain = hour_row(Some(0.1), None, None);
        let noted = hour_row(Some(0.1), None, Some("in capacity reservation cr-1"));
        let (keys, _) = crate::list::csv_row(&ResourceCost::new(&plain, hour)).unwrap();
        let (noted_keys, cells) = crate::list::csv_row(&ResourceCost::new(&noted, hour)).unwrap();
        assert_eq!(keys, noted_keys);
        assert!(keys.iter().any(|k| k == "note") && keys.iter().any(|k| k == "price_missing_part"));
        assert!(cells.iter().any(|c| c == "in capacity reservation cr-1"));
        let (keys, _) = crate::list::csv_row(&CostPoint::of_resource(hour, &plain)).unwrap();
        let (noted_keys, _) = crate::list::csv_row(&CostPoint::of_resource(hour, &noted)).unwrap();
        assert_eq!(keys, noted_keys);
        let (rollup_keys, _) =
            crate::list::csv_row(&CostPoint::of_rollups(hour, &[row(1.0, 0, 1)])).unwrap();
        assert_eq!(keys, rollup_keys);
    }
}
