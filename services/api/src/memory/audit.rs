//! In-memory audit log and feed: rows in their stored shape, filtered and
//! paged by position (the window pinned in the page key, like DynamoDB's).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::audit::{AuditQuery, AuditRow};
use kopter_store::feed::FeedRow;
use serde_json::json;

use super::MemoryData;
use crate::data::audit::{
    AuditData, AuditEvent, AuditFilter, AuditRecordDetail, FINDING_KIND, Finding, FindingFilter,
    Notification, NotificationFilter, RecordId, rfc3339,
};
use crate::data::{DataError, Page, PageKey, PageRequest};

/// The `at`-th to `at + limit`-th of `rows`, with the position after.
fn slice<T>(
    rows: Vec<T>,
    page: &PageRequest,
    pinned: serde_json::Value,
) -> Result<Page<T>, DataError> {
    let at = match &page.after {
        None => 0,
        Some(PageKey(v)) => v["at"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("bad page key {v}"))?
            as usize,
    };
    let end = (at + page.limit as usize).min(rows.len());
    let next = (end < rows.len()).then(|| {
        let mut key = pinned;
        key["at"] = json!(end);
        PageKey(key)
    });
    let items = rows
        .into_iter()
        .skip(at)
        .take(end.saturating_sub(at))
        .collect();
    Ok(Page { items, next })
}

impl AuditData for MemoryData {
    fn audit_events<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a AuditFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<AuditEvent>, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let window = |k: &str| -> Option<DateTime<Utc>> {
                page.after.as_ref()?.0[k].as_str()?.parse().ok()
            };
            let since = window("since").unwrap_or(filter.since);
            let until = window("until").unwrap_or(filter.until);
            let q = AuditQuery {
                tenant: tenant.clone(),
                since,
                until,
                principal: filter.principal.clone(),
                event: filter.event.clone(),
                source: filter.source.clone(),
                resource: filter.resource.clone(),
                caller_account: filter.caller_account.clone(),
                limit: page.limit as usize,
            };
            let (from, to) = (rfc3339(since), rfc3339(until));
            let mut rows: Vec<&AuditRow> = self
                .audit
                .iter()
                .filter(|r| {
                    let t = rfc3339(r.event_time);
                    t >= from && t <= to && q.matches(r)
                })
                .filter(|r| {
                    filter
                        .account
                        .as_deref()
                        .is_none_or(|a| r.account.as_str() == a)
                })
                .collect();
            rows.sort_by(|a, b| b.sk.cmp(&a.sk));
            let rows = rows.into_iter().map(AuditEvent::from).collect();
            slice(rows, &page, json!({"since": since, "until": until}))
        })
    }

    fn audit_record<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<Option<AuditRecordDetail>, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            Ok(self
                .audit
                .iter()
                .find(|r| &r.tenant == tenant && r.sk == id.sort_key())
                .map(AuditRecordDetail::from))
        })
    }

    fn findings<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a FindingFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Finding>, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let rows = self.feed_of(tenant, |r| {
                r.kind == FINDING_KIND
                    && filter.since.is_none_or(|s| r.at >= s)
                    && filter.until.is_none_or(|u| r.at < u)
                    && filter.rule.as_ref().is_none_or(|x| &r.rule == x)
                    && filter
                        .severity
                        .is_none_or(|s| r.severity == kopter_schema::messages::Severity::from(s))
            });
            slice(rows.iter().map(Finding::from).collect(), &page, json!({}))
        })
    }

    fn notifications<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a NotificationFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Notification>, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let rows = self.feed_of(tenant, |r| !filter.unread || r.unread());
            slice(
                rows.iter().map(Notification::from).collect(),
                &page,
                json!({}),
            )
        })
    }

    fn mark_notification_read<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<bool, DataError>> {
        Box::pin(async move {
            self.record(tenant);
            let mut feed = self.feed.lock().expect("lock");
            let Some(row) = feed
                .iter_mut()
                .find(|r| &r.tenant == tenant && r.sk == id.sort_key())
            else {
                return Ok(false);
            };
            row.unread_key = None;
            row.read_at.get_or_insert_with(Utc::now);
            Ok(true)
        })
    }
}

impl MemoryData {
    /// The tenant's feed rows passing `keep`, newest first.
    fn feed_of(&self, tenant: &TenantId, keep: impl Fn(&FeedRow) -> bool) -> Vec<FeedRow> {
        let mut rows: Vec<FeedRow> = self
            .feed
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| &r.tenant == tenant && keep(r))
            .cloned()
            .collect();
        rows.sort_by(|a, b| b.sk.cmp(&a.sk));
        rows
    }
}
