//! In-memory inventory.

use super::MemoryData;
use crate::data::inventory::InventoryData;

impl InventoryData for MemoryData {}
