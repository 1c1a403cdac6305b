//! The per-tenant audit log in DynamoDB: idempotent writes and the queries
//! a frontend needs.
//!
//! Key layout (see `libs/schema/src/DESIGN.md`):
//! - `pk = {tenant}#{yyyy-mm-dd}` (day of `eventTime`, UTC),
//!   `sk = {eventTime}#{eventID}` — time-range queries walk days;
//! - `by-principal`: `principal_key = {tenant}#{principal ARN}`;
//! - `by-event`: `event_key = {tenant}#{eventName}`;
//! - `by-resource`: `resource_key = {tenant}#{resource id or ARN}`.
//!
//! The three indexes project keys only: an index copy of a row is billed
//! one write unit whatever the row's size (a whole row, 1–2 KB with its
//! raw record, would be two per copy). A search reads the index's keys,
//! then the rows with one strongly consistent `BatchGetItem` per page (1
//! read unit per row up to 4 KB — a fifth of a write unit's price — and
//! one more for a key shaped like a reference row's, whose record is
//! asked for with it). Strongly consistent: an index item is written
//! after its row, and an eventually consistent read could miss a row
//! written a moment ago, which the page would then skip for good.
//! Indexes that still copy whole rows (created before) are read as they
//! are.
//!
//! Every key part taken from record data goes through [`index_key`] /
//! [`key_part`]: a value that would make a key too long for DynamoDB (a
//! principal ARN of IAM's 2,048-character maximum, a hostile event id) is
//! replaced by `sha256:<hash>` in the key, the full value staying an
//! attribute; queries build their keys the same way, so such rows stay
//! searchable.
//!
//! The same table holds each tenant's quarantine ([`QuarantinedRecord`],
//! `pk = {tenant}#quarantine`) and audit settings ([`AuditSettings`],
//! `pk = {tenant}#settings`): neither partition is a day, so time walks
//! never read them, and they carry none of the index attributes.
//!
//! A record has one key whatever file or message brought it (CloudTrail
//! gives one `eventTime` per `eventID`), so a conditional put both dedups
//! and tells new from duplicate. A record touching several resources gets
//! one extra *reference* row per further resource (`sk = …#r{n}`,
//! `ref = true`), so each resource finds it through `by-resource`;
//! time-range queries skip reference rows.
//!
//! A row's raw record is stored deflated in the binary `raw_z` (most of a
//! row's size: see [`encode_row`]); rows written before hold it as the
//! string `raw`, and both read the same.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::page::{Page, PageKey, page_key, start_key};

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

/// An index partition key: `{tenant}#{value}`, long values hashed.
pub fn index_key(tenant: &TenantId, value: &str) -> String {
    format!("{tenant}#{}", key_part(value))
}

/// DynamoDB items are at most 400 KB; raw records above this are stored
/// cut, with `raw_truncated` set (the normalised fields stay complete).
pub const MAX_RAW_BYTES: usize = 300 * 1024;

/// A time-range query without a principal, event or resource filter walks
/// one partition per day; it looks back at most this many days from
/// `until` (retention defaults to 365 days anyway).
pub const MAX_WALK_DAYS: i64 = 400;

/// The reasons of a cancelled transaction, one code per action (`None`
/// for an action that was fine); empty for any other error.
fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// Immediate retries of a transaction cancelled by a concurrent one.
const CONFLICT_RETRIES: u64 = 5;

/// DynamoDB's limit of actions in one `TransactWriteItems`.
const MAX_TRANSACTION_ACTIONS: usize = 100;

type Item = std::collections::HashMap<String, AttributeValue>;

/// One audit log row as stored and as queries return it.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_key: Option<String>,
    pub event_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_key: Option<String>,
    pub expires_at: i64,
}

/// A reference row: makes a record findable by a further resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResourceRef {
    pk: String,
    sk: String,
    resource_key: String,
    r#ref: bool,
    expires_at: i64,
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
            principal_key: rec.principal_arn.as_ref().map(|p| index_key(tenant, p)),
            event_key: index_key(tenant, &rec.event_name),
            resource_key: rec.resources.first().map(|r| index_key(tenant, r)),
            expires_at: (rec.event_time.max(Utc::now() - Duration::days(1))
                + Duration::days(i64::from(retention_days)))
            .timestamp(),
        }
    }
}

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

/// The sort key of a record's row: `{eventTime, ms}#{eventID}`, the
/// `eventID` replaced by `sha256:<hash>` when it is longer than
/// [`MAX_KEY_PART_BYTES`] or contains `#`. CloudTrail's own ids are UUIDs
/// (and derived ones hex); an id with `#` could otherwise give a record
/// the key of another record's reference row (`{record sk}#r{n}`), and
/// the second write would be taken for a duplicate and lost. Anything
/// that links to a row (the notifier's findings) builds its key here.
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

/// What a write of one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    New,
    /// The same record was there already.
    Duplicate,
    /// A different record with the same key (`eventTime` and `eventID`)
    /// was there: the first one is kept, this one is not written.
    Conflict,
}

/// Duplicate or conflict: whether the stored row's raw record (from the
/// failed condition's `ALL_OLD` item) is the one being written. Compared
/// as JSON values, so key order and spacing do not matter; a stored row
/// without `raw` is taken as the same record.
/// The attribute holding a row's raw record, deflate-compressed (binary).
const RAW_DEFLATED: &str = "raw_z";

/// A row as its DynamoDB item: the raw record deflated into `raw_z`.
///
/// Why: the raw CloudTrail record is most of a row (~1.5 KB of JSON) and
/// DynamoDB bills a write unit per KB of item. CloudTrail JSON deflates
/// 3–5× (figures in docs/benchmarks.md, issue 23). The indexes copy keys
/// only, so the row's size is billed once.
fn encode_row(row: &AuditRow) -> anyhow::Result<Item> {
    use std::io::Write;
    let mut item: Item = serde_dynamo::to_item(row).context("encode audit row")?;
    item.remove("raw");
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(row.raw.len() / 3),
        flate2::Compression::default(),
    );
    z.write_all(row.raw.as_bytes())
        .and_then(|()| z.finish())
        .map(|bytes| {
            item.insert(
                RAW_DEFLATED.to_owned(),
                AttributeValue::B(aws_smithy_types::Blob::new(bytes)),
            );
        })
        .with_context(|| format!("deflate the raw record of {}", row.event_id))?;
    Ok(item)
}

/// The raw record of a stored item: `raw_z` inflated, or `raw` as rows
/// written before compression hold it; `None` when neither is there.
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

/// A row from its DynamoDB item (either form of the raw record).
fn decode_row(mut item: Item) -> anyhow::Result<AuditRow> {
    if let Some(raw) = stored_raw(&item)? {
        item.remove(RAW_DEFLATED);
        item.insert("raw".to_owned(), AttributeValue::S(raw));
    }
    serde_dynamo::from_item(item).context("decode audit row")
}

fn same_or_conflict(row: &AuditRow, old: Option<&Item>) -> WriteOutcome {
    // An unreadable stored record cannot be told apart: the first write
    // is kept either way, and a duplicate is the common case.
    let Some(stored) = old.and_then(|o| stored_raw(o).ok().flatten()) else {
        return WriteOutcome::Duplicate;
    };
    if stored == row.raw {
        return WriteOutcome::Duplicate;
    }
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    match (parse(&stored), parse(&row.raw)) {
        (Some(a), Some(b)) if a == b => WriteOutcome::Duplicate,
        _ => WriteOutcome::Conflict,
    }
}

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

    /// Writes a row once: a second write of the same event is a duplicate
    /// and changes nothing.
    ///
    /// Cost of a row already written (a redelivered or overlapping file):
    /// one failed conditional check, nothing else. A row with further
    /// resources is written with its reference rows in one transaction
    /// (the row's condition decides for all), so a row is never there
    /// without its references and a duplicate does not rewrite them. A
    /// record with more resources than a transaction holds (100 actions,
    /// rare) writes its references first, then the row — a duplicate of
    /// those rewrites its references, which are idempotent.
    ///
    /// Errors name the event id and keep the SDK error in the chain
    /// (`kopter_runtime::aws::classify` finds throttling in it); a
    /// transaction cancelled for throttling carries a
    /// `ThrottlingException` code. One cancelled by a concurrent
    /// transaction on the same row (the same record in two files at once) is
    /// tried again here a few times (the other one decides), then carries a
    /// `TransactionConflict` code.
    pub async fn put(&self, row: &AuditRow) -> anyhow::Result<WriteOutcome> {
        let item = encode_row(row)?;
        let refs = row
            .resources
            .iter()
            .enumerate()
            .skip(1)
            .map(|(n, resource)| {
                serde_dynamo::to_item(ResourceRef {
                    pk: row.pk.clone(),
                    sk: format!("{}#r{n}", row.sk),
                    resource_key: index_key(&row.tenant, resource),
                    r#ref: true,
                    expires_at: row.expires_at,
                })
                .context("encode reference row")
            })
            .collect::<anyhow::Result<Vec<Item>>>()?;
        if refs.is_empty() {
            return self.put_row(row, item).await;
        }
        if refs.len() < MAX_TRANSACTION_ACTIONS {
            return self.put_with_refs(row, item, refs).await;
        }
        for r in refs {
            self.ddb
                .put_item()
                .table_name(&self.table)
                .set_item(Some(r))
                .send()
                .await
                .with_context(|| format!("write resource reference of {}", row.event_id))?;
        }
        self.put_row(row, item).await
    }

    async fn put_row(&self, row: &AuditRow, item: Item) -> anyhow::Result<WriteOutcome> {
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match put {
            Ok(_) => Ok(WriteOutcome::New),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let old = match err.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e)) => e.item(),
                    _ => None,
                };
                Ok(same_or_conflict(row, old))
            }
            Err(err) => Err(anyhow::Error::new(err))
                .with_context(|| format!("write audit event {}", row.event_id)),
        }
    }

    async fn put_with_refs(
        &self,
        row: &AuditRow,
        item: Item,
        refs: Vec<Item>,
    ) -> anyhow::Result<WriteOutcome> {
        let put =
            |item: Item, condition: Option<&str>| {
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .set_condition_expression(condition.map(str::to_owned))
                    .set_return_values_on_condition_check_failure(condition.map(|_| {
                        aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld
                    }))
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .context("build a transaction item")
            };
        let mut items = vec![put(item, Some("attribute_not_exists(pk)"))?];
        for r in refs {
            items.push(put(r, None)?);
        }
        let mut conflicts = 0;
        let (err, codes) = loop {
            let sent = self
                .ddb
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match sent {
                Ok(_) => return Ok(WriteOutcome::New),
                Err(err) => err,
            };
            let codes = cancellation_codes(&err);
            // The same record in two files written at once: the other
            // transaction decides, and the next attempt sees its row.
            if codes.iter().any(|c| c == "TransactionConflict") && conflicts < CONFLICT_RETRIES {
                conflicts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * conflicts)).await;
                continue;
            }
            break (err, codes);
        };
        if codes.first().map(String::as_str) == Some("ConditionalCheckFailed") {
            let old = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().first().and_then(|r| r.item())
                }
                _ => None,
            };
            return Ok(same_or_conflict(row, old));
        }
        // A cancelled transaction says why per action; the caller's retry
        // policy reads an error code, so name the one that matters.
        let code = if codes
            .iter()
            .any(|c| c == "ThrottlingError" || c == "ProvisionedThroughputExceeded")
        {
            Some("ThrottlingException")
        } else if codes.iter().any(|c| c == "TransactionConflict") {
            Some("TransactionConflict")
        } else {
            None
        };
        let context = format!("write audit event {} with its references", row.event_id);
        match code {
            Some(code) => Err(anyhow::Error::new(
                ErrorMetadata::builder()
                    .code(code)
                    .message(format!("transaction cancelled: {}", codes.join(", ")))
                    .build(),
            )
            .context(context)),
            None => Err(anyhow::Error::new(err).context(context)),
        }
    }

    /// Runs a query (newest first, at most `q.limit` rows).
    pub async fn query(&self, q: &AuditQuery) -> anyhow::Result<Vec<AuditRow>> {
        let from = sort_key(q.since, "");
        let to = sort_key(q.until, "\u{10ffff}");
        let t = &q.tenant;
        let (index, attr, value) = match q.index() {
            Some((index, attr, value)) => (Some(index), attr, value),
            None => (None, "pk", String::new()),
        };
        let mut rows = Vec::new();
        match index {
            Some(index) => {
                let keys = self
                    .query_keys(Some(index), attr, &value, &from, &to, q.limit)
                    .await?;
                rows.extend(self.resolve(keys).await?);
            }
            None => {
                // Walk days newest first until the limit is reached.
                let mut day = q.until.date_naive();
                let first = q
                    .since
                    .max(q.until - Duration::days(MAX_WALK_DAYS))
                    .date_naive();
                while day >= first && rows.len() < q.limit {
                    let keys = self
                        .query_keys(
                            None,
                            "pk",
                            &day_pk(t, day),
                            &from,
                            &to,
                            q.limit - rows.len(),
                        )
                        .await?;
                    rows.extend(self.resolve(keys).await?);
                    day = match day.pred_opt() {
                        Some(d) => d,
                        None => break,
                    };
                }
            }
        }
        // Every filter applies, whichever one picked the index.
        rows.retain(|r| q.matches(r));
        rows.sort_by(|a, b| b.sk.cmp(&a.sk));
        rows.truncate(q.limit);
        Ok(rows)
    }

    /// Matching items, newest first: rows of a day partition (reference
    /// rows skipped), or what an index's items stand for
    /// ([`index_found`]).
    async fn query_keys(
        &self,
        index: Option<&str>,
        attr: &str,
        value: &str,
        from: &str,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<Found>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .ddb
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression("#k = :v AND sk BETWEEN :from AND :to")
                .expression_attribute_names("#k", attr)
                .expression_attribute_values(":v", AttributeValue::S(value.to_owned()))
                .expression_attribute_values(":from", AttributeValue::S(from.to_owned()))
                .expression_attribute_values(":to", AttributeValue::S(to.to_owned()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("query the audit log ({attr})"))?;
            for item in resp.items.unwrap_or_default() {
                match index {
                    Some(index) => out.push(index_found(item, index)?),
                    None if is_reference(&item) => continue,
                    None => out.push(Found::Row(Box::new(decode_row(item)?))),
                }
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The rows `found` stands for, fetched by key where needed
    /// ([`AuditStore::batch_rows`], [`INDEX_PAGE_ROWS`] keys a call; keys DynamoDB leaves
    /// unprocessed are asked again, up to [`RESOLVE_ATTEMPTS`] times with
    /// a growing pause, then the error says how many are left). A key
    /// whose row is gone (expired since its index item was read) is left
    /// out.
    async fn resolve(&self, found: Vec<Found>) -> anyhow::Result<Vec<AuditRow>> {
        let mut rows = BTreeMap::new();
        let mut wanted = Vec::new();
        for f in found {
            match f {
                Found::Row(row) => {
                    rows.insert((row.pk.clone(), row.sk.clone()), *row);
                }
                Found::Ref(pk, sk) => wanted.push((pk, sk)),
            }
        }
        wanted.retain(|k| !rows.contains_key(k));
        wanted.sort();
        wanted.dedup();
        for chunk in wanted.chunks(INDEX_PAGE_ROWS) {
            let mut left: Vec<(String, String)> = chunk.to_vec();
            let mut pause = std::time::Duration::from_millis(50);
            for attempt in 1..=RESOLVE_ATTEMPTS {
                let (got, unprocessed) = self.batch_rows(&left).await?;
                for row in got.into_values() {
                    rows.insert((row.pk.clone(), row.sk.clone()), row);
                }
                if unprocessed.is_empty() {
                    left.clear();
                    break;
                }
                left = unprocessed;
                if attempt < RESOLVE_ATTEMPTS {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
            if !left.is_empty() {
                return Err(anyhow::Error::new(
                    ErrorMetadata::builder()
                        .code("ProvisionedThroughputExceededException")
                        .message(format!(
                            "BatchGetItem left {} audit rows unprocessed after {RESOLVE_ATTEMPTS} attempts",
                            left.len()
                        ))
                        .build(),
                ));
            }
        }
        Ok(rows.into_values().collect())
    }
}

/// Keys of one `BatchGetItem` (DynamoDB's limit,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html>).
const BATCH_GET_KEYS: usize = 100;

/// Calls [`AuditStore::resolve`] makes for keys left unprocessed.
const RESOLVE_ATTEMPTS: u32 = 5;

/// What an index item stands for. The audit log's indexes project keys
/// only ([`kopter_schema::Projection::KeysOnly`]), so an item is the
/// `(pk, sk)` of a table item to fetch: a record's row, or a reference
/// row (for which [`AuditStore::batch_rows`] gives its record's row).
/// An index that still copies whole items (`ALL`: tables created before,
/// until their indexes are recreated) gives the row itself — unless the
/// item is a reference row, whose record's key it names.
fn index_found(item: Item, index: &str) -> anyhow::Result<Found> {
    let carries_row = item.contains_key(RAW_DEFLATED) || item.contains_key("raw");
    if carries_row && !is_reference(&item) {
        return Ok(Found::Row(Box::new(decode_row(item)?)));
    }
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let (Some(pk), Some(sk)) = (s("pk"), s("sk")) else {
        anyhow::bail!("an item of audit index {index} has no pk or sk");
    };
    if is_reference(&item) {
        return Ok(Found::Ref(pk, reference_base(&sk).to_owned()));
    }
    Ok(Found::Ref(pk, sk))
}

/// The sort key of the record a reference row points at: its own sort
/// key (`{record sk}#r{n}`) without the last `#r{n}` (a record's sort key
/// may contain `#r` itself; the suffix is always last).
fn reference_base(sk: &str) -> &str {
    sk.rsplit_once("#r").map_or(sk, |(base, _)| base)
}

enum Found {
    Row(Box<AuditRow>),
    Ref(String, String),
}

/// Index items a page of an indexed search reads at most: each is the key
/// of a row the page's one `BatchGetItem` (at most 100 keys) fetches —
/// two keys for one that may be a reference row.
pub const INDEX_PAGE_ROWS: usize = BATCH_GET_KEYS / 2;

/// Where an audit page resumes: the JSON inside its [`PageKey`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagePosition {
    /// The day partition a walk has reached (queries without an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<NaiveDate>,
    /// DynamoDB's `LastEvaluatedKey` inside that day's or the index's
    /// partition; `None`: from the newest row of `day`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<PageKey>,
}

impl AuditStore {
    /// One page of `q`, newest first: at most `q.limit` (1–1000) rows after
    /// `after` (a previous page's `next`), in at most two DynamoDB calls.
    ///
    /// - With a resource, principal or event filter: one `Query` of that
    ///   index's partition (keys only) and one `BatchGetItem` of the rows
    ///   its items name, so such a page reads at most [`INDEX_PAGE_ROWS`]
    ///   index items.
    /// - Without: day partitions from `until`'s day back to `since`'s, one
    ///   `Query` each, at most two per page.
    ///
    /// Filters that did not pick the partition apply to the rows read, and
    /// a walk may cross days without rows, so a page can hold fewer rows
    /// than `q.limit` — even none — while `next` is set; only `next: None`
    /// ends the list. The position is the day and `LastEvaluatedKey`
    /// (partition-checked by [`start_key`]), never an offset.
    pub async fn page(
        &self,
        q: &AuditQuery,
        after: Option<&PageKey>,
    ) -> anyhow::Result<Page<AuditRow>> {
        let position: PagePosition = match after {
            Some(k) => serde_json::from_value(k.0.clone()).context("decode an audit page key")?,
            None => PagePosition {
                day: None,
                key: None,
            },
        };
        let limit = q.limit.clamp(1, 1000);
        let range = (sort_key(q.since, ""), sort_key(q.until, "\u{10ffff}"));
        match q.index() {
            Some((index, attr, value)) => {
                let start = position
                    .key
                    .map(|k| start_key(&k, &[attr, "pk", "sk"], (attr, &value)))
                    .transpose()?;
                self.index_page(
                    q,
                    (index, attr, &value),
                    start,
                    limit.min(INDEX_PAGE_ROWS),
                    &range,
                )
                .await
            }
            None => self.day_page(q, position, limit, &range).await,
        }
    }

    /// A page of a walk over day partitions (see [`AuditStore::page`]).
    async fn day_page(
        &self,
        q: &AuditQuery,
        position: PagePosition,
        limit: usize,
        range: &(String, String),
    ) -> anyhow::Result<Page<AuditRow>> {
        let t = &q.tenant;
        let last_day = q.until.date_naive();
        let first_day = q
            .since
            .max(q.until - Duration::days(MAX_WALK_DAYS))
            .date_naive();
        let mut day = position.day.unwrap_or(last_day);
        if day > last_day || day < first_day {
            anyhow::bail!(
                "audit page key: day {day} is outside the query's {first_day}..{last_day}"
            );
        }
        let mut start = position
            .key
            .map(|k| start_key(&k, &["pk", "sk"], ("pk", &day_pk(t, day))))
            .transpose()?;
        let mut rows = Vec::new();
        for _ in 0..2 {
            let (items, last) = self
                .query_page(
                    None,
                    "pk",
                    &day_pk(t, day),
                    range,
                    start.take(),
                    limit - rows.len(),
                )
                .await?;
            for item in items {
                if is_reference(&item) {
                    continue;
                }
                let row: AuditRow = decode_row(item)?;
                if q.matches(&row) {
                    rows.push(row);
                }
            }
            match last {
                Some(k) => start = Some(k),
                None => match day.pred_opt().filter(|d| *d >= first_day) {
                    Some(d) => day = d,
                    None => {
                        return Ok(Page {
                            items: rows,
                            next: None,
                        });
                    }
                },
            }
            if rows.len() >= limit {
                break;
            }
        }
        let key = start.as_ref().map(page_key).transpose()?;
        Ok(Page {
            items: rows,
            next: Some(position_key(Some(day), key)),
        })
    }

    /// A page of an index: its items' rows, fetched with one
    /// `BatchGetItem` ([`AuditStore::batch_rows`]). Keys left unprocessed (throttling, or
    /// the 16 MB response cap) end the page before the first such row, so
    /// the next page reads it again.
    async fn index_page(
        &self,
        q: &AuditQuery,
        (index, attr, value): (&str, &str, &str),
        start: Option<Item>,
        limit: usize,
        range: &(String, String),
    ) -> anyhow::Result<Page<AuditRow>> {
        let (items, last) = self
            .query_page(Some(index), attr, value, range, start, limit)
            .await?;
        let mut found = Vec::with_capacity(items.len());
        for item in items {
            let keys: Item = [attr, "pk", "sk"]
                .iter()
                .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            found.push((keys, index_found(item, index)?));
        }
        let wanted: Vec<(String, String)> = found
            .iter()
            .filter_map(|(_, f)| match f {
                Found::Ref(pk, sk) => Some((pk.clone(), sk.clone())),
                Found::Row(_) => None,
            })
            .collect();
        let (mut resolved, unprocessed) = self.batch_rows(&wanted).await?;
        let mut rows = Vec::with_capacity(found.len());
        let mut next = last.as_ref().map(page_key).transpose()?;
        let mut previous: Option<&Item> = None;
        for (keys, f) in &found {
            let row = match f {
                Found::Row(row) => Some((**row).clone()),
                Found::Ref(pk, sk) if unprocessed.contains(&(pk.clone(), sk.clone())) => {
                    let Some(prev) = previous else {
                        // Not one row resolved: tell the caller to back off
                        // (classified as throttling, a 503 in the api).
                        return Err(anyhow::Error::new(
                            aws_smithy_types::error::ErrorMetadata::builder()
                                .code("ProvisionedThroughputExceededException")
                                .message("BatchGetItem left every audit row unprocessed")
                                .build(),
                        ));
                    };
                    next = Some(page_key(prev)?);
                    break;
                }
                // `None`: the row expired since its index item was read.
                Found::Ref(pk, sk) => resolved.remove(&(pk.clone(), sk.clone())),
            };
            if let Some(row) = row.filter(|r| q.matches(r)) {
                rows.push(row);
            }
            previous = Some(keys);
        }
        Ok(Page {
            items: rows,
            next: next.map(|key| position_key(None, Some(key))),
        })
    }

    /// One `Query` of a partition, newest first: at most `limit` items and
    /// the `LastEvaluatedKey` (`None` when the partition is done).
    async fn query_page(
        &self,
        index: Option<&str>,
        attr: &str,
        value: &str,
        (from, to): &(String, String),
        start: Option<Item>,
        limit: usize,
    ) -> anyhow::Result<(Vec<Item>, Option<Item>)> {
        let resp = self
            .ddb
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#k = :v AND sk BETWEEN :from AND :to")
            .expression_attribute_names("#k", attr)
            .expression_attribute_values(":v", AttributeValue::S(value.to_owned()))
            .expression_attribute_values(":from", AttributeValue::S(from.clone()))
            .expression_attribute_values(":to", AttributeValue::S(to.clone()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("query the audit log ({attr})"))?;
        let last = resp.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((resp.items.unwrap_or_default(), last))
    }

    /// The rows at `keys` (at most [`INDEX_PAGE_ROWS`] distinct), keyed by
    /// the key asked for, and the keys DynamoDB left unprocessed; one
    /// `BatchGetItem`. A key may name a reference row (`{record sk}#r{n}`,
    /// as a keys-only index gives it, with nothing telling it from a record
    /// whose `eventID` ends so): for a sort key of that shape the record's
    /// key is asked for too, and the answer is the record's row when the
    /// item is a reference. A key whose item is gone is in neither result.
    async fn batch_rows(
        &self,
        keys: &[(String, String)],
    ) -> anyhow::Result<(BTreeMap<(String, String), AuditRow>, Vec<(String, String)>)> {
        let mut distinct: Vec<&(String, String)> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        anyhow::ensure!(
            distinct.len() <= INDEX_PAGE_ROWS,
            "at most {INDEX_PAGE_ROWS} audit rows are read at once, not {}",
            distinct.len()
        );
        let base_of = |(pk, sk): &(String, String)| {
            let base = reference_base(sk);
            let n = sk.get(base.len() + 2..).unwrap_or("");
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (pk.clone(), base.to_owned()))
        };
        let mut ask: Vec<(String, String)> = distinct.iter().map(|k| (*k).clone()).collect();
        ask.extend(distinct.iter().filter_map(|k| base_of(k)));
        ask.sort();
        ask.dedup();
        let asked: Vec<&(String, String)> = ask.iter().collect();
        let (items, left) = self.batch_items(&asked).await?;
        let items: BTreeMap<(String, String), Item> = items.into_iter().collect();
        let left: std::collections::BTreeSet<(String, String)> = left.into_iter().collect();
        let mut rows = BTreeMap::new();
        let mut unprocessed = Vec::new();
        for key in distinct {
            if left.contains(key) {
                unprocessed.push(key.clone());
                continue;
            }
            let Some(item) = items.get(key) else {
                continue;
            };
            if !is_reference(item) {
                rows.insert(key.clone(), decode_row(item.clone())?);
                continue;
            }
            let base = base_of(key).with_context(|| {
                format!("audit reference {} {} has no record key", key.0, key.1)
            })?;
            if left.contains(&base) {
                unprocessed.push(key.clone());
            } else if let Some(record) = items.get(&base).filter(|i| !is_reference(i)) {
                rows.insert(key.clone(), decode_row(record.clone())?);
            }
        }
        Ok((rows, unprocessed))
    }

    /// One `BatchGetItem` of `keys` (at most 100, distinct): the items
    /// found, by key, and the keys left unprocessed.
    async fn batch_items(
        &self,
        keys: &[&(String, String)],
    ) -> anyhow::Result<(Vec<((String, String), Item)>, Vec<(String, String)>)> {
        if keys.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(
                keys.iter()
                    .map(|(pk, sk)| {
                        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
                    })
                    .collect(),
            ))
            .consistent_read(true)
            .build()
            .context("build a BatchGetItem request")?;
        let out = self
            .ddb
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .context("read audit rows by key")?;
        let key_of = |item: &Item| {
            let s = |n: &str| item.get(n).and_then(|v| v.as_s().ok()).cloned();
            Some((s("pk")?, s("sk")?))
        };
        let mut found = Vec::new();
        for item in out
            .responses
            .unwrap_or_default()
            .remove(&self.table)
            .unwrap_or_default()
        {
            let key = key_of(&item).context("BatchGetItem returned an audit item without pk/sk")?;
            found.push((key, item));
        }
        let unprocessed = out
            .unprocessed_keys
            .unwrap_or_default()
            .remove(&self.table)
            .map(|k| k.keys.iter().filter_map(key_of).collect())
            .unwrap_or_default();
        Ok((found, unprocessed))
    }

    /// The row of one record, by its sort key (`{eventTime ms}#{eventID}`,
    /// which names its day partition too); `None` if the tenant has no such
    /// row, or the key names a reference row.
    pub async fn get(&self, tenant: &TenantId, sk: &str) -> anyhow::Result<Option<AuditRow>> {
        let Some(day) = day_of_sort_key(sk) else {
            return Ok(None);
        };
        let item = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(day_pk(tenant, day)))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .send()
            .await
            .context("read an audit row")?
            .item;
        match item {
            Some(item) if !is_reference(&item) => {
                let row: AuditRow = decode_row(item)?;
                Ok((row.tenant == *tenant).then_some(row))
            }
            _ => Ok(None),
        }
    }
}

/// The UTC day of a sort key's event time; `None` if `sk` does not start
/// with an RFC 3339 time and `#`.
pub fn day_of_sort_key(sk: &str) -> Option<NaiveDate> {
    let (time, id) = sk.split_once('#')?;
    if id.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc).date_naive())
}

fn is_reference(item: &Item) -> bool {
    item.get("ref").and_then(|v| v.as_bool().ok()).copied() == Some(true)
}

fn position_key(day: Option<NaiveDate>, key: Option<PageKey>) -> PageKey {
    PageKey(serde_json::to_value(PagePosition { day, key }).expect("a position serialises"))
}

impl AuditQuery {
    /// The index a query reads and its partition: the resource's, else the
    /// principal's, else the event name's (`(index, key attribute, value)`);
    /// `None`: walk the day partitions.
    fn index(&self) -> Option<(&'static str, &'static str, String)> {
        let t = &self.tenant;
        if let Some(r) = &self.resource {
            Some(("by-resource", "resource_key", index_key(t, r)))
        } else if let Some(p) = &self.principal {
            Some(("by-principal", "principal_key", index_key(t, p)))
        } else {
            self.event
                .as_ref()
                .map(|e| ("by-event", "event_key", index_key(t, e)))
        }
    }

    /// Whether `row` passes every filter (whichever one picked the index)
    /// and belongs to the query's tenant.
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
    }
}

/// What a frontend asks of the audit log. At most one of principal, event
/// and resource picks the index; all given filters apply.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub tenant: TenantId,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub principal: Option<String>,
    pub event: Option<String>,
    /// Event source (`ec2.amazonaws.com`); a filter on whichever index the
    /// other fields pick.
    pub source: Option<String>,
    pub resource: Option<String>,
    /// The caller's account (`userIdentity.accountId`); a filter on
    /// whichever index the other fields pick.
    pub caller_account: Option<String>,
    pub limit: usize,
}

impl AuditQuery {
    /// The time range a query reads: `since`..`until`, except that a
    /// query without a principal, event or resource filter walks day
    /// partitions and looks back at most [`MAX_WALK_DAYS`] from `until`.
    /// The second value is true when that cut `since` short.
    pub fn searched_range(&self) -> ((DateTime<Utc>, DateTime<Utc>), bool) {
        if self.index().is_some() {
            return ((self.since, self.until), false);
        }
        let floor = self.until - Duration::days(MAX_WALK_DAYS);
        // Day walks read whole UTC days, from the floor's day on.
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

/// Whether a failed write was DynamoDB refusing the row itself (a
/// `ValidationException`: item or key too large, …) rather than a
/// transient failure: writing the same row again cannot succeed.
pub fn is_unwritable(error: &anyhow::Error) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    error.chain().any(|e| {
        let code = if let Some(e) = e.downcast_ref::<PutItemError>() {
            e.code()
        } else if let Some(e) = e.downcast_ref::<TransactWriteItemsError>() {
            e.code()
        } else if let Some(e) = e.downcast_ref::<SdkError<PutItemError, aws_smithy_runtime_api::http::Response>>() {
            e.code()
        } else if let Some(e) = e.downcast_ref::<SdkError<TransactWriteItemsError, aws_smithy_runtime_api::http::Response>>() {
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
    use super::*;

    #[test]
    fn long_key_parts_are_hashed_and_stay_stable() {
        let t = TenantId::new("acme").expect("tenant");
        let short = "arn:aws:iam::123456789012:user/alice";
        assert_eq!(index_key(&t, short), format!("acme#{short}"));
        // IAM's documented maximum ARN length is 2,048 characters.
        let long = format!("arn:aws:iam::123456789012:user/{}", "a".repeat(2048 - 31));
        assert_eq!(long.len(), 2048);
        let k = index_key(&t, &long);
        assert!(
            k.starts_with("acme#sha256:") && k.len() == 5 + 7 + 32,
            "{k}"
        );
        assert_eq!(k, index_key(&t, &long), "the same value, the same key");
        let mut other = long.clone();
        other.push('b');
        assert_ne!(k, index_key(&t, &other));
        let at_limit = "x".repeat(MAX_KEY_PART_BYTES);
        assert_eq!(key_part(&at_limit), at_limit.as_str());
    }

    #[test]
    fn conflicts_differ_in_content_not_in_spacing() {
        let rec = AuditRecord {
            event_id: "e".into(),
            event_time: Utc::now(),
            event_source: "s".into(),
            event_name: "n".into(),
            aws_region: "r".into(),
            recipient_account: None,
            user_account: None,
            principal_arn: None,
            principal_type: None,
            source_ip: None,
            user_agent: None,
            read_only: None,
            error_code: None,
            error_message: None,
            resources: vec![],
            raw: r#"{"a":1,"b":2}"#.into(),
            mfa_used: None,
            console_login: None,
        };
        let t = TenantId::new("acme").expect("tenant");
        let a = AccountId::new("123456789012").expect("account");
        let row = AuditRow::new(&t, &a, &rec, vec![], 1);
        let stored = |raw: &str| Item::from([("raw".to_owned(), AttributeValue::S(raw.into()))]);
        assert_eq!(
            same_or_conflict(&row, Some(&stored(r#"{"b": 2, "a": 1}"#))),
            WriteOutcome::Duplicate
        );
        assert_eq!(
            same_or_conflict(&row, Some(&stored(r#"{"a":1,"b":3}"#))),
            WriteOutcome::Conflict
        );
        assert_eq!(same_or_conflict(&row, None), WriteOutcome::Duplicate);
        // A stored row in the deflated form is compared the same way.
        let mut other = row.clone();
        other.raw = r#"{"a":1,"b":3}"#.into();
        let deflated = encode_row(&other).expect("encode");
        assert_eq!(
            same_or_conflict(&row, Some(&deflated)),
            WriteOutcome::Conflict
        );
        let deflated = encode_row(&row).expect("encode");
        assert_eq!(
            same_or_conflict(&row, Some(&deflated)),
            WriteOutcome::Duplicate
        );
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

    /// What an index item stands for, whichever projection the index has:
    /// a whole row (`ALL`, indexes created before keys-only) is the row; a
    /// reference row copied whole names its record; a keys-only item names
    /// the table item to fetch.
    #[test]
    fn index_items_of_either_projection_name_their_rows() {
        let row = sample_row(r#"{"eventID":"e"}"#.into());
        let whole = encode_row(&row).expect("encode");
        match index_found(whole, "by-principal").expect("whole row") {
            Found::Row(r) => assert_eq!(*r, row),
            Found::Ref(..) => panic!("a whole row is not fetched again"),
        }
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let reference = Item::from([
            ("pk".to_owned(), s(&row.pk)),
            ("sk".to_owned(), s(&format!("{}#r1", row.sk))),
            ("resource_key".to_owned(), s("acme#vol-2")),
            ("ref".to_owned(), AttributeValue::Bool(true)),
        ]);
        match index_found(reference.clone(), "by-resource").expect("reference") {
            Found::Ref(pk, sk) => assert_eq!((pk, sk), (row.pk.clone(), row.sk.clone())),
            Found::Row(_) => panic!("a reference row is not a record"),
        }
        // Keys only: nothing tells a reference from a record; the key as
        // it is (batch_rows asks for the record's key too).
        let mut keys_only = reference;
        keys_only.remove("ref");
        match index_found(keys_only, "by-resource").expect("keys") {
            Found::Ref(pk, sk) => assert_eq!((pk, sk), (row.pk.clone(), format!("{}#r1", row.sk))),
            Found::Row(_) => panic!("keys are not a row"),
        }
        let err = index_found(Item::new(), "by-event").err().expect("no keys");
        assert!(format!("{err:#}").contains("by-event"), "{err:#}");
        assert_eq!(reference_base("t#e#r12"), "t#e");
        assert_eq!(reference_base("t#e#rx#r3"), "t#e#rx");
    }

    #[test]
    fn rows_store_the_raw_record_deflated_and_read_back_whole() {
        // A CloudTrail record from the shared samples' shape, ~1.4 KB.
        let raw = format!(
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","accessKeyId":"AKIAEXAMPLE","userName":"alice"}},"eventTime":"2026-11-30T10:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2023","requestParameters":{{"instancesSet":{{"items":[{{"imageId":"ami-0abcdef1234567890","minCount":1,"maxCount":1}}]}},"instanceType":"m5.large","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"disableApiStop":false,"clientToken":"{}"}},"responseElements":{{"requestId":"11111111-2222-3333-4444-555555555555","reservationId":"r-0123456789abcdef0","ownerId":"123456789012","instancesSet":{{"items":[{{"instanceId":"i-0abc","imageId":"ami-0abcdef1234567890","instanceState":{{"code":0,"name":"pending"}},"privateDnsName":"ip-10-0-0-12.ec2.internal","amiLaunchIndex":0,"productCodes":{{}},"instanceType":"m5.large","launchTime":1764496800000,"placement":{{"availabilityZone":"us-east-1a","tenancy":"default"}},"monitoring":{{"state":"disabled"}},"subnetId":"subnet-0123456789abcdef0","vpcId":"vpc-0123456789abcdef0","privateIpAddress":"10.0.0.12"}}]}}}},"requestID":"11111111-2222-3333-4444-555555555555","eventID":"e","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}}"#,
            "c".repeat(36)
        );
        let row = sample_row(raw.clone());
        let item = encode_row(&row).expect("encode");
        assert!(!item.contains_key("raw"), "the plain raw is not stored");
        let Some(AttributeValue::B(z)) = item.get(RAW_DEFLATED) else {
            panic!("raw_z missing: {item:?}");
        };
        assert!(
            z.as_ref().len() * 2 < raw.len(),
            "deflated {} of {} bytes",
            z.as_ref().len(),
            raw.len()
        );
        let back = decode_row(item).expect("decode");
        assert_eq!(back.raw, raw);
        assert_eq!(back.event_id, row.event_id);
        assert_eq!(back.findings, row.findings);

        // Rows written before compression (plain `raw`) still read.
        let mut old: Item = serde_dynamo::to_item(&row).expect("encode plain");
        assert!(old.contains_key("raw"));
        assert_eq!(decode_row(old.clone()).expect("decode plain").raw, raw);

        // A damaged raw_z is an error naming the attribute, not a panic.
        old.insert(
            RAW_DEFLATED.to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(b"not deflate".to_vec())),
        );
        let err = decode_row(old).expect_err("damaged");
        assert!(format!("{err:#}").contains("raw_z"), "{err:#}");
    }

    #[test]
    fn a_raw_record_inflating_past_the_cap_is_refused() {
        use std::io::Write;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![b'a'; MAX_RAW_BYTES + 10]).unwrap();
        let bomb = z.finish().unwrap();
        let mut item = encode_row(&sample_row("{}".into())).expect("encode");
        item.insert(
            RAW_DEFLATED.to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(bomb)),
        );
        let err = decode_row(item).expect_err("too large");
        assert!(format!("{err:#}").contains("beyond"), "{err:#}");
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
        q.since = at("2026-11-01T00:00:00Z");
        assert_eq!(q.searched_range(), ((q.since, q.until), false));
        // An index reads the whole range.
        q.since = at("2020-01-01T00:00:00Z");
        q.event = Some("ConsoleLogin".into());
        assert_eq!(q.searched_range(), ((q.since, q.until), false));
    }
}
