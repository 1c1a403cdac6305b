//! `GET /v1/prices` on the prices table: the region's version in force,
//! then its instance price rows (one per instance type × tenancy, each
//! holding every operation's on-demand price), flattened to one item per
//! operation.
//!
//! Paging: the cursor pins the version (an export that spans a price
//! refresh stays on one version) and says where to resume — after a whole
//! row, or inside a row that filled the previous page (`skip` items of it
//! already sent). A page costs at most two DynamoDB calls: the pointer (or
//! the partly sent row) and one query.

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::prices::{InstancePrices, PriceStore};
use serde::{Deserialize, Serialize};

use super::DynamoData;
use crate::data::{
    DataError, Page, PageKey, PageRequest, Price, PriceData, PriceFilter, store_error,
};

/// Where a price page resumes (the JSON inside the sealed cursor).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricePosition {
    version: String,
    /// Sort key of the row to resume at or after.
    sk: String,
    /// Items of row `sk` already sent; `None`: resume after the row.
    #[serde(skip_serializing_if = "Option::is_none")]
    skip: Option<usize>,
}

/// The on-demand prices of one row that pass `filter`, in operation order.
fn flatten(row: &InstancePrices, filter: &PriceFilter) -> Vec<Price> {
    row.on_demand
        .iter()
        .filter(|(_, e)| {
            filter
                .os
                .as_deref()
                .is_none_or(|os| e.operating_system == os)
        })
        .map(|(operation, e)| Price {
            region: row.region.clone(),
            version: row.version.clone(),
            instance_type: row.instance_type.clone(),
            tenancy: row.tenancy.clone(),
            operation: operation.clone(),
            operating_system: e.operating_system.clone(),
            license_model: e.license_model.clone(),
            pre_installed_sw: e.pre_installed_sw.clone(),
            usd_per_hour: e.usd_per_hour,
            effective: e.effective.clone(),
        })
        .collect()
}

/// The sort-key prefix of an `instance_type` filter: a family (`m5.`)
/// as given, one type (`m5.large`) with the key's `#` separator so
/// `m5.large` does not also match `m5.large2`-like names.
fn sk_prefix(instance_type: Option<&str>) -> Option<String> {
    instance_type.map(|t| {
        if t.ends_with('.') {
            t.to_owned()
        } else {
            format!("{t}#")
        }
    })
}

impl PriceData for DynamoData {
    fn prices<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a PriceFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Price>, DataError>> {
        Box::pin(async move {
            let store = PriceStore::new(self.ddb(tenant).await?, &self.names);
            let limit = page.limit.clamp(1, 1000) as usize;
            let position: Option<PricePosition> = match page.after {
                Some(PageKey(v)) => Some(
                    serde_json::from_value(v)
                        .map_err(|e| DataError::Other(anyhow::anyhow!("price page key: {e}")))?,
                ),
                None => None,
            };
            let version = match &position {
                Some(p) => p.version.clone(),
                None => match store.current(&filter.region).await.map_err(store_error)? {
                    Some(pointer) => pointer.version,
                    // No prices for the region (not ingested, or not a
                    // region): an empty list, not an error.
                    None => return Ok(Page::empty()),
                },
            };
            let mut items = Vec::with_capacity(limit);
            let full = |items: &Vec<Price>| items.len() >= limit;
            // The row the previous page stopped inside.
            let mut after = position.as_ref().map(|p| p.sk.clone());
            if let Some(PricePosition {
                sk,
                skip: Some(skip),
                ..
            }) = &position
            {
                let (instance_type, tenancy) = sk.split_once('#').ok_or_else(|| {
                    DataError::Other(anyhow::anyhow!("price page key: bad row key {sk:?}"))
                })?;
                if let Some(row) = store
                    .instance_prices(&filter.region, &version, instance_type, tenancy)
                    .await
                    .map_err(store_error)?
                {
                    let rest = flatten(&row, filter);
                    for (i, p) in rest.into_iter().enumerate().skip(*skip) {
                        if full(&items) {
                            return Ok(Page {
                                items,
                                next: Some(position_key(&version, sk, Some(i))),
                            });
                        }
                        items.push(p);
                    }
                }
            }
            if full(&items) {
                // The partly sent row ended the page exactly.
                let next = after.map(|sk| position_key(&version, &sk, None));
                return Ok(Page { items, next });
            }
            let prefix = sk_prefix(filter.instance_type.as_deref());
            let (rows, more) = store
                .instance_prices_page(
                    &filter.region,
                    &version,
                    after.as_deref(),
                    prefix.as_deref(),
                    (limit - items.len()) as u32,
                )
                .await
                .map_err(store_error)?;
            let last = rows.len();
            for (n, row) in rows.iter().enumerate() {
                for (i, p) in flatten(row, filter).into_iter().enumerate() {
                    if full(&items) {
                        return Ok(Page {
                            items,
                            next: Some(position_key(&version, &row.sk, Some(i))),
                        });
                    }
                    items.push(p);
                }
                after = Some(row.sk.clone());
                if full(&items) && (n + 1 < last || more) {
                    return Ok(Page {
                        items,
                        next: Some(position_key(&version, &row.sk, None)),
                    });
                }
            }
            let next = match (more, after) {
                (true, Some(sk)) => Some(position_key(&version, &sk, None)),
                _ => None,
            };
            Ok(Page { items, next })
        })
    }
}

fn position_key(version: &str, sk: &str, skip: Option<usize>) -> PageKey {
    PageKey(
        serde_json::to_value(PricePosition {
            version: version.to_owned(),
            sk: sk.to_owned(),
            skip,
        })
        .expect("a position serialises"),
    )
}
