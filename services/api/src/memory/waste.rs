//! In-memory waste findings, paged by position.

use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::waste::Status;

use super::MemoryData;
use super::inventory::offset_page;
use crate::data::waste::{WasteData, WasteItem};
use crate::data::{DataError, Page, PageRequest};

impl WasteData for MemoryData {
    fn waste<'a>(
        &'a self,
        tenant: &'a TenantId,
        status: Option<Status>,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<WasteItem>, DataError>> {
        Box::pin(async move {
            self.calls.lock().expect("lock").push(tenant.clone());
            let mut rows: Vec<_> = self
                .waste
                .iter()
                .filter(|r| r.tenant == *tenant && status.is_none_or(|s| r.status == s))
                .collect();
            rows.sort_by(|a, b| a.sk.cmp(&b.sk));
            offset_page(rows.into_iter().map(WasteItem::from).collect(), page)
        })
    }
}
