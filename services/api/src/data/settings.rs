//! Notifications, channels, backup policy and accounts (`/v1/notifications`, `/v1/channels`, `/v1/backup-policy`, `/v1/accounts`).

/// What the settings endpoints read and write.
pub trait SettingsData {}
