//! `/v1/waste` on the price-graph table (`{tenant}#waste`).

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::waste::{Status, WasteStore};

use super::DynamoData;
use crate::data::waste::{WasteData, WasteItem};
use crate::data::{DataError, Page, PageRequest, store_error};

impl WasteData for DynamoData {
    fn waste<'a>(
        &'a self,
        tenant: &'a TenantId,
        status: Option<Status>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<WasteItem>, DataError>> {
        Box::pin(async move {
            let store = WasteStore::new(self.ddb(tenant).await?, &self.names);
            let rows = store
                .page(tenant, status, page.after.as_ref(), page.limit)
                .await
                .map_err(store_error)?;
            Ok(rows.map(|r| WasteItem::from(&r)))
        })
    }
}
