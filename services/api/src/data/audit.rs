//! The audit log, security findings and the notification feed
//! (`/v1/audit/aws`, `/v1/findings`, `/v1/notifications`).
//!
//! Items are flat (lists of names joined into one string) so that the same
//! type serves JSON, CSV and NDJSON; the one-record endpoint gives the
//! lists as arrays and the raw CloudTrail record.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::audit::{AuditRow, day_of_sort_key};
use kopter_store::feed::FeedRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DataError, Page, PageRequest};

/// The message kind of the notifier's feed rows made from trail-ingest's
/// `SecurityFinding` events (`Message::kind`).
pub const FINDING_KIND: &str = "security.finding";

/// Longest record id accepted (a sort key is a 24-character time, `#` and
/// an event id; CloudTrail's are 36-character UUIDs).
const MAX_ID_BYTES: usize = 400;

/// The id of an audit record or a notification in URLs: its sort key
/// (`{event time, ms RFC 3339}#{event id}`, which also names the record's
/// day partition), base64url without padding. Opaque to clients; an id
/// names a row only inside the caller's own tenant (the partition key is
/// built from the token's tenant, never from the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId(String);

impl RecordId {
    /// The id of the row with sort key `sk`.
    pub fn of_sort_key(sk: &str) -> Self {
        Self(sk.to_owned())
    }

    /// Parses an id from a URL; `None` unless it is base64url of a sort key
    /// of that shape.
    pub fn parse(id: &str) -> Option<Self> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let sk = String::from_utf8(bytes).ok()?;
        if sk.chars().any(char::is_control) {
            return None;
        }
        day_of_sort_key(&sk)?;
        Some(Self(sk))
    }

    /// The row's sort key.
    pub fn sort_key(&self) -> &str {
        &self.0
    }

    /// The id as it appears in URLs.
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// The URL path of the audit record with this id.
    pub fn record_path(&self) -> String {
        format!("/v1/audit/aws/{}", self.encoded())
    }
}

/// The filters of `GET /v1/audit/aws`, checked, with the window resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFilter {
    /// Event time at or after (inclusive).
    pub since: DateTime<Utc>,
    /// Event time at or before (inclusive, to the millisecond).
    pub until: DateTime<Utc>,
    /// The principal, exactly: `userIdentity.arn`, or for identities
    /// without one the form trail-ingest gives (`saml:<provider>/<user>`, …).
    pub principal: Option<String>,
    /// `eventName` (`RunInstances`), exactly.
    pub event: Option<String>,
    /// `eventSource` (`ec2.amazonaws.com`), exactly.
    pub source: Option<String>,
    /// A resource the record touched: an ARN or an EC2 id.
    pub resource: Option<String>,
    /// The account the record was delivered for (12 digits).
    pub account: Option<String>,
    /// The caller's account, `userIdentity.accountId` (12 digits).
    pub caller_account: Option<String>,
}

/// One audit-log record in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    /// Record id: the path segment of `GET /v1/audit/aws/{id}`.
    pub id: String,
    /// CloudTrail's `eventID`.
    pub event_id: String,
    /// `eventTime` (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The account the record was delivered for.
    pub account: String,
    pub region: String,
    /// `eventSource`, e.g. `ec2.amazonaws.com`.
    pub source: String,
    /// `eventName`, e.g. `RunInstances`.
    pub event: String,
    /// Who acted: `userIdentity.arn`, or for identities without one the
    /// form trail-ingest gives (`saml:<provider>/<user>`, `account:<id>/…`, …).
    pub principal: Option<String>,
    /// `userIdentity.type`: `Root`, `IAMUser`, `AssumedRole`, `AWSService`, …
    pub principal_type: Option<String>,
    /// The caller's account, `userIdentity.accountId`.
    pub caller_account: Option<String>,
    pub source_ip: Option<String>,
    pub read_only: Option<bool>,
    /// `errorCode` of a refused call.
    pub error_code: Option<String>,
    /// Resources touched (ARNs, then EC2 ids), space-separated.
    pub resources: String,
    /// Security rules the record matched, comma-separated.
    pub findings: String,
    /// URL path of the record with its raw CloudTrail JSON.
    pub record: String,
}

/// One audit-log record with its raw CloudTrail JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecordDetail {
    pub id: String,
    pub event_id: String,
    /// `eventTime` (RFC 3339, UTC, milliseconds).
    pub time: String,
    pub account: String,
    pub region: String,
    pub source: String,
    pub event: String,
    pub principal: Option<String>,
    pub principal_type: Option<String>,
    pub caller_account: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub read_only: Option<bool>,
    pub error_code: Option<String>,
    pub resources: Vec<String>,
    /// Security rules the record matched.
    pub findings: Vec<String>,
    /// The CloudTrail record as received (a JSON object); when
    /// `raw_truncated`, the first 300 KiB of its text as a string (DynamoDB
    /// items are at most 400 KB).
    #[schema(value_type = Value)]
    pub raw: serde_json::Value,
    pub raw_truncated: bool,
}

/// Severity of a finding or notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl From<kopter_schema::messages::Severity> for Severity {
    fn from(s: kopter_schema::messages::Severity) -> Self {
        use kopter_schema::messages::Severity as S;
        match s {
            S::Info => Self::Info,
            S::Warning => Self::Warning,
            S::Critical => Self::Critical,
        }
    }
}

impl From<Severity> for kopter_schema::messages::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => Self::Info,
            Severity::Warning => Self::Warning,
            Severity::Critical => Self::Critical,
        }
    }
}

/// The filters of `GET /v1/findings`, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FindingFilter {
    /// Event time at or after.
    pub since: Option<DateTime<Utc>>,
    /// Event time before.
    pub until: Option<DateTime<Utc>>,
    pub severity: Option<Severity>,
    /// Rule id, e.g. `root-activity`.
    pub rule: Option<String>,
}

/// One security finding: a rule that matched an audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// The finding's notification id (`POST /v1/notifications/{id}/read`).
    pub id: String,
    /// The event time of the record (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// Rule id, e.g. `security-group-open-to-world`.
    pub rule: String,
    pub severity: Severity,
    /// The rule's summary.
    pub title: String,
    /// What happened, by whom, where.
    pub text: String,
    pub account: Option<String>,
    /// URL path of the audit record (`GET /v1/audit/aws/{id}`).
    pub record: Option<String>,
}

/// The filters of `GET /v1/notifications`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotificationFilter {
    /// Only unread notifications.
    pub unread: bool,
}

/// One notification of the tenant's feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Notification id (`POST /v1/notifications/{id}/read`).
    pub id: String,
    /// When the event happened (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// Message kind: `security.finding`, `inventory.changed`,
    /// `backup.failed`, `budget.crossed`, …
    pub kind: String,
    /// The rule it collapses under, e.g. `inventory.instance.terminated`.
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    pub text: String,
    pub account: Option<String>,
    /// `{account}/{region}/{resource id}` of the resource concerned.
    pub resource: Option<String>,
    /// URL path of the audit record it came from, if any.
    pub record: Option<String>,
    pub read: bool,
    /// When it was first marked read (RFC 3339).
    pub read_at: Option<String>,
}

/// What the audit, findings and notification endpoints read and write.
pub trait AuditData {
    /// A page of the tenant's audit log matching `filter`, newest first.
    /// The page key pins the window, so later pages of a defaulted window
    /// ("the last 24 h") stay on the first page's.
    fn audit_events<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a AuditFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<AuditEvent>, DataError>>;

    /// One record of the tenant's audit log; `None` if it has none by
    /// that id.
    fn audit_record<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<Option<AuditRecordDetail>, DataError>>;

    /// A page of the tenant's security findings, newest first.
    fn findings<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a FindingFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Finding>, DataError>>;

    /// A page of the tenant's notifications, newest first.
    fn notifications<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a NotificationFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Notification>, DataError>>;

    /// Marks a notification read (idempotent: the first read time stays).
    /// False if the tenant has no notification by that id.
    fn mark_notification_read<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<bool, DataError>>;
}

/// RFC 3339, UTC, milliseconds: the precision of every sort key.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<&AuditRow> for AuditEvent {
    fn from(r: &AuditRow) -> Self {
        let id = RecordId::of_sort_key(&r.sk);
        Self {
            id: id.encoded(),
            event_id: r.event_id.clone(),
            time: rfc3339(r.event_time),
            account: r.account.to_string(),
            region: r.region.clone(),
            source: r.event_source.clone(),
            event: r.event_name.clone(),
            principal: r.principal_arn.clone(),
            principal_type: r.principal_type.clone(),
            caller_account: r.caller_account.clone(),
            source_ip: r.source_ip.clone(),
            read_only: r.read_only,
            error_code: r.error_code.clone(),
            resources: r.resources.join(" "),
            findings: r.findings.join(","),
            record: id.record_path(),
        }
    }
}

impl From<&AuditRow> for AuditRecordDetail {
    fn from(r: &AuditRow) -> Self {
        // A cut record is not JSON any more; give its text as it is.
        let raw = if r.raw_truncated {
            serde_json::Value::String(r.raw.clone())
        } else {
            serde_json::from_str(&r.raw)
                .unwrap_or_else(|_| serde_json::Value::String(r.raw.clone()))
        };
        Self {
            id: RecordId::of_sort_key(&r.sk).encoded(),
            event_id: r.event_id.clone(),
            time: rfc3339(r.event_time),
            account: r.account.to_string(),
            region: r.region.clone(),
            source: r.event_source.clone(),
            event: r.event_name.clone(),
            principal: r.principal_arn.clone(),
            principal_type: r.principal_type.clone(),
            caller_account: r.caller_account.clone(),
            source_ip: r.source_ip.clone(),
            user_agent: r.user_agent.clone(),
            read_only: r.read_only,
            error_code: r.error_code.clone(),
            resources: r.resources.clone(),
            findings: r.findings.clone(),
            raw,
            raw_truncated: r.raw_truncated,
        }
    }
}

impl From<&FeedRow> for Finding {
    fn from(r: &FeedRow) -> Self {
        Self {
            id: RecordId::of_sort_key(&r.sk).encoded(),
            time: rfc3339(r.at),
            rule: r.rule.clone(),
            severity: r.severity.into(),
            title: r.title.clone(),
            text: r.text.clone(),
            account: r.account.as_ref().map(ToString::to_string),
            record: r
                .audit
                .as_ref()
                .map(|a| RecordId::of_sort_key(&a.sk).record_path()),
        }
    }
}

impl From<&FeedRow> for Notification {
    fn from(r: &FeedRow) -> Self {
        Self {
            id: RecordId::of_sort_key(&r.sk).encoded(),
            time: rfc3339(r.at),
            kind: r.kind.clone(),
            rule: r.rule.clone(),
            severity: r.severity.into(),
            title: r.title.clone(),
            text: r.text.clone(),
            account: r.account.as_ref().map(ToString::to_string),
            resource: r.resource.clone(),
            record: r
                .audit
                .as_ref()
                .map(|a| RecordId::of_sort_key(&a.sk).record_path()),
            read: !r.unread(),
            read_at: r.read_at.map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_round_trip_and_refuse_what_is_not_a_sort_key() {
        let sk = "2026-11-29T10:00:00.123Z#0f2c1e3a-7d1b-4a4b-9d52-6a2b1f0e9c11";
        let id = RecordId::of_sort_key(sk);
        let back = RecordId::parse(&id.encoded()).unwrap();
        assert_eq!(back.sort_key(), sk);
        assert!(id.record_path().starts_with("/v1/audit/aws/"));
        for bad in [
            "",
            "not base64 !",
            &URL_SAFE_NO_PAD.encode("no-time#e1"),
            &URL_SAFE_NO_PAD.encode("2026-11-29T10:00:00.123Z#"),
            &URL_SAFE_NO_PAD.encode("2026-11-29T10:00:00.123Z"),
            &URL_SAFE_NO_PAD.encode("2026-11-29T10:00:00.123Z#a\nb"),
            &"A".repeat(MAX_ID_BYTES + 1),
        ] {
            assert!(RecordId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
