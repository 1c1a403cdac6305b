//! audit on DynamoDB.

use super::DynamoData;
use crate::data::audit::AuditData;

impl AuditData for DynamoData {}
