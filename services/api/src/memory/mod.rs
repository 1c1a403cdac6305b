//! An in-memory [`crate::data::TenantData`] for the HTTP layer's tests and
//! the benchmark: pages by position, records the tenant of every call.
//! One module per area, like `data`.

mod audit;
mod cost;
mod inventory;
mod prices;
mod settings;

pub use prices::sample_prices;

use std::sync::Mutex;

use kopter_schema::TenantId;

use crate::data::Price;

/// Price rows held in memory.
#[derive(Default)]
pub struct MemoryData {
    pub prices: Vec<Price>,
    pub audit: Vec<kopter_store::audit::AuditRow>,
    pub feed: Mutex<Vec<kopter_store::feed::FeedRow>>,
    /// Tenant of every call, in order.
    pub calls: Mutex<Vec<TenantId>>,
}

impl MemoryData {
    pub fn with_prices(prices: Vec<Price>) -> Self {
        Self {
            prices,
            ..Self::default()
        }
    }
}
