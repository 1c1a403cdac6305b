//! The per-tenant notification feed (notifications table) and burst
//! windows (dedup table).
//!
//! Feed rows: `pk = {tenant}`, `sk = {event time, ms RFC 3339}#{id}`, where
//! `id` is a stable hash of the event's identity, so the same event always
//! has the same key and a conditional put writes it once. Unread rows carry
//! `unread_key = {tenant}` (the sparse `unread` index); marking read
//! removes it. Rows expire (`expires_at`) after `notifier.retention_days`.
//!
//! Burst rows: `pk = {tenant}#notify-burst#{rule}#{window start, epoch s}`
//! count the events of one tenant and rule in one window. The feed put and
//! the count increment are one transaction, so a redelivered event neither
//! adds a row nor counts twice. A window is closed (`flushed`) when its
//! flush message is handled; an event that meets a closed window goes to
//! the next one.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use kopter_schema::items::keys;
use kopter_schema::messages::Severity;
use kopter_schema::{AccountId, Names, Table, TenantId};
use serde::{Deserialize, Serialize};

use crate::event::{AuditRef, Event, stable_id};
use crate::page::{Page, PageKey, page_key, start_key};

/// One notification as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedRow {
    pub pk: String,
    pub sk: String,
    pub id: String,
    pub tenant: TenantId,
    pub kind: String,
    pub rule: String,
    pub severity: Severity,
    pub title: String,
    pub text: String,
    pub at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    /// `{account}/{region}/{resource id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Key of the audit-log row this came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditRef>,
    /// Key of the burst window it was delivered in, if collapsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
    /// Set while unread (sparse `unread` index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
    pub expires_at: i64,
}

impl FeedRow {
    pub fn from_event(ev: &Event, retention_days: u32) -> Self {
        let id = stable_id(&ev.identity);
        let now = Utc::now();
        Self {
            pk: ev.tenant.to_string(),
            sk: sort_key(ev.at, &id),
            id,
            tenant: ev.tenant.clone(),
            kind: ev.kind.to_owned(),
            rule: ev.rule.clone(),
            severity: ev.severity,
            title: ev.title.clone(),
            text: ev.text.clone(),
            at: ev.at,
            created_at: now,
            account: ev.account.clone(),
            resource: ev.resource.clone(),
            audit: ev.audit.clone(),
            burst: None,
            unread_key: Some(ev.tenant.to_string()),
            read_at: None,
            expires_at: (now + Duration::days(i64::from(retention_days))).timestamp(),
        }
    }

    pub fn unread(&self) -> bool {
        self.unread_key.is_some()
    }
}

pub fn sort_key(at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A burst window's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstRow {
    pub pk: String,
    pub tenant: TenantId,
    pub rule: String,
    pub window_start: DateTime<Utc>,
    pub n: u64,
    pub severity: Severity,
    pub title: String,
    pub first_text: String,
    pub first_at: DateTime<Utc>,
    pub last_text: String,
    pub last_at: DateTime<Utc>,
    #[serde(default)]
    pub flushed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_owner: Option<String>,
    pub expires_at: i64,
}

pub fn burst_key(tenant: &TenantId, rule: &str, window_start: DateTime<Utc>) -> String {
    keys::tenant_dedup(
        tenant,
        "notify-burst",
        &format!("{rule}#{}", window_start.timestamp()),
    )
}

/// Start of the window (aligned to multiples of `window` since the epoch)
/// that contains `t`.
pub fn window_start(t: DateTime<Utc>, window: std::time::Duration) -> DateTime<Utc> {
    let w = window.as_millis().max(1) as i64;
    let ms = t.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(w)).expect("in range")
}

/// What a page of the feed selects ([`FeedStore::page`]).
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    /// Only unread rows (through the sparse `unread` index).
    pub unread_only: bool,
    /// Event time at or after.
    pub from: Option<DateTime<Utc>>,
    /// Event time before.
    pub to: Option<DateTime<Utc>>,
    /// Only this message kind (`security.finding`, …).
    pub kind: Option<String>,
    /// Only this rule (a finding's rule id, `backup.failed`, …).
    pub rule: Option<String>,
    pub severity: Option<Severity>,
    /// Page size, 1–1000.
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    New,
    /// The event is in the feed already (redelivered or republished).
    Duplicate,
}

#[derive(Clone, Debug)]
pub struct FeedStore {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    dedup: String,
}

fn is_ccf<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl FeedStore {
    pub fn new(ddb: aws_sdk_dynamodb::Client, names: &Names) -> Self {
        Self {
            ddb,
            table: names.table(Table::Notifications),
            dedup: names.table(Table::Dedup),
        }
    }

    /// Writes a row once.
    pub async fn put(&self, row: &FeedRow) -> anyhow::Result<PutOutcome> {
        let item = serde_dynamo::to_item(row).context("encode feed row")?;
        let put = self
            .ddb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(PutOutcome::New),
            Err(e) if e.as_service_error().is_some_and(is_ccf) => Ok(PutOutcome::Duplicate),
            Err(e) => Err(anyhow::Error::new(e).context("write feed row")),
        }
    }

    /// Writes a row once and counts it in its burst window, atomically.
    /// Returns the window it was counted in (for a duplicate: the window
    /// the first write counted it in).
    pub async fn put_in_burst(
        &self,
        row: &FeedRow,
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(PutOutcome, DateTime<Utc>)> {
        let mut start = window_start(now, window);
        for _ in 0..5 {
            let key = burst_key(&row.tenant, &row.rule, start);
            let mut row = row.clone();
            row.burst = Some(key.clone());
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(
                    serde_dynamo::to_item(&row).context("encode feed row")?,
                ))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .expect("table and item are set");
            let s = |v: &str| AttributeValue::S(v.to_owned());
            let values: HashMap<String, AttributeValue> = [
                (":one", AttributeValue::N("1".into())),
                (":tenant", s(row.tenant.as_str())),
                (":rule", s(&row.rule)),
                (
                    ":ws",
                    s(&start.to_rfc3339_opts(SecondsFormat::Millis, true)),
                ),
                (":sev", s(crate::event::severity_name(row.severity))),
                (":title", s(&row.title)),
                (":text", s(&row.text)),
                (
                    ":at",
                    s(&row.at.to_rfc3339_opts(SecondsFormat::Millis, true)),
                ),
                (":exp", AttributeValue::N(row.expires_at.to_string())),
                (":f", AttributeValue::Bool(false)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let update = Update::builder()
                .table_name(&self.dedup)
                .key("pk", s(&key))
                .update_expression(
                    "ADD n :one SET tenant = if_not_exists(tenant, :tenant), \
                     #rule = if_not_exists(#rule, :rule), \
                     window_start = if_not_exists(window_start, :ws), \
                     severity = if_not_exists(severity, :sev), \
                     title = if_not_exists(title, :title), \
                     first_text = if_not_exists(first_text, :text), \
                     first_at = if_not_exists(first_at, :at), \
                     last_text = :text, last_at = :at, \
                     expires_at = if_not_exists(expires_at, :exp), \
                     flushed = if_not_exists(flushed, :f)",
                )
                .expression_attribute_names("#rule", "rule")
                .condition_expression("attribute_not_exists(flushed) OR flushed = :f")
                .set_expression_attribute_values(Some(values))
                .build()
                .expect("table, key and expression are set");
            let result = self
                .ddb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().update(update).build())
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok((PutOutcome::New, start)),
                Err(e) => e,
            };
            let reasons: Vec<Option<String>> = match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().map(str::to_owned))
                    .collect(),
                _ => return Err(anyhow::Error::new(err).context("write feed row and burst count")),
            };
            let failed = |i: usize| {
                reasons.get(i).and_then(|c| c.as_deref()) == Some("ConditionalCheckFailed")
            };
            if failed(0) {
                // Already in the feed: report the window it was counted in.
                let existing = self
                    .get(&row.tenant, &row.sk)
                    .await?
                    .context("a duplicate feed row vanished")?;
                let start = existing
                    .burst
                    .as_deref()
                    .and_then(|k| k.rsplit('#').next())
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(|s| DateTime::from_timestamp(s, 0))
                    .unwrap_or(start);
                return Ok((PutOutcome::Duplicate, start));
            }
            if failed(1) {
                // The window has been flushed: count it in the next one.
                start += chrono::Duration::from_std(window).expect("window fits");
                continue;
            }
            return Err(anyhow::Error::new(err).context("write feed row and burst count"));
        }
        anyhow::bail!("no open burst window for rule {} after 5 tries", row.rule)
    }

    /// Claims the scheduling of a window's flush for `owner` (an event id).
    /// True if `owner` holds it (first claim, or the same owner again after
    /// a retry): the caller then sends the flush message.
    pub async fn claim_flush(&self, burst: &str, owner: &str) -> anyhow::Result<bool> {
        let r = self
            .ddb
            .update_item()
            .table_name(&self.dedup)
            .key("pk", AttributeValue::S(burst.to_owned()))
            .update_expression("SET flush_owner = :o")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(flush_owner) OR flush_owner = :o)",
            )
            .expression_attribute_values(":o", AttributeValue::S(owner.to_owned()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_ccf) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("claim a burst flush")),
        }
    }

    /// Closes a window (idempotent) and returns its final state; `None` if
    /// there is no such window (expired).
    pub async fn close_burst(&self, burst: &str) -> anyhow::Result<Option<BurstRow>> {
        let r = self
            .ddb
            .update_item()
            .table_name(&self.dedup)
            .key("pk", AttributeValue::S(burst.to_owned()))
            .update_expression("SET flushed = :t")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => out
                .attributes
                .map(|a| serde_dynamo::from_item(a).context("decode burst row"))
                .transpose(),
            Err(e) if e.as_service_error().is_some_and(is_ccf) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context("close a burst window")),
        }
    }

    pub async fn get(&self, tenant: &TenantId, sk: &str) -> anyhow::Result<Option<FeedRow>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(tenant.to_string()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .context("read a feed row")?;
        out.item
            .map(|i| serde_dynamo::from_item(i).context("decode feed row"))
            .transpose()
    }

    /// A tenant's notifications, newest first; only unread ones with
    /// `unread_only` (through the sparse index).
    pub async fn list(
        &self,
        tenant: &TenantId,
        unread_only: bool,
        limit: usize,
    ) -> anyhow::Result<Vec<FeedRow>> {
        let mut q = self
            .ddb
            .query()
            .table_name(&self.table)
            .scan_index_forward(false)
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()));
        q = if unread_only {
            q.index_name("unread")
                .key_condition_expression("unread_key = :t")
        } else {
            q.key_condition_expression("pk = :t")
        };
        self.collect(q, tenant, limit).await
    }

    /// A tenant's notifications whose event time is in `[from, to)`.
    pub async fn between(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<FeedRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :t AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
            .expression_attribute_values(":a", AttributeValue::S(sort_key(from, "")))
            .expression_attribute_values(
                ":b",
                AttributeValue::S(sort_key(to - Duration::milliseconds(1), "\u{10ffff}")),
            );
        self.collect(q, tenant, limit).await
    }

    async fn collect(
        &self,
        q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        tenant: &TenantId,
        limit: usize,
    ) -> anyhow::Result<Vec<FeedRow>> {
        let mut out = Vec::new();
        let mut pages = q.into_paginator().items().send();
        while let Some(item) = pages.next().await {
            let row: FeedRow = serde_dynamo::from_item(item.context("query the feed")?)
                .context("decode feed row")?;
            // Keys lead with the tenant; this is a second lock on the door.
            if &row.tenant == tenant {
                out.push(row);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// One page of a tenant's feed, newest first: at most `q.limit` (1–1000)
    /// rows after `after` (a previous page's `next`). One `Query` of the
    /// tenant's partition (of the sparse `unread` index with
    /// `q.unread_only`), with the time range as key condition and `kind`,
    /// `rule` and `severity` as a filter expression; when the filter drops
    /// rows a second `Query` continues, so a page may still hold fewer rows
    /// than asked while `next` is set — only `next: None` ends the list.
    pub async fn page(
        &self,
        tenant: &TenantId,
        q: &FeedQuery,
        after: Option<&PageKey>,
    ) -> anyhow::Result<Page<FeedRow>> {
        let limit = q.limit.clamp(1, 1000);
        let (index, attr) = if q.unread_only {
            (Some("unread"), "unread_key")
        } else {
            (None, "pk")
        };
        let attrs: &[&str] = if q.unread_only {
            &["unread_key", "pk", "sk"]
        } else {
            &["pk", "sk"]
        };
        let mut start = after
            .map(|k| start_key(k, attrs, (attr, tenant.as_str())))
            .transpose()?;
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let mut values = HashMap::from([(":t".to_owned(), s(tenant.as_str()))]);
        let mut names = HashMap::from([("#k".to_owned(), attr.to_owned())]);
        let mut condition = "#k = :t".to_owned();
        // `to` is exclusive: the last sort key of the millisecond before.
        let from = q.from.map(|f| sort_key(f, ""));
        let to =
            q.to.map(|t| sort_key(t - Duration::milliseconds(1), "\u{10ffff}"));
        match (&from, &to) {
            (Some(_), Some(_)) => condition.push_str(" AND sk BETWEEN :a AND :b"),
            (Some(_), None) => condition.push_str(" AND sk >= :a"),
            (None, Some(_)) => condition.push_str(" AND sk <= :b"),
            (None, None) => {}
        }
        if let Some(a) = &from {
            values.insert(":a".into(), s(a));
        }
        if let Some(b) = &to {
            values.insert(":b".into(), s(b));
        }
        let mut filters = Vec::new();
        for (name, attr, value) in [
            ("kind", "#kind", q.kind.as_deref()),
            ("rule", "#rule", q.rule.as_deref()),
            (
                "severity",
                "#severity",
                q.severity.map(crate::event::severity_name),
            ),
        ] {
            if let Some(v) = value {
                let placeholder = format!(":{name}");
                filters.push(format!("{attr} = {placeholder}"));
                names.insert(attr.to_owned(), name.to_owned());
                values.insert(placeholder, s(v));
            }
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let mut rows = Vec::new();
        for _ in 0..2 {
            let out = self
                .ddb
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(&condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - rows.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .context("query the feed")?;
            for item in out.items.unwrap_or_default() {
                let row: FeedRow = serde_dynamo::from_item(item).context("decode feed row")?;
                // Keys lead with the tenant; this is a second lock on the door.
                if &row.tenant == tenant {
                    rows.push(row);
                }
            }
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() || rows.len() >= limit {
                break;
            }
        }
        let next = start.as_ref().map(page_key).transpose()?;
        Ok(Page { items: rows, next })
    }

    /// A tenant's notifications whose `id` starts with `prefix` (the short
    /// id listings show, or the whole id): one query of the tenant's
    /// partition with a filter, so it reads the whole feed (bounded by
    /// `notifier.retention_days`) — fine for an operator's command.
    pub async fn find_by_id(
        &self,
        tenant: &TenantId,
        prefix: &str,
    ) -> anyhow::Result<Vec<FeedRow>> {
        let q = self
            .ddb
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :t")
            .filter_expression("begins_with(id, :p)")
            .expression_attribute_values(":t", AttributeValue::S(tenant.to_string()))
            .expression_attribute_values(":p", AttributeValue::S(prefix.to_owned()));
        self.collect(q, tenant, usize::MAX).await
    }

    /// Marks a notification read. False if the tenant has no such row.
    pub async fn mark_read(&self, tenant: &TenantId, sk: &str) -> anyhow::Result<bool> {
        let r = self
            .ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(tenant.to_string()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .update_expression("SET read_at = if_not_exists(read_at, :now) REMOVE unread_key")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_ccf) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("mark a notification read")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align() {
        let t: DateTime<Utc> = "2026-01-01T00:07:31.250Z".parse().unwrap();
        let w = window_start(t, std::time::Duration::from_secs(300));
        assert_eq!(w, "2026-01-01T00:05:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(window_start(w, std::time::Duration::from_secs(300)), w);
    }

    #[test]
    fn sort_keys_order_by_time() {
        let a = sort_key("2026-01-01T00:00:00Z".parse().unwrap(), "ff");
        let b = sort_key("2026-01-01T00:00:00.001Z".parse().unwrap(), "00");
        assert!(a < b);
    }
}
