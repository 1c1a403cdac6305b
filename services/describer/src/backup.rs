//! Scheduled EBS backups (the talk's 12-hourly "backup-job").
//!
//! Per tenant, a [`BackupPolicy`] (accounts table, the tenant's `_tenant`
//! row, attribute `backup_policy`; defaults when absent) selects instances
//! by tag. For each selected instance's EBS volumes, at most one snapshot
//! per volume per interval slot:
//!
//! 1. claim `{tenant}#backup#{account}:{region}:{volume}:{slot}` in the
//!    dedup table (conditional put) *before* `CreateSnapshot`;
//! 2. a claim that already names its snapshot means done; a fresh claim
//!    without one means another worker is on it (retry later); a stale one
//!    (a crash between claim and create) is resolved by looking the
//!    snapshot up by its `kopter:volume`/`kopter:slot` tags;
//! 3. `CreateSnapshot` tags the snapshot at creation with the volume's
//!    tags plus `kopter:managed=true`, `kopter:volume`, `kopter:instance`,
//!    `kopter:slot`; the result is stored in the claim and the
//!    `ec2-snapshots` table.
//!
//! Retention deletes only snapshots tagged `kopter:managed=true` (checked
//! on the snapshot itself, not only in the query), keeping per volume the
//! newest `keep_count` and/or those younger than `keep_for`, and never the
//! newest one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use chrono::{DateTime, Utc};
use kopter_runtime::HandlerError;
use kopter_runtime::dynamo;
use kopter_runtime::messaging::envelope;
use kopter_schema::items::{AccountRecord, TENANT_SETTINGS_SK, keys};
use kopter_schema::messages::{AccountRegion, BackupFailed};
use kopter_schema::{AccountId, Message, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::describe::Describer;
use crate::ec2::{self, AccountError, classify};
use crate::rows::{fixed_time, now_ms};

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
    #[serde(with = "crate::rows::fixed")]
    pub created_at: DateTime<Utc>,
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    pub snapshot_id: String,
    pub volume_id: String,
    pub instance_id: String,
    #[serde(with = "crate::rows::fixed")]
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
        with = "crate::rows::fixed_opt"
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

enum Claim {
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

    fn claim_key(
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

    async fn claim(
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

    async fn complete(&self, key: &str, snapshot_id: &str) -> anyhow::Result<()> {
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

    async fn release(&self, key: &str) -> anyhow::Result<()> {
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

    async fn mark_deleted(&self, pk: &str, sk: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
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

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

impl Describer {
    /// `backup.run`: one account and region.
    pub async fn backup(&self, target: &AccountRegion) -> Result<BackupReport, HandlerError> {
        let Some(record) = self
            .accounts
            .get(&target.tenant, &target.account)
            .await
            .map_err(HandlerError::retry)?
        else {
            return Ok(BackupReport {
                skipped: Some("account not onboarded".into()),
                ..Default::default()
            });
        };
        if !record.regions.is_empty() && !record.regions.contains(&target.region) {
            return Ok(BackupReport {
                skipped: Some(format!(
                    "region {} not chosen for the account",
                    target.region
                )),
                ..Default::default()
            });
        }
        let policy = self
            .backups
            .policy(&target.tenant)
            .await
            .map_err(HandlerError::retry)?;
        if !policy.enabled {
            return Ok(BackupReport {
                skipped: Some("backups disabled by the tenant's policy".into()),
                ..Default::default()
            });
        }
        let _permit = self.permit(&target.account).await;
        let mut report = BackupReport::default();
        match self
            .backup_inner(&record, &target.region, &policy, &mut report)
            .await
        {
            Ok(()) => {}
            Err(AccountError::Denied(reason)) => {
                let reason = format!("{}: {reason}", target.region);
                self.record_denied(&record, &reason).await?;
                report.denied = Some(reason);
                return Ok(report);
            }
            Err(AccountError::Transient(e)) => return Err(HandlerError::retry(e)),
        }
        for (volume, reason) in report.failed.iter().chain(&report.delete_failed) {
            let env = envelope(Message::BackupFailed(BackupFailed {
                tenant: record.tenant_id.clone(),
                account: record.account_id.clone(),
                region: target.region.clone(),
                resource_id: volume.clone(),
                reason: reason.clone(),
                at: now_ms(),
            }));
            self.outbox
                .publish(&env)
                .await
                .map_err(HandlerError::retry)?;
        }
        let n_create_failures = report.failed.len();
        if n_create_failures > 0 {
            // Volumes done are claimed; a redelivery retries the others.
            return Err(HandlerError::retry(anyhow::anyhow!(
                "{n_create_failures} volume(s) of {} in {} not backed up: {}",
                record.account_id,
                target.region,
                report.failed[0].1
            )));
        }
        Ok(report)
    }

    async fn backup_inner(
        &self,
        record: &AccountRecord,
        region: &str,
        policy: &BackupPolicy,
        report: &mut BackupReport,
    ) -> Result<(), AccountError> {
        let ec2 = self
            .access
            .ec2(&kopter_runtime::CustomerRole::from(record), region)
            .await?;
        let now = now_ms();
        let slot = policy.slot(now);
        let slot_end =
            slot + chrono::Duration::from_std(policy.interval).expect("validated interval");

        // Selected instances and their volumes.
        let pages: Vec<_> = ec2
            .describe_instances()
            .filters(filter(
                &format!("tag:{}", policy.tag_key),
                &[&policy.tag_value],
            ))
            .filters(filter(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped"],
            ))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        let mut volume_instance: BTreeMap<String, String> = BTreeMap::new();
        for page in &pages {
            for r in page.reservations() {
                for i in r.instances() {
                    // The filter is the selector; check it on the result too.
                    let selected = i.tags().iter().any(|t| {
                        t.key() == Some(policy.tag_key.as_str())
                            && t.value() == Some(policy.tag_value.as_str())
                    });
                    let Some(iid) = i.instance_id().filter(|_| selected) else {
                        continue;
                    };
                    for v in ec2::instance_fields(i).volume_ids {
                        volume_instance.insert(v, iid.to_owned());
                    }
                }
            }
        }
        report.volumes = volume_instance.len();
        let ids: BTreeSet<String> = volume_instance.keys().cloned().collect();
        let volumes: HashMap<String, crate::rows::Resource> =
            ec2::volumes(&ec2, Some(&ids)).await?.into_iter().collect();

        for (volume, instance) in &volume_instance {
            let key =
                BackupStore::claim_key(&record.tenant_id, &record.account_id, region, volume, slot);
            let expires = slot_end + chrono::Duration::days(2);
            let claim = self.backups.claim(&key, now, expires).await?;
            let existing = match claim {
                Claim::Done(id) => {
                    report.already += 1;
                    tracing::debug!(%volume, snapshot = %id, "already backed up in this slot");
                    continue;
                }
                Claim::Busy => {
                    return Err(AccountError::Transient(anyhow::anyhow!(
                        "volume {volume}: another worker is backing it up; retry later"
                    )));
                }
                Claim::New => None,
                Claim::Stale => find_slot_snapshot(&ec2, &record.account_id, volume, slot).await?,
            };
            let volume_tags = match volumes.get(volume) {
                Some(crate::rows::Resource::Volume(v)) => v.tags.clone(),
                _ => BTreeMap::new(),
            };
            let snapshot = match existing {
                Some(s) => s,
                None => {
                    let mut tags: Vec<Tag> = volume_tags
                        .iter()
                        .filter(|(k, _)| !k.starts_with("aws:") && !k.starts_with("kopter:"))
                        .map(|(k, v)| tag(k, v))
                        .collect();
                    tags.push(tag(MANAGED_TAG, "true"));
                    tags.push(tag(VOLUME_TAG, volume));
                    tags.push(tag(INSTANCE_TAG, instance));
                    tags.push(tag(SLOT_TAG, &fixed_time(slot)));
                    let res = ec2
                        .create_snapshot()
                        .volume_id(volume)
                        .description(format!(
                            "Kopter backup of {volume} ({instance}), slot {}",
                            fixed_time(slot)
                        ))
                        .tag_specifications(
                            TagSpecification::builder()
                                .resource_type(ResourceType::Snapshot)
                                .set_tags(Some(tags))
                                .build(),
                        )
                        .send()
                        .await;
                    match res {
                        Ok(out) => SnapshotInfo {
                            id: out.snapshot_id().unwrap_or_default().to_owned(),
                            state: out.state().map_or("pending", |s| s.as_str()).to_owned(),
                            size: i64::from(out.volume_size().unwrap_or(0)),
                            start: out
                                .start_time()
                                .and_then(|t| DateTime::from_timestamp(t.secs(), 0))
                                .unwrap_or(now),
                            tags: tag_map(out.tags()),
                        },
                        Err(e) => {
                            let err = classify("CreateSnapshot", e);
                            self.backups.release(&key).await?;
                            match err {
                                AccountError::Denied(r) => return Err(AccountError::Denied(r)),
                                AccountError::Transient(e) => {
                                    report.failed.push((volume.clone(), format!("{e:#}")));
                                    continue;
                                }
                            }
                        }
                    }
                }
            };
            self.backups.complete(&key, &snapshot.id).await?;
            self.backups
                .put_snapshot(&SnapshotRow {
                    pk: keys::tenant_account(&record.tenant_id, &record.account_id),
                    sk: format!("{region}#{}", snapshot.id),
                    volume_key: keys::tenant_resource(&record.tenant_id, volume),
                    created_at: snapshot.start,
                    tenant: record.tenant_id.clone(),
                    account: record.account_id.clone(),
                    region: region.to_owned(),
                    snapshot_id: snapshot.id.clone(),
                    volume_id: volume.clone(),
                    instance_id: instance.clone(),
                    slot,
                    state: snapshot.state,
                    volume_size_gib: snapshot.size,
                    managed: true,
                    tags: snapshot.tags,
                    deleted_at: None,
                })
                .await?;
            report.created.push(snapshot.id);
        }

        self.retention(&ec2, record, region, policy, now, report)
            .await
    }

    async fn retention(
        &self,
        ec2: &aws_sdk_ec2::Client,
        record: &AccountRecord,
        region: &str,
        policy: &BackupPolicy,
        now: DateTime<Utc>,
        report: &mut BackupReport,
    ) -> Result<(), AccountError> {
        let managed = managed_snapshots(ec2, &record.account_id).await?;
        let mut by_volume: BTreeMap<String, Vec<(String, DateTime<Utc>)>> = BTreeMap::new();
        for s in &managed {
            by_volume
                .entry(s.volume.clone())
                .or_default()
                .push((s.id.clone(), s.start));
        }
        let pk = keys::tenant_account(&record.tenant_id, &record.account_id);
        for snaps in by_volume.values() {
            for id in policy.expired(now, snaps) {
                match ec2.delete_snapshot().snapshot_id(&id).send().await {
                    Ok(_) => {
                        self.backups
                            .mark_deleted(&pk, &format!("{region}#{id}"), now)
                            .await?;
                        report.deleted.push(id);
                    }
                    Err(e) => match classify("DeleteSnapshot", e) {
                        AccountError::Denied(r) => return Err(AccountError::Denied(r)),
                        // e.g. in use by an AMI: reported, not retried.
                        AccountError::Transient(e) => {
                            report.delete_failed.push((id, format!("{e:#}")))
                        }
                    },
                }
            }
        }
        Ok(())
    }
}

struct SnapshotInfo {
    id: String,
    state: String,
    size: i64,
    start: DateTime<Utc>,
    tags: BTreeMap<String, String>,
}

struct Managed {
    id: String,
    volume: String,
    start: DateTime<Utc>,
}

/// Kopter-managed snapshots of the account: queried by tag, and the tag
/// checked again on each result before anything may be deleted.
async fn managed_snapshots(
    ec2: &aws_sdk_ec2::Client,
    account: &AccountId,
) -> Result<Vec<Managed>, AccountError> {
    let pages: Vec<_> = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(&format!("tag:{MANAGED_TAG}"), &["true"]))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify("DescribeSnapshots", e))?;
    let mut out = Vec::new();
    for page in pages {
        for s in page.snapshots() {
            let tags = tag_map(s.tags());
            let owned = s.owner_id().is_none_or(|o| o == account.as_str());
            if !owned || tags.get(MANAGED_TAG).map(String::as_str) != Some("true") {
                continue;
            }
            let (Some(id), Some(start)) = (s.snapshot_id(), s.start_time()) else {
                continue;
            };
            let volume = tags
                .get(VOLUME_TAG)
                .cloned()
                .or_else(|| s.volume_id().map(str::to_owned))
                .unwrap_or_default();
            out.push(Managed {
                id: id.to_owned(),
                volume,
                start: DateTime::from_timestamp(start.secs(), 0).unwrap_or(DateTime::UNIX_EPOCH),
            });
        }
    }
    Ok(out)
}

/// The managed snapshot of a volume for a slot, if a crashed attempt made
/// one.
async fn find_slot_snapshot(
    ec2: &aws_sdk_ec2::Client,
    account: &AccountId,
    volume: &str,
    slot: DateTime<Utc>,
) -> Result<Option<SnapshotInfo>, AccountError> {
    let out = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(&format!("tag:{VOLUME_TAG}"), &[volume]))
        .filters(filter(&format!("tag:{SLOT_TAG}"), &[&fixed_time(slot)]))
        .send()
        .await
        .map_err(|e| classify("DescribeSnapshots", e))?;
    Ok(out
        .snapshots()
        .iter()
        .filter(|s| s.owner_id().is_none_or(|o| o == account.as_str()))
        .find_map(|s| {
            let f = ec2::snapshot_fields(s);
            let tags = tag_map(s.tags());
            (tags.get(MANAGED_TAG).map(String::as_str) == Some("true")).then(|| SnapshotInfo {
                id: s.snapshot_id().unwrap_or_default().to_owned(),
                state: f.state,
                size: f.volume_size_gib,
                start: f.start_time,
                tags,
            })
        }))
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
