//! [`Queue`] over Amazon SQS.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName, QueueAttributeName,
};

use super::{BatchFailures, Queue, ReceivedMessage};

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
}

impl SqsQueue {
    /// Looks up the queue URL by name.
    pub async fn resolve(client: Client, name: &str) -> anyhow::Result<Self> {
        let out = client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .with_context(|| {
                format!("look up the URL of queue {name:?} (has `kopterctl bootstrap` run?)")
            })?;
        let url = out
            .queue_url
            .with_context(|| format!("GetQueueUrl for {name:?} returned no URL"))?;
        Ok(Self {
            client,
            name: name.to_owned(),
            url,
        })
    }

    /// [`SqsQueue::resolve`], retried while SQS answers with back-pressure
    /// (throttling, 5xx, timeouts, resets: [`crate::aws::classify_anyhow`])
    /// — a fleet restarting at once must not exit because the lookup was
    /// throttled. Backoff doubles from 250 ms to 10 s; every retry is logged
    /// with its cause. Any other error (no such queue, access denied) is
    /// returned at once, and so is `shutdown` (an error saying the lookup
    /// was given up).
    pub async fn resolve_patiently(
        client: Client,
        name: &str,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut backoff = Duration::from_millis(250);
        loop {
            let error = match Self::resolve(client.clone(), name).await {
                Ok(q) => return Ok(q),
                Err(e) => e,
            };
            let Some(class) = crate::aws::classify_anyhow(&error) else {
                return Err(error);
            };
            tracing::warn!(
                queue = name,
                ?class,
                error = %format!("{error:#}"),
                retry_in = ?backoff,
                "queue URL lookup met back-pressure; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {
                    return Err(error.context(format!(
                        "shut down while looking up the URL of queue {name:?}"
                    )));
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(secs(wait))
            .visibility_timeout(secs(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receive from queue {}", self.name))?;
        let mut messages = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let (Some(message_id), Some(receipt_handle)) = (m.message_id, m.receipt_handle) else {
                tracing::warn!(queue = %self.name, "SQS returned a message without id or receipt handle");
                continue;
            };
            let receive_count = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let sent_at_ms = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok());
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
                .collect();
            messages.push(ReceivedMessage {
                message_id,
                receipt_handle,
                body: m.body.unwrap_or_default(),
                receive_count,
                attributes,
                sent_at_ms,
            });
        }
        Ok(messages)
    }

    async fn delete_batch(&self, receipts: &[String]) -> anyhow::Result<BatchFailures> {
        if receipts.is_empty() {
            return Ok(BatchFailures::default());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .with_context(|| format!("delete {} messages from {}", receipts.len(), self.name))?;
        Ok(failures(
            receipts,
            out.failed
                .iter()
                .map(|f| (f.id.as_str(), f.code.as_str(), f.message.as_deref())),
        ))
    }

    async fn change_visibility_batch(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> anyhow::Result<BatchFailures> {
        if receipts.is_empty() {
            return Ok(BatchFailures::default());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(secs(visibility))
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .with_context(|| {
                format!(
                    "change visibility of {} messages in {}",
                    receipts.len(),
                    self.name
                )
            })?;
        Ok(failures(
            receipts,
            out.failed
                .iter()
                .map(|f| (f.id.as_str(), f.code.as_str(), f.message.as_deref())),
        ))
    }

    async fn check_ready(&self) -> anyhow::Result<()> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .with_context(|| format!("reach queue {}", self.name))?;
        Ok(())
    }
}

fn failures<'a>(
    receipts: &[String],
    failed: impl Iterator<Item = (&'a str, &'a str, Option<&'a str>)>,
) -> BatchFailures {
    BatchFailures {
        failed: failed
            .map(|(id, code, message)| {
                let receipt = id
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| receipts.get(i))
                    .cloned()
                    .unwrap_or_else(|| id.to_owned());
                (receipt, format!("{code}: {}", message.unwrap_or("")))
            })
            .collect(),
    }
}
