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

/// Items a walk reads per `Query`, and segments a search fetches per
/// `BatchGetItem`.
const READ_ITEMS: i32 = 16;

/// DynamoDB calls one page makes at most (the api's bound): a walk reads
/// two `Query` pages (of one day, or across days); a search one `Query` of
/// summaries and one `BatchGetItem` of their segments.
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
        anyhow::ensure!(
            json.len() as u64 <= MAX_INFLATED,
            "a segment's records encode to {} bytes, more than {MAX_INFLATED}",
            json.len()
        );
        let mut z = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::default(),
        );
        z.write_all(&json).context("deflate a segment")?;
        let z = z.finish().context("deflate a segment")?;
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
        let size =
            row.raw.len() + row.resources.iter().map(String::len).sum::<usize>() + RECORD_OVERHEAD;
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
            if let Some((_, (rows, _))) = self.open.pop_first() {
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

/// Records read but not given out yet, by record key (newest last), with
/// the sort key of the item each came from and when that was written;
/// and the page being filled.
struct Merge<'q> {
    q: &'q AuditQuery,
    limit: usize,
    after: Option<String>,
    buffer: BTreeMap<String, Buffered>,
    out: Vec<AuditRow>,
}

struct Buffered {
    row: AuditRow,
    from: String,
    written: i64,
}

impl Merge<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.limit
    }

    /// An item's records: those the query wants and not given out yet.
    /// Of two copies of a record key (the same record in two files, or a
    /// different record under a taken key) the first written is kept: both
    /// are read before either is given out, since both items' sort keys
    /// are at least the record's time.
    fn add(&mut self, item_sk: &str, written: i64, rows: Vec<AuditRow>) {
        for row in rows {
            let older = self.after.as_ref().is_none_or(|a| &row.sk < a);
            if !older || !self.q.matches(&row) {
                continue;
            }
            let from = match self.buffer.get(&row.sk) {
                Some(kept) if kept.written <= written => continue,
                // The earlier copy keeps the newer source: a page must
                // resume from the first item with anything buffered.
                Some(kept) => kept.from.clone().max(item_sk.to_owned()),
                None => item_sk.to_owned(),
            };
            self.buffer
                .insert(row.sk.clone(), Buffered { row, from, written });
        }
    }

    /// Gives out, newest first, the records with keys above `bound` (all
    /// when `None`) until the page is full.
    fn release(&mut self, bound: Option<&str>) {
        while !self.full() {
            let Some(entry) = self.buffer.last_entry() else {
                return;
            };
            if bound.is_some_and(|b| entry.key().as_str() <= b) {
                return;
            }
            let row = entry.remove().row;
            self.after = Some(row.sk.clone());
            self.out.push(row);
        }
    }

    /// After an item with sort key `item_sk` (newest record at its time):
    /// every record newer than that time is known.
    fn release_newer_than(&mut self, item_sk: &str) {
        if let Some(t) = time_of_sort_key(item_sk) {
            let bound = sort_key(t, "\u{10ffff}");
            self.release(Some(&bound));
        }
    }

    /// Where a page that stops here resumes in `day`: from the newest item
    /// with records still buffered, else from `read_to` (the last item
    /// read, inclusive, when the day has more).
    fn resume(&self, day: NaiveDate, read_to: Option<String>) -> Option<PagePosition> {
        let buffered = self.buffer.values().map(|b| &b.from).max().cloned();
        let upper = buffered.or(read_to)?;
        Some(PagePosition {
            day,
            upper: Some(upper),
            after: self.after.clone(),
        })
    }
}

/// One read of a day partition: items newest first (sort key, when
/// written, records), and where the partition goes on (`Some(sk)`: from
/// that item, inclusive).
struct Batch {
    items: Vec<(String, (i64, Vec<AuditRow>))>,
    more: Option<String>,
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

    /// One page of `q`, newest first (ties by `eventID`): at most
    /// `q.limit` (1–1000) records after `after` (a previous page's
    /// `next`), in at most [`PAGE_CALLS`] DynamoDB calls.
    ///
    /// - Without a principal, event or resource filter: two `Query`s of
    ///   day partitions' segments ([`READ_ITEMS`] each).
    /// - With: one `Query` of a day's summaries (filtered in DynamoDB to
    ///   those holding every token, [`AuditQuery::tokens`]) and one
    ///   `BatchGetItem` of up to [`READ_ITEMS`] of their segments.
    ///
    /// The other filters apply to the records read, and a walk may cross
    /// days without records, so a page can hold fewer records than
    /// `q.limit` — even none — while `next` is set; only `next: None` ends
    /// the list. The position (day, sort key to read down from, last
    /// record given) is no offset, and a forged one can only move the read
    /// inside the tenant's own partitions of the query's days.
    pub async fn page(
        &self,
        q: &AuditQuery,
        after: Option<&PageKey>,
    ) -> anyhow::Result<Page<AuditRow>> {
        let ((since, until), _) = q.searched_range();
        let (first_day, last_day) = (since.date_naive(), until.date_naive());
        let position: PagePosition = match after {
            Some(k) => serde_json::from_value(k.0.clone()).context("decode an audit page key")?,
            None => PagePosition {
                day: last_day,
                upper: None,
                after: None,
            },
        };
        let tokens = q.tokens();
        let search = !tokens.is_empty();
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
        let mut merge = Merge {
            q,
            limit: q.limit.clamp(1, 1000),
            after: position.after,
            buffer: BTreeMap::new(),
            out: Vec::new(),
        };
        // Where the walk goes once the partition is read to its end.
        let next_day = |day: NaiveDate, after: Option<String>| {
            day.pred_opt()
                .map(|d| partition_start(d, search))
                .filter(|d| *d >= first)
                .map(|d| PagePosition {
                    day: d,
                    upper: None,
                    after,
                })
        };
        let reads = if search { PAGE_CALLS / 2 } else { PAGE_CALLS };
        for _ in 0..reads {
            let batch = if search {
                self.search(&q.tenant, day, &tokens, &lower, &upper).await?
            } else {
                self.segments(&day_pk(&q.tenant, day), &lower, &upper)
                    .await?
            };
            let count = batch.items.len();
            for (i, (sk, (written, rows))) in batch.items.into_iter().enumerate() {
                merge.add(&sk, written, rows);
                merge.release_newer_than(&sk);
                if merge.full() {
                    // Stopped inside the day: it goes on from here, or
                    // the day before when this was its last item.
                    let more = i + 1 < count || batch.more.is_some();
                    let next = merge
                        .resume(day, more.then_some(sk))
                        .or_else(|| next_day(day, merge.after.clone()));
                    return page_of(merge.out, next);
                }
            }
            match batch.more {
                Some(from) => upper = from,
                None => {
                    // The day is read: everything buffered is final.
                    merge.release(None);
                    if let Some(next) = merge.resume(day, None) {
                        return page_of(merge.out, Some(next));
                    }
                    let next = next_day(day, merge.after.clone());
                    match next {
                        Some(next) if !merge.full() => {
                            day = next.day;
                            upper = top(day);
                        }
                        next => return page_of(merge.out, next),
                    }
                }
            }
        }
        let next = merge.resume(day, Some(upper));
        page_of(merge.out, next)
    }

    /// Up to [`READ_ITEMS`] items of a day partition with sort keys in
    /// `lower..=upper`, newest first, decoded.
    async fn segments(&self, pk: &str, lower: &str, upper: &str) -> anyhow::Result<Batch> {
        if upper < lower {
            return Ok(Batch {
                items: Vec::new(),
                more: None,
            });
        }
        let resp = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":lo", AttributeValue::S(lower.to_owned()))
            .expression_attribute_values(":hi", AttributeValue::S(upper.to_owned()))
            .scan_index_forward(false)
            .limit(READ_ITEMS)
            .send()
            .await
            .with_context(|| format!("query the audit log ({pk})"))?;
        let more = last_sk(resp.last_evaluated_key.as_ref());
        let mut items = Vec::new();
        for item in resp.items.unwrap_or_default() {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            items.push((sk, decode_item(item)?));
        }
        // The last item read is where the partition goes on; it is read
        // again then (its records are older than nothing given out yet).
        Ok(Batch { items, more })
    }

    /// A search's read of the month starting at `month`: summaries with
    /// sort keys in `lower..=upper` holding every token (or marked `any`),
    /// newest first, up to [`READ_ITEMS`] of them, and their segments (one
    /// `BatchGetItem`; a segment's day is its sort key's). A summary whose
    /// segment is not there (its write failed after the summary's) is
    /// skipped.
    async fn search(
        &self,
        tenant: &TenantId,
        month: NaiveDate,
        tokens: &[String],
        lower: &str,
        upper: &str,
    ) -> anyhow::Result<Batch> {
        if upper < lower {
            return Ok(Batch {
                items: Vec::new(),
                more: None,
            });
        }
        let pk = summary_pk(tenant, month);
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
            .scan_index_forward(false);
        for (i, t) in tokens.iter().enumerate() {
            filter.push(format!("contains(#tok, :t{i})"));
            query =
                query.expression_attribute_values(format!(":t{i}"), AttributeValue::S(t.clone()));
        }
        let resp = query
            .filter_expression(format!(
                "({}) OR attribute_exists(#any)",
                filter.join(" AND ")
            ))
            .send()
            .await
            .with_context(|| format!("query the audit log's summaries ({pk})"))?;
        let mut sks: Vec<String> = resp
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        let mut more = last_sk(resp.last_evaluated_key.as_ref());
        if sks.len() > READ_ITEMS as usize {
            // Go on from the first summary not taken.
            more = Some(sks[READ_ITEMS as usize].clone());
            sks.truncate(READ_ITEMS as usize);
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
        let mut found = self.batch_segments(&keys).await?;
        let items = sks
            .into_iter()
            .filter_map(|sk| found.remove(&sk).map(|rows| (sk, rows)))
            .collect();
        Ok(Batch { items, more })
    }

    /// The segments at `keys` (`(pk, sk)`, at most 100), decoded, by sort
    /// key; one `BatchGetItem`, and again for keys DynamoDB leaves
    /// unprocessed (up to [`BATCH_ATTEMPTS`] times, the pause doubling
    /// from 50 ms), then an error classified as throttling.
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
                out.insert(sk, decode_item(item)?);
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
        let mut found: Option<(i64, AuditRow)> = None;
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
                let (written, rows) = decode_item(item)?;
                if let Some(row) = rows.into_iter().find(|r| r.sk == sk && r.tenant == *tenant)
                    && found.as_ref().is_none_or(|(w, _)| written < *w)
                {
                    // Of two copies, the first written (as pages show).
                    found = Some((written, row));
                }
            }
            match resp.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(found.map(|(_, row)| row)),
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
            let mut requests: Vec<aws_sdk_dynamodb::types::WriteRequest> = chunk
                .iter()
                .map(|sk| {
                    let key = Item::from([
                        ("pk".to_owned(), AttributeValue::S(pk.clone())),
                        ("sk".to_owned(), AttributeValue::S(sk.clone())),
                    ]);
                    aws_sdk_dynamodb::types::DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map(|d| {
                            aws_sdk_dynamodb::types::WriteRequest::builder()
                                .delete_request(d)
                                .build()
                        })
                        .context("build a delete request")
                })
                .collect::<anyhow::Result<_>>()?;
            let mut pause = std::time::Duration::from_millis(50);
            for attempt in 1..=BATCH_ATTEMPTS {
                let resp = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .with_context(|| format!("delete repacked rows of {pk}"))?;
                requests = resp
                    .unprocessed_items
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
                anyhow::ensure!(
                    attempt < BATCH_ATTEMPTS,
                    "{} repacked rows of {pk} left undeleted after {BATCH_ATTEMPTS} attempts; run again",
                    requests.len()
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            done.deleted += chunk.len();
        }
        Ok(done)
    }
}
