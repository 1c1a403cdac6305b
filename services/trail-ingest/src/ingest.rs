//! From a queue message to audit rows and derived events.
//!
//! For each log file named by a notification:
//! 1. the key must be a CloudTrail log file (digests, Insights and other
//!    objects are skipped and counted);
//! 2. **tenancy**: the account in the key must be onboarded, and its
//!    tenant must have configured this bucket and prefix as a trail source.
//!    Otherwise the file is rejected: nothing is read or written, the
//!    message goes to the DLQ with the reason logged. The tenant is never
//!    taken from the file's content;
//! 3. the object is streamed (S3 body → gunzip → one record at a time on a
//!    blocking thread, bounded channel to the writers), so memory does not
//!    grow with the file;
//! 4. every record must name the key's account as `recipientAccountId`;
//!    others are rejected, counted and logged, never written;
//! 5. records are packed into **segments** as they come (the file's
//!    records of one UTC hour, at most
//!    `kopter_store::audit::SEGMENT_RAW_BYTES` of raw JSON each;
//!    `SegmentBuilder` cuts a file the same way every time), and each
//!    segment is one idempotent write (its key is a hash of its records,
//!    so a redelivered file's segments are duplicates costing a failed
//!    conditional check); a segment DynamoDB pushes back on is retried on
//!    its own (`dynamo::write_patiently`) while the file goes on;
//! 6. after the file: one `describe.targeted` per region with the EC2
//!    resources that changed, and one `security.finding` per rule match,
//!    published to `kopter-events` — for the rows that were written, even
//!    when others failed (the message then fails as back-pressure).
//!    Publishing happens for duplicates too (at-least-once: a retry after a
//!    crash between write and publish must not lose the event); the
//!    notifier deduplicates by event id and rule.
//!
//! One bad record never blocks the rest of its file: a record over
//! `trail.max_record_bytes`, one that does not normalise, or the records of
//! a segment DynamoDB refuses as such is **quarantined** (kept with its reason, bucket, key,
//! index and offset in the tenant's quarantine, counted in
//! `kopter_trail_records_quarantined_total{reason}`), and the rest of the
//! file is filed. A record without `eventID` gets one derived from its
//! content; one without `recipientAccountId` takes the key's account.
//!
//! A file that cannot be read to the end (truncated gzip, invalid JSON
//! between records) keeps the records read before the error (their
//! segments are written) and fails the message, which is retried and then
//! lands in the DLQ. A retry that reads the whole file writes whole
//! segments, which differ from the partial ones: those records are then
//! stored twice and shown once (readers keep one copy per record key).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, LazyLock};

use aws_config::SdkConfig;
use futures::StreamExt;
use kopter_runtime::config::TrailConfig;
use kopter_runtime::dynamo::{self, WriteRetry};
use kopter_runtime::messaging::{Outbox, envelope};
use kopter_runtime::{CredentialCache, CustomerRole, Delivery, HandlerError, metrics};
use kopter_schema::messages::{SecurityFinding, TargetedDescribe};
use kopter_schema::{AccountId, Message, TenantId};
use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::mpsc;

use crate::directory::Directory;
use crate::key::{KeyKind, classify_key};
use crate::normalise::{AuditRecord, Unfiled, ec2_targets, next_normalised};
use crate::notification::{Notification, TrailObject, parse_notification};
use crate::records::{RecordError, gzip_records};
use crate::rules::evaluate_enabled;
use kopter_store::audit::{
    AuditRow, AuditSettings, AuditStore, QuarantinedRecord, Segment, SegmentBuilder, WriteOutcome,
    is_unwritable, quarantine_reason,
};

struct TrailMetrics {
    records: IntCounterVec,
    quarantined: IntCounterVec,
    files: IntCounterVec,
    rule_matches: IntCounterVec,
    newest_event: IntGauge,
}

fn m() -> &'static TrailMetrics {
    static M: LazyLock<TrailMetrics> = LazyLock::new(|| {
        TrailMetrics {
        records: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_trail_records_total",
                    "CloudTrail records by outcome (new, duplicate, rejected, quarantined, failed).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        ),
        quarantined: {
            let c = metrics::register(
                IntCounterVec::new(
                    Opts::new(
                        "kopter_trail_records_quarantined_total",
                        "CloudTrail records kept in the quarantine instead of filed, by reason (too_large, invalid_json, missing_field, bad_time, unwritable).",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            );
            // Every reason shows from the start, so a rate is 0, not absent.
            for reason in quarantine_reason::ALL {
                c.with_label_values(&[reason]);
            }
            c
        },
        files: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_trail_files_total",
                    "Objects named by notifications, by outcome.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        ),
        rule_matches: metrics::register(
            IntCounterVec::new(
                Opts::new("kopter_trail_rule_matches_total", "Security rule matches."),
                &["rule"],
            )
            .expect("valid metric"),
        ),
        newest_event: metrics::register(
            IntGauge::new(
                "kopter_trail_newest_event_timestamp_seconds",
                "eventTime of the newest ingested record (lag = now - this).",
            )
            .expect("valid metric"),
        ),
    }
    });
    &M
}

/// Registers trail-ingest's metrics now, so they are on `/metrics` (at
/// zero) before the first file.
pub fn register_metrics() {
    let _ = m();
}

/// Why a log file was not ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Tenancy or configuration refuses the file: never retried usefully.
    #[error("s3://{bucket}/{key}: rejected: {reason}")]
    Rejected {
        bucket: String,
        key: String,
        reason: String,
    },
    /// The file is unreadable or malformed; rows before the problem stay.
    /// (Display names the file; the cause is the source, so `{:#}` and
    /// `aws::classify` see the whole chain.)
    #[error("s3://{bucket}/{key}")]
    Malformed {
        bucket: String,
        key: String,
        #[source]
        source: anyhow::Error,
    },
    /// S3, DynamoDB, SNS or STS failed: retry. Throttling and other
    /// back-pressure stay findable in the chain, so the worker retries the
    /// message in-process instead of spending a receive.
    #[error("s3://{bucket}/{key}")]
    Aws {
        bucket: String,
        key: String,
        #[source]
        source: anyhow::Error,
    },
}

/// What ingesting one file did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileReport {
    pub records: u64,
    /// Records in segments written now.
    pub new: u64,
    /// Records in segments that were there already (a redelivered or
    /// replayed file).
    pub duplicates: u64,
    /// Audit segments the records went into (one per hour of `eventTime`
    /// the file covers, more for a file over
    /// `kopter_store::audit::SEGMENT_RAW_BYTES`).
    pub segments: u64,
    pub rejected: u64,
    pub quarantined: u64,
    /// Each rejected or quarantined record and why (at most
    /// [`MAX_PROBLEMS_KEPT`], so a file of bad records stays small).
    pub problems: Vec<String>,
    pub findings: Vec<SecurityFinding>,
    pub targets: Vec<TargetedDescribe>,
}

/// Problems a [`FileReport`] lists at most (all are counted and logged).
pub const MAX_PROBLEMS_KEPT: usize = 100;

impl FileReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems.push(text);
        }
    }
}

/// Where a file came from, for its quarantine items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOrigin {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    Ingested(FileReport),
    Skipped(String),
}

#[derive(Clone)]
pub struct Ingestor {
    pub store: AuditStore,
    pub directory: Directory,
    pub s3: aws_sdk_s3::Client,
    pub base_sdk: SdkConfig,
    pub credentials: CredentialCache,
    pub outbox: Option<Outbox>,
    pub config: TrailConfig,
    /// Buckets whose region S3 told us (`x-amz-bucket-region` on a
    /// redirect): the SDK does not follow S3's cross-region redirects.
    pub bucket_regions: moka::future::Cache<String, String>,
    /// Each tenant's audit settings (rules it turned off), read at most
    /// once a minute per tenant.
    pub settings: moka::future::Cache<TenantId, Arc<AuditSettings>>,
}

/// Creates an ingestor's settings cache: a rule turned off takes effect
/// within a minute.
pub fn settings_cache() -> moka::future::Cache<TenantId, Arc<AuditSettings>> {
    moka::future::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(std::time::Duration::from_secs(60))
        .build()
}

/// The bucket's region S3 names on a wrong-region answer (301/400 with
/// `x-amz-bucket-region`), if it names one.
pub fn bucket_region_hint<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Option<String> {
    let r = e.raw_response()?;
    let status = r.status().as_u16();
    if !(status == 301 || status == 400 || status == 307) {
        return None;
    }
    let region = r.headers().get("x-amz-bucket-region")?;
    kopter_runtime::accounts::is_region_name(region).then(|| region.to_owned())
}

/// Creates an ingestor's bucket-region cache.
pub fn bucket_region_cache() -> moka::future::Cache<String, String> {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(std::time::Duration::from_secs(24 * 3600))
        .build()
}

impl Ingestor {
    /// Handles one message of the trail-ingest queue.
    pub async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let id = &delivery.message_id;
        let (objects, replay) = match parse_notification(&delivery.body) {
            Ok(Notification::TestEvent) => {
                m().files.with_label_values(&["test_event"]).inc();
                tracing::info!("S3 test event acknowledged");
                return Ok(());
            }
            Ok(Notification::Objects(objects)) => (objects, false),
            Ok(Notification::Replay(objects)) => (objects, true),
            Err(e) => {
                return Err(HandlerError::permanent(anyhow::anyhow!(
                    "message {id}: {e}"
                )));
            }
        };
        let mut first_error: Option<IngestError> = None;
        for obj in objects {
            let started = chrono::Utc::now();
            match self.ingest_object(&obj).await {
                Ok(FileOutcome::Ingested(r)) => {
                    tracing::info!(
                        bucket = %obj.bucket, key = %obj.key, records = r.records, new = r.new,
                        duplicates = r.duplicates, segments = r.segments, rejected = r.rejected,
                        quarantined = r.quarantined, findings = r.findings.len(),
                        "log file ingested"
                    );
                    if replay && let Err(e) = self.release_replayed(&obj, started).await {
                        let e = IngestError::Aws {
                            bucket: obj.bucket.clone(),
                            key: obj.key.clone(),
                            source: e,
                        };
                        tracing::warn!(error = %chain(&e), "quarantine not released");
                        first_error.get_or_insert(e);
                    }
                }
                Ok(FileOutcome::Skipped(why)) => {
                    tracing::debug!(bucket = %obj.bucket, key = %obj.key, %why, "object skipped")
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "log file not ingested");
                    // Keep going: other files of the message are independent.
                    let worse = matches!(e, IngestError::Aws { .. });
                    if first_error.is_none() || worse {
                        first_error = Some(e);
                    }
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e @ (IngestError::Aws { .. } | IngestError::Malformed { .. })) => Err(
                HandlerError::retry(anyhow::Error::new(e).context(format!("message {id}"))),
            ),
            Some(e @ IngestError::Rejected { .. }) => Err(HandlerError::permanent(
                anyhow::Error::new(e).context(format!("message {id}")),
            )),
        }
    }

    /// Ingests one object (see the module docs for the checks).
    pub async fn ingest_object(&self, obj: &TrailObject) -> Result<FileOutcome, IngestError> {
        let (bucket, key) = (&obj.bucket, &obj.key);
        let reject = |reason: String| {
            m().files.with_label_values(&["rejected"]).inc();
            IngestError::Rejected {
                bucket: bucket.clone(),
                key: key.clone(),
                reason,
            }
        };
        let aws = |source: anyhow::Error| IngestError::Aws {
            bucket: bucket.clone(),
            key: key.clone(),
            source,
        };
        let log_key = match classify_key(key) {
            KeyKind::LogFile(k) => k,
            KeyKind::Digest => return Ok(skip("digest", "CloudTrail digest file")),
            KeyKind::Insights => return Ok(skip("insights", "CloudTrail Insights file")),
            KeyKind::Other(why) => return Ok(skip("other", why)),
        };
        let Some(owner) = self
            .directory
            .account(&log_key.account)
            .await
            .map_err(aws)?
        else {
            return Err(reject(format!(
                "account {} in the key is not onboarded",
                log_key.account
            )));
        };
        let Some(grant) = self
            .directory
            .grant(&owner.tenant_id, bucket, &log_key.prefix)
            .await
        else {
            return Err(reject(format!(
                "bucket {bucket:?} with prefix {:?} is not a trail source of the tenant that onboarded account {}",
                log_key.prefix, log_key.account
            )));
        };
        let base_region = self
            .base_sdk
            .region()
            .map_or("us-east-1".to_owned(), |r| r.to_string());
        let mut region = self
            .bucket_regions
            .get(bucket)
            .await
            .unwrap_or_else(|| base_region.clone());
        let mut redirected = false;
        let object = loop {
            let s3 = if grant.source.customer_owned {
                let role = CustomerRole::from(grant.configured_by.as_ref());
                let sdk = self
                    .credentials
                    .sdk_config(&self.base_sdk, &role, &region)
                    .await
                    .map_err(|e| {
                        if e.is_permanent() {
                            reject(format!("cannot read the customer's bucket: {e}"))
                        } else {
                            aws(anyhow::Error::new(e))
                        }
                    })?;
                crate::s3_client(&sdk)
            } else if region == base_region {
                self.s3.clone()
            } else {
                let sdk = self
                    .base_sdk
                    .to_builder()
                    .region(aws_config::Region::new(region.clone()))
                    .build();
                crate::s3_client(&sdk)
            };
            match s3.get_object().bucket(bucket).key(key).send().await {
                Ok(o) => break o,
                Err(e) => match bucket_region_hint(&e) {
                    // S3 names the bucket's region: once, with a client
                    // of that region (remembered for the next files).
                    Some(r) if !redirected && r != region => {
                        tracing::info!(bucket = %bucket, from = %region, to = %r, "trail bucket is in another region");
                        self.bucket_regions.insert(bucket.clone(), r.clone()).await;
                        region = r;
                        redirected = true;
                    }
                    _ => {
                        return Err(aws(anyhow::Error::new(e)
                            .context(format!("get the log file (region {region})"))));
                    }
                },
            }
        };
        let body = tokio_util::io::SyncIoBridge::new(object.body.into_async_read());
        let origin = FileOrigin {
            bucket: bucket.clone(),
            key: key.clone(),
        };
        let report = self
            .ingest_file(
                &owner.tenant_id,
                &log_key.account,
                Some(&origin),
                body,
                false,
            )
            .await
            .map_err(|e| match e {
                ReaderError::Malformed(source) => IngestError::Malformed {
                    bucket: bucket.clone(),
                    key: key.clone(),
                    source,
                },
                ReaderError::Aws(source) => aws(source),
            })?;
        m().files.with_label_values(&["ingested"]).inc();
        Ok(FileOutcome::Ingested(report))
    }

    /// After a replayed file was read to the end: its quarantine items
    /// from before this reading are released (their records were filed,
    /// or quarantined again with a newer time, which keeps them).
    async fn release_replayed(
        &self,
        obj: &TrailObject,
        started: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let KeyKind::LogFile(log_key) = classify_key(&obj.key) else {
            return Ok(());
        };
        let Some(owner) = self.directory.account(&log_key.account).await? else {
            return Ok(());
        };
        let items = self
            .store
            .quarantined(&owner.tenant_id, Some((&obj.bucket, &obj.key)))
            .await?;
        let mut released = 0;
        for item in items.iter().filter(|q| q.quarantined_at < started) {
            released += u64::from(self.store.release(item).await?);
        }
        tracing::info!(bucket = %obj.bucket, key = %obj.key, released, "quarantine replayed");
        Ok(())
    }

    /// Streams a gzipped CloudTrail file of `account` (owned by `tenant`)
    /// into the audit log, then publishes derived events. With `dry_run`,
    /// nothing is written or published. Bad records are listed in the
    /// report but not quarantined (there is no S3 object to point at): see
    /// [`Ingestor::ingest_file`].
    pub async fn ingest_reader<R: Read + Send + 'static>(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        reader: R,
        dry_run: bool,
    ) -> Result<FileReport, ReaderError> {
        self.ingest_file(tenant, account, None, reader, dry_run)
            .await
    }

    /// [`Ingestor::ingest_reader`] for a file from S3 (`origin`): its bad
    /// records are kept in the tenant's quarantine.
    pub async fn ingest_file<R: Read + Send + 'static>(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        origin: Option<&FileOrigin>,
        reader: R,
        dry_run: bool,
    ) -> Result<FileReport, ReaderError> {
        let settings = if dry_run {
            Arc::new(AuditSettings::default())
        } else {
            self.tenant_settings(tenant)
                .await
                .map_err(ReaderError::Aws)?
        };
        let (tx, rx) = mpsc::channel::<Parsed>(256);
        let max = self.config.max_record_bytes;
        let expected = account.to_string();
        let parser = tokio::task::spawn_blocking(move || parse_file(reader, max, &expected, tx));

        let mut report = FileReport::default();
        let mut targets: BTreeMap<String, TargetedDescribe> = BTreeMap::new();
        let retention = self.config.retention_days;
        let store = self.store.clone();
        let limiter = dynamo::write_limiter(store.table());
        let retry = WriteRetry {
            attempts: self.config.record_write_attempts,
            backoff: self.config.record_retry_backoff,
        };
        let quarantine =
            |index: usize, offset: u64, reason: &str, detail: String, raw: Option<&[u8]>| {
                origin.map(|o| {
                    QuarantinedRecord::new(
                        tenant,
                        account,
                        &o.bucket,
                        &o.key,
                        index as u64,
                        offset,
                        reason,
                        detail,
                        raw,
                        retention,
                    )
                })
            };
        // Records are packed into segments (a file's records of one hour,
        // `kopter_store::audit::SegmentBuilder`) as they are parsed; each
        // closed segment is one write. Bad records go on one by one.
        let builder = Arc::new(std::sync::Mutex::new(SegmentBuilder::<Tag>::default()));
        let closing = builder.clone();
        let jobs = {
            let tenant = tenant.clone();
            let account = account.clone();
            let settings = settings.clone();
            tokio_stream_of(rx)
                .flat_map(move |p| {
                    let jobs = match p {
                        Parsed::Record(rec, index, offset) => {
                            let findings = evaluate_enabled(&rec, &settings.disabled_rules);
                            let row = AuditRow::new(
                                &tenant,
                                &account,
                                &rec,
                                findings.iter().map(|f| f.rule.to_owned()).collect(),
                                retention,
                            );
                            // What the report needs once the segment is
                            // written; the record itself (its raw JSON up
                            // to `max_record_bytes`) is not kept.
                            let tag = Tag {
                                targets: ec2_targets(&rec),
                                event_id: rec.event_id,
                                event_time: rec.event_time,
                                region: rec.aws_region,
                                event_name: rec.event_name,
                                principal: rec.principal_arn,
                                findings,
                                index,
                                offset,
                            };
                            builder
                                .lock()
                                .expect("segment builder")
                                .push(row, tag)
                                .into_iter()
                                .map(Job::Segment)
                                .collect()
                        }
                        Parsed::Rejected(index, why) => vec![Job::Rejected(index, why)],
                        Parsed::Quarantine(bad) => vec![Job::Quarantine(bad)],
                    };
                    futures::stream::iter(jobs)
                })
                .chain(
                    futures::stream::once(async move {
                        let rest = std::mem::take(&mut *closing.lock().expect("segment builder"));
                        futures::stream::iter(rest.finish().into_iter().map(Job::Segment))
                    })
                    .flatten(),
                )
        };
        let writes = jobs
            .map(|job| {
                let store = store.clone();
                let tenant = tenant.clone();
                let account = account.clone();
                let limiter = limiter.clone();
                async move {
                    let rows = match job {
                        Job::Segment(rows) => rows,
                        Job::Rejected(index, why) => return Ok(Written::Rejected(index, why)),
                        Job::Quarantine(bad) => return Ok(Written::Quarantine(bad)),
                    };
                    let n = rows.len() as u64;
                    if dry_run {
                        let filed = rows
                            .into_iter()
                            .map(|(_, tag)| (tag, WriteOutcome::New))
                            .collect();
                        return Ok(Written::Segment(filed, Vec::new(), None));
                    }
                    // A segment that DynamoDB pushes back on is retried on
                    // its own; the file goes on.
                    let write = |rows: Vec<AuditRow>| {
                        let store = store.clone();
                        let limiter = limiter.clone();
                        let (tenant, account) = (tenant.clone(), account.clone());
                        async move {
                            let segment = Segment::new(&tenant, &account, rows)?;
                            dynamo::write_patiently(&limiter, retry, || {
                                store.put_segment(&segment)
                            })
                            .await
                        }
                    };
                    match write(rows.iter().map(|(row, _)| row.clone()).collect()).await {
                        Ok(outcome) => Ok(Written::Segment(
                            rows.into_iter().map(|(_, tag)| (tag, outcome)).collect(),
                            Vec::new(),
                            None,
                        )),
                        // DynamoDB refuses the segment as such (too large,
                        // a value it cannot take): each record is tried as
                        // a segment of its own, the same way every time, so
                        // only the records that cannot be filed at all are
                        // quarantined.
                        Err(e) if is_unwritable(&e) => {
                            tracing::warn!(%tenant, %account, records = n, error = format!("{e:#}"), "segment refused; filing its records one by one");
                            let mut filed = Vec::new();
                            let mut bad = Vec::new();
                            let mut left = rows.len() as u64;
                            for (row, tag) in rows {
                                let raw = row.raw.clone().into_bytes();
                                match write(vec![row]).await {
                                    Ok(outcome) => filed.push((tag, outcome)),
                                    Err(e) if is_unwritable(&e) => bad.push(Bad {
                                        index: tag.index,
                                        offset: tag.offset,
                                        reason: quarantine_reason::UNWRITABLE,
                                        detail: format!("event {}: {e:#}", tag.event_id),
                                        raw: Some(raw),
                                    }),
                                    // Back-pressure that outlasted the
                                    // retries: what was filed is told, the
                                    // rest fails the file (it is retried).
                                    Err(e) => {
                                        return Ok(Written::Segment(filed, bad, Some((left, e))));
                                    }
                                }
                                left -= 1;
                            }
                            Ok(Written::Segment(filed, bad, None))
                        }
                        Err(e) => Err((n, e)),
                    }
                }
            })
            .buffer_unordered(self.config.write_concurrency);
        // Boxed: the stream holds the parser's channel, dropped below.
        let mut writes = Box::pin(writes);

        let mut write_error = None;
        let mut failed = 0u64;
        // Records to quarantine: bad ones, and those DynamoDB refused.
        let mut bads: Vec<Bad> = Vec::new();
        while let Some(w) = writes.next().await {
            match w {
                Err((n, e)) => {
                    failed += n;
                    m().records.with_label_values(&["failed"]).inc_by(n);
                    tracing::warn!(%tenant, %account, records = n, error = format!("{e:#}"), "records not written");
                    write_error.get_or_insert(e);
                }
                Ok(Written::Rejected(index, why)) => {
                    report.records += 1;
                    report.rejected += 1;
                    m().records.with_label_values(&["rejected"]).inc();
                    tracing::warn!(%tenant, %account, record = index, %why, "record rejected");
                    report.problem(format!("record {index} rejected: {why}"));
                }
                Ok(Written::Quarantine(bad)) => bads.push(bad),
                Ok(Written::Segment(filed, refused, failure)) => {
                    report.segments += 1;
                    bads.extend(refused);
                    if let Some((n, e)) = failure {
                        failed += n;
                        m().records.with_label_values(&["failed"]).inc_by(n);
                        tracing::warn!(%tenant, %account, records = n, error = format!("{e:#}"), "records not written");
                        write_error.get_or_insert(e);
                    }
                    for (tag, outcome) in filed {
                        let Tag {
                            event_id,
                            event_time,
                            region,
                            event_name,
                            principal,
                            findings,
                            targets: ec2,
                            ..
                        } = tag;
                        report.records += 1;
                        let label = match outcome {
                            WriteOutcome::New => {
                                report.new += 1;
                                "new"
                            }
                            WriteOutcome::Duplicate => {
                                report.duplicates += 1;
                                "duplicate"
                            }
                        };
                        m().records.with_label_values(&[label]).inc();
                        m().newest_event
                            .set(m().newest_event.get().max(event_time.timestamp()));
                        for f in findings {
                            m().rule_matches.with_label_values(&[f.rule]).inc();
                            report.findings.push(SecurityFinding {
                                tenant: tenant.clone(),
                                account: account.clone(),
                                region: region.clone(),
                                rule: f.rule.to_owned(),
                                severity: f.severity,
                                event_id: event_id.clone(),
                                event_name: event_name.clone(),
                                principal: principal.clone(),
                                at: event_time,
                                summary: f.summary,
                            });
                        }
                        if let Some(t) = ec2 {
                            let entry = targets.entry(t.region.clone()).or_insert_with(|| {
                                TargetedDescribe {
                                    tenant: tenant.clone(),
                                    account: account.clone(),
                                    region: t.region.clone(),
                                    instance_ids: vec![],
                                    volume_ids: vec![],
                                    snapshot_ids: vec![],
                                }
                            });
                            entry.instance_ids.extend(t.instance_ids);
                            entry.volume_ids.extend(t.volume_ids);
                            entry.snapshot_ids.extend(t.snapshot_ids);
                        }
                    }
                }
            }
            for bad in bads.drain(..) {
                report.records += 1;
                let item = quarantine(
                    bad.index,
                    bad.offset,
                    bad.reason,
                    bad.detail.clone(),
                    bad.raw.as_deref(),
                );
                if let (Some(item), false) = (item, dry_run) {
                    // Kept before it is counted: a failure here fails
                    // the file like a row that could not be written.
                    if let Err(e) =
                        dynamo::write_patiently(&limiter, retry, || store.quarantine(&item)).await
                    {
                        failed += 1;
                        m().records.with_label_values(&["failed"]).inc();
                        tracing::warn!(%tenant, %account, error = format!("{e:#}"), "record not quarantined");
                        write_error.get_or_insert(e);
                        continue;
                    }
                }
                report.quarantined += 1;
                m().records.with_label_values(&["quarantined"]).inc();
                m().quarantined.with_label_values(&[bad.reason]).inc();
                let bucket = origin.map_or("", |o| o.bucket.as_str());
                let key = origin.map_or("", |o| o.key.as_str());
                tracing::warn!(
                    %tenant, %account, bucket, key, record = bad.index, offset = bad.offset,
                    reason = bad.reason, detail = %bad.detail, "record quarantined"
                );
                report.problem(format!(
                    "record {} at byte {} quarantined ({}): {}",
                    bad.index, bad.offset, bad.reason, bad.detail
                ));
            }
        }
        drop(writes);
        let parsed = parser
            .await
            .map_err(|e| ReaderError::Aws(anyhow::anyhow!("record parser task failed: {e}")))?;
        for t in targets.values_mut() {
            for ids in [&mut t.instance_ids, &mut t.volume_ids, &mut t.snapshot_ids] {
                ids.sort_unstable();
                ids.dedup();
            }
        }
        report.targets = targets.into_values().collect();
        report
            .findings
            .sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));

        // What was filed is told, even when other rows failed: a file
        // stuck on throttling must not silence the findings it did file.
        // A redelivery publishes them again: the notifier deduplicates by
        // event id and rule, and a targeted describe is idempotent.
        if !dry_run && let Some(outbox) = &self.outbox {
            let messages = report
                .targets
                .iter()
                .map(|t| Message::DescribeTargeted(t.clone()))
                .chain(
                    report
                        .findings
                        .iter()
                        .map(|f| Message::SecurityFinding(f.clone())),
                );
            // Up to ten a `PublishBatch` request, billed as one request
            // per 64 KB of payload: a file's targets and findings cost one
            // request, not one each (issue 23).
            let envs: Vec<_> = messages.map(envelope).collect();
            if let Err(e) = outbox.publish_batch(&envs).await {
                return Err(ReaderError::Aws(e.context("publish derived events")));
            }
        }
        if let Some(e) = write_error {
            return Err(ReaderError::Aws(e.context(format!(
                "{failed} of {} records not written (the first failure follows); the {} written were told",
                report.records + failed,
                report.new + report.duplicates
            ))));
        }
        // Stream errors (truncation, bad JSON between records) after the
        // good rows are kept.
        if let Err(e) = parsed {
            return Err(ReaderError::Malformed(anyhow::Error::new(e)));
        }
        Ok(report)
    }

    /// The tenant's audit settings, cached for a minute.
    async fn tenant_settings(&self, tenant: &TenantId) -> anyhow::Result<Arc<AuditSettings>> {
        let store = self.store.clone();
        let t = tenant.clone();
        self.settings
            .try_get_with(tenant.clone(), async move {
                store.settings(&t).await.map(Arc::new)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))
    }
}

/// An error and its causes, `: `-separated (as `anyhow`'s `{:#}`).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn skip(outcome: &'static str, why: &str) -> FileOutcome {
    m().files.with_label_values(&[outcome]).inc();
    FileOutcome::Skipped(why.to_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("{0:#}")]
    Malformed(anyhow::Error),
    #[error("{0:#}")]
    Aws(anyhow::Error),
}

/// A record that is not filed, and where it was.
struct Bad {
    index: usize,
    offset: u64,
    reason: &'static str,
    detail: String,
    /// `None` for a record over the size limit (never buffered).
    raw: Option<Vec<u8>>,
}

enum Parsed {
    Record(Box<AuditRecord>, usize, u64),
    Rejected(usize, String),
    Quarantine(Bad),
}

/// What a record in a segment carries until its segment is written: what
/// the report and the derived events need.
struct Tag {
    event_id: String,
    event_time: chrono::DateTime<chrono::Utc>,
    region: String,
    event_name: String,
    principal: Option<String>,
    findings: Vec<crate::rules::Finding>,
    targets: Option<crate::normalise::Ec2Targets>,
    index: usize,
    offset: u64,
}

enum Job {
    Segment(Vec<(AuditRow, Tag)>),
    Rejected(usize, String),
    Quarantine(Bad),
}

enum Written {
    /// A segment's records and what their write did, those of its records
    /// DynamoDB refused even alone (quarantined), and — when it was written
    /// record by record and back-pressure outlasted the retries — how many
    /// were not written, and why.
    Segment(
        Vec<(Tag, WriteOutcome)>,
        Vec<Bad>,
        Option<(u64, anyhow::Error)>,
    ),
    Rejected(usize, String),
    Quarantine(Bad),
}

/// Runs on a blocking thread: gunzip, then each record parsed where it
/// lies in the read buffer (`next_normalised`: the same result as splitting
/// then normalising, without scanning and copying the record first), then
/// the tenancy check. A record over the size limit or that does not
/// normalise is handed on for the quarantine and the stream goes on; only
/// an error of the file itself (gzip, JSON between records) ends it.
fn parse_file<R: Read>(
    reader: R,
    max_record_bytes: usize,
    expected_account: &str,
    tx: mpsc::Sender<Parsed>,
) -> Result<(), RecordError> {
    let mut stream = gzip_records(reader, max_record_bytes);
    while let Some(next) = next_normalised(&mut stream) {
        let parsed = match next {
            Err(RecordError::TooLarge {
                index,
                offset,
                limit,
            }) => Parsed::Quarantine(Bad {
                index,
                offset,
                reason: quarantine_reason::TOO_LARGE,
                detail: format!("record is larger than trail.max_record_bytes ({limit} bytes)"),
                raw: None,
            }),
            Err(e) => return Err(e),
            Ok(at) => match at.value {
                Err(Unfiled { error, raw }) => Parsed::Quarantine(Bad {
                    index: at.index,
                    offset: at.offset,
                    reason: error.reason(),
                    detail: error.to_string(),
                    raw: Some(raw),
                }),
                // CloudTrail files of 2015-16 have records without
                // recipientAccountId: the key's account (which tenancy
                // checked) is the recipient.
                Ok(mut rec) => match rec.recipient_account.as_deref() {
                    None => {
                        rec.recipient_account = Some(expected_account.to_owned());
                        Parsed::Record(Box::new(rec), at.index, at.offset)
                    }
                    Some(a) if a == expected_account => {
                        Parsed::Record(Box::new(rec), at.index, at.offset)
                    }
                    Some(other) => Parsed::Rejected(
                        at.index,
                        format!(
                            "event {} names recipient account {other:?}, not the file's account {expected_account}",
                            rec.event_id
                        ),
                    ),
                },
            },
        };
        if tx.blocking_send(parsed).is_err() {
            // The writer side stopped (it failed); its error is reported.
            return Ok(());
        }
    }
    Ok(())
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
