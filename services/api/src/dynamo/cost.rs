//! cost on DynamoDB.

use super::DynamoData;
use crate::data::cost::CostData;

impl CostData for DynamoData {}
