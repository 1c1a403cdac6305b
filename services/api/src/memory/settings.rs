//! In-memory settings.

use super::MemoryData;
use crate::data::settings::SettingsData;

impl SettingsData for MemoryData {}
