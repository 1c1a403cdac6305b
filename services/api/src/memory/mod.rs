//! An in-memory [`crate::data::TenantData`] for the HTTP layer's tests and
//! the benchmark: pages by position, records the tenant of every call.
//! One module per area, like `data`.

mod audit;
pub mod cost;
pub mod inventory;
mod prices;
mod settings;
mod waste;

pub use prices::sample_prices;

use std::collections::HashMap;
use std::sync::Mutex;

use kopter_schema::TenantId;
use kopter_store::backup::BackupPolicy;
use kopter_store::channels::TenantChannels;

use crate::data::Price;
use crate::data::settings::Account;

/// Settings held in memory, per tenant.
#[derive(Default)]
pub struct MemorySettings {
    pub channels: HashMap<TenantId, TenantChannels>,
    pub backup: HashMap<TenantId, BackupPolicy>,
    /// `(owner, account)`.
    pub accounts: Vec<(TenantId, Account)>,
}

/// Rows held in memory, per area.
#[derive(Default)]
pub struct MemoryData {
    pub prices: Vec<Price>,
    pub inventory: inventory::InventoryRows,
    pub cost: cost::CostRows,
    pub settings: Mutex<MemorySettings>,
    pub audit: Vec<kopter_store::audit::AuditRow>,
    pub feed: Mutex<Vec<kopter_store::feed::FeedRow>>,
    /// The tenants that exist; `None`: every tenant does (the HTTP
    /// layer's tests that are not about unknown tenants).
    pub tenants: Option<std::collections::HashSet<TenantId>>,
    /// Waste findings of every tenant.
    pub waste: Vec<kopter_store::waste::FindingRow>,
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

    /// Notes the tenant of a call.
    fn record(&self, tenant: &TenantId) {
        self.calls.lock().expect("lock").push(tenant.clone());
    }
}
