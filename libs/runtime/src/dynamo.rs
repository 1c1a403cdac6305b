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

/// How one idempotent write (a conditional put, a transaction) is retried
/// on its own when DynamoDB pushes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteRetry {
    /// Attempts, the first included (each of them may itself be several
    /// SDK attempts, `aws.max_attempts`).
    pub attempts: u32,
    /// Wait before the second attempt; it doubles per attempt up to
    /// [`WriteRetry::MAX_BACKOFF`], each wait jittered to 50–100 %.
    pub backoff: Duration,
}

impl WriteRetry {
    /// Longest wait between two attempts.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
}

/// Runs `work` — idempotent — and runs it again while its error's chain
/// holds AWS back-pressure (`aws::classify`: throttling, 5xx, timeout,
/// connection failure), up to `retry.attempts` in all, waiting
/// `retry.backoff` before the second, doubling (each wait jittered to
/// 50–100 %, at most [`WriteRetry::MAX_BACKOFF`]); `on_retry` sees the
/// class of each error retried. Other errors fail at once; the last
/// back-pressure error is returned with the number of attempts made.
pub async fn retry_backpressure<T, F, Fut>(
    retry: WriteRetry,
    mut on_retry: impl FnMut(ErrorClass),
    mut work: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let attempts = retry.attempts.max(1);
    let mut attempt = 0;
    loop {
        if attempt > 0 {
            let full = retry
                .backoff
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(WriteRetry::MAX_BACKOFF);
            tokio::time::sleep(full / 2 + full.mul_f64(rand::random::<f64>() / 2.0)).await;
        }
        attempt += 1;
        let error = match work().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match aws::classify_anyhow(&error) {
            Some(class) if attempt < attempts => on_retry(class),
            Some(_) => return Err(error.context(format!("gave up after {attempt} attempts"))),
            None => return Err(error),
        }
    }
}

/// Runs `write` — one idempotent call to the table of `limiter` — with a
/// permit of the table's AIMD limiter, retried on its own on back-pressure
/// as [`retry_backpressure`] does: a throttled attempt cuts the limiter, so
/// every writer of the table slows down; each retry is counted in
/// `kopter_limiter_write_retries_total`.
pub async fn write_patiently<T, F, Fut>(
    limiter: &Arc<AimdLimiter>,
    retry: WriteRetry,
    write: F,
) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let write = &write;
    retry_backpressure(
        retry,
        |class| {
            crate::metrics::runtime()
                .write_retries
                .with_label_values(&[limiter.name(), class.label()])
                .inc();
        },
        || async move {
            let permit = limiter.acquire().await;
            match write().await {
                Ok(v) => {
                    permit.succeeded();
                    Ok(v)
                }
                Err(e) => {
                    if aws::classify_anyhow(&e) == Some(ErrorClass::Throttling) {
                        permit.throttled();
                    }
                    Err(e)
                }
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn throttled() -> anyhow::Error {
        anyhow::Error::new(
            ErrorMetadata::builder()
                .code("ProvisionedThroughputExceededException")
                .build(),
        )
        .context("write a row")
    }

    fn retry() -> WriteRetry {
        WriteRetry {
            attempts: 4,
            backoff: Duration::from_millis(100),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_writes_are_retried_and_slow_the_table_down() {
        let limiter = Arc::new(AimdLimiter::new("test-patient", AimdSettings::default()));
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let v = write_patiently(&limiter, retry(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(throttled())
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(limiter.limit() < AimdSettings::default().initial, "cut");
        // 50–100 ms, then 100–200 ms.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited <= Duration::from_millis(300),
            "{waited:?}"
        );
        assert_eq!(limiter.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_attempts_and_fails_other_errors_at_once() {
        let limiter = Arc::new(AimdLimiter::new("test-patient-2", AimdSettings::default()));
        let calls = AtomicU32::new(0);
        let err = write_patiently(&limiter, retry(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(throttled())
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(
            format!("{err:#}").contains("gave up after 4 attempts"),
            "{err:#}"
        );
        assert_eq!(
            aws::classify_anyhow(&err),
            Some(ErrorClass::Throttling),
            "still says why"
        );

        calls.store(0, Ordering::SeqCst);
        let err = write_patiently(&limiter, retry(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(anyhow!("validation: item too large"))
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(err.to_string(), "validation: item too large");
    }
}
