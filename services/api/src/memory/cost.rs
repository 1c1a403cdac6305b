//! In-memory cost: the price graph's rows, summed and paged like the
//! DynamoDB implementation (by position), and budgets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::graph::{Budget, ResourceHourRow, RollupRow, hour_key, month_key};

use super::MemoryData;
use super::inventory::offset_page;
use crate::data::cost::{
    BudgetInput, BudgetView, CostData, CostPoint, Granularity, GroupBy, HourWindow, ResourceCost,
    SeriesQuery, parse_period, period_key,
};
use crate::data::{DataError, Page, PageRequest};

/// Price-graph rows of every tenant, and budgets.
#[derive(Debug, Default)]
pub struct CostRows {
    pub resource_hours: Vec<ResourceHourRow>,
    pub rollups: Vec<RollupRow>,
    pub budgets: Mutex<HashMap<TenantId, Budget>>,
}

impl CostData for MemoryData {
    fn cost_series<'a>(
        &'a self,
        tenant: &'a TenantId,
        q: &'a SeriesQuery,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<CostPoint>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let (lo, hi) = (
                period_key(q.first, q.granularity),
                period_key(q.last, q.granularity),
            );
            let points = match &q.by {
                GroupBy::Dimension(dim) => {
                    let mut groups: BTreeMap<(String, String), Vec<RollupRow>> = BTreeMap::new();
                    for r in self.cost.rollups.iter().filter(|r| {
                        r.tenant == *tenant
                            && r.dimension == *dim
                            && r.period.len() == lo.len()
                            && r.period >= lo
                            && r.period <= hi
                    }) {
                        groups
                            .entry((r.period.clone(), r.group.clone()))
                            .or_default()
                            .push(r.clone());
                    }
                    groups
                        .into_iter()
                        .map(|((period, _), rows)| {
                            Ok(CostPoint::of_rollups(
                                parse_period(&period, q.granularity)?,
                                &rows,
                            ))
                        })
                        .collect::<Result<Vec<_>, DataError>>()?
                }
                GroupBy::Resource => {
                    let mut rows: Vec<&ResourceHourRow> = self
                        .cost
                        .resource_hours
                        .iter()
                        .filter(|r| r.tenant == *tenant && r.hour >= lo && r.hour <= hi)
                        .collect();
                    rows.sort_by(|a, b| {
                        (&a.hour, &a.account, &a.sk).cmp(&(&b.hour, &b.account, &b.sk))
                    });
                    rows.into_iter()
                        .map(|r| {
                            Ok(CostPoint::of_resource(
                                parse_period(&r.hour, q.granularity)?,
                                r,
                            ))
                        })
                        .collect::<Result<Vec<_>, DataError>>()?
                }
            };
            offset_page(points, page)
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
            self.calls.lock().expect("lock").push(tenant.clone());
            let known = self
                .inventory
                .rows
                .iter()
                .any(|r| r.tenant == *tenant && r.resource_id == resource_id);
            if !known {
                return Ok(None);
            }
            let (lo, hi) = (hour_key(window.first), hour_key(window.last));
            let mut rows: Vec<&ResourceHourRow> = self
                .cost
                .resource_hours
                .iter()
                .filter(|r| {
                    r.tenant == *tenant
                        && r.resource_id == resource_id
                        && r.hour >= lo
                        && r.hour <= hi
                })
                .collect();
            rows.sort_by(|a, b| a.hour.cmp(&b.hour));
            let items = rows
                .into_iter()
                .map(|r| {
                    Ok(ResourceCost::new(
                        r,
                        parse_period(&r.hour, Granularity::Hour)?,
                    ))
                })
                .collect::<Result<Vec<_>, DataError>>()?;
            offset_page(items, page).map(Some)
        })
    }

    fn budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Option<BudgetView>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let b = self.cost.budgets.lock().expect("lock").get(tenant).cloned();
            Ok(b.map(|b| self.view(tenant, b, now)))
        })
    }

    fn put_budget<'a>(
        &'a self,
        tenant: &'a TenantId,
        input: &'a BudgetInput,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<BudgetView, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let b = Budget::new(tenant, input.monthly_usd, input.thresholds.clone());
            self.cost
                .budgets
                .lock()
                .expect("lock")
                .insert(tenant.clone(), b.clone());
            Ok(self.view(tenant, b, now))
        })
    }
}

impl MemoryData {
    fn view(&self, tenant: &TenantId, b: Budget, now: DateTime<Utc>) -> BudgetView {
        let month = month_key(now);
        let spent = self
            .cost
            .rollups
            .iter()
            .filter(|r| {
                r.tenant == *tenant
                    && r.dimension == "account"
                    && r.period.len() == 10
                    && r.period.starts_with(&month)
            })
            .map(|r| r.cost_usd)
            .sum();
        BudgetView {
            monthly_usd: b.monthly_usd,
            thresholds: b.thresholds,
            month,
            month_to_date_usd: spent,
        }
    }
}
