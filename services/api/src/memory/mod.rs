//! An in-memory [`crate::data::TenantData`] for the HTTP layer's tests and
//! the benchmark: pages by position, records the tenant of every call.
//! One module per area, like `data`.

mod audit;
pub mod cost;
pub mod inventory;
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
    pub inventory: inventory::InventoryRows,
    pub cost: cost::CostRows,
    /// Tenant of every call, in order.
    pub calls: Mutex<Vec<TenantId>>,
}

impl MemoryData {
    pub fn with_prices(prices: Vec<Price>) -> Self {
        Self {
            prices,
            inventory: Default::default(),
            cost: Default::default(),
            calls: Mutex::default(),
        }
    }
}
