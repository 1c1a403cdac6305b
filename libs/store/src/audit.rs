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
//! A record has one key whatever file or message brought it (CloudTrail
//! gives one `eventTime` per `eventID`), so a conditional put both dedups
//! and tells new from duplicate. A record touching several resources gets
//! one extra *reference* row per further resource (`sk = …#r{n}`,
//! `ref = true`), so each resource finds it through `by-resource`;
//! time-range queries skip reference rows.

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
            sk: sort_key(rec.event_time, &rec.event_id),
            tenant: tenant.clone(),
            account: account.clone(),
            event_id: rec.event_id.clone(),
            event_time: rec.event_time,
            region: rec.aws_region.clone(),
            event_source: rec.event_source.clone(),
            event_name: rec.event_name.clone(),
            principal_arn: rec.principal_arn.clone(),
            principal_type: rec.principal_type.clone(),
            source_ip: rec.source_ip.clone(),
            user_agent: rec.user_agent.clone(),
            read_only: rec.read_only,
            error_code: rec.error_code.clone(),
            resources: rec.resources.clone(),
            findings,
            raw,
            raw_truncated,
            principal_key: rec.principal_arn.as_ref().map(|p| format!("{tenant}#{p}")),
            event_key: format!("{tenant}#{}", rec.event_name),
            resource_key: rec.resources.first().map(|r| format!("{tenant}#{r}")),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    New,
    Duplicate,
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
        let item = serde_dynamo::to_item(row).context("encode audit row")?;
        let refs = row
            .resources
            .iter()
            .enumerate()
            .skip(1)
            .map(|(n, resource)| {
                serde_dynamo::to_item(ResourceRef {
                    pk: row.pk.clone(),
                    sk: format!("{}#r{n}", row.sk),
                    resource_key: format!("{}#{resource}", row.tenant),
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
        let put = |item: Item, condition: Option<&str>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_owned))
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
            return Ok(WriteOutcome::Duplicate);
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

    /// Matching rows, newest first. Indexes project every attribute, so
    /// rows come back whole; only reference rows need a read of the row they
    /// point at.
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
                let is_ref = item.get("ref").and_then(|v| v.as_bool().ok()).copied() == Some(true);
                if is_ref {
                    if index.is_none() {
                        continue;
                    }
                    let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                    let (Some(pk), Some(sk)) = (s("pk"), s("sk")) else {
                        continue;
                    };
                    let base = sk
                        .rsplit_once("#r")
                        .map_or(sk.clone(), |(b, _)| b.to_owned());
                    out.push(Found::Ref(pk, base));
                } else {
                    let row: AuditRow =
                        serde_dynamo::from_item(item).context("decode audit row")?;
                    out.push(Found::Row(Box::new(row)));
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

    async fn resolve(&self, found: Vec<Found>) -> anyhow::Result<Vec<AuditRow>> {
        let mut rows = BTreeMap::new();
        for f in found {
            match f {
                Found::Row(row) => {
                    rows.insert((row.pk.clone(), row.sk.clone()), *row);
                }
                Found::Ref(pk, sk) => {
                    if rows.contains_key(&(pk.clone(), sk.clone())) {
                        continue;
                    }
                    let item = self
                        .ddb
                        .get_item()
                        .table_name(&self.table)
                        .key("pk", AttributeValue::S(pk.clone()))
                        .key("sk", AttributeValue::S(sk.clone()))
                        .send()
                        .await
                        .context("read an audit row")?
                        .item;
                    if let Some(item) = item {
                        let row: AuditRow =
                            serde_dynamo::from_item(item).context("decode audit row")?;
                        rows.insert((pk, sk), row);
                    }
                }
            }
        }
        Ok(rows.into_values().collect())
    }
}

enum Found {
    Row(Box<AuditRow>),
    Ref(String, String),
}

/// Rows a `by-resource` page reads at most: each may be a reference whose
/// row the page's one `BatchGetItem` (at most 100 keys) fetches.
pub const RESOURCE_PAGE_ROWS: usize = 100;

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
    ///   index's partition; for `by-resource` also one `BatchGetItem` of the
    ///   rows its reference rows point at, so such a page reads at most
    ///   [`RESOURCE_PAGE_ROWS`] index rows.
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
                if index == "by-resource" {
                    self.resource_page(q, &value, start, limit.min(RESOURCE_PAGE_ROWS), &range)
                        .await
                } else {
                    let (items, last) = self
                        .query_page(Some(index), attr, &value, &range, start, limit)
                        .await?;
                    let mut rows = Vec::with_capacity(items.len());
                    for item in items {
                        let row: AuditRow =
                            serde_dynamo::from_item(item).context("decode audit row")?;
                        if q.matches(&row) {
                            rows.push(row);
                        }
                    }
                    let next = last
                        .map(|k| page_key(&k).map(|key| position_key(None, Some(key))))
                        .transpose()?;
                    Ok(Page { items: rows, next })
                }
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
                let row: AuditRow = serde_dynamo::from_item(item).context("decode audit row")?;
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

    /// A page of the `by-resource` index: rows, and reference rows resolved
    /// with one `BatchGetItem`. Keys it leaves unprocessed (throttling, or
    /// the 16 MB response cap) end the page before the first such row, so
    /// the next page reads it again.
    async fn resource_page(
        &self,
        q: &AuditQuery,
        value: &str,
        start: Option<Item>,
        limit: usize,
        range: &(String, String),
    ) -> anyhow::Result<Page<AuditRow>> {
        let (items, last) = self
            .query_page(
                Some("by-resource"),
                "resource_key",
                value,
                range,
                start,
                limit,
            )
            .await?;
        let mut found = Vec::with_capacity(items.len());
        for item in items {
            let keys: Item = ["resource_key", "pk", "sk"]
                .iter()
                .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            let f = if is_reference(&item) {
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let (Some(pk), Some(sk)) = (s("pk"), s("sk")) else {
                    anyhow::bail!("audit reference row without pk/sk in {value}");
                };
                let base = sk
                    .rsplit_once("#r")
                    .map_or(sk.clone(), |(b, _)| b.to_owned());
                Found::Ref(pk, base)
            } else {
                Found::Row(Box::new(
                    serde_dynamo::from_item(item).context("decode audit row")?,
                ))
            };
            found.push((keys, f));
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
                // `None`: the row expired since its reference was read.
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

    /// The rows at `keys` (one `BatchGetItem`, at most 100 distinct keys),
    /// and the keys DynamoDB left unprocessed.
    async fn batch_rows(
        &self,
        keys: &[(String, String)],
    ) -> anyhow::Result<(BTreeMap<(String, String), AuditRow>, Vec<(String, String)>)> {
        let mut distinct: Vec<&(String, String)> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.is_empty() {
            return Ok((BTreeMap::new(), Vec::new()));
        }
        anyhow::ensure!(
            distinct.len() <= 100,
            "BatchGetItem takes at most 100 keys, not {}",
            distinct.len()
        );
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .set_keys(Some(
                distinct
                    .iter()
                    .map(|(pk, sk)| {
                        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
                    })
                    .collect(),
            ))
            .build()
            .context("build a BatchGetItem request")?;
        let out = self
            .ddb
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .context("read audit rows by reference")?;
        let mut rows = BTreeMap::new();
        for item in out
            .responses
            .unwrap_or_default()
            .remove(&self.table)
            .unwrap_or_default()
        {
            let row: AuditRow = serde_dynamo::from_item(item).context("decode audit row")?;
            rows.insert((row.pk.clone(), row.sk.clone()), row);
        }
        let unprocessed = out
            .unprocessed_keys
            .unwrap_or_default()
            .remove(&self.table)
            .map(|k| {
                k.keys
                    .iter()
                    .filter_map(|key| {
                        let s = |n: &str| key.get(n).and_then(|v| v.as_s().ok()).cloned();
                        Some((s("pk")?, s("sk")?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((rows, unprocessed))
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
                let row: AuditRow = serde_dynamo::from_item(item).context("decode audit row")?;
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
            Some(("by-resource", "resource_key", format!("{t}#{r}")))
        } else if let Some(p) = &self.principal {
            Some(("by-principal", "principal_key", format!("{t}#{p}")))
        } else {
            self.event
                .as_ref()
                .map(|e| ("by-event", "event_key", format!("{t}#{e}")))
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
    pub limit: usize,
}
