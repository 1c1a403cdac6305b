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

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use chrono::{DateTime, Utc};
use kopter_runtime::HandlerError;
use kopter_runtime::messaging::envelope;
use kopter_schema::items::{AccountRecord, keys};
use kopter_schema::messages::{AccountRegion, BackupFailed};
use kopter_schema::{AccountId, Message};

use crate::describe::Describer;
use crate::ec2::{self, AccountError, classify};
use kopter_store::backup::{
    BackupPolicy, BackupReport, BackupStore, Claim, INSTANCE_TAG, MANAGED_TAG, SLOT_TAG,
    SnapshotRow, VOLUME_TAG,
};
use kopter_store::inventory::{fixed_time, now_ms};

impl Describer {
    /// `backup.run`: one account and region.
    pub async fn backup(&self, target: &AccountRegion) -> Result<BackupReport, HandlerError> {
        let Some(record) = self
            .accounts
            .get_for_job(&target.tenant, &target.account)
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
        let volumes: HashMap<String, kopter_store::inventory::Resource> =
            // Only their tags are read here: the zones do not matter.
            ec2::volumes(&ec2, Some(&ids), &crate::zones::Zones::by_name_only(region))
                .await?
                .into_iter()
                .collect();

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
                Some(kopter_store::inventory::Resource::Volume(v)) => v.tags.clone(),
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
