//! A tenant's settings and accounts: delivery channels (`/v1/channels`),
//! the EBS backup policy (`/v1/backup-policy`) and the onboarded AWS
//! accounts with their health (`/v1/accounts`).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_schema::messages::Severity;
use kopter_store::backup::BackupPolicy;
use kopter_store::channels::{Channel, ChannelUpdate, TenantChannels};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{DataError, Page, PageRequest};

/// A tenant's delivery channels as the api shows them. The webhook URL is
/// a credential (Slack-style URLs embed their secret), so only its host is
/// shown; set a new one to change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Channels {
    /// Host of the configured webhook (`hooks.slack.com`); absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_host: Option<String>,
    /// Lowest severity sent to the webhook: `info`, `warning` or `critical`.
    #[schema(value_type = String, example = "info")]
    pub webhook_min_severity: Severity,
    /// Email recipients; empty: no email delivery.
    pub email: Vec<String>,
    /// Lowest severity emailed.
    #[schema(value_type = String, example = "warning")]
    pub email_min_severity: Severity,
    /// Whether the daily digest is sent to the channels.
    pub digest: bool,
    /// Channels that failed past their retry limit and are paused until
    /// changed or reset.
    pub failing: Vec<ChannelFailing>,
}

/// A channel marked failing by the notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChannelFailing {
    /// `webhook` or `email`.
    pub channel: String,
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl From<&TenantChannels> for Channels {
    fn from(c: &TenantChannels) -> Self {
        Self {
            webhook_host: c
                .notify_webhook
                .as_ref()
                .and_then(|u| u.url().host_str().map(str::to_owned)),
            webhook_min_severity: c.min_severity(Channel::Webhook),
            email: c.notify_email.clone(),
            email_min_severity: c.min_severity(Channel::Email),
            digest: c.digest(),
            failing: Channel::ALL
                .iter()
                .filter_map(|ch| {
                    c.failing(*ch).map(|f| ChannelFailing {
                        channel: ch.name().to_owned(),
                        reason: f.reason.clone(),
                        since: f.since,
                    })
                })
                .collect(),
        }
    }
}

/// The body of `PUT /v1/channels`: each field present changes that
/// setting, absent ones stay. Changing a channel clears its failing mark.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsUpdate {
    /// A Slack-compatible incoming-webhook URL (`https://`, a public
    /// address); `null` removes the webhook.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    #[schema(value_type = Option<String>, example = "warning")]
    pub webhook_min_severity: Option<Severity>,
    /// Recipients (at most 20); `[]` stops email delivery.
    pub email: Option<Vec<String>>,
    #[schema(value_type = Option<String>, example = "critical")]
    pub email_min_severity: Option<Severity>,
    pub digest: Option<bool>,
    /// Clear the failing marks without changing anything else.
    #[serde(default)]
    pub reset_failing: bool,
}

/// `Some(v)` for a present field, so `null` (`Some(None)`) differs from
/// absent (`None`, by `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The EBS backup policy as the api reads and writes it (durations in
/// humantime: `12h`, `30days`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicyBody {
    pub enabled: bool,
    /// Instances with this tag key and value get their volumes snapshotted.
    pub tag_key: String,
    pub tag_value: String,
    /// One snapshot per volume per interval, at least `1h`.
    #[schema(example = "12h")]
    pub interval: String,
    /// Keep at most this many managed snapshots per volume (≥ 1).
    pub keep_count: Option<u32>,
    /// Delete managed snapshots older than this (`30days`).
    pub keep_for: Option<String>,
}

impl From<&BackupPolicy> for BackupPolicyBody {
    fn from(p: &BackupPolicy) -> Self {
        Self {
            enabled: p.enabled,
            tag_key: p.tag_key.clone(),
            tag_value: p.tag_value.clone(),
            interval: humantime::format_duration(p.interval).to_string(),
            keep_count: p.keep_count,
            keep_for: p
                .keep_for
                .map(|d| humantime::format_duration(d).to_string()),
        }
    }
}

impl BackupPolicyBody {
    /// The stored policy, or which field is wrong and why.
    pub fn to_policy(&self) -> Result<BackupPolicy, (&'static str, String)> {
        let duration = |field: &'static str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| (field, format!("{v:?} is not a duration like 12h: {e}")))
        };
        let tag = |field: &'static str, v: &str| {
            if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
                Err((
                    field,
                    "must be 1 to 128 printable characters (an EC2 tag key)".to_owned(),
                ))
            } else {
                Ok(())
            }
        };
        tag("tag_key", &self.tag_key)?;
        if self.tag_value.chars().count() > 256 || self.tag_value.chars().any(char::is_control) {
            return Err((
                "tag_value",
                "must be at most 256 printable characters".into(),
            ));
        }
        let policy = BackupPolicy {
            enabled: self.enabled,
            tag_key: self.tag_key.clone(),
            tag_value: self.tag_value.clone(),
            interval: duration("interval", &self.interval)?,
            keep_count: self.keep_count,
            keep_for: self
                .keep_for
                .as_deref()
                .map(|v| duration("keep_for", v))
                .transpose()?,
        };
        policy.validate().map_err(|e| ("body", e))?;
        Ok(policy)
    }
}

/// One onboarded AWS account of the tenant and its health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// The 12-digit AWS account id.
    pub account_id: String,
    /// The role Kopter assumes in it.
    pub role_arn: String,
    /// Regions described; empty: every enabled region.
    pub regions: Vec<String>,
    pub onboarded_at: DateTime<Utc>,
    /// `unchecked` until `kopterctl accounts verify` or a describe reached
    /// the role, then `ok` or `failing`.
    pub health: AccountHealth,
    /// Why the account is not described (suspended or closed in its
    /// organization); absent: described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// False while AssumeRole or describes into it fail (true while
    /// `unchecked`).
    pub healthy: bool,
    /// Why it is unhealthy (AWS's error), when it is.
    pub health_reason: Option<String>,
    /// When the describer last tried the account (its last describe).
    pub last_describe_at: Option<DateTime<Utc>>,
    /// Whether a CloudTrail source is configured for it.
    pub trail: bool,
}

/// What is known of Kopter's access to an account. `unchecked` is
/// neither good nor bad news: a new account's role has not been tried
/// yet (the role may not even exist), so it must not count as reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountHealth {
    /// Nothing has tried the role yet (no verify, no describe).
    Unchecked,
    /// The last verify or describe reached the role.
    Ok,
    /// The last verify or describe failed (`health_reason` says why).
    Failing,
}

impl AccountHealth {
    /// The wire name (`unchecked`, `ok`, `failing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Ok => "ok",
            Self::Failing => "failing",
        }
    }
}

/// What the settings endpoints read and write, always for `tenant`.
pub trait SettingsData {
    /// The tenant's channels (defaults when never set).
    fn channels<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<TenantChannels, DataError>>;

    /// Applies a validated change to the tenant's channels.
    fn update_channels<'a>(
        &'a self,
        tenant: &'a TenantId,
        update: &'a ChannelUpdate,
    ) -> BoxFuture<'a, Result<(), DataError>>;

    /// The tenant's backup policy (the default when never set).
    fn backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> BoxFuture<'a, Result<BackupPolicy, DataError>>;

    /// Replaces the tenant's backup policy (already validated).
    fn set_backup_policy<'a>(
        &'a self,
        tenant: &'a TenantId,
        policy: &'a BackupPolicy,
    ) -> BoxFuture<'a, Result<(), DataError>>;

    /// Whether the tenant was created (`kopterctl tenants create`); the
    /// auth extractors refuse a token of a tenant that was not.
    fn tenant_exists<'a>(&'a self, tenant: &'a TenantId) -> BoxFuture<'a, Result<bool, DataError>>;

    /// A page of the tenant's accounts, by account id.
    fn accounts<'a>(
        &'a self,
        tenant: &'a TenantId,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Account>, DataError>>;
}
