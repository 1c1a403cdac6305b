//! In-memory audit.

use super::MemoryData;
use crate::data::audit::AuditData;

impl AuditData for MemoryData {}
