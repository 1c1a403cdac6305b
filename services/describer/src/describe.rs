//! The describer's jobs: sweeps (fan-out), describing one account and
//! region (whole or targeted), and what happens when an account refuses us.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;
use kopter_runtime::accounts::AccountStore;
use kopter_runtime::messaging::{Outbox, envelope};
use kopter_runtime::{BoxFuture, CredentialCache, CustomerRole, HandlerError, metrics};
use kopter_schema::items::{AccountRecord, keys};
use kopter_schema::messages::{AccountHealth, AccountRegion, InventoryChanged, TargetedDescribe};
use kopter_schema::{AccountId, Message, Service};
use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};
use tokio::sync::Semaphore;

use crate::diff::{DiffContext, Scope, diff, digest_valid_until, observed_digest};
use crate::ec2::{self, AccountError};
use crate::zones::{self, Zones};
use kopter_store::inventory::Write;
use kopter_store::inventory::{Conflict, InventoryStore};
use kopter_store::inventory::{EventRow, InventoryRow, ResourceKind, inventory_sk, now_ms};

pub(crate) struct DescriberMetrics {
    pub jobs: IntCounterVec,
    pub changes: IntCounterVec,
    pub accounts: IntCounterVec,
    /// `kopter_describer_last_sweep_timestamp_seconds{sweep=describe|backup}`
    pub last_sweep: GaugeVec,
    /// `kopter_describer_sweep_accounts{sweep,state=ok|denied|transient}`
    pub sweep_accounts: IntGaugeVec,
    /// `kopter_describer_conflict_retries_total`
    pub conflict_retries: IntCounter,
    pub digests: IntCounterVec,
}

/// Describes of one region per message, counting the first, when inventory
/// writes keep losing races to a concurrent describe; after the last, the
/// message goes back to the queue like any other transient failure.
const CONFLICT_ATTEMPTS: u32 = 3;

pub(crate) fn m() -> &'static DescriberMetrics {
    static M: LazyLock<DescriberMetrics> = LazyLock::new(|| {
        DescriberMetrics {
        jobs: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_describer_jobs_total",
                    "Describer jobs by kind (sweep, account, targeted, backup) and outcome.",
                ),
                // Not `job`: Prometheus reserves that label for the scrape job.
                &["kind", "outcome"],
            )
            .expect("valid metric"),
        ),
        changes: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_describer_changes_total",
                    "History rows written, by resource kind and change.",
                ),
                &["kind", "change"],
            )
            .expect("valid metric"),
        ),
        accounts: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_describer_account_failures_total",
                    "Accounts that failed a job, by cause (denied = marked unhealthy, transient).",
                ),
                &["cause"],
            )
            .expect("valid metric"),
        ),
        last_sweep: metrics::register(
            GaugeVec::new(
                Opts::new(
                    "kopter_describer_last_sweep_timestamp_seconds",
                    "Unix time the last sweep finished sending its per-account jobs.",
                ),
                &["sweep"],
            )
            .expect("valid metric"),
        ),
        sweep_accounts: metrics::register(
            IntGaugeVec::new(
                Opts::new(
                    "kopter_describer_sweep_accounts",
                    "Accounts in the last sweep by state (ok, denied = unhealthy, transient = skipped).",
                ),
                &["sweep", "state"],
            )
            .expect("valid metric"),
        ),
        digests: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_describer_region_digests_total",
                    "Region describe digests by outcome: unchanged (the inventory read was skipped), stored, raced (not stored: another describe wrote meanwhile), store_failed, read_failed (the inventory was read), invalidated (a describe wrote changed rows).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        ),
        conflict_retries: metrics::register(
            IntCounter::new(
                "kopter_describer_conflict_retries_total",
                "Region describes repeated in process because an inventory write lost a race to a concurrent describe.",
            )
            .expect("valid metric"),
        ),
    }
    });
    &M
}

/// How the describer enters a customer account. The real one assumes the
/// role through the runtime's credential cache; tests wrap it to simulate
/// refusals that moto does not produce.
pub trait AccountAccess: Send + Sync {
    fn ec2<'a>(
        &'a self,
        role: &'a CustomerRole,
        region: &'a str,
    ) -> BoxFuture<'a, Result<aws_sdk_ec2::Client, AccountError>>;
}

/// `sts:AssumeRole` (with the account's ExternalId) via [`CredentialCache`],
/// an EC2 client with its own adaptive-retry partition per account and
/// region, sharing the process's HTTP client.
pub struct AssumedRoles {
    pub base: SdkConfig,
    pub credentials: CredentialCache,
}

impl AccountAccess for AssumedRoles {
    fn ec2<'a>(
        &'a self,
        role: &'a CustomerRole,
        region: &'a str,
    ) -> BoxFuture<'a, Result<aws_sdk_ec2::Client, AccountError>> {
        Box::pin(async move {
            let sdk = self
                .credentials
                .sdk_config(&self.base, role, region)
                .await?;
            Ok(kopter_runtime::aws::ec2_client_for_account(
                &sdk,
                &role.account,
            ))
        })
    }
}

/// Settings of the describer (from `describer.*` in the config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Jobs of one account running at once in this process.
    pub account_concurrency: usize,
    /// Accounts a sweep resolves at once.
    pub sweep_concurrency: usize,
    /// Inventory writes at once per job.
    pub write_concurrency: usize,
    /// Region used for `DescribeRegions` when the account chose none.
    pub home_region: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            account_concurrency: 2,
            sweep_concurrency: 16,
            write_concurrency: 16,
            home_region: "us-east-1".into(),
        }
    }
}

/// What the describer needs; cheap to clone.
#[derive(Clone)]
pub struct Describer {
    /// Connected organizations (`describe.org_discovery`).
    pub orgs: kopter_runtime::org::Organizations,
    pub store: InventoryStore,
    pub backups: kopter_store::backup::BackupStore,
    pub accounts: AccountStore,
    pub access: Arc<dyn AccountAccess>,
    pub outbox: Outbox,
    pub sqs: aws_sdk_sqs::Client,
    pub settings: Settings,
    /// One semaphore per account seen recently (idle ones are dropped).
    pub permits: moka::future::Cache<AccountId, Arc<Semaphore>>,
    /// Each account-region's zones ([`zones::read`]), kept for
    /// [`zones::ZONES_TTL`].
    pub zones: moka::future::Cache<(AccountId, String), Arc<Zones>>,
}

/// The per account-region zones: bounded, expiring.
pub fn zone_cache() -> moka::future::Cache<(AccountId, String), Arc<Zones>> {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(zones::ZONES_TTL)
        .build()
}

/// The per-account semaphores: bounded, idle entries evicted.
pub fn permit_cache() -> moka::future::Cache<AccountId, Arc<Semaphore>> {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(600))
        .build()
}

/// What a describe of one account and region did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DescribeReport {
    pub observed: usize,
    pub written: usize,
    pub events: Vec<(String, String)>,
    /// The account refused us; recorded as unhealthy.
    pub denied: Option<String>,
    /// The job did nothing (unknown account, region not chosen).
    pub skipped: Option<String>,
}

/// Which jobs a sweep fans out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKind {
    Describe,
    Backup,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub accounts: usize,
    pub jobs: usize,
    pub denied: usize,
    pub transient: usize,
}

fn role(a: &AccountRecord) -> CustomerRole {
    CustomerRole::from(a)
}

impl Describer {
    pub(crate) async fn permit(&self, account: &AccountId) -> tokio::sync::OwnedSemaphorePermit {
        let n = self.settings.account_concurrency.max(1);
        let sem = self
            .permits
            .get_with_by_ref(account, async { Arc::new(Semaphore::new(n)) })
            .await;
        sem.acquire_owned().await.expect("never closed")
    }

    /// Records a refusal: the account is marked unhealthy with the reason
    /// and time, and an `account.health` event is published when the
    /// health changes (published first, so a crash in between repeats the
    /// event rather than losing it).
    pub async fn record_denied(
        &self,
        account: &AccountRecord,
        reason: &str,
    ) -> Result<(), HandlerError> {
        m().accounts.with_label_values(&["denied"]).inc();
        tracing::warn!(tenant = %account.tenant_id, account = %account.account_id, %reason,
            "account refused access; marked unhealthy");
        self.set_health(account, false, Some(reason)).await
    }

    async fn set_health(
        &self,
        account: &AccountRecord,
        healthy: bool,
        reason: Option<&str>,
    ) -> Result<(), HandlerError> {
        let changed = account.healthy != healthy || account.health_reason.as_deref() != reason;
        let at = now_ms();
        if changed {
            let env = envelope(Message::AccountHealth(AccountHealth {
                tenant: account.tenant_id.clone(),
                account: account.account_id.clone(),
                healthy,
                reason: reason.map(str::to_owned),
                at,
            }));
            self.outbox
                .publish(&env)
                .await
                .map_err(HandlerError::retry)?;
        }
        self.store
            .set_health(&account.tenant_id, &account.account_id, healthy, reason, at)
            .await
            .map_err(HandlerError::retry)
    }

    /// `describe.org_discovery`: every connected organization in turn, in
    /// this one message. A refusal (the customer's role changed) is logged
    /// and the next organization goes on; a transient failure retries the
    /// message, which repeats only what was not done (discovery compares
    /// with the stored accounts each time).
    pub async fn discover_organizations(&self) -> Result<(), HandlerError> {
        let conns = self.orgs.connections().await.map_err(HandlerError::retry)?;
        let mut transient = None;
        for conn in &conns {
            match self.orgs.discover(conn).await {
                Ok(r) => {
                    tracing::info!(tenant = %conn.tenant_id, management = %conn.management_account,
                    listed = r.listed, pages = r.pages, onboarded = r.onboarded.len(),
                    paused = r.paused.len(), resumed = r.resumed.len(),
                    conflicts = r.conflicts.len(), "organization discovered")
                }
                Err(kopter_runtime::org::OrgError::Refused(why)) => {
                    tracing::warn!(tenant = %conn.tenant_id, management = %conn.management_account,
                        %why, "organization discovery refused")
                }
                Err(kopter_runtime::org::OrgError::Aws(e)) => transient = Some(e),
            }
        }
        match transient {
            Some(e) => Err(HandlerError::retry(e.context("discover organizations"))),
            None => Ok(()),
        }
    }

    /// `describe.sweep` / `backup.sweep`: one job per onboarded account ×
    /// enabled region, onto the describer's own queue.
    pub async fn sweep(&self, kind: SweepKind) -> Result<SweepReport, HandlerError> {
        // Paused accounts (suspended or closed in their organization) are
        // not entered: their role may be gone with the account.
        let accounts: Vec<AccountRecord> = self
            .accounts
            .list(None)
            .await
            .map_err(HandlerError::retry)?
            .into_iter()
            .filter(|a| a.paused.is_none())
            .collect();
        let url = self
            .outbox
            .queue_url(Service::Describer)
            .await
            .map_err(HandlerError::retry)?;
        let jobs: Vec<_> = accounts
            .iter()
            .map(|a| self.sweep_account(a, kind, &url))
            .collect();
        let results: Vec<Result<(usize, Option<bool>), HandlerError>> = futures::stream::iter(jobs)
            .buffer_unordered(self.settings.sweep_concurrency.max(1))
            .collect()
            .await;
        let mut report = SweepReport {
            accounts: accounts.len(),
            ..Default::default()
        };
        for r in results {
            match r? {
                (n, None) => report.jobs += n,
                (n, Some(true)) => {
                    report.jobs += n;
                    report.denied += 1;
                }
                (_, Some(false)) => report.transient += 1,
            }
        }
        let sweep = match kind {
            SweepKind::Describe => "describe",
            SweepKind::Backup => "backup",
        };
        let ok = report.accounts - report.denied - report.transient;
        for (state, n) in [
            ("ok", ok),
            ("denied", report.denied),
            ("transient", report.transient),
        ] {
            m().sweep_accounts
                .with_label_values(&[sweep, state])
                .set(n as i64);
        }
        m().last_sweep
            .with_label_values(&[sweep])
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        Ok(report)
    }

    /// Returns (jobs sent, Some(true) if denied / Some(false) if a
    /// transient failure skipped the account this time).
    async fn sweep_account(
        &self,
        account: &AccountRecord,
        kind: SweepKind,
        url: &str,
    ) -> Result<(usize, Option<bool>), HandlerError> {
        let home = account
            .regions
            .first()
            .cloned()
            .unwrap_or_else(|| self.settings.home_region.clone());
        let enabled = match self.access.ec2(&role(account), &home).await {
            Ok(ec2) => ec2::enabled_regions(&ec2).await,
            Err(e) => Err(e),
        };
        let enabled = match enabled {
            Ok(r) => r,
            Err(AccountError::Denied(reason)) => {
                self.record_denied(account, &reason).await?;
                return Ok((0, Some(true)));
            }
            Err(AccountError::Transient(e)) => {
                // Skipped this time; the next sweep tries again. Retrying
                // the sweep would re-send every other account's jobs.
                m().accounts.with_label_values(&["transient"]).inc();
                tracing::warn!(tenant = %account.tenant_id, account = %account.account_id,
                    error = %format!("{e:#}"), "could not list the account's regions; skipped this sweep");
                return Ok((0, Some(false)));
            }
        };
        let chosen: Vec<String> = if account.regions.is_empty() {
            enabled.clone()
        } else {
            account.regions.clone()
        };
        let (regions, disabled): (Vec<String>, Vec<String>) =
            chosen.into_iter().partition(|r| enabled.contains(r));
        let mut sent = 0;
        for chunk in regions.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, region)| {
                    let body = AccountRegion {
                        tenant: account.tenant_id.clone(),
                        account: account.account_id.clone(),
                        region: region.clone(),
                    };
                    let msg = match kind {
                        SweepKind::Describe => Message::DescribeAccount(body),
                        SweepKind::Backup => Message::BackupRun(body),
                    };
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(envelope(msg).to_json())
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| HandlerError::retry(anyhow::Error::new(e).context("fan out jobs")))?;
            if !out.failed().is_empty() {
                return Err(HandlerError::retry(anyhow::anyhow!(
                    "fan out jobs of account {}: {} of {} not sent",
                    account.account_id,
                    out.failed().len(),
                    chunk.len()
                )));
            }
            sent += chunk.len();
        }
        if disabled.is_empty() {
            // A new account is `unchecked` until something reached it:
            // this sweep just did (role assumed, regions listed).
            if !account.healthy || account.health_checked_at.is_none() {
                self.set_health(account, true, None).await?;
            }
            Ok((sent, None))
        } else {
            let reason = format!(
                "regions chosen at onboarding are not enabled in the account: {}",
                disabled.join(",")
            );
            self.record_denied(account, &reason).await?;
            Ok((sent, Some(true)))
        }
    }

    /// `describe.account` (whole region) or `describe.targeted` (`only`).
    pub async fn describe(
        &self,
        target: &AccountRegion,
        only: Option<&TargetedDescribe>,
    ) -> Result<DescribeReport, HandlerError> {
        let AccountRegion {
            tenant,
            account,
            region,
        } = target;
        let Some(record) = self
            .accounts
            .get_for_job(tenant, account)
            .await
            .map_err(HandlerError::retry)?
        else {
            tracing::warn!(%tenant, %account, "describe of an account that is not onboarded; skipped");
            return Ok(DescribeReport {
                skipped: Some("account not onboarded".into()),
                ..Default::default()
            });
        };
        if let Some(why) = &record.paused {
            return Ok(DescribeReport {
                skipped: Some(format!("account paused: {why}")),
                ..Default::default()
            });
        }
        if !record.regions.is_empty() && !record.regions.contains(region) {
            return Ok(DescribeReport {
                skipped: Some(format!("region {region} not chosen for the account")),
                ..Default::default()
            });
        }
        let _permit = self.permit(account).await;
        // A write that lost a race to a concurrent describe of the same
        // account (a targeted re-describe beside the scheduled one) is
        // described again here, with fresh observations, instead of
        // returning the message (which would spend one of its receives).
        let mut attempt = 1;
        let outcome = loop {
            let observed_at = now_ms();
            let outcome = self
                .describe_inner(&record, region, only, observed_at)
                .await;
            match &outcome {
                Err(AccountError::Transient(e))
                    if attempt < CONFLICT_ATTEMPTS
                        && e.chain().any(|c| c.downcast_ref::<Conflict>().is_some()) =>
                {
                    m().conflict_retries.inc();
                    tracing::info!(
                        account = %record.account_id,
                        region,
                        attempt,
                        "an inventory write lost a race; describing the region again"
                    );
                    attempt += 1;
                }
                _ => break outcome,
            }
        };
        match outcome {
            Ok(r) => Ok(r),
            Err(AccountError::Denied(reason)) => {
                let reason = format!("{region}: {reason}");
                self.record_denied(&record, &reason).await?;
                Ok(DescribeReport {
                    denied: Some(reason),
                    ..Default::default()
                })
            }
            Err(AccountError::Transient(e)) => {
                m().accounts.with_label_values(&["transient"]).inc();
                Err(HandlerError::retry(e))
            }
        }
    }

    async fn describe_inner(
        &self,
        record: &AccountRecord,
        region: &str,
        only: Option<&TargetedDescribe>,
        observed_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<DescribeReport, AccountError> {
        let ec2 = self.access.ec2(&role(record), region).await?;
        let zones = self.zones_of(&ec2, &record.account_id, region).await?;
        let zones = zones.as_ref();
        let (observed, scope) = match only {
            None => {
                let (i, v, s, h) = tokio::try_join!(
                    ec2::instances(&ec2, None, zones),
                    ec2::volumes(&ec2, None, zones),
                    ec2::snapshots(&ec2, record.account_id.as_str(), None),
                    ec2::hosts(&ec2, zones)
                )?;
                let scope = match h {
                    Some(_) => Scope::Full,
                    // Hosts unread: keep their rows as they are.
                    None => Scope::AllBut(ResourceKind::Host),
                };
                (
                    i.into_iter()
                        .chain(v)
                        .chain(s)
                        .chain(h.into_iter().flatten())
                        .collect::<Vec<_>>(),
                    scope,
                )
            }
            Some(t) => {
                let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
                let (ids_i, ids_v, ids_s) = (
                    set(&t.instance_ids),
                    set(&t.volume_ids),
                    set(&t.snapshot_ids),
                );
                let (i, v, s) = tokio::try_join!(
                    ec2::instances(&ec2, Some(&ids_i), zones),
                    ec2::volumes(&ec2, Some(&ids_v), zones),
                    ec2::snapshots(&ec2, record.account_id.as_str(), Some(&ids_s))
                )?;
                let mut scope = BTreeSet::new();
                for (kind, ids) in [
                    (ResourceKind::Instance, ids_i),
                    (ResourceKind::Volume, ids_v),
                    (ResourceKind::Snapshot, ids_s),
                ] {
                    scope.extend(ids.into_iter().map(|id| (kind, id)));
                }
                (
                    i.into_iter().chain(v).chain(s).collect::<Vec<_>>(),
                    Scope::Only(scope),
                )
            }
        };
        let ctx = DiffContext {
            tenant: record.tenant_id.clone(),
            account: record.account_id.clone(),
            region: region.to_owned(),
            onboarded_at: record.onboarded_at,
            observed_at,
        };
        let n_observed = observed.len();
        let (tenant, account) = (&record.tenant_id, &record.account_id);
        // A whole-region describe that observed what the inventory was
        // last reconciled with skips reading the region's inventory
        // (issue 23: that `Query` of every row was most of the describer's
        // reads). The digest item is read before the inventory: its
        // generation is what a digest stored below must still find
        // (`DESIGN.md`, "An unchanged region is not read again").
        let digest = match only {
            None => {
                let d = observed_digest(&ctx, &scope, &observed);
                match self.store.region_digest(tenant, account, region).await {
                    Ok(stored) if stored.holds(&d, observed_at) => {
                        m().digests.with_label_values(&["unchanged"]).inc();
                        return Ok(DescribeReport {
                            observed: n_observed,
                            ..Default::default()
                        });
                    }
                    Ok(stored) => {
                        let sks: Vec<String> = observed
                            .iter()
                            .map(|(id, r)| inventory_sk(region, r.kind(), id))
                            .collect();
                        Some((d, stored, sks))
                    }
                    // The digest is an optimisation: without it, read the
                    // inventory as always (and store none this time).
                    Err(e) => {
                        m().digests.with_label_values(&["read_failed"]).inc();
                        tracing::warn!(%tenant, %account, region, error = %format!("{e:#}"), "could not read the region's describe digest; reading its inventory");
                        None
                    }
                }
            }
            Some(_) => None,
        };
        // A targeted describe of one kind (CloudTrail's usual: instances)
        // reads only that kind's rows of the region (the diff looks at no
        // other); leftovers of other rows are published by the next
        // describe that reads them (a write moves the region's digest
        // generation, so the next whole-region describe does).
        let kind = match &scope {
            Scope::Only(ids) => {
                let kinds: BTreeSet<ResourceKind> = ids.iter().map(|(k, _)| *k).collect();
                match kinds.into_iter().collect::<Vec<_>>().as_slice() {
                    [k] => Some(*k),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut previous = self
            .store
            .inventory(tenant, account, Some(region), kind)
            .await?;
        self.publish_pending(&mut previous).await?;
        let writes = diff(&ctx, &previous, observed, &scope);
        // Changed rows (whole-region or targeted describe alike): bracket
        // the writes with the region's write lease and generation bumps,
        // and store no digest (the next describe that finds nothing to
        // write does).
        let changes = writes.iter().any(|w| matches!(w, Write::Put { .. }));
        let valid_until = match &digest {
            Some((_, _, sks)) if !changes => {
                Some(digest_valid_until(&ctx, &previous, &writes, sks))
            }
            _ => None,
        };
        let writer = if changes {
            let me = self
                .store
                .begin_region_write(tenant, account, region, chrono::Utc::now())
                .await?;
            m().digests.with_label_values(&["invalidated"]).inc();
            Some(me)
        } else {
            None
        };
        let applied = self.apply(&ctx, writes).await;
        if let Some(me) = &writer
            && let Err(e) = self
                .store
                .end_region_write(tenant, account, region, me)
                .await
        {
            // The generation moved at the start and this writer's token
            // stays until its lease runs out: no digest stands meanwhile.
            // The writes' own error (a lost race is retried in-process)
            // comes first.
            let e = e.context(format!("after writing the inventory of {account} {region}"));
            return Err(match applied {
                Err(first) => first.context(format!("{e:#}")),
                Ok(_) => e,
            }
            .into());
        }
        let report = applied?;
        if let (Some((d, stored, _)), Some(until)) = (digest, valid_until) {
            match self
                .store
                .put_region_digest(
                    tenant,
                    account,
                    region,
                    (&d, until),
                    &stored,
                    chrono::Utc::now(),
                )
                .await
            {
                Ok(true) => m().digests.with_label_values(&["stored"]).inc(),
                Ok(false) => m().digests.with_label_values(&["raced"]).inc(),
                // The describe is done; the next one reads the inventory.
                Err(e) => {
                    m().digests.with_label_values(&["store_failed"]).inc();
                    tracing::warn!(%tenant, %account, region, error = %format!("{e:#}"), "could not store the region's describe digest");
                }
            }
        }
        Ok(DescribeReport {
            observed: n_observed,
            ..report
        })
    }

    /// The account's zones in `region`, from the cache or EC2.
    async fn zones_of(
        &self,
        ec2: &aws_sdk_ec2::Client,
        account: &AccountId,
        region: &str,
    ) -> Result<Arc<Zones>, AccountError> {
        let key = (account.clone(), region.to_owned());
        if let Some(z) = self.zones.get(&key).await {
            return Ok(z);
        }
        let z = zones::read(ec2, region).await?;
        self.zones.insert(key, z.clone()).await;
        Ok(z)
    }

    /// Writes a diff, then publishes its history rows and marks them
    /// published.
    async fn apply(&self, ctx: &DiffContext, writes: Vec<Write>) -> anyhow::Result<DescribeReport> {
        let pk = keys::tenant_account(&ctx.tenant, &ctx.account);
        let jobs: Vec<_> = writes
            .iter()
            .map(|w| self.store.apply(w, ctx.observed_at, &pk))
            .collect();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(jobs)
            .buffer_unordered(self.settings.write_concurrency.max(1))
            .collect()
            .await;
        let mut first_err = None;
        for r in results {
            if let Err(e) = r {
                if e.downcast_ref::<Conflict>().is_some() {
                    tracing::info!(error = %format!("{e:#}"), "inventory write lost a race");
                }
                first_err.get_or_insert(e);
            }
        }
        // Publish what was committed even if some writes failed: the rows
        // that made it are durable and their events are due.
        let mut report = DescribeReport::default();
        for w in &writes {
            if let Write::Put { row, events, .. } = w {
                report.written += 1;
                for e in events {
                    m().changes
                        .with_label_values(&[e.resource_kind.as_str(), e.change.as_str()])
                        .inc();
                    report
                        .events
                        .push((e.resource_id.clone(), e.change.to_string()));
                }
                if first_err.is_none() && !row.unpublished.is_empty() {
                    self.publish_row(row, events).await?;
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Publishes a row's unpublished history: rows in `known` directly,
    /// the rest read back from the table (left over by a crash).
    async fn publish_row(&self, row: &InventoryRow, known: &[EventRow]) -> anyhow::Result<()> {
        let by_sk: HashMap<&str, &EventRow> = known.iter().map(|e| (e.sk.as_str(), e)).collect();
        for sk in &row.unpublished {
            let fetched;
            let event = match by_sk.get(sk.as_str()) {
                Some(e) => *e,
                None => match self.store.event(&row.pk, sk).await? {
                    Some(e) => {
                        fetched = e;
                        &fetched
                    }
                    None => continue,
                },
            };
            self.outbox
                .publish(&envelope(Message::InventoryChanged(inventory_changed(
                    event,
                ))))
                .await?;
        }
        self.store.mark_published(row).await
    }

    /// Publishes history a crash left unpublished, before diffing.
    async fn publish_pending(
        &self,
        previous: &mut HashMap<String, InventoryRow>,
    ) -> anyhow::Result<()> {
        for row in previous.values_mut().filter(|r| !r.unpublished.is_empty()) {
            self.publish_row(row, &[]).await?;
            row.unpublished.clear();
        }
        Ok(())
    }
}

/// The `inventory.changed` event of a history row; `detail` is the whole
/// row (full state after the change).
pub fn inventory_changed(e: &EventRow) -> InventoryChanged {
    InventoryChanged {
        tenant: e.tenant.clone(),
        account: e.account.clone(),
        region: e.region.clone(),
        resource_id: e.resource_id.clone(),
        resource_kind: e.resource_kind.to_string(),
        change: e.change.to_string(),
        at: e.at,
        detail: serde_json::to_value(e).unwrap_or_default(),
    }
}
