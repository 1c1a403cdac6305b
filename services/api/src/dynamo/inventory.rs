//! inventory on DynamoDB.

use super::DynamoData;
use crate::data::inventory::InventoryData;

impl InventoryData for DynamoData {}
