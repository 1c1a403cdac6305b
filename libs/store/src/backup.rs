//! The tenant's backup policy (accounts table, the tenant's `_tenant` row,
//! attribute `backup_policy`; defaults when absent), the per-volume
//! backup claims (dedup table) and the `ec2-snapshots` table of snapshots
//! Kopter took. The backup job itself is the describer's.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kopter_runtime::dynamo;
use kopter_schema::items::{TENANT_SETTINGS_SK, keys};
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::inventory::fixed_time;

pub const MANAGED_TAG: &str = "kopter:managed";
pub const VOLUME_TAG: &str = "kopter:volume";
pub const INSTANCE_TAG: &str = "kopter:instance";
pub const SLOT_TAG: &str = "kopter:slot";
/// A claim without a snapshot younger than this is another worker's work
/// in progress; older, it is a crash to recover from.
pub const CLAIM_STALE_AFTER: chrono::Duration = chrono::Duration::minutes(15);

/// A tenant's backup policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupPolicy {
    pub enabled: bool,
    /// Instances with this tag (and value) are backed up.
    pub tag_key: String,
    pub tag_value: String,
    /// One snapshot per volume per interval (slots are aligned to the Unix
    /// epoch: 00:00 and 12:00 UTC for 12 h).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Keep at most this many managed snapshots per volume.
    pub keep_count: Option<u32>,
    /// Delete managed snapshots older than this.
    #[serde(with = "humantime_serde")]
    pub keep_for: Option<Duration>,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            tag_key: "kopter:backup".into(),
            tag_value: "true".into(),
            interval: Duration::from_secs(12 * 3600),
            keep_count: Some(14),
            keep_for: None,
        }
    }
}

impl BackupPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(3600) {
            return Err("backup interval must be at least 1h".into());
        }
        if self.keep_count == Some(0) {
            return Err("keep_count must be at least 1".into());
        }
        if self.keep_count.is_none() && self.keep_for.is_none() {
            return Err("set keep_count and/or keep_for".into());
        }
        if self.tag_key.is_empty() {
            return Err("tag_key must not be empty".into());
        }
        Ok(())
    }

    /// Start of the interval slot that contains `t`.
    pub fn slot(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = self.interval.as_secs().max(1) as i64;
        let start = t.timestamp().div_euclid(secs) * secs;
        DateTime::from_timestamp(start, 0).expect("in range")
    }

    /// Which of one volume's managed snapshots retention deletes, given
    /// `(id, start_time)` pairs. The newest is always kept.
    pub fn expired(
        &self,
        now: DateTime<Utc>,
        snapshots: &[(String, DateTime<Utc>)],
    ) -> Vec<String> {
        let mut sorted: Vec<_> = snapshots.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        sorted
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(i, (_, start))| {
                let over_count = self.keep_count.is_some_and(|k| *i >= k as usize);
                let too_old = self
                    .keep_for
                    .is_some_and(|d| chrono::Duration::from_std(d).is_ok_and(|d| now - *start > d));
                over_count || too_old
            })
            .map(|(_, (id, _))| id.clone())
            .collect()
    }
}

/// One row of the `ec2-snapshots` table: a snapshot Kopter took.
///
/// `pk = {tenant}#{account}`, `sk = {region}#{snapshot_id}`;
/// `volume_key = {tenant}#{volume_id}` and `created_at` (index
/// `by-volume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub pk: String,
    pub sk: String,
    pub volume_key: String,
    #[serde(with = "crate::inventory::fixed")]
    pub created_at: DateTime<Utc>,
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub snapshot_id: String,
    pub volume_id: String,
    pub instance_id: String,
    #[serde(with = "crate::inventory::fixed")]
    pub slot: DateTime<Utc>,
    /// `pending`, `completed`, … as CreateSnapshot reported, or `deleted`.
    pub state: String,
    pub volume_size_gib: i64,
    pub managed: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::inventory::fixed_opt"
    )]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What one `backup.run` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub volumes: usize,
    pub created: Vec<String>,
    pub already: usize,
    /// Volumes whose snapshot could not be created, with the reason.
    pub failed: Vec<(String, String)>,
    pub deleted: Vec<String>,
    /// Expired snapshots that could not be deleted, with the reason.
    pub delete_failed: Vec<(String, String)>,
    pub denied: Option<String>,
    pub skipped: Option<String>,
}

/// Backup policies and claims in DynamoDB.
#[derive(Clone, Debug)]
pub struct BackupStore {
    ddb: aws_sdk_dynamodb::Client,
    accounts: String,
    dedup: String,
    snapshots: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The state of a per-volume, per-slot backup claim (dedup table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: go ahead.
    New,
    /// Done before: the snapshot id.
    Done(String),
    /// Another worker's, recently.
    Busy,
    /// A crash left it without a snapshot.
    Stale,
}

impl BackupStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            accounts: names.table(Table::Accounts),
            dedup: names.table(Table::Dedup),
            snapshots: names.table(Table::Snapshots),
        }
    }

    /// The tenant's policy, or the default.
    pub async fn policy(&self, tenant: &TenantId) -> anyhow::Result<BackupPolicy> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.accounts)
            .key("pk", s(keys::account_pk(tenant)))
            .key("sk", s(TENANT_SETTINGS_SK))
            .projection_expression("backup_policy")
            .send()
            .await
            .with_context(|| format!("read the backup policy of {tenant}"))?;
        match out.item.and_then(|mut i| i.remove("backup_policy")) {
            Some(v) => serde_dynamo::from_attribute_value(v)
                .with_context(|| format!("decode the backup policy of {tenant}")),
            None => Ok(BackupPolicy::default()),
        }
    }

    /// Sets the tenant's policy (other tenant settings are left alone).
    pub async fn set_policy(&self, tenant: &TenantId, policy: &BackupPolicy) -> anyhow::Result<()> {
        policy.validate().map_err(anyhow::Error::msg)?;
        let v: AttributeValue = serde_dynamo::to_attribute_value(policy)?;
        self.ddb
            .update_item()
            .table_name(&self.accounts)
            .key("pk", s(keys::account_pk(tenant)))
            .key("sk", s(TENANT_SETTINGS_SK))
            .update_expression("SET backup_policy = :p")
            .expression_attribute_values(":p", v)
            .send()
            .await
            .with_context(|| format!("store the backup policy of {tenant}"))?;
        Ok(())
    }

    /// The dedup key claiming one volume's backup in one interval slot.
    pub fn claim_key(
        tenant: &TenantId,
        account: &AccountId,
        region: &str,
        volume: &str,
        slot: DateTime<Utc>,
    ) -> String {
        keys::tenant_dedup(
            tenant,
            "backup",
            &format!("{account}:{region}:{volume}:{}", slot.timestamp()),
        )
    }

    /// Claims `key` (conditional put) or reports who holds it.
    pub async fn claim(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        let put = self
            .ddb
            .put_item()
            .table_name(&self.dedup)
            .item("pk", s(key))
            .item("claimed_at", s(fixed_time(now)))
            .item(
                "expires_at",
                AttributeValue::N(expires.timestamp().to_string()),
            )
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Claim::New),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("claim a backup slot")),
        }
        let got = self
            .ddb
            .get_item()
            .table_name(&self.dedup)
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .context("read a backup claim")?
            .item
            .unwrap_or_default();
        if let Some(id) = got.get("snapshot_id").and_then(|v| v.as_s().ok()) {
            return Ok(Claim::Done(id.clone()));
        }
        let claimed_at = got
            .get("claimed_at")
            .and_then(|v| v.as_s().ok())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(match claimed_at {
            Some(t) if now - t < CLAIM_STALE_AFTER => Claim::Busy,
            _ => Claim::Stale,
        })
    }

    /// Records the snapshot a claim produced.
    pub async fn complete(&self, key: &str, snapshot_id: &str) -> anyhow::Result<()> {
        self.ddb
            .update_item()
            .table_name(&self.dedup)
            .key("pk", s(key))
            .update_expression("SET snapshot_id = :s")
            .expression_attribute_values(":s", s(snapshot_id))
            .send()
            .await
            .context("complete a backup claim")?;
        Ok(())
    }

    /// Gives a claim up (CreateSnapshot failed) so a retry can take it.
    pub async fn release(&self, key: &str) -> anyhow::Result<()> {
        self.ddb
            .delete_item()
            .table_name(&self.dedup)
            .key("pk", s(key))
            .condition_expression("attribute_not_exists(snapshot_id)")
            .send()
            .await
            .map(|_| ())
            .or_else(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
                {
                    Ok(())
                } else {
                    Err(anyhow::Error::new(e).context("release a backup claim"))
                }
            })
    }

    pub async fn put_snapshot(&self, row: &SnapshotRow) -> anyhow::Result<()> {
        self.ddb
            .put_item()
            .table_name(&self.snapshots)
            .set_item(Some(serde_dynamo::to_item(row)?))
            .send()
            .await
            .with_context(|| format!("record snapshot {}", row.snapshot_id))?;
        Ok(())
    }

    /// Marks a snapshot row deleted by retention (the row is kept).
    pub async fn mark_deleted(&self, pk: &str, sk: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
        let res = self
            .ddb
            .update_item()
            .table_name(&self.snapshots)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET #s = :d, deleted_at = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":d", s("deleted"))
            .expression_attribute_values(":t", s(fixed_time(at)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Not one this environment recorded: nothing to update.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context("record a deleted snapshot")),
        }
    }

    /// Snapshot rows of an account (for tests and tools).
    pub async fn snapshots(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> anyhow::Result<Vec<SnapshotRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.snapshots)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::tenant_account(tenant, account)));
        dynamo::query_all(q, &format!("the snapshots of {tenant}/{account}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_aligned_to_the_interval() {
        let p = BackupPolicy::default();
        assert_eq!(p.slot(t("2024-03-01T11:59:59Z")), t("2024-03-01T00:00:00Z"));
        assert_eq!(p.slot(t("2024-03-01T12:00:00Z")), t("2024-03-01T12:00:00Z"));
        assert_eq!(p.slot(t("2024-03-01T23:00:00Z")), t("2024-03-01T12:00:00Z"));
    }

    #[test]
    fn retention_by_count_and_age_keeps_the_newest() {
        let now = t("2024-03-10T00:00:00Z");
        let snaps: Vec<(String, DateTime<Utc>)> = (0..5)
            .map(|d| (format!("snap-{d}"), now - chrono::Duration::days(d)))
            .collect();
        let by_count = BackupPolicy {
            keep_count: Some(2),
            keep_for: None,
            ..Default::default()
        };
        assert_eq!(
            by_count.expired(now, &snaps),
            ["snap-2", "snap-3", "snap-4"]
        );
        let by_age = BackupPolicy {
            keep_count: None,
            keep_for: Some(Duration::from_secs(3 * 86400 + 1)),
            ..Default::default()
        };
        assert_eq!(by_age.expired(now, &snaps), ["snap-4"]);
        let both = BackupPolicy {
            keep_count: Some(4),
            keep_for: Some(Duration::from_secs(86400 + 1)),
            ..Default::default()
        };
        assert_eq!(both.expired(now, &snaps), ["snap-2", "snap-3", "snap-4"]);
        // Everything old: the newest still stays.
        let ancient: Vec<_> = snaps
            .iter()
            .map(|(id, t)| (id.clone(), *t - chrono::Duration::days(100)))
            .collect();
        assert_eq!(by_age.expired(now, &ancient).len(), 4);
    }

    #[test]
    fn policies_validate_and_round_trip() {
        let p = BackupPolicy::default();
        p.validate().unwrap();
        let v: AttributeValue = serde_dynamo::to_attribute_value(&p).unwrap();
        let back: BackupPolicy = serde_dynamo::from_attribute_value(v).unwrap();
        assert_eq!(back, p);
        let bad = BackupPolicy {
            keep_count: None,
            keep_for: None,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let partial: BackupPolicy = serde_json::from_str(r#"{"interval":"6h"}"#).unwrap();
        assert_eq!(partial.interval, Duration::from_secs(6 * 3600));
        assert_eq!(partial.tag_key, "kopter:backup");
    }
}
