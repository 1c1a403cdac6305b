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
//! 5. rows are written idempotently (conditional put on a key derived from
//!    `eventID`), so a redelivered or overlapping file writes nothing twice
//!    and a row already there costs one conditional check; a row DynamoDB
//!    pushes back on is retried on its own (`dynamo::write_patiently`)
//!    while the file goes on;
//! 6. after the file: one `describe.targeted` per region with the EC2
//!    resources that changed, and one `security.finding` per rule match,
//!    published to `kopter-events` — for the rows that were written, even
//!    when others failed (the message then fails as back-pressure).
//!    Publishing happens for duplicates too (at-least-once: a retry after a
//!    crash between write and publish must not lose the event); the
//!    notifier deduplicates by event id and rule.
//!
//! A file that cannot be read to the end (truncated gzip, invalid JSON, a
//! record without `eventID`) keeps the rows written before the error and
//! fails the message, which is retried and then lands in the DLQ.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::LazyLock;

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
use crate::normalise::{AuditRecord, ec2_targets, next_normalised};
use crate::notification::{Notification, TrailObject, parse_notification};
use crate::records::{RecordError, gzip_records};
use crate::rules::evaluate;
use kopter_store::audit::{AuditRow, AuditStore, WriteOutcome};

struct TrailMetrics {
    records: IntCounterVec,
    files: IntCounterVec,
    rule_matches: IntCounterVec,
    newest_event: IntGauge,
}

fn m() -> &'static TrailMetrics {
    static M: LazyLock<TrailMetrics> = LazyLock::new(|| TrailMetrics {
        records: metrics::register(
            IntCounterVec::new(
                Opts::new(
                    "kopter_trail_records_total",
                    "CloudTrail records by outcome (new, duplicate, rejected, invalid, failed).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        ),
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
    });
    &M
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
    pub new: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub findings: Vec<SecurityFinding>,
    pub targets: Vec<TargetedDescribe>,
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
        let objects = match parse_notification(&delivery.body) {
            Ok(Notification::TestEvent) => {
                m().files.with_label_values(&["test_event"]).inc();
                tracing::info!("S3 test event acknowledged");
                return Ok(());
            }
            Ok(Notification::Objects(objects)) => objects,
            Err(e) => {
                return Err(HandlerError::permanent(anyhow::anyhow!(
                    "message {id}: {e}"
                )));
            }
        };
        let mut first_error: Option<IngestError> = None;
        for obj in objects {
            match self.ingest_object(&obj).await {
                Ok(FileOutcome::Ingested(r)) => tracing::info!(
                    bucket = %obj.bucket, key = %obj.key, records = r.records, new = r.new,
                    duplicates = r.duplicates, rejected = r.rejected, findings = r.findings.len(),
                    "log file ingested"
                ),
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
        let report = self
            .ingest_reader(&owner.tenant_id, &log_key.account, body, false)
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

    /// Streams a gzipped CloudTrail file of `account` (owned by `tenant`)
    /// into the audit log, then publishes derived events. With `dry_run`,
    /// nothing is written or published.
    pub async fn ingest_reader<R: Read + Send + 'static>(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        reader: R,
        dry_run: bool,
    ) -> Result<FileReport, ReaderError> {
        let (tx, rx) = mpsc::channel::<Parsed>(256);
        let max = self.config.max_record_bytes;
        let expected = account.to_string();
        let parser = tokio::task::spawn_blocking(move || parse_file(reader, max, &expected, tx));

        let mut report = FileReport::default();
        let mut targets: BTreeMap<String, TargetedDescribe> = BTreeMap::new();
        let mut first_invalid: Option<String> = None;
        let retention = self.config.retention_days;
        let store = self.store.clone();
        let limiter = dynamo::write_limiter(store.table());
        let retry = WriteRetry {
            attempts: self.config.record_write_attempts,
            backoff: self.config.record_retry_backoff,
        };
        let mut writes = tokio_stream_of(rx)
            .map(|p| {
                let store = store.clone();
                let tenant = tenant.clone();
                let account = account.clone();
                let limiter = limiter.clone();
                async move {
                    match p {
                        Parsed::Record(rec) => {
                            let findings = evaluate(&rec);
                            let row = AuditRow::new(
                                &tenant,
                                &account,
                                &rec,
                                findings.iter().map(|f| f.rule.to_owned()).collect(),
                                retention,
                            );
                            let outcome = if dry_run {
                                WriteOutcome::New
                            } else {
                                // A row that DynamoDB pushes back on is
                                // retried on its own; the file goes on.
                                dynamo::write_patiently(&limiter, retry, || store.put(&row)).await?
                            };
                            Ok::<_, anyhow::Error>(Written::Record(rec, findings, outcome))
                        }
                        Parsed::Rejected(index, why) => Ok(Written::Rejected(index, why)),
                        Parsed::Invalid(why) => Ok(Written::Invalid(why)),
                    }
                }
            })
            .buffer_unordered(self.config.write_concurrency);

        let mut write_error = None;
        let mut failed = 0u64;
        while let Some(w) = writes.next().await {
            match w {
                Err(e) => {
                    failed += 1;
                    m().records.with_label_values(&["failed"]).inc();
                    tracing::warn!(%tenant, %account, error = format!("{e:#}"), "record not written");
                    write_error.get_or_insert(e);
                }
                Ok(Written::Rejected(index, why)) => {
                    report.records += 1;
                    report.rejected += 1;
                    m().records.with_label_values(&["rejected"]).inc();
                    tracing::warn!(%tenant, %account, record = index, %why, "record rejected");
                }
                Ok(Written::Invalid(why)) => {
                    m().records.with_label_values(&["invalid"]).inc();
                    first_invalid.get_or_insert(why);
                }
                Ok(Written::Record(rec, findings, outcome)) => {
                    report.records += 1;
                    match outcome {
                        WriteOutcome::New => report.new += 1,
                        WriteOutcome::Duplicate => report.duplicates += 1,
                    }
                    let label = if outcome == WriteOutcome::New {
                        "new"
                    } else {
                        "duplicate"
                    };
                    m().records.with_label_values(&[label]).inc();
                    m().newest_event
                        .set(m().newest_event.get().max(rec.event_time.timestamp()));
                    for f in findings {
                        m().rule_matches.with_label_values(&[f.rule]).inc();
                        report.findings.push(SecurityFinding {
                            tenant: tenant.clone(),
                            account: account.clone(),
                            region: rec.aws_region.clone(),
                            rule: f.rule.to_owned(),
                            severity: f.severity,
                            event_id: rec.event_id.clone(),
                            event_name: rec.event_name.clone(),
                            principal: rec.principal_arn.clone(),
                            at: rec.event_time,
                            summary: f.summary,
                        });
                    }
                    if let Some(t) = ec2_targets(&rec) {
                        let entry =
                            targets
                                .entry(t.region.clone())
                                .or_insert_with(|| TargetedDescribe {
                                    tenant: tenant.clone(),
                                    account: account.clone(),
                                    region: t.region.clone(),
                                    instance_ids: vec![],
                                    volume_ids: vec![],
                                    snapshot_ids: vec![],
                                });
                        entry.instance_ids.extend(t.instance_ids);
                        entry.volume_ids.extend(t.volume_ids);
                        entry.snapshot_ids.extend(t.snapshot_ids);
                    }
                }
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
            let mut publish_error = None;
            for msg in messages {
                if let Err(e) = outbox.publish(&envelope(msg)).await {
                    publish_error.get_or_insert(e);
                }
            }
            if let Some(e) = publish_error {
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
        // Stream errors (truncation, bad JSON) after the good rows are kept.
        if let Err(e) = parsed {
            return Err(ReaderError::Malformed(anyhow::Error::new(e)));
        }
        if let Some(why) = first_invalid {
            return Err(ReaderError::Malformed(anyhow::anyhow!(why)));
        }
        Ok(report)
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

enum Parsed {
    Record(Box<AuditRecord>),
    Rejected(usize, String),
    Invalid(String),
}

enum Written {
    Record(Box<AuditRecord>, Vec<crate::rules::Finding>, WriteOutcome),
    Rejected(usize, String),
    Invalid(String),
}

/// Runs on a blocking thread: gunzip, then each record parsed where it
/// lies in the read buffer (`next_normalised`: the same result as splitting
/// then normalising, without scanning and copying the record first), then
/// the tenancy check.
fn parse_file<R: Read>(
    reader: R,
    max_record_bytes: usize,
    expected_account: &str,
    tx: mpsc::Sender<Parsed>,
) -> Result<(), RecordError> {
    let mut stream = gzip_records(reader, max_record_bytes);
    while let Some(next) = next_normalised(&mut stream) {
        let at = next?;
        let (index, offset) = (at.index, at.offset);
        let parsed = match at.value {
            Err(e) => Parsed::Invalid(format!("record {index} at byte {offset}: {e}")),
            Ok(rec) => match rec.recipient_account.as_deref() {
                Some(a) if a == expected_account => Parsed::Record(Box::new(rec)),
                other => Parsed::Rejected(
                    index,
                    format!(
                        "event {} names recipient account {:?}, not the file's account {expected_account}",
                        rec.event_id,
                        other.unwrap_or("(none)")
                    ),
                ),
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
