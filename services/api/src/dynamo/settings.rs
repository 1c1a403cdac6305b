//! settings on DynamoDB.

use super::DynamoData;
use crate::data::settings::SettingsData;

impl SettingsData for DynamoData {}
