//! `/v1/cost`, `/v1/resources/{id}/cost` and `/v1/budgets` on the price
//! graph (see `kopter_store::graph` for its rows).
//!
//! Series by a roll-up dimension read `{tenant}#{hour|day}#{dimension}`,
//! one packed item per account and period (`{period}#{account}`, every
//! group of the account; chunks `{period}#{account}#{nnnn}` past ~2,500
//! groups; rows of before packing are
//! `{period}#{group}#{account}`), summed over accounts into points, one
//! per period and group ([`GraphStore::series_page`]). Periods are read
//! whole, in `Query`s of at most `2 × limit + 1` items (1000 at most); the
//! cursor is the period and group of the last point sent. Cursors made
//! before packing (`{pk, sk}` of the last row sent) still resume: their
//! sort key names the period and group.
//!
//! `by=resource` (hourly) walks the resource rows,
//! `{tenant}#{account}#res#{hour}`, hour by hour and account by account:
//! one accounts `Query` and one resource-row `Query` per page.
//!
//! A resource's cost: its account and kind from the history index, then
//! one `BatchGetItem` of up to 100 hours (`{tenant}#{account}#res#{hour}`,
//! `{kind}#{id}`).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use futures::future::BoxFuture;
use kopter_schema::{AccountId, TenantId};
use kopter_store::graph::{self, Budget, GraphStore};
use kopter_store::inventory::InventoryStore;
use serde::{Deserialize, Serialize};

use super::DynamoData;
use super::inventory::position;
use crate::data::cost::{
    BudgetInput, BudgetView, CostData, CostPoint, Granularity, GroupBy, HourWindow,
    RESOURCE_COST_PAGE, ResourceCost, SeriesQuery, parse_period, period_key,
};
use crate::data::{DataError, Page, PageKey, PageRequest, store_error};

/// Where a `by=resource` page resumes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSeriesPosition {
    /// Hour key (`2026-11-26T17`).
    hour: String,
    account: AccountId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PageKey>,
}

/// Where a series page by a roll-up dimension resumes: after the point of
/// `period` (hour or day key) and `group`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointPosition {
    period: String,
    group: String,
}

/// A series cursor made before roll-ups were packed: the key of the last
/// row sent, `{period}#{group}#{account}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowPosition {
    #[allow(dead_code)]
    pk: String,
    sk: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SeriesPosition {
    Point(PointPosition),
    Row(RowPosition),
}

impl SeriesPosition {
    fn point(self) -> Result<PointPosition, DataError> {
        match self {
            SeriesPosition::Point(p) => Ok(p),
            SeriesPosition::Row(RowPosition { sk, .. }) => {
                let bad = || DataError::Other(anyhow::anyhow!("page position: row key {sk:?}"));
                let (period, rest) = sk.split_once('#').ok_or_else(bad)?;
                let (group, _account) = rest.rsplit_once('#').ok_or_else(bad)?;
                Ok(PointPosition {
                    period: period.to_owned(),
                    group: group.to_owned(),
                })
            }
        }
    }
}

/// Where a resource's cost page resumes: the next hour to read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HourPosition {
    hour: String,
}

impl CostData for DynamoData {
    fn cost_series<'a>(
        &'a self,
        tenant: &'a TenantId,
        query: &'a SeriesQuery,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<CostPoint>, DataError>> {
        Box::pin(async move {
            match &query.by {
                GroupBy::Dimension(dim) => self.rollup_series(tenant, query, dim, page).await,
                GroupBy::Resource => self.resource_series(tenant, query, page).await,
            }
        })
    }

    fn resource_cost<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
        window: HourWindow,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Option<Page<ResourceCost>>, DataError>> {
        Box::pin(async move {
            let ddb = self.ddb(tenant).await?;
            let Some(e) = InventoryStore::new(ddb.clone(), &self.names)
                .latest_event(tenant, resource_id)
                .await
                .map_err(store_error)?
            else {
                return Ok(None);
            };
            let start = match position::<HourPosition>(page.after)? {
                Some(p) => parse_period(&p.hour, Granularity::Hour)?,
                None => window.first,
            };
            let n = i64::from(page.limit.clamp(1, RESOURCE_COST_PAGE));
            let hours: Vec<DateTime<Utc>> = (0..n)
                .map(|i| start + Duration::hours(i))
                .take_while(|h| *h <= window.last)
                .collect();
            let sk = graph::resource_hour_sk(e.resource_kind.as_str(), resource_id);
            let keys: Vec<(String, String)> = hours
                .iter()
                .map(|h| (graph::resource_hour_pk(tenant, &e.account, *h), sk.clone()))
                .collect();
            let mut rows = GraphStore::new(ddb, &self.names)
                .resource_hours_by_key(&keys)
                .await
                .map_err(store_error)?;
            rows.sort_by(|a, b| a.hour.cmp(&b.hour));
            let items = rows
                .iter()
                .map(|r| {
                    Ok(ResourceCost::new(
                        r,
                        parse_period(&r.hour, Granularity::Hour)?,
                    ))
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            let next = hours
                .last()
                .map(|h| *h + Duration::hours(1))
                .filter(|h| *h <= window.last)
                .map(|h| {
                    PageKey(
                        serde_json::to_value(HourPosition {
                            hour: graph::hour_key(h),
                        })
                        .expect("serialises"),
                    )
                });
            Ok(Some(Page { items, next }))
        })
    }

    fn budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<BudgetView>, DataError>> {
        Box::pin(async move {
            let graph = GraphStore::new(self.ddb(tenant).await?, &self.names);
            match graph.budget(tenant).await.map_err(store_error)? {
                Some(b) => Ok(Some(view(&graph, tenant, b, now).await?)),
                None => Ok(None),
            }
        })
    }

    fn put_budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        input: &'a BudgetInput,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<BudgetView, DataError>> {
        Box::pin(async move {
            let graph = GraphStore::new(self.ddb(tenant).await?, &self.names);
            let budget = Budget::new(tenant, input.monthly_usd, input.thresholds.clone());
            graph.put_budget(&budget).await.map_err(store_error)?;
            view(&graph, tenant, budget, now).await
        })
    }
}

impl DynamoData {
    async fn rollup_series(
        &self,
        tenant: &TenantId,
        query: &SeriesQuery,
        dimension: &str,
        page: PageRequest,
    ) -> Result<Page<CostPoint>, DataError> {
        let graph = GraphStore::new(self.ddb(tenant).await?, &self.names);
        let g = query.granularity;
        let after = position::<SeriesPosition>(page.after)?
            .map(SeriesPosition::point)
            .transpose()?;
        let (points, next) = graph
            .series_page(
                tenant,
                g.as_str(),
                dimension,
                (&period_key(query.first, g), &period_key(query.last, g)),
                after
                    .as_ref()
                    .map(|p| (p.period.as_str(), p.group.as_str())),
                page.limit,
            )
            .await
            .map_err(store_error)?;
        let mut items = Vec::with_capacity(points.len());
        for rows in &points {
            items.push(CostPoint::of_rollups(
                parse_period(&rows[0].period, g)?,
                rows,
            ));
        }
        Ok(Page {
            items,
            next: next.map(|(period, group)| {
                PageKey(serde_json::to_value(PointPosition { period, group }).expect("serialises"))
            }),
        })
    }

    async fn resource_series(
        &self,
        tenant: &TenantId,
        query: &SeriesQuery,
        page: PageRequest,
    ) -> Result<Page<CostPoint>, DataError> {
        let ddb = self.ddb(tenant).await?;
        let accounts = self.account_ids(&ddb, tenant).await?;
        let Some(first_account) = accounts.first().cloned() else {
            return Ok(Page::empty());
        };
        let (hour, account, key) = match position::<ResourceSeriesPosition>(page.after)? {
            Some(p) => (parse_period(&p.hour, Granularity::Hour)?, p.account, p.key),
            None => (query.first, first_account.clone(), None),
        };
        let rows = GraphStore::new(ddb, &self.names)
            .resource_hours_page(tenant, &account, hour, key.as_ref(), page.limit)
            .await
            .map_err(store_error)?;
        let items = rows
            .items
            .iter()
            .map(|r| CostPoint::of_resource(hour, r))
            .collect();
        let next = match rows.next {
            Some(key) => Some((hour, account, Some(key))),
            None => match accounts.iter().find(|a| **a > account) {
                Some(a) => Some((hour, a.clone(), None)),
                None => {
                    let h = hour + Duration::hours(1);
                    (h <= query.last).then_some((h, first_account, None))
                }
            },
        };
        Ok(Page {
            items,
            next: next.map(|(hour, account, key)| {
                PageKey(
                    serde_json::to_value(ResourceSeriesPosition {
                        hour: graph::hour_key(hour),
                        account,
                        key,
                    })
                    .expect("serialises"),
                )
            }),
        })
    }
}

async fn view(
    graph: &GraphStore,
    tenant: &TenantId,
    b: Budget,
    now: DateTime<Utc>,
) -> Result<BudgetView, DataError> {
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .expect("the first of a month exists");
    let spent = graph
        .month_to_date(tenant, month_start)
        .await
        .map_err(store_error)?;
    Ok(BudgetView {
        monthly_usd: b.monthly_usd,
        thresholds: b.thresholds,
        month: graph::month_key(month_start),
        month_to_date_usd: spent,
    })
}
