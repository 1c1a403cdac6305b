//! In-memory cost.

use super::MemoryData;
use crate::data::cost::CostData;

impl CostData for MemoryData {}
