//! What the notifier tells a tenant: the [`Event`] a feed row is made of,
//! severity names as stored, and the stable ids rows are keyed by.

use chrono::{DateTime, Utc};
use kopter_schema::messages::Severity;
use kopter_schema::{AccountId, TenantId};
use serde::{Deserialize, Serialize};

/// The audit-log row a finding came from (trail-ingest's key layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRef {
    pub pk: String,
    pub sk: String,
}

/// One event the notifier tells a tenant about.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tenant: TenantId,
    /// The message kind (`security.finding`, …).
    pub kind: &'static str,
    /// Bursts collapse per tenant and rule: the finding's rule id, or the
    /// kind plus what happened (`inventory.terminated`).
    pub rule: String,
    /// Deduplication identity, stable across redelivery and republish.
    pub identity: String,
    pub severity: Severity,
    pub title: String,
    pub text: String,
    /// When it happened (the event's time, not the message's).
    pub at: DateTime<Utc>,
    pub account: Option<AccountId>,
    /// `{account}/{region}/{resource id}` of the resource concerned.
    pub resource: Option<String>,
    pub audit: Option<AuditRef>,
}

/// Inventory changes a person wants to hear about. `state_changed`
/// (start/stop) and `created` (mostly Kopter's own backup snapshots) are
/// routine and stay out of the feed.
pub const TOLD_INVENTORY_CHANGES: &[&str] = &[
    "launched",
    "terminated",
    "type_changed",
    "resized",
    "deleted",
    "gone",
];

pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

pub fn parse_severity(s: &str) -> Option<Severity> {
    match s {
        "info" => Some(Severity::Info),
        "warning" => Some(Severity::Warning),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

/// A rule id usable inside a key: `[a-z0-9._-]`, anything else becomes `_`.
pub fn key_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// A stable 128-bit id (FNV-1a) of an identity string, as 32 hex digits.
/// Not cryptographic: it only names rows that are already scoped by
/// tenant; stability across builds and processes is what matters.
pub fn stable_id(identity: &str) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for b in identity.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:032x}")
}
