//! Inventory, resources and their state history (`/v1/inventory`, `/v1/resources/…`).

/// What the inventory endpoints read and write.
pub trait InventoryData {}
