//! The per-tenant audit log in DynamoDB: CloudTrail records packed into
//! *segments*, idempotent writes, and the queries a frontend needs.
//!
//! Layout (see `design.md` beside this file and `libs/schema/src/DESIGN.md`):
//! - a **segment** holds the records of one CloudTrail file (one tenant,
//!   one account) whose `eventTime` falls in one UTC hour, deflated
//!   together: `pk = {tenant}#{yyyy-mm-dd}` (that hour's day),
//!   `sk = {newest eventTime, ms}#seg:{content hash}`; at most
//!   [`SEGMENT_RAW_BYTES`] of raw records each;
//! - beside it a **summary**, `pk = {tenant}#{yyyy-mm}#tok`, same `sk`:
//!   the segment's search tokens (one per principal ARN, event name and
//!   resource, hashed, [`search_token`]). A search by principal, event or
//!   resource reads summaries, filtered in DynamoDB, then only the
//!   segments that can hold a match.
//!
//! Why packed: one item per record with three indexes cost ≈ 4.8 write
//! units per record (issue 23, `docs/benchmarks.md`); a segment of a
//! file's records, deflated together, costs a few tenths of a unit per
//! record, and its summary one unit.
//!
//! Order: a segment's sort key starts with its newest record's time, and
//! a segment spans less than an hour, so a reader walking sort keys
//! newest first knows, after a segment whose newest record is at `E`,
//! every record newer than `E`: pages come out in exact record order
//! (newest first, ties by `eventID`) from a small merge buffer
//! ([`AuditStore::page`]).
//!
//! Duplicates: the content hash makes a redelivered file's segments the
//! same items, written once (a conditional put tells new from
//! duplicate). The same record in two different files (an organization
//! trail and an account trail, a copied file) is stored twice and shown
//! once: readers keep the first copy of each record key.
//!
//! Rows written before segments (one item per record, `sk =
//! {eventTime}#{eventID}`, with reference rows `…#r{n}`) are read by time
//! walks as one-record segments; searches by principal, event or
//! resource do not see them (no summaries): `kopterctl audit repack`
//! rewrites them as segments.
//!
//! The same table holds each tenant's quarantine ([`QuarantinedRecord`],
//! `pk = {tenant}#quarantine`) and audit settings ([`AuditSettings`],
//! `pk = {tenant}#settings`): neither partition is a day, so time walks
//! never read them.

mod segment;

pub use segment::{
    Repacked, SEGMENT_RAW_BYTES, SEGMENT_TOKENS, Segment, SegmentBuilder, Unwritable, search_token,
};

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

/// The fields of one audit-log row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: String,
    pub recipient_account: Option<String>,
    /// `userIdentity.accountId`.
    pub user_account: Option<String>,
    pub principal_arn: Option<String>,
    /// `userIdentity.type`: `Root`, `IAMUser`, `AssumedRole`, `AWSService`, …
    pub principal_type: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub read_only: Option<bool>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Resources touched: `resources[].ARN`, then (EC2 events) the instance,
    /// volume, snapshot and security-group ids named in the request or
    /// response, sorted. No duplicates.
    pub resources: Vec<String>,
    /// The record's JSON, as received.
    pub raw: String,
    /// `additionalEventData.MFAUsed` (`Yes`/`No`, any case).
    pub mfa_used: Option<bool>,
    /// `responseElements.ConsoleLogin`: `Success` or `Failure`.
    pub console_login: Option<String>,
}

/// SHA-256 of `bytes`, its first 16 bytes as 32 lower-case hex digits:
/// ids derived from content, and hashed key parts.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Longest key built from record data, in bytes. DynamoDB allows 2,048
/// bytes for a partition key and 1,024 for a sort key
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>);
/// staying under the smaller one leaves room for the tenant and time.
pub const MAX_KEY_PART_BYTES: usize = 512;

/// `value` as a key part: itself if at most [`MAX_KEY_PART_BYTES`] long,
/// else `sha256:<hash>` (the full value stays an attribute of the row).
pub fn key_part(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_KEY_PART_BYTES {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(format!("sha256:{}", content_hash(value.as_bytes())))
    }
}

/// DynamoDB items are at most 400 KB; raw records above this are stored
/// cut, with `raw_truncated` set (the normalised fields stay complete).
pub const MAX_RAW_BYTES: usize = 300 * 1024;

/// A query walks one day partition (of segments, or of summaries for a
/// search) at a time; it looks back at most this many days from `until`
/// (retention defaults to 365 days anyway).
pub const MAX_WALK_DAYS: i64 = 400;

/// The items of the audit table, as the SDK gives them.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// One audit log record as stored and as queries return it.
///
/// `pk`/`sk` are the record's own key (its day partition and
/// [`record_sort_key`]): what links to a record (the api's record ids,
/// the notifier's findings) and what pages resume after. Inside a
/// segment only the fields that are not keys are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    pub account: AccountId,
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    pub region: String,
    pub event_source: String,
    pub event_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    /// The caller's account (`userIdentity.accountId`): differs from
    /// `account` for calls from other accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// Security rules this record matched.
    #[serde(default)]
    pub findings: Vec<String>,
    pub raw: String,
    #[serde(default)]
    pub raw_truncated: bool,
    /// When DynamoDB's TTL may delete the record (Unix seconds): its
    /// segment goes when the segment's newest record's time is due.
    pub expires_at: i64,
}

impl AuditRow {
    pub fn new(
        tenant: &TenantId,
        account: &AccountId,
        rec: &AuditRecord,
        findings: Vec<String>,
        retention_days: u32,
    ) -> Self {
        let day = rec.event_time.date_naive();
        let mut raw = rec.raw.clone();
        let raw_truncated = raw.len() > MAX_RAW_BYTES;
        if raw_truncated {
            let mut cut = MAX_RAW_BYTES;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            raw.truncate(cut);
        }
        Self {
            pk: day_pk(tenant, day),
            sk: record_sort_key(rec.event_time, &rec.event_id),
            tenant: tenant.clone(),
            account: account.clone(),
            event_id: rec.event_id.clone(),
            event_time: rec.event_time,
            region: rec.aws_region.clone(),
            event_source: rec.event_source.clone(),
            event_name: rec.event_name.clone(),
            principal_arn: rec.principal_arn.clone(),
            principal_type: rec.principal_type.clone(),
            caller_account: rec.user_account.clone(),
            source_ip: rec.source_ip.clone(),
            user_agent: rec.user_agent.clone(),
            read_only: rec.read_only,
            error_code: rec.error_code.clone(),
            resources: rec.resources.clone(),
            findings,
            raw,
            raw_truncated,
            expires_at: expiry(rec.event_time, retention_days),
        }
    }
}

/// When a record of `time` may go: `retention_days` after its time, or
/// after yesterday for a record older than that (a late or replayed file
/// is kept for the whole retention, not deleted on arrival).
pub(crate) fn expiry(time: DateTime<Utc>, retention_days: u32) -> i64 {
    (time.max(Utc::now() - Duration::days(1)) + Duration::days(i64::from(retention_days)))
        .timestamp()
}

/// The partition of a tenant's records (segments, and rows of before) of
/// one UTC day: `{tenant}#{yyyy-mm-dd}`.
pub fn day_pk(tenant: &TenantId, day: NaiveDate) -> String {
    format!("{tenant}#{}", day.format("%Y-%m-%d"))
}

/// Millisecond RFC 3339 so that sort keys order by time.
pub fn sort_key(time: DateTime<Utc>, event_id: &str) -> String {
    format!(
        "{}#{event_id}",
        time.to_rfc3339_opts(SecondsFormat::Millis, true)
    )
}

/// A record's key: `{eventTime, ms}#{eventID}`, the `eventID` replaced
/// by `sha256:<hash>` when it is longer than [`MAX_KEY_PART_BYTES`] or
/// contains `#` (CloudTrail's own ids are UUIDs, and derived ones hex).
/// Records are ordered, deduplicated and linked to by it (the api's
/// record ids, the notifier's findings).
pub fn record_sort_key(time: DateTime<Utc>, event_id: &str) -> String {
    if event_id.contains('#') {
        sort_key(
            time,
            &format!("sha256:{}", content_hash(event_id.as_bytes())),
        )
    } else {
        sort_key(time, &key_part(event_id))
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    New,
    /// The same segment (same records) was there already: a redelivered
    /// or replayed file.
    Duplicate,
}

/// The audit table of one deployment (`{env}-kopter-audit-log`).
#[derive(Clone, Debug)]
pub struct AuditStore {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
}

impl AuditStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::AuditLog),
        }
    }

    /// The table's name (`{env}-kopter-audit-log`), e.g. for its write
    /// limiter (`kopter_runtime::dynamo::write_limiter`).
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// The UTC day of a sort key's event time; `None` if `sk` does not start
/// with an RFC 3339 time and `#`.
pub fn day_of_sort_key(sk: &str) -> Option<NaiveDate> {
    time_of_sort_key(sk).map(|t| t.date_naive())
}

/// The time a sort key starts with (`{RFC 3339}#…`, the part after `#`
/// not empty); `None` for anything else.
pub fn time_of_sort_key(sk: &str) -> Option<DateTime<Utc>> {
    let (time, id) = sk.split_once('#')?;
    if id.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What a frontend asks of the audit log. Principal, event and resource
/// are searched through the summaries; every given filter applies.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub tenant: TenantId,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub principal: Option<String>,
    pub event: Option<String>,
    /// Event source (`ec2.amazonaws.com`); a filter on the records read.
    pub source: Option<String>,
    pub resource: Option<String>,
    /// The caller's account (`userIdentity.accountId`); a filter on the
    /// records read.
    pub caller_account: Option<String>,
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `row` passes every filter and belongs to the query's
    /// tenant and time range.
    pub fn matches(&self, r: &AuditRow) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| r.principal_arn.as_ref() == Some(p))
            && self.event.as_ref().is_none_or(|e| &r.event_name == e)
            && self.source.as_ref().is_none_or(|s| &r.event_source == s)
            && self
                .caller_account
                .as_ref()
                .is_none_or(|a| r.caller_account.as_ref() == Some(a))
            && self
                .resource
                .as_ref()
                .is_none_or(|x| r.resources.contains(x))
            && r.tenant == self.tenant
            && r.event_time >= self.since
            && r.event_time <= self.until
    }

    /// The search tokens every matching record's segment carries (empty:
    /// no principal, event or resource filter; the query walks segments).
    pub fn tokens(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.principal {
            out.push(search_token('p', p));
        }
        if let Some(e) = &self.event {
            out.push(search_token('e', e));
        }
        if let Some(r) = &self.resource {
            out.push(search_token('r', r));
        }
        out
    }

    /// The time range a query reads: `since`..`until`, except that a
    /// query walks day partitions and looks back at most
    /// [`MAX_WALK_DAYS`] from `until`. The second value is true when that
    /// cut `since` short.
    pub fn searched_range(&self) -> ((DateTime<Utc>, DateTime<Utc>), bool) {
        let floor = self.until - Duration::days(MAX_WALK_DAYS);
        // Walks read whole UTC days, from the floor's day on.
        let floor_day = floor
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc();
        if self.since < floor_day {
            ((floor_day, self.until), true)
        } else {
            ((self.since, self.until), false)
        }
    }
}

/// The attribute in which a row of before segments holds its raw record,
/// deflated (binary); older rows hold it as the string `raw`.
const RAW_DEFLATED: &str = "raw_z";

/// The raw record of a row of before segments: `raw_z` inflated, or
/// `raw`; `None` when neither is there.
fn stored_raw(item: &Item) -> anyhow::Result<Option<String>> {
    use std::io::Read;
    match (item.get(RAW_DEFLATED), item.get("raw")) {
        (Some(AttributeValue::B(z)), _) => {
            // Rows hold at most MAX_RAW_BYTES of record: a damaged or
            // hostile attribute cannot make a reader allocate without end.
            let mut raw = String::new();
            flate2::read::DeflateDecoder::new(z.as_ref())
                .take(MAX_RAW_BYTES as u64 + 1)
                .read_to_string(&mut raw)
                .context("inflate the row's raw record (raw_z)")?;
            anyhow::ensure!(
                raw.len() <= MAX_RAW_BYTES,
                "the row's raw record (raw_z) inflates beyond {MAX_RAW_BYTES} bytes"
            );
            Ok(Some(raw))
        }
        (_, Some(AttributeValue::S(raw))) => Ok(Some(raw.clone())),
        _ => Ok(None),
    }
}

/// A row of before segments from its item (either form of the raw
/// record; its index attributes are ignored).
fn decode_row(mut item: Item) -> anyhow::Result<AuditRow> {
    if let Some(raw) = stored_raw(&item)? {
        item.remove(RAW_DEFLATED);
        item.insert("raw".to_owned(), AttributeValue::S(raw));
    }
    serde_dynamo::from_item(item).context("decode audit row")
}

/// A reference row of before segments (`ref = true`): it made a record
/// findable by a further resource; it holds no record.
fn is_reference(item: &Item) -> bool {
    item.get("ref").and_then(|v| v.as_bool().ok()).copied() == Some(true)
}

/// Why a record was quarantined: the `reason` label of
/// `kopter_trail_records_quarantined_total` (a closed set).
pub mod quarantine_reason {
    /// Over `trail.max_record_bytes`: skipped unread, so no raw is kept.
    pub const TOO_LARGE: &str = "too_large";
    /// Not JSON, or not the shape of a CloudTrail record.
    pub const INVALID_JSON: &str = "invalid_json";
    /// A field the row needs (`eventTime`, `eventSource`, `eventName`,
    /// `awsRegion`) is missing or empty.
    pub const MISSING_FIELD: &str = "missing_field";
    /// `eventTime` is not RFC 3339.
    pub const BAD_TIME: &str = "bad_time";
    /// DynamoDB refused the row itself (a validation error, not
    /// back-pressure): retrying the same row cannot help.
    pub const UNWRITABLE: &str = "unwritable";
    pub const ALL: &[&str] = &[TOO_LARGE, INVALID_JSON, MISSING_FIELD, BAD_TIME, UNWRITABLE];
}

/// A record that could not be filed, kept where an operator can list it
/// and replay its file (`kopterctl audit quarantine list|replay`).
///
/// Key: `pk = {tenant}#quarantine`, `sk = {file}#{index:010}` where
/// `file` is [`content_hash`] of `s3://{bucket}/{key}`: one item per record
/// of a file, so quarantining the same record again (a redelivery)
/// overwrites it instead of adding one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    pub pk: String,
    pub sk: String,
    pub tenant: TenantId,
    /// The account of the log file's key.
    pub account: AccountId,
    pub bucket: String,
    pub key: String,
    /// Position in the file's `Records` (counted across all documents of
    /// a multi-document file), from 0.
    pub index: u64,
    /// Uncompressed byte offset of the record's `{`.
    pub offset: u64,
    /// One of [`quarantine_reason::ALL`].
    pub reason: String,
    /// What exactly is wrong, e.g. `record has no eventTime`.
    pub detail: String,
    /// The record's JSON as received (cut to [`MAX_RAW_BYTES`]); `None` for
    /// a record over the size limit, which is never buffered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default)]
    pub raw_truncated: bool,
    /// When this item was (last) written; a replay removes only items
    /// older than its own reading of the file.
    pub quarantined_at: DateTime<Utc>,
    pub expires_at: i64,
}

impl QuarantinedRecord {
    /// A quarantine item; `raw` is cut to [`MAX_RAW_BYTES`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: &TenantId,
        account: &AccountId,
        bucket: &str,
        key: &str,
        index: u64,
        offset: u64,
        reason: &str,
        detail: String,
        raw: Option<&[u8]>,
        retention_days: u32,
    ) -> Self {
        let now = Utc::now();
        let (raw, raw_truncated) = match raw {
            None => (None, false),
            Some(bytes) => {
                let cut = bytes.len().min(MAX_RAW_BYTES);
                let text = String::from_utf8_lossy(&bytes[..cut]).into_owned();
                (Some(text), bytes.len() > MAX_RAW_BYTES)
            }
        };
        Self {
            pk: quarantine_pk(tenant),
            sk: format!("{}#{index:010}", file_id(bucket, key)),
            tenant: tenant.clone(),
            account: account.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            index,
            offset,
            reason: reason.to_owned(),
            detail,
            raw,
            raw_truncated,
            quarantined_at: now,
            expires_at: (now + Duration::days(i64::from(retention_days))).timestamp(),
        }
    }
}

fn quarantine_pk(tenant: &TenantId) -> String {
    format!("{tenant}#quarantine")
}

/// The quarantine's id of one log file.
fn file_id(bucket: &str, key: &str) -> String {
    content_hash(format!("s3://{bucket}/{key}").as_bytes())
}

/// A tenant's audit settings: security rules it turned off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSettings {
    pub disabled_rules: std::collections::BTreeSet<String>,
}

fn settings_key(tenant: &TenantId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(format!("{tenant}#settings")),
        ),
        ("sk".to_owned(), AttributeValue::S("audit".to_owned())),
    ])
}

impl AuditStore {
    /// Keeps a record that could not be filed (overwrites the same record
    /// of the same file).
    pub async fn quarantine(&self, q: &QuarantinedRecord) -> anyhow::Result<()> {
        let item = serde_dynamo::to_item(q).context("encode quarantine item")?;
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .with_context(|| {
                format!(
                    "quarantine record {} of s3://{}/{}",
                    q.index, q.bucket, q.key
                )
            })?;
        Ok(())
    }

    /// The tenant's quarantine, oldest first; only the items of one file
    /// when `file` is given.
    pub async fn quarantined(
        &self,
        tenant: &TenantId,
        file: Option<(&str, &str)>,
    ) -> anyhow::Result<Vec<QuarantinedRecord>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .ddb
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", AttributeValue::S(quarantine_pk(tenant)))
                .set_exclusive_start_key(start);
            query = match file {
                Some((bucket, key)) => query
                    .key_condition_expression("pk = :pk AND begins_with(sk, :file)")
                    .expression_attribute_values(
                        ":file",
                        AttributeValue::S(format!("{}#", file_id(bucket, key))),
                    ),
                None => query.key_condition_expression("pk = :pk"),
            };
            let resp = query.send().await.context("read the quarantine")?;
            for item in resp.items.unwrap_or_default() {
                out.push(serde_dynamo::from_item(item).context("decode quarantine item")?);
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a: &QuarantinedRecord, b| {
            (a.quarantined_at, &a.sk).cmp(&(b.quarantined_at, &b.sk))
        });
        Ok(out)
    }

    /// Removes a quarantine item if it is still the one that was read
    /// (same `quarantined_at`): one quarantined again meanwhile stays.
    /// True if it was removed.
    pub async fn release(&self, q: &QuarantinedRecord) -> anyhow::Result<bool> {
        let seen =
            serde_dynamo::to_attribute_value(q.quarantined_at).context("encode quarantined_at")?;
        let deleted = self
            .ddb
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(q.pk.clone()))
            .key("sk", AttributeValue::S(q.sk.clone()))
            .condition_expression("quarantined_at = :seen")
            .expression_attribute_values(":seen", seen)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context("release a quarantined record")),
        }
    }

    /// The tenant's audit settings (defaults when never set).
    pub async fn settings(&self, tenant: &TenantId) -> anyhow::Result<AuditSettings> {
        let item = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .set_key(Some(settings_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .context("read the tenant's audit settings")?
            .item;
        let disabled_rules = item
            .as_ref()
            .and_then(|i| i.get("disabled_rules"))
            .and_then(|v| v.as_ss().ok())
            .map(|ss| ss.iter().cloned().collect())
            .unwrap_or_default();
        Ok(AuditSettings { disabled_rules })
    }

    /// Turns one security rule off or on for a tenant (idempotent).
    pub async fn set_rule_enabled(
        &self,
        tenant: &TenantId,
        rule: &str,
        enabled: bool,
    ) -> anyhow::Result<()> {
        let expr = if enabled {
            "DELETE disabled_rules :r"
        } else {
            "ADD disabled_rules :r"
        };
        self.ddb
            .update_item()
            .table_name(&self.table)
            .set_key(Some(settings_key(tenant)))
            .update_expression(expr)
            .expression_attribute_values(":r", AttributeValue::Ss(vec![rule.to_owned()]))
            .send()
            .await
            .with_context(|| format!("turn rule {rule} {}", if enabled { "on" } else { "off" }))?;
        Ok(())
    }
}

/// Whether a failed write was DynamoDB refusing the segment itself (a
/// `ValidationException`: item or key too large, …, or a segment too large
/// to encode, [`segment::Unwritable`]) rather than a transient failure:
/// writing the same segment again cannot succeed.
pub fn is_unwritable(error: &anyhow::Error) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    error.chain().any(|e| {
        if e.downcast_ref::<segment::Unwritable>().is_some() {
            return true;
        }
        let code = if let Some(e) = e.downcast_ref::<PutItemError>() {
            e.code()
        } else if let Some(e) =
            e.downcast_ref::<SdkError<PutItemError, aws_smithy_runtime_api::http::Response>>()
        {
            e.code()
        } else {
            None
        };
        code == Some("ValidationException")
    })
}

/// The trail-ingest queue message that reads one log file again for a
/// quarantine replay: CloudTrail's own notification shape (keys verbatim)
/// with `"kopterReplay": true`, which tells trail-ingest to release the
/// file's older quarantine items once the file is read to the end.
pub fn quarantine_replay_body(bucket: &str, key: &str) -> String {
    serde_json::json!({
        "s3Bucket": bucket,
        "s3ObjectKey": [key],
        "kopterReplay": true,
    })
    .to_string()
}

/// The ids of trail-ingest's security rules (its `rules::RULES`, which a
/// test keeps equal to this list), for tools that turn rules off without
/// linking the service.
pub const RULE_IDS: &[&str] = &[
    "root-activity",
    "console-login-without-mfa",
    "console-login-failed",
    "unauthorized-api-call",
    "cloudtrail-stopped",
    "cloudtrail-updated",
    "security-group-open-to-world",
    "security-group-changed",
    "network-acl-changed",
    "network-gateway-changed",
    "route-table-changed",
    "vpc-changed",
    "iam-access-key-created",
    "iam-user-created",
    "iam-policy-changed",
    "kms-key-disabled-or-deleted",
    "s3-bucket-policy-changed",
    "config-changed",
    "organizations-changed",
];

#[cfg(test)]
mod key_tests {
    use super::segment::decode_item;
    use super::*;

    #[test]
    fn long_key_parts_are_hashed_and_stay_stable() {
        let short = "arn:aws:iam::123456789012:user/alice";
        assert_eq!(key_part(short), short);
        // IAM's documented maximum ARN length is 2,048 characters.
        let long = format!("arn:aws:iam::123456789012:user/{}", "a".repeat(2048 - 31));
        assert_eq!(long.len(), 2048);
        let k = key_part(&long);
        assert!(k.starts_with("sha256:") && k.len() == 7 + 32, "{k}");
        assert_eq!(k, key_part(&long), "the same value, the same key");
        let mut other = long.clone();
        other.push('b');
        assert_ne!(k, key_part(&other));
        let at_limit = "x".repeat(MAX_KEY_PART_BYTES);
        assert_eq!(key_part(&at_limit), at_limit.as_str());
    }

    fn sample_row(raw: String) -> AuditRow {
        let rec = AuditRecord {
            event_id: "e".into(),
            event_time: Utc::now(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: "RunInstances".into(),
            aws_region: "us-east-1".into(),
            recipient_account: None,
            user_account: None,
            principal_arn: Some("arn:aws:iam::123456789012:user/alice".into()),
            principal_type: Some("IAMUser".into()),
            source_ip: None,
            user_agent: None,
            read_only: Some(false),
            error_code: None,
            error_message: None,
            resources: vec!["i-0abc".into()],
            raw,
            mfa_used: None,
            console_login: None,
        };
        let t = TenantId::new("acme").expect("tenant");
        let a = AccountId::new("123456789012").expect("account");
        AuditRow::new(&t, &a, &rec, vec!["rule".into()], 1)
    }

    #[test]
    fn record_keys_hash_event_ids_that_are_long_or_hold_a_hash_sign() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().expect("time");
        let uuid = "3fcfb182-98f8-4744-bd45-10a395ab61cb";
        assert_eq!(
            record_sort_key(at, uuid),
            format!("2026-01-02T03:04:05.000Z#{uuid}")
        );
        for odd in ["e#r1".to_owned(), "#".to_owned(), "x".repeat(600)] {
            let sk = record_sort_key(at, &odd);
            let (time, id) = sk.split_once('#').expect("time#id");
            assert_eq!(time, "2026-01-02T03:04:05.000Z");
            assert!(id.starts_with("sha256:") && !id.contains('#'), "{sk}");
            assert_eq!(sk, record_sort_key(at, &odd), "stable");
        }
        assert_ne!(record_sort_key(at, "a#b"), record_sort_key(at, "a#c"));
    }

    /// A CloudTrail record of the shared samples' shape, ~1.4 KB, with
    /// its own event id, time and instance.
    fn run_instances(id: &str, at: &str, instance: &str) -> AuditRow {
        let mut row = sample_row(
            raw_sample()
                .replace("\"eventID\":\"e\"", &format!("\"eventID\":\"{id}\""))
                .replace("i-0abc", instance),
        );
        let t: DateTime<Utc> = at.parse().expect("time");
        row.event_id = id.to_owned();
        row.event_time = t;
        row.pk = day_pk(&row.tenant, t.date_naive());
        row.sk = record_sort_key(t, id);
        row.resources = vec![instance.to_owned()];
        row
    }

    fn raw_sample() -> String {
        format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","accessKeyId":"AKIAEXAMPLE","userName":"alice"}},"eventTime":"2026-11-30T10:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023","requestParameters":{{"instancesSet":{{"items":[{{"imageId":"ami-0abcdef1234567890","minCount":1,"maxCount":1}}]}},"instanceType":"m5.large","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"disableApiStop":false,"clientToken":"{}"}},"responseElements":{{"requestId":"11111111-2222-3333-4444-555555555555","reservationId":"r-0123456789abcdef0","ownerId":"123456789012","instancesSet":{{"items":[{{"instanceId":"i-0abc","imageId":"ami-0abcdef1234567890","instanceState":{{"code":0,"name":"pending"}},"privateDnsName":"ip-10-0-0-12.ec2.internal","amiLaunchIndex":0,"productCodes":{{}},"instanceType":"m5.large","launchTime":1764496800000,"placement":{{"availabilityZone":"us-east-1a","tenancy":"default"}},"monitoring":{{"state":"disabled"}},"subnetId":"subnet-0123456789abcdef0","vpcId":"vpc-0123456789abcdef0","privateIpAddress":"10.0.0.12"}}]}}}},"requestID":"11111111-2222-3333-4444-555555555555","eventID":"e","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}}"#,
            "c".repeat(36)
        )
    }

    /// The item of a row as rows were stored before segments: its fields,
    /// index keys, the raw record deflated in `raw_z`.
    fn row_of_before(row: &AuditRow) -> Item {
        use std::io::Write;
        let mut item: Item = serde_dynamo::to_item(row).expect("encode");
        item.insert(
            "event_key".into(),
            AttributeValue::S(format!("acme#{}", row.event_name)),
        );
        let raw = item.remove("raw").expect("raw");
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(raw.as_s().expect("string").as_bytes())
            .expect("deflate");
        item.insert(
            RAW_DEFLATED.to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(z.finish().expect("deflate"))),
        );
        item
    }

    #[test]
    fn a_segment_packs_records_deflated_and_reads_them_back_in_order() {
        let t = TenantId::new("acme").expect("tenant");
        let a = AccountId::new("123456789012").expect("account");
        let rows: Vec<AuditRow> = (0..40)
            .map(|i| {
                run_instances(
                    &format!("e{i:02}"),
                    &format!("2026-11-30T10:{:02}:{:02}Z", i / 2, (i * 7) % 60),
                    &format!("i-{i:04x}"),
                )
            })
            .collect();
        let raw_bytes: usize = rows.iter().map(|r| r.raw.len()).sum();
        let seg = Segment::new(&t, &a, rows.clone()).expect("segment");
        // Newest first, by record key.
        let mut want = rows.clone();
        want.sort_by(|x, y| y.sk.cmp(&x.sk));
        assert_eq!(seg.rows, want);
        assert_eq!(seg.pk, "acme#2026-11-30");
        assert!(
            seg.sk
                .starts_with(&format!("{}#seg:", want[0].sk.split_once('#').unwrap().0)),
            "{}",
            seg.sk
        );
        // The same records in another order are the same segment; other
        // records are another.
        let mut shuffled = rows.clone();
        shuffled.reverse();
        assert_eq!(Segment::new(&t, &a, shuffled).expect("segment").sk, seg.sk);
        let mut changed = rows.clone();
        changed[3].raw.push(' ');
        assert_ne!(Segment::new(&t, &a, changed).expect("segment").sk, seg.sk);

        let (item, summary) = seg.items().expect("items");
        let Some(AttributeValue::B(z)) = item.get("z") else {
            panic!("z missing: {item:?}");
        };
        // Records of one file deflate together far better than one by one
        // (each alone: about half).
        assert!(
            z.as_ref().len() * 8 < raw_bytes,
            "deflated {} of {raw_bytes} bytes",
            z.as_ref().len()
        );
        assert_eq!(item.get("n"), Some(&AttributeValue::N("40".into())));
        assert_eq!(decode_item(item.clone()).expect("decode").1, want);

        // The summary: its partition, the segment's sort key, one token
        // per principal, event name and resource.
        assert_eq!(
            summary.get("pk"),
            Some(&AttributeValue::S("acme#2026-11#tok".into()))
        );
        assert_eq!(summary.get("sk"), item.get("sk"));
        let Some(AttributeValue::Ss(tokens)) = summary.get("tok") else {
            panic!("tok missing: {summary:?}");
        };
        assert_eq!(tokens.len(), 1 + 1 + 40);
        for want in [
            search_token('p', "arn:aws:iam::123456789012:user/alice"),
            search_token('e', "RunInstances"),
            search_token('r', "i-0027"),
        ] {
            assert!(tokens.contains(&want), "{want} not in {tokens:?}");
        }

        // A damaged segment is an error naming it, not a panic; so is a
        // deflate bomb.
        let mut damaged = item.clone();
        damaged.insert(
            "z".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        );
        let err = decode_item(damaged).expect_err("damaged");
        assert!(format!("{err:#}").contains(&seg.sk), "{err:#}");
        use std::io::Write;
        let mut bomb = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![b' '; 16 << 20]).unwrap();
        let mut bombed = item;
        bombed.insert(
            "z".into(),
            AttributeValue::B(aws_smithy_types::Blob::new(bomb.finish().unwrap())),
        );
        let err = decode_item(bombed).expect_err("bomb");
        assert!(format!("{err:#}").contains("beyond"), "{err:#}");
    }

    #[test]
    fn a_segment_refuses_records_of_another_hour_tenant_or_account() {
        let t = TenantId::new("acme").expect("tenant");
        let a = AccountId::new("123456789012").expect("account");
        let ten = run_instances("e1", "2026-11-30T10:59:59Z", "i-1");
        let eleven = run_instances("e2", "2026-11-30T11:00:00Z", "i-2");
        let err = Segment::new(&t, &a, vec![ten.clone(), eleven]).expect_err("two hours");
        assert!(format!("{err:#}").contains("hour"), "{err:#}");
        let other = TenantId::new("acme-2").expect("tenant");
        assert!(Segment::new(&other, &a, vec![ten.clone()]).is_err());
        let b = AccountId::new("210987654321").expect("account");
        assert!(Segment::new(&t, &b, vec![ten]).is_err());
        assert!(Segment::new(&t, &a, vec![]).is_err());
    }

    #[test]
    fn the_builder_cuts_by_hour_and_size_the_same_way_each_time() {
        let cut = || {
            let mut b = SegmentBuilder::<usize>::default();
            let mut done = Vec::new();
            // 400 records of ~1.4 KB over two hours, interleaved.
            for i in 0..400usize {
                let at = format!("2026-11-30T{}:{:02}:00Z", 10 + i % 2, i % 60);
                done.extend(b.push(run_instances(&format!("e{i}"), &at, &format!("i-{i}")), i));
            }
            done.extend(b.finish());
            done
        };
        let first = cut();
        let sizes: Vec<usize> = first.iter().map(Vec::len).collect();
        // Each hour's 200 records (~300 KB) take two segments.
        assert_eq!(first.len(), 4, "{sizes:?}");
        for rows in &first {
            let bytes: usize = rows.iter().map(|(r, _)| r.raw.len()).sum();
            assert!(bytes <= SEGMENT_RAW_BYTES, "{bytes}");
            let hour = rows[0].0.event_time.format("%H").to_string();
            assert!(
                rows.iter()
                    .all(|(r, _)| r.event_time.format("%H").to_string() == hour)
            );
        }
        let tags: usize = first.iter().map(Vec::len).sum();
        assert_eq!(tags, 400, "every record once");
        let keys = |cuts: &[Vec<(AuditRow, usize)>]| -> Vec<Vec<usize>> {
            cuts.iter()
                .map(|c| c.iter().map(|(_, i)| *i).collect())
                .collect()
        };
        assert_eq!(keys(&cut()), keys(&first), "deterministic");
    }

    #[test]
    fn the_builder_closes_the_oldest_other_hour_when_too_many_are_open() {
        let mut b = SegmentBuilder::<usize>::default();
        let at = |h: usize| format!("2026-11-{:02}T{:02}:00:00Z", 1 + h / 24, h % 24);
        // 24 hours open, one record each.
        for h in 0..24 {
            assert!(
                b.push(run_instances(&format!("e{h}"), &at(h), "i-1"), h)
                    .is_empty()
            );
        }
        // A 25th hour closes the oldest (hour 0), not itself.
        let closed = b.push(run_instances("e24", &at(24), "i-1"), 24);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0][0].1, 0);
        // The oldest hour coming back is the row's own: it stays open, and
        // the oldest other (hour 1) closes.
        let closed = b.push(run_instances("e0b", &at(0), "i-1"), 25);
        assert_eq!(closed.iter().map(|c| c[0].1).collect::<Vec<_>>(), vec![1]);
        let rest = b.finish();
        assert_eq!(rest.iter().map(Vec::len).sum::<usize>(), 24);
    }

    #[test]
    fn a_segment_too_large_for_an_item_is_unwritable() {
        let t = TenantId::new("acme").expect("tenant");
        let a = AccountId::new("123456789012").expect("account");
        // 880 KB of random letters (≈ 4.7 bits each): ≈ 520 KB deflated.
        let mut x: u64 = 88172645463325252;
        let mut row = run_instances("e1", "2026-11-30T10:00:00Z", "i-1");
        row.resources = (0..220)
            .map(|_| {
                (0..4000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(b'A' + (x % 26) as u8)
                    })
                    .collect()
            })
            .collect();
        let Err(err) = Segment::new(&t, &a, vec![row]).expect("segment").items() else {
            panic!("a segment of 880 KB of random letters fits an item");
        };
        assert!(
            format!("{err:#}").contains("more than an item holds"),
            "{err:#}"
        );
        assert!(is_unwritable(&err));
        assert!(!is_unwritable(&anyhow::anyhow!("a timeout")));
    }

    #[test]
    fn rows_of_before_segments_read_as_one_record_each() {
        let row = run_instances("e1", "2026-11-30T10:00:00Z", "i-1");
        let item = row_of_before(&row);
        assert_eq!(
            decode_item(item.clone()).expect("decode").1,
            vec![row.clone()]
        );
        // Plain `raw` (before deflate) too.
        let plain: Item = serde_dynamo::to_item(&row).expect("encode");
        assert_eq!(decode_item(plain).expect("decode").1, vec![row.clone()]);
        // A reference row holds no record.
        let reference = Item::from([
            ("pk".to_owned(), AttributeValue::S(row.pk.clone())),
            ("sk".to_owned(), AttributeValue::S(format!("{}#r1", row.sk))),
            ("ref".to_owned(), AttributeValue::Bool(true)),
        ]);
        assert!(decode_item(reference).expect("decode").1.is_empty());
        // A damaged raw_z names the attribute.
        let mut damaged = item;
        damaged.insert(
            RAW_DEFLATED.to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        );
        let err = decode_item(damaged).expect_err("damaged");
        assert!(format!("{err:#}").contains("raw_z"), "{err:#}");
    }

    #[test]
    fn the_searched_range_says_where_a_day_walk_stops() {
        let t = TenantId::new("acme").expect("tenant");
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let mut q = AuditQuery {
            tenant: t,
            since: at("2020-01-01T00:00:00Z"),
            until: at("2026-11-30T12:00:00Z"),
            principal: None,
            event: None,
            source: None,
            resource: None,
            caller_account: None,
            limit: 10,
        };
        // 400 days back from the until's day, whole days.
        assert_eq!(
            q.searched_range(),
            ((at("2025-10-26T00:00:00Z"), q.until), true)
        );
        // A search walks days too.
        q.event = Some("ConsoleLogin".into());
        assert_eq!(
            q.searched_range(),
            ((at("2025-10-26T00:00:00Z"), q.until), true)
        );
        q.since = at("2026-11-01T00:00:00Z");
        assert_eq!(q.searched_range(), ((q.since, q.until), false));
    }
}
