//! DynamoDB helpers shared by the services: batch writes with retries of
//! unprocessed items, and queries read to the last page and decoded.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, WriteRequest};
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;

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
/// Attempts at the unprocessed part of a batch before giving up.
pub const BATCH_ATTEMPTS: u32 = 8;

/// Writes `requests` (puts and deletes, each idempotent) to `table` in
/// batches of 25, `concurrency` batches in flight, retrying unprocessed
/// items with exponential backoff; the error names the table.
pub async fn batch_write(
    ddb: &Client,
    table: &str,
    requests: Vec<WriteRequest>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let batches: Vec<Vec<WriteRequest>> = requests.chunks(BATCH).map(<[_]>::to_vec).collect();
    futures::stream::iter(batches.into_iter().map(|b| write_one(ddb, table, b)))
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

async fn write_one(ddb: &Client, table: &str, mut batch: Vec<WriteRequest>) -> anyhow::Result<()> {
    for attempt in 0..BATCH_ATTEMPTS {
        let out = ddb
            .batch_write_item()
            .request_items(table, batch)
            .send()
            .await
            .with_context(|| format!("BatchWriteItem on {table}"))?;
        batch = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        if batch.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50u64 << attempt.min(6))).await;
    }
    Err(anyhow!(
        "BatchWriteItem on {table}: {} items still unprocessed after {BATCH_ATTEMPTS} attempts",
        batch.len()
    ))
}
