//! DynamoDB helpers shared by the services: batch writes that slow down on
//! throttling (a shared AIMD limiter per table) and retry what DynamoDB did
//! not take, and queries read to the last page and decoded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

use crate::aws::{self, ErrorClass};
use crate::limiter::{self, AimdLimiter, AimdSettings};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Every item `query` matches, all pages; the error names `what`.
pub async fn query_items(query: QueryFluentBuilder, what: &str) -> anyhow::Result<Vec<Item>> {
    query
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .with_context(|| format!("query {what}"))
}

/// Every item `query` matches, all pages, decoded as `T`; errors name
/// `what`.
pub async fn query_all<T: DeserializeOwned>(
    query: QueryFluentBuilder,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    query_items(query, what)
        .await?
        .into_iter()
        .map(|i| serde_dynamo::from_item(i).with_context(|| format!("decode a row of {what}")))
        .collect()
}

/// DynamoDB's BatchWriteItem limit.
pub const BATCH: usize = 25;
/// Attempts at a batch (its unprocessed part, or the whole batch after a
/// throttled, 5xx, timed-out or reset call) before giving up.
pub const BATCH_ATTEMPTS: u32 = 10;

/// The process-wide AIMD write limiter of `table` (see
/// [`crate::limiter`]): every [`batch_write`] to the table in this process
/// shares it, and other writers of the table (conditional puts) can too.
/// Its metric label is the table's name without the environment prefix.
pub fn write_limiter(table: &str) -> Arc<AimdLimiter> {
    let short = table.split_once("-kopter-").map_or(table, |(_, t)| t);
    limiter::shared(&format!("dynamodb-{short}"), AimdSettings::default())
}

/// Writes `requests` (puts and deletes, each idempotent) to `table` in
/// batches of 25, at most `concurrency` batches in flight and never more
/// than the table's [`write_limiter`] allows. Throttling — a throttled call,
/// or items returned unprocessed — cuts the limiter and is retried with
/// jittered exponential backoff (50 ms doubling, at most 5 s), as are 5xx,
/// timeouts and connection failures; other errors fail at once. The error
/// names the table.
pub async fn batch_write(
    ddb: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let limiter = write_limiter(table);
    let batches: Vec<Vec<WriteRequest>> = requests.chunks(BATCH).map(<[_]>::to_vec).collect();
    futures::stream::iter(
        batches
            .into_iter()
            .map(|b| write_one(ddb, table, b, limiter.clone())),
    )
    .buffer_unordered(concurrency.max(1))
    .try_collect::<()>()
    .await
}

async fn write_one(
    ddb: &Client,
    table: &str,
    mut batch: Vec<WriteRequest>,
    limiter: Arc<AimdLimiter>,
) -> anyhow::Result<()> {
    let mut last_problem = String::new();
    for attempt in 0..BATCH_ATTEMPTS {
        if attempt > 0 {
            let full =
                Duration::from_millis(50u64 << (attempt - 1).min(7)).min(Duration::from_secs(5));
            let jittered = full / 2 + full.mul_f64(rand::random::<f64>() / 2.0);
            tokio::time::sleep(jittered).await;
        }
        let permit = limiter.acquire().await;
        let sent = ddb
            .batch_write_item()
            .request_items(table, batch.clone())
            .send()
            .await;
        match sent {
            Ok(out) => {
                let left = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(table))
                    .unwrap_or_default();
                if left.is_empty() {
                    permit.succeeded();
                    return Ok(());
                }
                // DynamoDB returns items unprocessed when it throttles them.
                permit.throttled();
                last_problem = format!("{} items unprocessed", left.len());
                batch = left;
            }
            Err(e) => match aws::classify(&e) {
                Some(class) => {
                    if class == ErrorClass::Throttling {
                        permit.throttled();
                    }
                    last_problem = format!(
                        "{}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    );
                }
                None => {
                    return Err(anyhow!(e).context(format!("BatchWriteItem on {table}")));
                }
            },
        }
    }
    Err(anyhow!(
        "BatchWriteItem on {table}: {} items still not written after {BATCH_ATTEMPTS} attempts (last: {last_problem})",
        batch.len()
    ))
}
