//! Versioned message contracts between services.
//!
//! Every message on a Kopter queue or the `kopter-events` topic is one JSON
//! [`Envelope`]:
//!
//! ```json
//! {"v": 1, "id": "0190…", "sent_at": "2026-11-26T12:00:00Z",
//!  "kind": "describe.account", "body": {"tenant": "acme", …}}
//! ```
//!
//! `v` is the contract version of the envelope and all bodies. A reader
//! rejects a version it does not know with [`ContractError::UnsupportedVersion`]
//! rather than guessing; an unknown `kind` is [`ContractError::UnknownKind`].
//! Both are permanent: the message goes to the DLQ with that reason logged.
//! Adding an optional body field is compatible; renaming or retyping one
//! needs a new version.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, TenantId};

pub const CONTRACT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// Unique per logical message; retries and redeliveries keep it, so it
    /// is the idempotency key for work that has no natural one.
    pub id: String,
    pub sent_at: DateTime<Utc>,
    #[serde(flatten)]
    pub message: Message,
}

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("message body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("message is not a Kopter envelope: missing {0:?}")]
    NotEnvelope(&'static str),
    #[error(
        "unsupported contract version {version} for kind {kind:?} (this build reads v{CONTRACT_VERSION})"
    )]
    UnsupportedVersion { kind: String, version: u64 },
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("invalid {kind:?} message: {source}")]
    Invalid {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Envelope {
    pub fn new(id: impl Into<String>, sent_at: DateTime<Utc>, message: Message) -> Self {
        Self {
            v: CONTRACT_VERSION,
            id: id.into(),
            sent_at,
            message,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelopes always serialize")
    }

    /// Decodes a queue message body, checking the version before the body.
    pub fn decode(body: &str) -> Result<Self, ContractError> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(ContractError::NotJson)?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or(ContractError::NotEnvelope("kind"))?
            .to_owned();
        let version = value
            .get("v")
            .and_then(|v| v.as_u64())
            .ok_or(ContractError::NotEnvelope("v"))?;
        if version != u64::from(CONTRACT_VERSION) {
            return Err(ContractError::UnsupportedVersion { kind, version });
        }
        if !Message::KINDS.contains(&kind.as_str()) {
            return Err(ContractError::UnknownKind(kind));
        }
        serde_json::from_value(value).map_err(|source| ContractError::Invalid { kind, source })
    }
}

/// Every message kind. The serde tag is the wire `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body")]
pub enum Message {
    /// Schedule: fan out one `describe.account` per account × enabled region.
    #[serde(rename = "describe.sweep")]
    DescribeSweep(Sweep),
    #[serde(rename = "describe.account")]
    DescribeAccount(AccountRegion),
    /// From trail-ingest: re-describe just these resources.
    #[serde(rename = "describe.targeted")]
    DescribeTargeted(TargetedDescribe),
    /// Schedule: fan out one `backup.run` per account × enabled region.
    #[serde(rename = "backup.sweep")]
    BackupSweep(Sweep),
    #[serde(rename = "backup.run")]
    BackupRun(AccountRegion),
    /// Schedule: list every connected organization's accounts, onboard
    /// new active ones, pause suspended or closed ones.
    #[serde(rename = "describe.org_discovery")]
    OrgDiscovery(Sweep),
    #[serde(rename = "pricing.refresh_all")]
    PricingRefreshAll(Sweep),
    #[serde(rename = "pricing.refresh_region")]
    PricingRefreshRegion(RegionOnly),
    #[serde(rename = "pricing.refresh_spot")]
    PricingRefreshSpot(SpotRefresh),
    /// Schedule: compute the hour ending at `hour` (and `backfill_hours`
    /// before it) for every tenant, or one tenant.
    #[serde(rename = "aggregate.hour")]
    AggregateHour(AggregateHour),
    #[serde(rename = "notify.daily_digest")]
    DailyDigest(DailyDigest),
    /// The notifier to itself, delayed to the end of a burst window:
    /// deliver the collapsed burst.
    #[serde(rename = "notify.burst_flush")]
    BurstFlush(BurstFlush),

    // Events on the `kopter-events` topic.
    #[serde(rename = "inventory.changed")]
    InventoryChanged(InventoryChanged),
    #[serde(rename = "prices.updated")]
    PricesUpdated(PricesUpdated),
    #[serde(rename = "security.finding")]
    SecurityFinding(SecurityFinding),
    #[serde(rename = "backup.failed")]
    BackupFailed(BackupFailed),
    #[serde(rename = "budget.crossed")]
    BudgetCrossed(BudgetCrossed),
    #[serde(rename = "cost.spike")]
    CostSpike(CostSpike),
    #[serde(rename = "account.health")]
    AccountHealth(AccountHealth),
    #[serde(rename = "account.org_change")]
    OrgAccountChanged(OrgAccountChanged),
    #[serde(rename = "waste.finding")]
    WasteFinding(WasteFinding),
}

impl Message {
    pub const KINDS: &'static [&'static str] = &[
        "describe.sweep",
        "describe.account",
        "describe.targeted",
        "backup.sweep",
        "backup.run",
        "describe.org_discovery",
        "pricing.refresh_all",
        "pricing.refresh_region",
        "pricing.refresh_spot",
        "aggregate.hour",
        "notify.daily_digest",
        "notify.burst_flush",
        "inventory.changed",
        "prices.updated",
        "security.finding",
        "backup.failed",
        "budget.crossed",
        "cost.spike",
        "account.health",
        "account.org_change",
        "waste.finding",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Message::DescribeSweep(_) => "describe.sweep",
            Message::DescribeAccount(_) => "describe.account",
            Message::DescribeTargeted(_) => "describe.targeted",
            Message::BackupSweep(_) => "backup.sweep",
            Message::BackupRun(_) => "backup.run",
            Message::OrgDiscovery(_) => "describe.org_discovery",
            Message::PricingRefreshAll(_) => "pricing.refresh_all",
            Message::PricingRefreshRegion(_) => "pricing.refresh_region",
            Message::PricingRefreshSpot(_) => "pricing.refresh_spot",
            Message::AggregateHour(_) => "aggregate.hour",
            Message::DailyDigest(_) => "notify.daily_digest",
            Message::BurstFlush(_) => "notify.burst_flush",
            Message::InventoryChanged(_) => "inventory.changed",
            Message::PricesUpdated(_) => "prices.updated",
            Message::SecurityFinding(_) => "security.finding",
            Message::BackupFailed(_) => "backup.failed",
            Message::BudgetCrossed(_) => "budget.crossed",
            Message::CostSpike(_) => "cost.spike",
            Message::AccountHealth(_) => "account.health",
            Message::OrgAccountChanged(_) => "account.org_change",
            Message::WasteFinding(_) => "waste.finding",
        }
    }

    /// The topic event type, for messages that are published to
    /// `kopter-events` rather than sent to one queue.
    pub fn event_type(&self) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == self.kind())
    }

    /// The tenant a message concerns, if any (for logs; never a metric label).
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Message::DescribeAccount(m) | Message::BackupRun(m) => Some(&m.tenant),
            Message::DescribeTargeted(m) => Some(&m.tenant),
            Message::AggregateHour(m) => m.tenant.as_ref(),
            Message::InventoryChanged(m) => Some(&m.tenant),
            Message::SecurityFinding(m) => Some(&m.tenant),
            Message::BackupFailed(m) => Some(&m.tenant),
            Message::BudgetCrossed(m) => Some(&m.tenant),
            Message::CostSpike(m) => Some(&m.tenant),
            Message::AccountHealth(m) => Some(&m.tenant),
            Message::OrgAccountChanged(m) => Some(&m.tenant),
            Message::WasteFinding(m) => Some(&m.tenant),
            Message::DailyDigest(m) => m.tenant.as_ref(),
            Message::BurstFlush(m) => Some(&m.tenant),
            _ => None,
        }
    }
}

/// Event types published on `kopter-events` (the SNS `event_type` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    DescribeTargeted,
    InventoryChanged,
    PricesUpdated,
    SecurityFinding,
    BackupFailed,
    BudgetCrossed,
    CostSpike,
    AccountHealth,
    OrgAccountChanged,
    WasteFinding,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::DescribeTargeted,
        EventType::InventoryChanged,
        EventType::PricesUpdated,
        EventType::SecurityFinding,
        EventType::BackupFailed,
        EventType::BudgetCrossed,
        EventType::CostSpike,
        EventType::AccountHealth,
        EventType::OrgAccountChanged,
        EventType::WasteFinding,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::DescribeTargeted => "describe.targeted",
            EventType::InventoryChanged => "inventory.changed",
            EventType::PricesUpdated => "prices.updated",
            EventType::SecurityFinding => "security.finding",
            EventType::BackupFailed => "backup.failed",
            EventType::BudgetCrossed => "budget.crossed",
            EventType::CostSpike => "cost.spike",
            EventType::AccountHealth => "account.health",
            EventType::OrgAccountChanged => "account.org_change",
            EventType::WasteFinding => "waste.finding",
        }
    }
}

/// Empty body of schedule fan-out messages (room for options later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRegion {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetedDescribe {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    #[serde(default)]
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub volume_ids: Vec<String>,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionOnly {
    pub region: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotRefresh {
    /// Empty means every region the pricing service knows.
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateHour {
    /// Start of the hour to compute (truncated to the hour by readers).
    pub hour: DateTime<Utc>,
    #[serde(default)]
    pub backfill_hours: u32,
    #[serde(default)]
    pub tenant: Option<TenantId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyDigest {
    /// The day summarised. Accepts `YYYY-MM-DD` or an RFC 3339 timestamp
    /// (its UTC date), which is what EventBridge Scheduler can put in a
    /// message (`<aws.scheduler.scheduled-time>`).
    #[serde(deserialize_with = "date_or_timestamp")]
    pub day: NaiveDate,
    /// Unset: every tenant (the schedule's message, fanned out by the
    /// notifier into one message per tenant). Set: that tenant only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
}

fn date_or_timestamp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    let raw = String::deserialize(d)?;
    if let Ok(day) = NaiveDate::parse_from_str(&raw, "%Y-%m-%d") {
        return Ok(day);
    }
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc).date_naive())
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "day {raw:?} is neither YYYY-MM-DD nor an RFC 3339 time"
            ))
        })
}

/// A burst window of one tenant and rule has ended (see the notifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstFlush {
    pub tenant: TenantId,
    pub rule: String,
    pub window_start: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryChanged {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    /// `instance`, `volume` or `snapshot`.
    pub resource_kind: String,
    /// `launched`, `state_changed`, `type_changed`, `terminated`,
    /// `created`, `deleted`, `resized`, `gone`.
    pub change: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricesUpdated {
    pub region: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityFinding {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub rule: String,
    pub severity: Severity,
    pub event_id: String,
    pub event_name: String,
    pub principal: Option<String>,
    pub at: DateTime<Utc>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailed {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetCrossed {
    pub tenant: TenantId,
    /// `YYYY-MM`.
    pub month: String,
    pub threshold_percent: u32,
    pub budget: f64,
    pub month_to_date: f64,
    pub forecast: f64,
    pub currency: String,
    /// When the crossing was first seen: the end of the hour whose cost
    /// (or forecast) crossed the threshold; the same on every
    /// republication. Absent in messages from before this field (the
    /// notifier then dates them at the month's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSpike {
    pub tenant: TenantId,
    pub account: AccountId,
    pub hour: DateTime<Utc>,
    pub previous: f64,
    pub current: f64,
    pub factor: f64,
    pub currency: String,
}

/// What organization discovery did to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgChange {
    /// A new active account, onboarded with the member role.
    Onboarded,
    /// Suspended, closed or gone from the organization: no longer described.
    Paused,
    /// Active again after a pause.
    Resumed,
}

/// `account.org_change`: one change made by organization discovery, for
/// the tenant's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgAccountChanged {
    pub tenant: TenantId,
    pub account: AccountId,
    /// The organization's management account.
    pub management_account: AccountId,
    pub change: OrgChange,
    /// The account's status in the organization (`ACTIVE`, `SUSPENDED`,
    /// `PENDING_CLOSURE`, or `GONE` when no longer listed).
    pub status: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    pub tenant: TenantId,
    pub account: AccountId,
    pub healthy: bool,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// A waste finding opened or resolved (the aggregator's waste rules;
/// `kopter_store::waste`). Published once per episode and status: the
/// envelope id is `waste:{tenant}:{account}:{resource}:{rule}:{since}:{status}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WasteFinding {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub resource_id: String,
    /// `unattached-volume`, `stopped-instance-volume`, `orphan-snapshot`,
    /// `snapshot-past-retention`, `gp2-to-gp3`, `previous-generation`.
    pub rule: String,
    /// `open` or `resolved`.
    pub status: String,
    /// When the condition began (from the state history).
    pub since: DateTime<Utc>,
    /// USD the resource cost since `since` (priced hours only).
    pub accrued_usd: f64,
    /// Hours since `since` without a price (not counted in `accrued_usd`).
    pub unpriced_hours: u32,
    /// USD per month acting would save; absent when unknown.
    pub monthly_usd: Option<f64>,
    pub action: String,
    pub detail: String,
    /// The end of the evaluated hour that opened or resolved it.
    pub at: DateTime<Utc>,
    /// Why it was resolved (`resource gone`, `condition ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn round_trips_with_kind_and_body() {
        let env = Envelope::new(
            "m1",
            at(),
            Message::DescribeAccount(AccountRegion {
                tenant: TenantId::new("acme").unwrap(),
                account: AccountId::new("111122223333").unwrap(),
                region: "eu-west-1".into(),
            }),
        );
        let json = env.to_json();
        assert!(json.contains(r#""kind":"describe.account""#), "{json}");
        assert!(json.contains(r#""v":1"#));
        assert_eq!(Envelope::decode(&json).unwrap(), env);
    }

    #[test]
    fn kinds_table_matches_variants() {
        // Every listed kind decodes as far as the body (not "unknown kind").
        for kind in Message::KINDS {
            let body = format!(
                r#"{{"v":1,"id":"x","sent_at":"2026-01-01T00:00:00Z","kind":"{kind}","body":{{"bogus":1}}}}"#
            );
            match Envelope::decode(&body) {
                Ok(_) => {}
                Err(ContractError::Invalid { kind: k, .. }) => assert_eq!(&k, kind),
                Err(e) => panic!("{kind}: {e}"),
            }
        }
        for e in EventType::ALL {
            assert!(Message::KINDS.contains(&e.as_str()));
        }
    }

    #[test]
    fn unknown_version_is_rejected_by_name() {
        let err = Envelope::decode(
            r#"{"v":2,"id":"x","sent_at":"2026-01-01T00:00:00Z","kind":"describe.sweep","body":{}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ContractError::UnsupportedVersion { version: 2, .. }
        ));
        assert!(err.to_string().contains("unsupported contract version 2"));
    }

    #[test]
    fn unknown_kind_and_garbage_are_clear() {
        let err = Envelope::decode(r#"{"v":1,"kind":"nope"}"#).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown message kind "nope""#);
        let err = Envelope::decode("{").unwrap_err();
        assert!(err.to_string().starts_with("message body is not JSON"));
        let err = Envelope::decode(r#"{"Type":"Notification"}"#).unwrap_err();
        assert!(err.to_string().contains("missing \"kind\""));
    }

    #[test]
    fn bodies_validate_ids() {
        let err = Envelope::decode(
            r#"{"v":1,"id":"x","sent_at":"2026-01-01T00:00:00Z","kind":"describe.account","body":{"tenant":"acme","account":"12","region":"us-east-1"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("12 digits"), "{err}");
    }

    #[test]
    fn event_types_follow_kinds() {
        let m = Message::PricesUpdated(PricesUpdated {
            region: "us-east-1".into(),
            version: "v1".into(),
        });
        assert_eq!(m.event_type(), Some(EventType::PricesUpdated));
        assert_eq!(Message::DescribeSweep(Sweep {}).event_type(), None);
    }

    #[test]
    fn daily_digest_day_accepts_a_date_or_a_scheduler_timestamp() {
        let d: DailyDigest = serde_json::from_str(r#"{"day":"2026-11-26"}"#).unwrap();
        assert_eq!(d.day, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
        let d: DailyDigest = serde_json::from_str(r#"{"day":"2026-11-26T23:00:00Z"}"#).unwrap();
        assert_eq!(d.day, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
        let d: DailyDigest =
            serde_json::from_str(r#"{"day":"2026-11-27T00:30:00+02:00"}"#).unwrap();
        assert_eq!(d.day, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
        let e = serde_json::from_str::<DailyDigest>(r#"{"day":"yesterday"}"#).unwrap_err();
        assert!(e.to_string().contains("yesterday"), "{e}");
        // Serialised as a plain date.
        let json = serde_json::to_string(&DailyDigest {
            day: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
            tenant: None,
        })
        .unwrap();
        assert_eq!(json, r#"{"day":"2026-01-02"}"#);
    }
}
