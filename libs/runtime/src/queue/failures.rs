//! Why a message failed, kept where an operator can read it.
//!
//! SQS cannot carry it: message attributes are fixed when a message is
//! sent, and a consumer cannot change them on receive. So the worker
//! writes the last failure of a message to the dedup table, keyed by
//! service and SQS message id (the id survives the redrive to the DLQ),
//! and `kopterctl dlq` reads it next to the DLQ message. See
//! `design.md` in this folder, "Failure records".

use std::time::Duration;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kopter_schema::items::keys;
use kopter_schema::{Names, Service, Table};
use serde::{Deserialize, Serialize};

use crate::worker::BoxFuture;

/// Reasons longer than this many bytes are cut (on a character boundary):
/// an error chain is far shorter, and DynamoDB items stop at 400 KB.
pub const MAX_REASON_BYTES: usize = 4096;

/// One handler failure, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFailure {
    pub message_id: String,
    /// `retry`, `permanent` or `panic` (the `reason` label of
    /// `kopter_worker_failed_total`).
    pub outcome: &'static str,
    /// The error chain or panic text.
    pub reason: String,
    /// `ApproximateReceiveCount` of the delivery that failed.
    pub receive_count: u32,
}

/// Where the worker reports failures. Reporting is best effort: the
/// message's fate (redelivery, DLQ) never depends on it.
pub trait FailureSink: Send + Sync + 'static {
    fn record<'a>(&'a self, failure: &'a MessageFailure) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// The stored last failure of one message (dedup table,
/// `pk = _system#message-failure#{service}#{message id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub pk: String,
    pub service: String,
    pub message_id: String,
    /// When a handler first failed on this message.
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// Handler failures so far (each receive that failed counts once).
    pub failures: u32,
    /// Outcome of the last failure: `retry`, `permanent` or `panic`.
    pub outcome: String,
    /// Error chain of the last failure, at most [`MAX_REASON_BYTES`].
    pub reason: String,
    /// `ApproximateReceiveCount` at the last failure.
    pub receive_count: u32,
    /// Epoch seconds; DynamoDB's TTL deletes the record after it.
    pub expires_at: i64,
}

/// Failure records of one service's messages in the dedup table.
#[derive(Debug, Clone)]
pub struct FailureLog {
    ddb: aws_sdk_dynamodb::Client,
    table: String,
    service: Service,
    keep_for: Duration,
}

/// Key of a message's failure record.
pub fn failure_key(service: Service, message_id: &str) -> String {
    keys::system_dedup(
        "message-failure",
        &format!("{}#{message_id}", service.name()),
    )
}

impl FailureLog {
    /// Records live `keep_for` after the last failure: give it the DLQ's
    /// retention (`queues.dlq_retention`) plus a margin, so a reason lasts
    /// as long as its message can.
    pub fn new(
        ddb: aws_sdk_dynamodb::Client,
        names: &Names,
        service: Service,
        keep_for: Duration,
    ) -> Self {
        Self {
            ddb,
            table: names.table(Table::Dedup),
            service,
            keep_for,
        }
    }

    /// Writes one failure: the first failure time is kept, the rest is the
    /// latest. One `UpdateItem`, so concurrent failures of a redelivered
    /// message cannot lose the count.
    pub async fn put(&self, failure: &MessageFailure, now: DateTime<Utc>) -> anyhow::Result<()> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let n = |v: i64| AttributeValue::N(v.to_string());
        let expires =
            now.timestamp() + i64::try_from(self.keep_for.as_secs()).unwrap_or(i64::MAX / 2);
        self.ddb
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&failure_key(self.service, &failure.message_id)))
            .update_expression(
                "SET service = :service, message_id = :id, \
                 first_failed_at = if_not_exists(first_failed_at, :now), \
                 last_failed_at = :now, outcome = :outcome, reason = :reason, \
                 receive_count = :count, expires_at = :expires ADD failures :one",
            )
            .expression_attribute_values(":service", s(self.service.name()))
            .expression_attribute_values(":id", s(&failure.message_id))
            .expression_attribute_values(":now", s(&now.to_rfc3339()))
            .expression_attribute_values(":outcome", s(failure.outcome))
            .expression_attribute_values(":reason", s(clip(&failure.reason)))
            .expression_attribute_values(":count", n(i64::from(failure.receive_count)))
            .expression_attribute_values(":expires", n(expires))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .with_context(|| {
                format!(
                    "record the failure of message {} of {} in {}",
                    failure.message_id,
                    self.service.name(),
                    self.table
                )
            })?;
        Ok(())
    }

    /// The last failure of `message_id`, if one was recorded and has not
    /// expired.
    pub async fn get(&self, message_id: &str) -> anyhow::Result<Option<FailureRecord>> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(failure_key(self.service, message_id)),
            )
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("read the failure record of message {message_id}"))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record: FailureRecord = serde_dynamo::from_item(item)
            .with_context(|| format!("decode the failure record of message {message_id}"))?;
        // TTL deletion lags expiry by up to days: an expired record is gone.
        Ok((record.expires_at > Utc::now().timestamp()).then_some(record))
    }
}

impl FailureSink for FailureLog {
    fn record<'a>(&'a self, failure: &'a MessageFailure) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.put(failure, Utc::now()))
    }
}

fn clip(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() > MAX_REASON_BYTES - 2);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn keys_are_system_owned_and_per_service() {
        let k = failure_key(Service::TrailIngest, "abc-123");
        assert_eq!(k, "_system#message-failure#trail-ingest#abc-123");
        assert_ne!(k, failure_key(Service::Notifier, "abc-123"));
    }
}
