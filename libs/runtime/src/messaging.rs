//! Sending messages to a service's queue and publishing events to the
//! `kopter-events` topic. Queue URLs and the topic ARN are resolved once.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use kopter_schema::queues::EVENT_TYPE_ATTRIBUTE;
use kopter_schema::{Envelope, Message, Names, Service};
use tokio::sync::OnceCell;

#[derive(Clone, Debug)]
pub struct Outbox {
    sqs: aws_sdk_sqs::Client,
    sns: aws_sdk_sns::Client,
    names: Names,
    urls: Arc<tokio::sync::Mutex<HashMap<Service, String>>>,
    topic_arn: Arc<OnceCell<String>>,
}

/// A new envelope with a random id, sent now.
pub fn envelope(message: Message) -> Envelope {
    let id: u128 = rand::random();
    Envelope::new(format!("{id:032x}"), chrono::Utc::now(), message)
}

impl Outbox {
    pub fn new(sqs: aws_sdk_sqs::Client, sns: aws_sdk_sns::Client, names: Names) -> Self {
        Self {
            sqs,
            sns,
            names,
            urls: Arc::default(),
            topic_arn: Arc::default(),
        }
    }

    pub async fn queue_url(&self, service: Service) -> anyhow::Result<String> {
        let mut urls = self.urls.lock().await;
        if let Some(u) = urls.get(&service) {
            return Ok(u.clone());
        }
        let name = self.names.queue(service);
        let url = self
            .sqs
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .with_context(|| format!("look up queue {name}"))?
            .queue_url
            .with_context(|| format!("queue {name} has no URL"))?;
        urls.insert(service, url.clone());
        Ok(url)
    }

    /// Sends one envelope to a service's queue.
    pub async fn send(&self, service: Service, env: &Envelope) -> anyhow::Result<()> {
        let url = self.queue_url(service).await?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(env.to_json())
            .send()
            .await
            .with_context(|| format!("send {} to {}", env.message.kind(), service))?;
        Ok(())
    }

    pub async fn topic_arn(&self) -> anyhow::Result<String> {
        self.topic_arn
            .get_or_try_init(|| async {
                let name = self.names.events_topic();
                let mut pages = self.sns.list_topics().into_paginator().send();
                while let Some(page) = pages.next().await {
                    for t in page.context("list SNS topics")?.topics.unwrap_or_default() {
                        if let Some(arn) = t.topic_arn
                            && arn.rsplit(':').next() == Some(name.as_str())
                        {
                            return Ok(arn);
                        }
                    }
                }
                anyhow::bail!("topic {name} not found (has `kopterctl bootstrap` run?)")
            })
            .await
            .cloned()
    }

    /// Publishes an event to `kopter-events` with its `event_type`
    /// attribute, for the subscriptions' filter policies.
    pub async fn publish(&self, env: &Envelope) -> anyhow::Result<()> {
        let event_type = event_type_attribute(env)?;
        let arn = self.topic_arn().await?;
        self.sns
            .publish()
            .topic_arn(arn)
            .message(env.to_json())
            .message_attributes(EVENT_TYPE_ATTRIBUTE, event_type.1)
            .send()
            .await
            .with_context(|| format!("publish {}", event_type.0))?;
        Ok(())
    }

    /// Publishes events like [`Outbox::publish`], up to
    /// [`PUBLISH_BATCH_MAX`] per `PublishBatch` request and at most
    /// [`PUBLISH_BATCH_BYTES`] of messages in one (SNS's limits:
    /// <https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html>),
    /// so N small events cost ⌈N/10⌉ requests instead of N (SNS bills each
    /// 64 KB of a request's payload as one request).
    ///
    /// Every batch is tried; errors when a request fails or SNS reports
    /// any entry failed (naming the envelope ids and SNS's codes; the first
    /// failure, with how many batches failed). Entries that succeeded stay
    /// published, so a caller retrying the whole list publishes them
    /// again: use it only for events whose consumers tolerate a repeat
    /// (every consumer of the topic does).
    pub async fn publish_batch(&self, envs: &[Envelope]) -> anyhow::Result<()> {
        if envs.is_empty() {
            return Ok(());
        }
        let arn = self.topic_arn().await?;
        let bodies: Vec<String> = envs.iter().map(Envelope::to_json).collect();
        let mut failures = Vec::new();
        let mut batches = 0;
        for range in batch_ranges(&bodies, PUBLISH_BATCH_MAX, PUBLISH_BATCH_BYTES) {
            batches += 1;
            if let Err(e) = self
                .publish_chunk(&arn, &envs[range.clone()], &bodies[range])
                .await
            {
                failures.push(e);
            }
        }
        let n = failures.len();
        match failures.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(first.context(format!(
                "{n} of {batches} PublishBatch requests failed (the first follows)"
            ))),
        }
    }

    async fn publish_chunk(
        &self,
        arn: &str,
        chunk: &[Envelope],
        bodies: &[String],
    ) -> anyhow::Result<()> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, (env, body)) in chunk.iter().zip(bodies).enumerate() {
            let (_, attribute) = event_type_attribute(env)?;
            entries.push(
                PublishBatchRequestEntry::builder()
                    // Unique within the request, [A-Za-z0-9_-]{1,80}.
                    .id(format!("e{i}"))
                    .message(body.clone())
                    .message_attributes(EVENT_TYPE_ATTRIBUTE, attribute)
                    .build()
                    .context("build a PublishBatch entry")?,
            );
        }
        let out = self
            .sns
            .publish_batch()
            .topic_arn(arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .with_context(|| format!("publish a batch of {} events", chunk.len()))?;
        let failed: Vec<String> = out
            .failed()
            .iter()
            .map(|f| {
                let env = f
                    .id()
                    .strip_prefix('e')
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| chunk.get(i));
                format!(
                    "{} ({}: {})",
                    env.map_or("?", |e| e.id.as_str()),
                    f.code(),
                    f.message().unwrap_or("no message")
                )
            })
            .collect();
        anyhow::ensure!(
            failed.is_empty(),
            "SNS refused {} of {} events in a batch: {}",
            failed.len(),
            chunk.len(),
            failed.join(", ")
        );
        Ok(())
    }
}

/// Consecutive ranges of `bodies` of at most `max` entries and `bytes`
/// bytes each (an entry larger than `bytes` alone in its range: SNS then
/// refuses it, as it would a single `Publish`).
fn batch_ranges(bodies: &[String], max: usize, bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && (i - start == max || size + b.len() > bytes) {
            out.push(start..i);
            (start, size) = (i, 0);
        }
        size += b.len();
    }
    if start < bodies.len() {
        out.push(start..bodies.len());
    }
    out
}

/// Bytes of messages in one `PublishBatch` request: SNS's 256 KiB for the
/// whole request's messages, less room for the attributes.
pub const PUBLISH_BATCH_BYTES: usize = 240 * 1024;

/// Entries per SNS `PublishBatch` request (AWS's maximum).
pub const PUBLISH_BATCH_MAX: usize = 10;

/// The envelope's event type and the message attribute that carries it.
fn event_type_attribute(env: &Envelope) -> anyhow::Result<(&'static str, MessageAttributeValue)> {
    let event_type = env
        .message
        .event_type()
        .with_context(|| format!("{} is not an event type of the topic", env.message.kind()))?;
    let name = event_type.as_str();
    let value = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(name)
        .build()
        .expect("data type is set");
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::batch_ranges;

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let b = |n: usize| "x".repeat(n);
        // By count: 23 small bodies in 10, 10, 3.
        let small: Vec<String> = (0..23).map(|_| b(10)).collect();
        assert_eq!(batch_ranges(&small, 10, 1000), vec![0..10, 10..20, 20..23]);
        // By bytes: 400 + 400 fit 1000, the third starts a new batch; an
        // oversized body stands alone.
        let big = vec![b(400), b(400), b(400), b(2000), b(1)];
        assert_eq!(batch_ranges(&big, 10, 1000), vec![0..2, 2..3, 3..4, 4..5]);
        assert!(batch_ranges(&[], 10, 1000).is_empty());
    }
}
