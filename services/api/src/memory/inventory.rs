//! In-memory inventory: rows as the describer writes them, filtered and
//! paged by position.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::graph::{hour_key, resource_hour_sk};
use kopter_store::inventory::{EventRow, InventoryRow};

use super::MemoryData;
use crate::data::inventory::{
    HistoryItem, InventoryData, InventoryItem, InventorySelection, ResourceDetail, tags,
};
use crate::data::{DataError, Page, PageKey, PageRequest};

/// Inventory and history rows of every tenant.
#[derive(Debug, Default)]
pub struct InventoryRows {
    pub rows: Vec<InventoryRow>,
    pub events: Vec<EventRow>,
}

impl InventoryData for MemoryData {
    fn inventory<'a>(
        &'a self,
        tenant: &'a TenantId,
        s: &'a InventorySelection,
        last_hour: DateTime<Utc>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<InventoryItem>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let mut rows: Vec<&InventoryRow> = self
                .inventory
                .rows
                .iter()
                .filter(|r| r.tenant == *tenant)
                .filter(|r| s.account.as_ref().is_none_or(|a| r.account == *a))
                .filter(|r| s.region.as_ref().is_none_or(|x| r.region == *x))
                .filter(|r| s.kind.is_none_or(|k| r.kind() == k))
                .filter(|r| s.state.as_ref().is_none_or(|x| r.state() == x))
                .filter(|r| {
                    s.tag.as_ref().is_none_or(|(k, v)| {
                        let t = tags(&r.resource).get(k);
                        t.is_some() && v.as_ref().is_none_or(|v| t == Some(v))
                    })
                })
                .collect();
            rows.sort_by(|a, b| (&a.account, &a.sk).cmp(&(&b.account, &b.sk)));
            let hk = hour_key(last_hour);
            let items = rows
                .into_iter()
                .map(|r| {
                    let sk = resource_hour_sk(r.kind().as_str(), &r.resource_id);
                    let cost = self
                        .cost
                        .resource_hours
                        .iter()
                        .find(|c| {
                            c.tenant == *tenant
                                && c.account == r.account
                                && c.hour == hk
                                && c.sk == sk
                        })
                        .map(|c| (c.cost_usd, c.price_missing.clone()));
                    InventoryItem::new(r, last_hour, cost)
                })
                .collect();
            offset_page(items, page)
        })
    }

    fn resource<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceDetail>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            Ok(self
                .inventory
                .rows
                .iter()
                .find(|r| r.tenant == *tenant && r.resource_id == resource_id)
                .map(ResourceDetail::new))
        })
    }

    fn resource_history<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Option<Page<HistoryItem>>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let mut events: Vec<&EventRow> = self
                .inventory
                .events
                .iter()
                .filter(|e| e.tenant == *tenant && e.resource_id == resource_id)
                .collect();
            if events.is_empty() {
                return Ok(None);
            }
            events.sort_by(|a, b| a.sk.cmp(&b.sk));
            let items = events.into_iter().map(HistoryItem::new).collect();
            offset_page(items, page).map(Some)
        })
    }
}

/// `page` of `items` by position (`{"at": n}`).
pub(super) fn offset_page<T>(items: Vec<T>, page: PageRequest) -> Result<Page<T>, DataError> {
    let start = match &page.after {
        None => 0,
        Some(PageKey(v)) => v["at"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("bad page key {v}"))?
            as usize,
    };
    let total = items.len();
    let end = (start + page.limit as usize).min(total);
    let items: Vec<T> = items
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    Ok(Page {
        items,
        next: (end < total).then(|| PageKey(serde_json::json!({ "at": end }))),
    })
}
