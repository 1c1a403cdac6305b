//! Segments: a file's records of one hour, deflated into one item, with a
//! summary of search tokens beside it; how they are built, written and
//! read back in record order. The why is in `design.md` beside this file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{DateTime, Datelike, Duration, DurationRound, NaiveDate, Utc};
use kopter_schema::{AccountId, TenantId};
use serde::{Deserialize, Serialize};

use super::{
    AuditQuery, AuditRow, AuditStore, Item, MAX_RAW_BYTES, WriteOutcome, content_hash, day_pk,
    record_sort_key, sort_key, time_of_sort_key,
};
use crate::page::{Page, PageKey};

/// Raw CloudTrail JSON a segment holds at most, in bytes, before
/// deflate; a record larger than this (up to [`MAX_RAW_BYTES`]) is a
/// segment of its own. CloudTrail JSON deflates 5–10× when records of one
/// file are packed together, so a full segment is 25–50 KB — well under
/// DynamoDB's 400 KB item limit
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>)
/// even for hostile, incompressible records.
pub const SEGMENT_RAW_BYTES: usize = 256 * 1024;

/// Search tokens a summary lists at most; a segment with more (a file
/// naming thousands of resources) gets a summary marked `any`, which
/// every search reads (the records are then filtered one by one).
pub const SEGMENT_TOKENS: usize = 8_192;

/// Hour buckets a [`SegmentBuilder`] keeps open; one more closes the
/// oldest (a file with records spread over many hours stays bounded in
/// memory).
const OPEN_HOURS: usize = 24;

/// Bytes a record's fields other than its raw JSON add, about (for
/// [`SEGMENT_RAW_BYTES`]).
const RECORD_OVERHEAD: usize = 256;

/// What a segment inflates to at most: a reader never allocates more for
/// a damaged or hostile item.
/// JSON escapes a control character in 6 bytes, so a hostile segment's
/// JSON can be 6× its raw records; the writer refuses more.
const MAX_INFLATED: u64 = (SEGMENT_RAW_BYTES + MAX_RAW_BYTES) as u64 * 6;

/// Keys of one `BatchGetItem` (DynamoDB's limit,
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html>).
const BATCH_GET_KEYS: usize = 100;

/// DynamoDB calls after which a page stops at the next hour's end (the
/// api's bound of two calls a page, but for hours of more than 1 MB of
/// items): a walk's two `Query`s (1 MB each), a search's `Query` of
/// summaries and `BatchGetItem` of their segments.
const PAGE_CALLS: usize = 2;

/// Times [`AuditStore::batch_segments`] asks again for keys DynamoDB left
/// unprocessed.
const BATCH_ATTEMPTS: u32 = 5;

/// The search token of one value: `{kind}:{hash}` with `kind` `p`
/// (principal ARN), `e` (event name) or `r` (resource id or ARN) and the
/// first 16 hex digits of the value's SHA-256. 64 bits: a false match is
/// as good as impossible, and a search checks every record it reads
/// anyway ([`AuditQuery::matches`]).
pub fn search_token(kind: char, value: &str) -> String {
    format!("{kind}:{}", &content_hash(value.as_bytes())[..16])
}

/// A record as a segment keeps it: the row's fields that are not keys.
#[derive(Debug, Serialize, Deserialize)]
struct Packed {
    id: String,
    t: DateTime<Utc>,
    region: String,
    source: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ptype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ua: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ro: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    res: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    find: Vec<String>,
    raw: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cut: bool,
    exp: i64,
}

/// The records of one CloudTrail file (one tenant, one account) of one
/// UTC hour, newest first, each record key once: one item of the audit
/// table, and its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub tenant: TenantId,
    pub account: AccountId,
    /// `{tenant}#{day}`: the hour's day.
    pub pk: String,
    /// `{newest eventTime, ms}#seg:{hash}`: the hash is of the tenant,
    /// account and records (keys and raw JSON), so the same records make
    /// the same item whichever delivery brings them.
    pub sk: String,
    pub rows: Vec<AuditRow>,
}

impl Segment {
    /// Packs rows of one tenant, account and UTC hour (at least one).
    /// Rows with the same record key are kept once (the first).
    ///
    /// Errors: no rows, or rows of another tenant, account or hour.
    pub fn new(
        tenant: &TenantId,
        account: &AccountId,
        mut rows: Vec<AuditRow>,
    ) -> anyhow::Result<Self> {
        rows.sort_by(|a, b| b.sk.cmp(&a.sk));
        rows.dedup_by(|later, first| later.sk == first.sk);
        let newest = rows.first().context("a segment needs a record")?.event_time;
        let hour = hour_of(newest);
        for r in &rows {
            anyhow::ensure!(
                &r.tenant == tenant && &r.account == account,
                "record {} is of tenant {} account {}, not of the segment's {tenant} {account}",
                r.event_id,
                r.tenant,
                r.account
            );
            anyhow::ensure!(
                hour_of(r.event_time) == hour,
                "record {} at {} is not of the segment's hour {hour}",
                r.event_id,
                r.event_time
            );
        }
        let mut content = Vec::new();
        for part in [tenant.as_str(), account.as_str()] {
            content.extend_from_slice(part.as_bytes());
            content.push(0);
        }
        for r in &rows {
            for part in [&r.sk, &r.raw] {
                content.extend_from_slice(part.as_bytes());
                content.push(0);
            }
        }
        Ok(Self {
            tenant: tenant.clone(),
            account: account.clone(),
            pk: day_pk(tenant, hour.date_naive()),
            sk: sort_key(newest, &format!("seg:{}", content_hash(&content))),
            rows,
        })
    }

    /// The search tokens of its records: principals, event names,
    /// resources ([`search_token`]).
    pub fn tokens(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for r in &self.rows {
            if let Some(p) = &r.principal_arn {
                out.insert(search_token('p', p));
            }
            out.insert(search_token('e', &r.event_name));
            for x in &r.resources {
                out.insert(search_token('r', x));
            }
        }
        out
    }

    /// When DynamoDB's TTL may delete the segment: its last record's
    /// expiry (Unix seconds).
    fn expires_at(&self) -> i64 {
        self.rows.iter().map(|r| r.expires_at).max().unwrap_or(0)
    }

    /// The segment's item and its summary's.
    ///
    /// Segment: `pk`, `sk`, `tenant`, `account`, `n` (records), `oldest`
    /// (its oldest record's time, ms since the epoch), `z` (the records as
    /// a JSON array, deflated), `expires_at`, `written` (now, ms: of two
    /// different records under one key, readers show the first written).
    /// Summary: `pk =
    /// {pk}#tok`, `sk`, `account`, `tok` (string set) or `any = true`,
    /// `n`, `expires_at`.
    pub fn items(&self) -> anyhow::Result<(Item, Item)> {
        let packed: Vec<Packed> = self
            .rows
            .iter()
            .map(|r| Packed {
                id: r.event_id.clone(),
                t: r.event_time,
                region: r.region.clone(),
                source: r.event_source.clone(),
                name: r.event_name.clone(),
                principal: r.principal_arn.clone(),
                ptype: r.principal_type.clone(),
                caller: r.caller_account.clone(),
                ip: r.source_ip.clone(),
                ua: r.user_agent.clone(),
                ro: r.read_only,
                err: r.error_code.clone(),
                res: r.resources.clone(),
                find: r.findings.clone(),
                raw: r.raw.clone(),
                cut: r.raw_truncated,
                exp: r.expires_at,
            })
            .collect();
        let json = serde_json::to_vec(&packed).context("encode a segment's records")?;
        if json.len() as u64 > MAX_INFLATED {
            return Err(Unwritable(format!(
                "its records encode to {} bytes, more than {MAX_INFLATED}",
                json.len()
            ))
            .into());
        }
        let mut z = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::default(),
        );
        z.write_all(&json).context("deflate a segment")?;
        let z = z.finish().context("deflate a segment")?;
        if z.len() > MAX_ITEM_Z_BYTES {
            return Err(Unwritable(format!(
                "its records deflate to {} bytes, more than an item holds ({MAX_ITEM_Z_BYTES})",
                z.len()
            ))
            .into());
        }
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: i64| AttributeValue::N(v.to_string());
        let oldest = self
            .rows
            .last()
            .map_or(0, |r| r.event_time.timestamp_millis());
        let expires = self.expires_at();
        let count = i64::try_from(self.rows.len()).unwrap_or(i64::MAX);
        let segment = Item::from([
            ("pk".to_owned(), s(&self.pk)),
            ("sk".to_owned(), s(&self.sk)),
            ("tenant".to_owned(), s(self.tenant.as_str())),
            ("account".to_owned(), s(self.account.as_str())),
            ("n".to_owned(), n(count)),
            ("oldest".to_owned(), n(oldest)),
            (
                "z".to_owned(),
                AttributeValue::B(aws_smithy_types::Blob::new(z)),
            ),
            ("expires_at".to_owned(), n(expires)),
            ("written".to_owned(), n(Utc::now().timestamp_millis())),
        ]);
        let tokens = self.tokens();
        let mut summary = Item::from([
            (
                "pk".to_owned(),
                s(&summary_pk(
                    &self.tenant,
                    hour_of(self.rows[0].event_time).date_naive(),
                )),
            ),
            ("sk".to_owned(), s(&self.sk)),
            ("account".to_owned(), s(self.account.as_str())),
            ("n".to_owned(), n(count)),
            ("expires_at".to_owned(), n(expires)),
        ]);
        if tokens.len() > SEGMENT_TOKENS {
            summary.insert("any".to_owned(), AttributeValue::Bool(true));
        } else {
            summary.insert(
                "tok".to_owned(),
                AttributeValue::Ss(tokens.into_iter().collect()),
            );
        }
        Ok((segment, summary))
    }
}

/// A segment DynamoDB could not take (too large once encoded): writing
/// the same records again cannot succeed ([`super::is_unwritable`]).
#[derive(Debug)]
pub struct Unwritable(pub String);

impl std::fmt::Display for Unwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment not writable: {}", self.0)
    }
}

impl std::error::Error for Unwritable {}

/// Deflated bytes a segment item may hold: DynamoDB's 400 KB item limit
/// less room for its key and other attributes.
const MAX_ITEM_Z_BYTES: usize = 390 * 1024;

/// `kopter_audit_items_unreadable_total`: audit items a reader left out
/// because they do not inflate or decode (each also logged, naming it).
fn unreadable(e: &anyhow::Error) {
    static C: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
        kopter_runtime::metrics::register(
            prometheus::IntCounter::new(
                "kopter_audit_items_unreadable_total",
                "Audit-log items (segments, rows of before) left out of a read because they do not inflate or decode.",
            )
            .expect("valid metric"),
        )
    });
    C.inc();
    tracing::error!(error = format!("{e:#}"), "audit item unreadable; left out");
}

/// The partition of a month's summaries: `{tenant}#{yyyy-mm}#tok`. By
/// month, not day: a search over weeks is then a few `Query`s, not one
/// per day.
fn summary_pk(tenant: &TenantId, day: NaiveDate) -> String {
    format!("{tenant}#{}#tok", day.format("%Y-%m"))
}

/// The first day of the partition holding `day`: the day itself for
/// segments (walks), its month's first for summaries (searches).
fn partition_start(day: NaiveDate, search: bool) -> NaiveDate {
    if search {
        day.with_day(1).unwrap_or(day)
    } else {
        day
    }
}

/// The first day after the partition starting at `start`.
fn partition_end(start: NaiveDate, search: bool) -> NaiveDate {
    if search {
        start
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX)
    } else {
        start.succ_opt().unwrap_or(NaiveDate::MAX)
    }
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap_or(t)
}

/// Cuts a file's rows into segments' worth: by UTC hour of `eventTime`,
/// at most [`SEGMENT_RAW_BYTES`] of raw records each, in the order rows
/// come — the same file always cuts the same way, so a redelivery makes
/// the same segments. Each row carries a tag `T` of the caller's (what it
/// needs once the segment is written).
pub struct SegmentBuilder<T> {
    /// By hour: the rows so far and their size in bytes, about.
    open: BTreeMap<DateTime<Utc>, Open<T>>,
}

/// The rows of one open segment and their size, about (bytes).
type Open<T> = (Vec<(AuditRow, T)>, usize);

impl<T> Default for SegmentBuilder<T> {
    fn default() -> Self {
        Self {
            open: BTreeMap::new(),
        }
    }
}

impl<T> SegmentBuilder<T> {
    /// Adds a row; returns the rows of segments this closed: the row's
    /// hour when the row would take it past [`SEGMENT_RAW_BYTES`], the
    /// oldest open hour when too many are open.
    pub fn push(&mut self, row: AuditRow, tag: T) -> Vec<Vec<(AuditRow, T)>> {
        let mut done = Vec::new();
        let hour = hour_of(row.event_time);
        let size = row_bytes(&row);
        if let Some((rows, bytes)) = self.open.get_mut(&hour)
            && *bytes + size > SEGMENT_RAW_BYTES
            && !rows.is_empty()
        {
            done.push(std::mem::take(rows));
            *bytes = 0;
        }
        let (rows, bytes) = self.open.entry(hour).or_insert_with(|| (Vec::new(), 0));
        rows.push((row, tag));
        *bytes += size;
        while self.open.len() > OPEN_HOURS {
            // The oldest hour but the row's own (a file whose records
            // jump between hours would otherwise close each new one).
            let Some(oldest) = self.open.keys().find(|h| **h != hour).copied() else {
                break;
            };
            if let Some((rows, _)) = self.open.remove(&oldest) {
                done.push(rows);
            }
        }
        done.retain(|rows| !rows.is_empty());
        done
    }

    /// The rows of every segment still open.
    pub fn finish(self) -> Vec<Vec<(AuditRow, T)>> {
        self.open
            .into_values()
            .map(|(rows, _)| rows)
            .filter(|rows| !rows.is_empty())
            .collect()
    }
}

/// A row's size in a segment, about (bytes): its raw JSON (cut at
/// [`MAX_RAW_BYTES`]) and the fields taken from it, which are not cut.
fn row_bytes(row: &AuditRow) -> usize {
    let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    row.raw.len()
        + row.resources.iter().map(String::len).sum::<usize>()
        + opt(&row.principal_arn)
        + opt(&row.user_agent)
        + opt(&row.error_code)
        + opt(&row.source_ip)
        + row.event_id.len()
        + row.event_name.len()
        + row.event_source.len()
        + RECORD_OVERHEAD
}

/// The records of one item of a day partition: a segment's, a row's of
/// before segments (itself), or none (a reference row of before); and
/// when the item was written (ms since the epoch; 0 for rows of before,
/// which were all written first). Errors name the item's key.
pub(crate) fn decode_item(item: Item) -> anyhow::Result<(i64, Vec<AuditRow>)> {
    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let (Some(pk), Some(sk)) = (s("pk"), s("sk")) else {
        anyhow::bail!("an audit item has no pk or sk");
    };
    if item.contains_key("n") && item.contains_key("z") {
        let written = item
            .get("written")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return decode_segment(&item)
            .map(|rows| (written, rows))
            .with_context(|| format!("audit segment {pk} {sk}"));
    }
    if super::is_reference(&item) {
        return Ok((0, Vec::new()));
    }
    super::decode_row(item)
        .map(|row| (0, vec![row]))
        .with_context(|| format!("audit row {pk} {sk}"))
}

fn decode_segment(item: &Item) -> anyhow::Result<Vec<AuditRow>> {
    let s = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .with_context(|| format!("no {k}"))
    };
    let tenant = TenantId::new(s("tenant")?).context("tenant")?;
    let account = AccountId::new(s("account")?).context("account")?;
    let Some(AttributeValue::B(z)) = item.get("z") else {
        anyhow::bail!("z is not binary");
    };
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(z.as_ref())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut json)
        .context("inflate z")?;
    anyhow::ensure!(
        json.len() as u64 <= MAX_INFLATED,
        "z inflates beyond {MAX_INFLATED} bytes"
    );
    let packed: Vec<Packed> = serde_json::from_slice(&json).context("decode z's records")?;
    Ok(packed
        .into_iter()
        .map(|p| AuditRow {
            pk: day_pk(&tenant, p.t.date_naive()),
            sk: record_sort_key(p.t, &p.id),
            tenant: tenant.clone(),
            account: account.clone(),
            event_id: p.id,
            event_time: p.t,
            region: p.region,
            event_source: p.source,
            event_name: p.name,
            principal_arn: p.principal,
            principal_type: p.ptype,
            caller_account: p.caller,
            source_ip: p.ip,
            user_agent: p.ua,
            read_only: p.ro,
            error_code: p.err,
            resources: p.res,
            findings: p.find,
            raw: p.raw,
            raw_truncated: p.cut,
            expires_at: p.exp,
        })
        .collect())
}

/// Where an audit page resumes: the JSON inside its [`PageKey`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagePosition {
    /// The day partition the walk has reached.
    day: NaiveDate,
    /// Read that day's items from this sort key down (inclusive);
    /// `None`: from the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upper: Option<String>,
    /// The last record key given out: only older records come next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

impl AuditStore {
    /// Writes a segment once: its summary (idempotent), then the segment
    /// itself on condition that it is not there — a redelivered file's
    /// segment is a [`WriteOutcome::Duplicate`] costing one failed
    /// condition. The summary goes first so that a segment is never
    /// there without it (a summary without its segment is skipped by
    /// searches).
    ///
    /// Errors name the segment and keep the SDK error in the chain
    /// (`kopter_runtime::aws::classify` finds throttling in it;
    /// [`super::is_unwritable`] a refused item).
    pub async fn put_segment(&self, seg: &Segment) -> anyhow::Result<WriteOutcome> {
        let (item, summary) = seg.items()?;
        let what = || {
            format!(
                "audit segment {} {} ({} records, newest {})",
                seg.pk,
                seg.sk,
                seg.rows.len(),
                seg.rows.first().map_or("", |r| r.event_id.as_str())
            )
        };
        self.ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(summary))
            .send()
            .await
            .with_context(|| format!("write the summary of {}", what()))?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(WriteOutcome::New),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(WriteOutcome::Duplicate)
            }
            Err(err) => Err(anyhow::Error::new(err)).with_context(|| format!("write {}", what())),
        }
    }

    /// Writes one record as a segment of its own (tools and tests; the
    /// ingest packs files with [`SegmentBuilder`]).
    pub async fn put(&self, row: &AuditRow) -> anyhow::Result<WriteOutcome> {
        self.put_segment(&Segment::new(&row.tenant, &row.account, vec![row.clone()])?)
            .await
    }
}

/// The items of one UTC hour of a partition, read whole: each with its
/// sort key, when it was written and its records. Every record of the
/// hour is in an item of the hour, and no other.
struct Hour {
    hour: DateTime<Utc>,
    items: Vec<(String, i64, Vec<AuditRow>)>,
}

impl Hour {
    /// The hour's records the query wants, newest first by record key,
    /// each key once: of two copies the one written first (ties: the
    /// item with the greater sort key, as [`AuditStore::get`] picks).
    fn records(self, q: &AuditQuery) -> Vec<AuditRow> {
        // The copy to show is chosen among all copies, then filtered: a
        // filter must not pick a later copy the unfiltered list hides.
        let mut by_key: BTreeMap<String, (i64, String, AuditRow)> = BTreeMap::new();
        for (sk, written, rows) in self.items {
            for row in rows {
                let better = by_key
                    .get(&row.sk)
                    .is_none_or(|(w, s, _)| written < *w || (written == *w && sk > *s));
                if better {
                    by_key.insert(row.sk.clone(), (written, sk.clone(), row));
                }
            }
        }
        by_key
            .into_values()
            .rev()
            .map(|(_, _, row)| row)
            .filter(|row| q.matches(row))
            .collect()
    }
}

/// What one read of a partition gave: whole hours, newest first, and
/// where the partition goes on (`Some(upper)`: read from that sort key
/// down, inclusive; `None`: the partition is done); and the calls made.
struct PartitionRead {
    hours: Vec<Hour>,
    resume: Option<String>,
    calls: usize,
}

/// Groups items (newest first) by the UTC hour of their sort key's time.
fn by_hour(items: Vec<(String, i64, Vec<AuditRow>)>) -> Vec<Hour> {
    let mut hours: Vec<Hour> = Vec::new();
    for item in items {
        let Some(t) = time_of_sort_key(&item.0) else {
            continue;
        };
        let hour = hour_of(t);
        match hours.last_mut() {
            Some(h) if h.hour == hour => h.items.push(item),
            _ => hours.push(Hour {
                hour,
                items: vec![item],
            }),
        }
    }
    hours
}

/// The sort key just above every item of `hour`: a read from it down
/// starts with that hour.
fn hour_top(hour: DateTime<Utc>) -> String {
    sort_key(hour + Duration::hours(1), "")
}

impl AuditStore {
    /// One page of `q`, newest first (ties by `eventID`): at most
    /// `q.limit` (1–1000) records after `after` (a previous page's
    /// `next`).
    ///
    /// A page reads whole UTC hours — every record of an hour is in an
    /// item of that hour, so an hour read whole is in exact order once
    /// sorted — newest first:
    /// - without a principal, event or resource filter, `Query`s of a day
    ///   partition's items (1 MB each);
    /// - with any, `Query`s of a month's summaries, filtered in DynamoDB to
    ///   those holding every token ([`AuditQuery::tokens`]), and one
    ///   strongly consistent `BatchGetItem` per 100 of their segments.
    ///
    /// A page stops at `q.limit` records, or at an hour's end once it made
    /// [`PAGE_CALLS`] calls; an hour larger than 1 MB of items (of
    /// summaries, for a search) takes the calls it needs (its records
    /// cannot be ordered before it is read whole). A page that fills up
    /// inside an hour resumes at that hour's top, skipping what it gave.
    /// The other filters apply to the records read, and a walk may cross
    /// days without records, so a page can hold fewer records than
    /// `q.limit` — even none — while `next` is set; only `next: None` ends
    /// the list. Every page moves on (gives a record or passes an hour or
    /// a partition), so following `next` ends. The position (partition,
    /// sort key to read down from, last record given) is no offset, and a
    /// forged one can only move the read inside the tenant's own
    /// partitions of the query's days.
    pub async fn page(
        &self,
        q: &AuditQuery,
        after: Option<&PageKey>,
    ) -> anyhow::Result<Page<AuditRow>> {
        let ((since, until), _) = q.searched_range();
        if since > until {
            // Nothing can match (the api refuses such a filter; a cursor
            // carries the range it was made for).
            return Ok(Page::empty());
        }
        let (first_day, last_day) = (since.date_naive(), until.date_naive());
        let tokens = q.tokens();
        let search = !tokens.is_empty();
        let position: PagePosition = match after {
            Some(k) => serde_json::from_value(k.0.clone()).context("decode an audit page key")?,
            None => PagePosition {
                day: last_day,
                upper: None,
                after: None,
            },
        };
        // `day`: the first day of the partition being read.
        let mut day = partition_start(position.day, search);
        let (first, last) = (
            partition_start(first_day, search),
            partition_start(last_day, search),
        );
        if day > last || day < first {
            anyhow::bail!(
                "audit page key: day {} is outside the query's {first_day}..{last_day}",
                position.day
            );
        }
        let lower = sort_key(since, "");
        let top = |day: NaiveDate| {
            let midnight = partition_end(day, search)
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc();
            sort_key(midnight.min(hour_of(until) + Duration::hours(1)), "")
        };
        let mut upper = position.upper.map_or_else(|| top(day), |u| u.min(top(day)));
        let limit = q.limit.clamp(1, 1000);
        let mut after = position.after;
        let mut out = Vec::new();
        let mut calls = 0;
        loop {
            let read = if upper < lower {
                PartitionRead {
                    hours: Vec::new(),
                    resume: None,
                    calls: 0,
                }
            } else if search {
                self.read_summaries(&q.tenant, day, &tokens, &lower, &upper)
                    .await?
            } else {
                self.read_segments(&day_pk(&q.tenant, day), &lower, &upper)
                    .await?
            };
            calls += read.calls;
            for hour in read.hours {
                let h = hour.hour;
                for row in hour.records(q) {
                    if after.as_ref().is_some_and(|a| &row.sk >= a) {
                        continue;
                    }
                    after = Some(row.sk.clone());
                    out.push(row);
                    if out.len() >= limit {
                        // Full inside (or at the end of) hour `h`: the
                        // next page reads it again, after the last given.
                        return page_of(
                            out,
                            Some(PagePosition {
                                day,
                                upper: Some(hour_top(h)),
                                after,
                            }),
                        );
                    }
                }
                // Hour `h` is given whole: read below it.
                upper = sort_key(h, "");
            }
            match read.resume {
                Some(from) => upper = from.min(upper),
                None => {
                    let prev = day
                        .pred_opt()
                        .map(|d| partition_start(d, search))
                        .filter(|d| *d >= first);
                    match prev {
                        Some(d) => {
                            day = d;
                            upper = top(day);
                        }
                        None => return page_of(out, None),
                    }
                }
            }
            // A walk's read is a `Query`; a search's a `Query` and a
            // `BatchGetItem`: one per page.
            if calls >= PAGE_CALLS || (search && calls > 0) {
                return page_of(
                    out,
                    Some(PagePosition {
                        day,
                        upper: Some(upper),
                        after,
                    }),
                );
            }
        }
    }

    /// Whole hours of a day partition's items with sort keys in
    /// `lower..=upper`, newest first: one `Query` (1 MB), and more while
    /// its first hour is not read to its end. The last hour of a response
    /// that stops inside it is left for the next read.
    async fn read_segments(
        &self,
        pk: &str,
        lower: &str,
        upper: &str,
    ) -> anyhow::Result<PartitionRead> {
        let mut items = Vec::new();
        let mut start = None;
        let mut calls = 0;
        loop {
            let resp = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(":lo", AttributeValue::S(lower.to_owned()))
                .expression_attribute_values(":hi", AttributeValue::S(upper.to_owned()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("query the audit log ({pk})"))?;
            calls += 1;
            for item in resp.items.unwrap_or_default() {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                // A damaged item must not hide the rest of its hour for
                // good: logged (naming it) and passed.
                match decode_item(item) {
                    Ok((written, rows)) => items.push((sk, written, rows)),
                    Err(e) => unreadable(&e),
                }
            }
            let Some(lek) = resp.last_evaluated_key.filter(|k| !k.is_empty()) else {
                return Ok(PartitionRead {
                    hours: by_hour(items),
                    resume: None,
                    calls,
                });
            };
            let mut hours = by_hour(items);
            if hours.len() > 1 {
                // The last hour may go on past this response.
                let open = hours.pop().expect("two hours");
                return Ok(PartitionRead {
                    hours,
                    resume: Some(hour_top(open.hour)),
                    calls,
                });
            }
            items = hours.pop().map(|h| h.items).unwrap_or_default();
            start = Some(lek);
        }
    }

    /// A search's whole hours of the month starting at `month`: summaries
    /// with sort keys in `lower..=upper` holding every token (or marked
    /// `any`), newest first — one `Query` (1 MB evaluated), more while its
    /// first matching hour is not evaluated to its end — then their
    /// segments (strongly consistent `BatchGetItem`s of 100; a segment's
    /// day is its sort key's). A summary whose segment is not there (its
    /// write failed after the summary's) is skipped.
    async fn read_summaries(
        &self,
        tenant: &TenantId,
        month: NaiveDate,
        tokens: &[String],
        lower: &str,
        upper: &str,
    ) -> anyhow::Result<PartitionRead> {
        let pk = summary_pk(tenant, month);
        let mut sks: Vec<String> = Vec::new();
        let mut start = None;
        let mut calls = 0;
        let resume = loop {
            let mut filter = Vec::new();
            let mut query = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":lo", AttributeValue::S(lower.to_owned()))
                .expression_attribute_values(":hi", AttributeValue::S(upper.to_owned()))
                .expression_attribute_names("#tok", "tok")
                .expression_attribute_names("#any", "any")
                .projection_expression("sk")
                .scan_index_forward(false)
                .set_exclusive_start_key(start);
            for (i, t) in tokens.iter().enumerate() {
                filter.push(format!("contains(#tok, :t{i})"));
                query = query
                    .expression_attribute_values(format!(":t{i}"), AttributeValue::S(t.clone()));
            }
            let resp = query
                .filter_expression(format!(
                    "({}) OR attribute_exists(#any)",
                    filter.join(" AND ")
                ))
                .send()
                .await
                .with_context(|| format!("query the audit log's summaries ({pk})"))?;
            calls += 1;
            sks.extend(
                resp.items
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned()),
            );
            let Some(lek) = resp.last_evaluated_key.filter(|k| !k.is_empty()) else {
                break None;
            };
            let lek_hour = last_sk(Some(&lek))
                .as_deref()
                .and_then(time_of_sort_key)
                .map(hour_of);
            let Some(lek_hour) = lek_hour else {
                anyhow::bail!("a LastEvaluatedKey of {pk} has no time in its sort key");
            };
            // Hours above the last evaluated one are complete; the last
            // evaluated hour is read again from its top.
            let resume_at = hour_top(lek_hour);
            let complete = sks
                .iter()
                .take_while(|sk| time_of_sort_key(sk).is_some_and(|t| hour_of(t) > lek_hour))
                .count();
            // Stop with what is complete, or with nothing but a lower place
            // to go on from (the next page); only an hour whose summaries
            // alone pass 1 MB is read on here, as it must be whole.
            let moved_on = resume_at.as_str() < upper;
            if complete > 0 || moved_on {
                sks.truncate(complete);
                break Some(resume_at);
            }
            start = Some(lek);
        };
        // One `BatchGetItem` (100 keys) of whole hours; the first hour
        // whole whatever its size.
        let mut resume = resume;
        if sks.len() > BATCH_GET_KEYS {
            let hour = |sk: &String| time_of_sort_key(sk).map(hour_of);
            let mut cut = sks
                .iter()
                .position(|sk| hour(sk) != hour(&sks[0]))
                .unwrap_or(sks.len());
            while let Some(next) = sks[cut..].first() {
                let end = sks[cut..]
                    .iter()
                    .position(|sk| hour(sk) != hour(next))
                    .map_or(sks.len(), |n| cut + n);
                if end > BATCH_GET_KEYS {
                    break;
                }
                cut = end;
            }
            if let Some(Some(dropped)) = sks.get(cut).map(hour) {
                resume = Some(hour_top(dropped));
            }
            sks.truncate(cut);
        }
        let keys: Vec<(String, String)> = sks
            .iter()
            .filter_map(|sk| {
                Some((
                    day_pk(tenant, time_of_sort_key(sk)?.date_naive()),
                    sk.clone(),
                ))
            })
            .collect();
        let mut found = BTreeMap::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            found.extend(self.batch_segments(chunk).await?);
            calls += 1;
        }
        let items = sks
            .into_iter()
            .filter_map(|sk| found.remove(&sk).map(|(w, rows)| (sk, w, rows)))
            .collect();
        Ok(PartitionRead {
            hours: by_hour(items),
            resume,
            calls,
        })
    }

    /// The segments at `keys` (`(pk, sk)`, at most 100), decoded, by sort
    /// key; one strongly consistent `BatchGetItem` (a summary is written
    /// before its segment: an eventually consistent read could miss a
    /// segment just written, and the page would pass it for good), and
    /// again for keys DynamoDB leaves unprocessed (up to
    /// [`BATCH_ATTEMPTS`] times, the pause doubling from 50 ms), then an
    /// error classified as throttling.
    async fn batch_segments(
        &self,
        keys: &[(String, String)],
    ) -> anyhow::Result<BTreeMap<String, (i64, Vec<AuditRow>)>> {
        let mut out = BTreeMap::new();
        let mut left: Vec<(String, String)> = keys.to_vec();
        left.sort();
        left.dedup();
        let mut pause = std::time::Duration::from_millis(50);
        for attempt in 1..=BATCH_ATTEMPTS {
            if left.is_empty() {
                break;
            }
            let s = |v: &str| AttributeValue::S(v.to_owned());
            let request = KeysAndAttributes::builder()
                .set_keys(Some(
                    left.iter()
                        .map(|(pk, sk)| {
                            Item::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
                        })
                        .collect(),
                ))
                .consistent_read(true)
                .build()
                .context("build a BatchGetItem request")?;
            let resp = self
                .ddb
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .context("read audit segments by key")?;
            for item in resp
                .responses
                .unwrap_or_default()
                .remove(&self.table)
                .unwrap_or_default()
            {
                let sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .context("BatchGetItem returned an audit item without sk")?;
                match decode_item(item) {
                    Ok(decoded) => {
                        out.insert(sk, decoded);
                    }
                    Err(e) => unreadable(&e),
                }
            }
            left = resp
                .unprocessed_keys
                .unwrap_or_default()
                .remove(&self.table)
                .map(|k| {
                    k.keys
                        .iter()
                        .filter_map(|i| {
                            let s = |n: &str| i.get(n).and_then(|v| v.as_s().ok()).cloned();
                            Some((s("pk")?, s("sk")?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !left.is_empty() && attempt < BATCH_ATTEMPTS {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        if !left.is_empty() {
            return Err(anyhow::Error::new(
                ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .message(format!(
                        "BatchGetItem left {} audit segments unprocessed after {BATCH_ATTEMPTS} attempts",
                        left.len()
                    ))
                    .build(),
            ));
        }
        Ok(out)
    }

    /// Runs a query to the end or to `q.limit` records (newest first):
    /// [`AuditStore::page`] after page.
    pub async fn query(&self, q: &AuditQuery) -> anyhow::Result<Vec<AuditRow>> {
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let mut page_q = q.clone();
            page_q.limit = (q.limit - rows.len()).clamp(1, 1000);
            let page = self.page(&page_q, after.as_ref()).await?;
            rows.extend(page.items);
            match page.next {
                Some(next) if rows.len() < q.limit => after = Some(next),
                _ => break,
            }
        }
        rows.truncate(q.limit);
        Ok(rows)
    }

    /// One record by its key (`{eventTime ms}#{eventID}`,
    /// [`super::record_sort_key`], which names its day too); `None` if the
    /// tenant has no such record. Reads the segments of the record's hour
    /// whose records can reach back to its time.
    pub async fn get(&self, tenant: &TenantId, sk: &str) -> anyhow::Result<Option<AuditRow>> {
        let Some(time) = time_of_sort_key(sk) else {
            return Ok(None);
        };
        let pk = day_pk(tenant, time.date_naive());
        let lower = sort_key(time, "");
        let upper = sort_key(hour_of(time) + Duration::hours(1), "");
        let mut start = None;
        let mut found: Option<(i64, String, AuditRow)> = None;
        loop {
            let resp = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .filter_expression("attribute_not_exists(#oldest) OR #oldest <= :t")
                .expression_attribute_names("#oldest", "oldest")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":lo", AttributeValue::S(lower.clone()))
                .expression_attribute_values(":hi", AttributeValue::S(upper.clone()))
                .expression_attribute_values(
                    ":t",
                    AttributeValue::N(time.timestamp_millis().to_string()),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .context("read an audit record")?;
            for item in resp.items.unwrap_or_default() {
                let item_sk = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default();
                let (written, rows) = match decode_item(item) {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        unreadable(&e);
                        continue;
                    }
                };
                if let Some(row) = rows.into_iter().find(|r| r.sk == sk && r.tenant == *tenant)
                    && found
                        .as_ref()
                        .is_none_or(|(w, s, _)| written < *w || (written == *w && item_sk > *s))
                {
                    // Of two copies, the first written (as pages show).
                    found = Some((written, item_sk, row));
                }
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found.map(|(_, _, row)| row)),
            }
        }
    }
}

/// The sort key of a `LastEvaluatedKey` (`None`: the partition is done).
fn last_sk(key: Option<&Item>) -> Option<String> {
    key.filter(|k| !k.is_empty())
        .and_then(|k| k.get("sk"))
        .and_then(|v| v.as_s().ok())
        .cloned()
}

/// A page and its `next` position as a [`PageKey`].
fn page_of(items: Vec<AuditRow>, next: Option<PagePosition>) -> anyhow::Result<Page<AuditRow>> {
    let next = next
        .map(|p| serde_json::to_value(p).map(PageKey))
        .transpose()
        .context("encode an audit page key")?;
    Ok(Page { items, next })
}

/// What [`AuditStore::repack_day`] did to one day of a tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repacked {
    /// Records of rows of before segments found.
    pub records: usize,
    /// Segments written for them (new or already there).
    pub segments: usize,
    /// Items of before segments deleted (rows and reference rows).
    pub deleted: usize,
}

/// Items per `BatchWriteItem` (DynamoDB's limit).
const BATCH_WRITE: usize = 25;

impl AuditStore {
    /// Rewrites a tenant's day of rows of before segments (one item per
    /// record, plus reference rows) as segments with summaries, then
    /// deletes those items: after it, searches by principal, event and
    /// resource find that day's records too.
    ///
    /// Idempotent and resumable: the segments are cut the same way each
    /// time (records by account and hour, in key order), so a second run
    /// finds them there; a run stopped between writing and deleting leaves
    /// each record in both forms, which readers show once. Items of another
    /// tenant (none should be in the partition) are left alone. Errors name
    /// the day and keep the SDK error in the chain.
    pub async fn repack_day(&self, tenant: &TenantId, day: NaiveDate) -> anyhow::Result<Repacked> {
        let pk = day_pk(tenant, day);
        let mut rows: Vec<AuditRow> = Vec::new();
        let mut old: Vec<String> = Vec::new();
        let mut start = None;
        loop {
            let resp = self
                .ddb
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .with_context(|| format!("read {pk} to repack it"))?;
            for item in resp.items.unwrap_or_default() {
                if item.contains_key("n") && item.contains_key("z") {
                    continue;
                }
                let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned();
                let (_, found) = decode_item(item)?;
                if found.iter().any(|r| &r.tenant != tenant) {
                    continue;
                }
                rows.extend(found);
                old.extend(sk);
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let mut done = Repacked {
            records: rows.len(),
            ..Repacked::default()
        };
        rows.sort_by(|a, b| a.sk.cmp(&b.sk));
        let mut by_account: BTreeMap<AccountId, SegmentBuilder<()>> = BTreeMap::new();
        let mut cuts = Vec::new();
        for row in rows {
            let b = by_account.entry(row.account.clone()).or_default();
            cuts.extend(b.push(row, ()));
        }
        cuts.extend(by_account.into_values().flat_map(SegmentBuilder::finish));
        for cut in cuts {
            let rows: Vec<AuditRow> = cut.into_iter().map(|(r, ())| r).collect();
            let account = rows[0].account.clone();
            self.put_segment(&Segment::new(tenant, &account, rows)?)
                .await
                .with_context(|| format!("repack {pk}"))?;
            done.segments += 1;
        }
        for chunk in old.chunks(BATCH_WRITE) {
            let keys = chunk
                .iter()
                .map(|sk| {
                    Item::from([
                        ("pk".to_owned(), AttributeValue::S(pk.clone())),
                        ("sk".to_owned(), AttributeValue::S(sk.clone())),
                    ])
                })
                .collect();
            crate::purge::delete_batch(&self.ddb, &self.table, keys)
                .await
                .with_context(|| format!("delete repacked rows of {pk}"))?;
            done.deleted += chunk.len();
        }
        Ok(done)
    }
}
