//! The audit log (`AuditStore`: segments in day partitions, searched
//! through month summaries of their tokens) and the notification feed
//! (`FeedStore`: one partition per tenant, the sparse `unread` index) on
//! DynamoDB. Findings are the feed's `security.finding` rows: the notifier
//! writes one per matched rule with its severity and a key of the audit
//! row, which the audit row's own rule list does not carry.
//!
//! Paging: an audit page key pins the query's window (a defaulted "last
//! 24 h" must not slide between pages) and holds the store's position
//! (partition, sort key to read from, last record given:
//! `AuditStore::page`); a feed page key is the store's `LastEvaluatedKey`.
//! A page is at most two DynamoDB calls, but for an audit hour of more
//! than 1 MB of a tenant's segments (read whole).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kopter_schema::TenantId;
use kopter_store::audit::{AuditQuery, AuditStore};
use kopter_store::feed::{FeedQuery, FeedStore};
use serde::{Deserialize, Serialize};

use super::DynamoData;
use crate::data::audit::{
    AuditData, AuditEvent, AuditFilter, AuditRecordDetail, FINDING_KIND, Finding, FindingFilter,
    Notification, NotificationFilter, RecordId,
};
use crate::data::{DataError, Page, PageKey, PageRequest, store_error};

/// Where an audit page resumes (the JSON inside the sealed cursor).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditPosition {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// The store's position ([`AuditStore::page`]).
    at: serde_json::Value,
}

fn bad_key(what: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Other(anyhow::anyhow!("{what} page key: {e}"))
}

impl AuditData for DynamoData {
    fn audit_events<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a AuditFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<AuditEvent>, DataError>> {
        Box::pin(async move {
            let store = AuditStore::new(self.ddb(tenant).await?, &self.names);
            let (since, until, at) = match page.after {
                Some(PageKey(v)) => {
                    let p: AuditPosition =
                        serde_json::from_value(v).map_err(|e| bad_key("audit", e))?;
                    (p.since, p.until, Some(PageKey(p.at)))
                }
                None => (filter.since, filter.until, None),
            };
            let q = AuditQuery {
                tenant: tenant.clone(),
                since,
                until,
                principal: filter.principal.clone(),
                event: filter.event.clone(),
                source: filter.source.clone(),
                resource: filter.resource.clone(),
                caller_account: filter.caller_account.clone(),
                limit: page.limit.clamp(1, 1000) as usize,
            };
            let rows = store.page(&q, at.as_ref()).await.map_err(store_error)?;
            let next = rows.next.map(|at| {
                PageKey(
                    serde_json::to_value(AuditPosition {
                        since,
                        until,
                        at: at.0,
                    })
                    .expect("a position serialises"),
                )
            });
            // The account is no key of any index: a filter on the rows read.
            let items = rows
                .items
                .iter()
                .filter(|r| {
                    filter
                        .account
                        .as_deref()
                        .is_none_or(|a| r.account.as_str() == a)
                })
                .map(AuditEvent::from)
                .collect();
            Ok(Page { items, next })
        })
    }

    fn audit_record<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<Option<AuditRecordDetail>, DataError>> {
        Box::pin(async move {
            let store = AuditStore::new(self.ddb(tenant).await?, &self.names);
            let row = store
                .get(tenant, id.sort_key())
                .await
                .map_err(store_error)?;
            Ok(row.as_ref().map(AuditRecordDetail::from))
        })
    }

    fn findings<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a FindingFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Finding>, DataError>> {
        Box::pin(async move {
            let store = FeedStore::new(self.ddb(tenant).await?, &self.names);
            let q = FeedQuery {
                unread_only: false,
                from: filter.since,
                to: filter.until,
                kind: Some(FINDING_KIND.to_owned()),
                rule: filter.rule.clone(),
                severity: filter.severity.map(Into::into),
                limit: page.limit.clamp(1, 1000) as usize,
            };
            let rows = store
                .page(tenant, &q, page.after.as_ref())
                .await
                .map_err(store_error)?;
            Ok(rows.map(|r| Finding::from(&r)))
        })
    }

    fn notifications<'a>(
        &'a self,
        tenant: &'a TenantId,
        filter: &'a NotificationFilter,
        page: PageRequest,
    ) -> BoxFuture<'a, Result<Page<Notification>, DataError>> {
        Box::pin(async move {
            let store = FeedStore::new(self.ddb(tenant).await?, &self.names);
            let q = FeedQuery {
                unread_only: filter.unread,
                limit: page.limit.clamp(1, 1000) as usize,
                ..FeedQuery::default()
            };
            let rows = store
                .page(tenant, &q, page.after.as_ref())
                .await
                .map_err(store_error)?;
            Ok(rows.map(|r| Notification::from(&r)))
        })
    }

    fn mark_notification_read<'a>(
        &'a self,
        tenant: &'a TenantId,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<bool, DataError>> {
        Box::pin(async move {
            let store = FeedStore::new(self.ddb(tenant).await?, &self.names);
            store
                .mark_read(tenant, id.sort_key())
                .await
                .map_err(store_error)
        })
    }
}
