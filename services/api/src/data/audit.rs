//! The audit log and security findings (`/v1/audit/aws`, `/v1/findings`).

/// What the audit endpoints read and write.
pub trait AuditData {}
