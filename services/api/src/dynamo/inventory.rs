//! `/v1/inventory` and `/v1/resources/{id}[/history]` on the inventory
//! and `ec2-events` tables, with each listed resource's last hour from the
//! price graph.
//!
//! The inventory is partitioned by account (`{tenant}#{account}`), so a
//! tenant-wide list walks the tenant's accounts in id order, one account
//! per page: a page is one inventory `Query` and one `BatchGetItem` of the
//! page's cost rows — which is why a page holds at most 100 resources —
//! plus, without `account`, a `Limit 1` accounts `Query` for the next
//! account on the first page and where an account's rows end. The cursor
//! carries the account and DynamoDB's `LastEvaluatedKey` inside it.
//!
//! A resource id is found through the `by-resource` index of the history
//! (`{tenant}#{id}`): its newest row names the account, region and kind,
//! then one `GetItem` reads the inventory row. An id of another tenant is
//! simply not under this tenant's key: `None`, like a missing one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::{AccountId, TenantId};
use kopter_store::accounts::AccountStore;
use kopter_store::graph::{self, GraphStore};
use kopter_store::inventory::{InventoryPageFilter, InventoryStore};
use serde::{Deserialize, Serialize};

use super::DynamoData;
use crate::data::inventory::{
    HistoryItem, InventoryData, InventoryItem, InventorySelection, ResourceDetail,
};
use crate::data::{DataError, Page, PageKey, PageRequest, store_error};

/// Resources per inventory page: one `BatchGetItem` of their cost rows.
pub const INVENTORY_PAGE: u32 = graph::BATCH_GET as u32;

/// Where an inventory page resumes (inside the sealed cursor).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryPosition {
    account: AccountId,
    /// `LastEvaluatedKey` inside `account`; absent: from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PageKey>,
}

impl InventoryData for DynamoData {
    fn inventory<'a>(
        &'a self,
        tenant: &'a TenantId,
        selection: &'a InventorySelection,
        last_hour: DateTime<Utc>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<InventoryItem>, DataError>> {
        Box::pin(async move {
            let ddb = self.ddb(tenant).await?;
            let position: Option<InventoryPosition> = position(page.after)?;
            // Accounts in id order: the one of the filter, or the tenant's,
            // looked up one at a time (first page, and when an account's
            // rows end) so a page inside an account costs two calls.
            let (account, key) = match (position, &selection.account) {
                (Some(p), _) => (p.account, p.key),
                (None, Some(a)) => (a.clone(), None),
                (None, None) => match self.next_account(&ddb, tenant, None).await? {
                    Some(a) => (a, None),
                    None => return Ok(Page::empty()),
                },
            };
            let filter = InventoryPageFilter {
                region: selection.region.as_deref(),
                kind: selection.kind,
                state: selection.state.as_deref(),
                tag: selection
                    .tag
                    .as_ref()
                    .map(|(k, v)| (k.as_str(), v.as_deref())),
            };
            let store = InventoryStore::new(ddb.clone(), &self.names);
            let rows = store
                .inventory_page(
                    tenant,
                    &account,
                    filter,
                    key.as_ref(),
                    page.limit.min(INVENTORY_PAGE),
                )
                .await
                .map_err(store_error)?;
            let pk = graph::resource_hour_pk(tenant, &account, last_hour);
            let keys: Vec<(String, String)> = rows
                .items
                .iter()
                .map(|r| {
                    (
                        pk.clone(),
                        graph::resource_hour_sk(r.kind().as_str(), &r.resource_id),
                    )
                })
                .collect();
            let costs: HashMap<String, (Option<f64>, Option<String>)> =
                GraphStore::new(ddb.clone(), &self.names)
                    .resource_hours_by_key(&keys)
                    .await
                    .map_err(store_error)?
                    .into_iter()
                    .map(|c| (c.sk, (c.cost_usd, c.price_missing)))
                    .collect();
            let items = rows
                .items
                .iter()
                .map(|r| {
                    let sk = graph::resource_hour_sk(r.kind().as_str(), &r.resource_id);
                    InventoryItem::new(r, last_hour, costs.get(&sk).cloned())
                })
                .collect();
            let next = match rows.next {
                Some(key) => Some(InventoryPosition {
                    account,
                    key: Some(key),
                }),
                None if selection.account.is_some() => None,
                // This account is done: the next one in id order (also
                // when `account` was offboarded since the last page).
                None => self
                    .next_account(&ddb, tenant, Some(&account))
                    .await?
                    .map(|account| InventoryPosition { account, key: None }),
            };
            Ok(Page {
                items,
                next: next.map(|p| PageKey(serde_json::to_value(p).expect("serialises"))),
            })
        })
    }

    fn resource<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ResourceDetail>, DataError>> {
        Box::pin(async move {
            let store = InventoryStore::new(self.ddb(tenant).await?, &self.names);
            let Some(e) = store
                .latest_event(tenant, resource_id)
                .await
                .map_err(store_error)?
            else {
                return Ok(None);
            };
            let row = store
                .inventory_row(tenant, &e.account, &e.region, e.resource_kind, resource_id)
                .await
                .map_err(store_error)?;
            Ok(row.as_ref().map(ResourceDetail::new))
        })
    }

    fn resource_history<'a>(
        &'a self,
        tenant: &'a TenantId,
        resource_id: &'a str,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Option<Page<HistoryItem>>, DataError>> {
        Box::pin(async move {
            let store = InventoryStore::new(self.ddb(tenant).await?, &self.names);
            let first = page.after.is_none();
            let rows = store
                .resource_history_page(tenant, resource_id, page.after.as_ref(), page.limit)
                .await
                .map_err(store_error)?;
            // No filter: an empty first page means no history at all.
            if first && rows.items.is_empty() && rows.next.is_none() {
                return Ok(None);
            }
            Ok(Some(rows.map(|e| HistoryItem::new(&e))))
        })
    }
}

impl DynamoData {
    /// The tenant's first onboarded account in id order after `after`
    /// (exclusive; `None`: the first): one `Query` with `Limit 1`.
    pub(super) async fn next_account(
        &self,
        ddb: &aws_sdk_dynamodb::Client,
        tenant: &TenantId,
        after: Option<&AccountId>,
    ) -> Result<Option<AccountId>, DataError> {
        let (rows, _) = AccountStore::new(ddb.clone(), &self.names)
            .page(tenant, after, 1)
            .await
            .map_err(store_error)?;
        Ok(rows.into_iter().next().map(|a| a.account_id))
    }

    /// The tenant's onboarded accounts, in id order (one `Query` of the
    /// tenant's partition of the accounts table).
    pub(super) async fn account_ids(
        &self,
        ddb: &aws_sdk_dynamodb::Client,
        tenant: &TenantId,
    ) -> Result<Vec<AccountId>, DataError> {
        let mut ids: Vec<AccountId> = AccountStore::new(ddb.clone(), &self.names)
            .list(Some(tenant))
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|a| a.account_id)
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A page position out of its cursor (sealed by the api, so a bad one is
/// a bug, not the client's error).
pub(super) fn position<T: serde::de::DeserializeOwned>(
    after: Option<PageKey>,
) -> Result<Option<T>, DataError> {
    after
        .map(|PageKey(v)| {
            serde_json::from_value(v)
                .map_err(|e| DataError::Other(anyhow::anyhow!("page position: {e}")))
        })
        .transpose()
}
