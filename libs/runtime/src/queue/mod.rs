//! The queue a worker consumes, as a small trait.
//!
//! [`SqsQueue`] is the real one; [`MemoryQueue`] is an in-memory fake with
//! the same visibility, receive-count and redrive semantics, for unit tests
//! of the consume loop. See `design.md` in this folder.

pub mod depth;
pub mod failures;
mod memory;
mod sqs;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Valid until the message becomes visible again; every receive gives a
    /// new one.
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on first delivery.
    pub receive_count: u32,
    /// String message attributes.
    pub attributes: HashMap<String, String>,
    /// `SentTimestamp` (Unix ms) when the queue reports it: the age of the
    /// oldest message waiting is estimated from it (see [`depth`]).
    pub sent_at_ms: Option<u64>,
}

/// Outcome of a batch call: the receipts the queue did not confirm.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchFailures {
    /// `(receipt handle, reason)`.
    pub failed: Vec<(String, String)>,
}

pub trait Queue: Send + Sync + 'static {
    /// Human name for logs and the `queue` metric label.
    fn name(&self) -> &str;

    /// Long-polls for up to `max` (1-10) messages, hiding each for
    /// `visibility`.
    fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = anyhow::Result<Vec<ReceivedMessage>>> + Send;

    /// Deletes up to 10 messages (acknowledges them).
    fn delete_batch(
        &self,
        receipts: &[String],
    ) -> impl Future<Output = anyhow::Result<BatchFailures>> + Send;

    /// Sets the visibility timeout of up to 10 messages; zero makes them
    /// visible again at once.
    fn change_visibility_batch(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> impl Future<Output = anyhow::Result<BatchFailures>> + Send;

    /// Whether the queue can be reached (for `/readyz`).
    fn check_ready(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Sets one message's visibility timeout.
    fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            let failures = self
                .change_visibility_batch(&[receipt.to_owned()], visibility)
                .await?;
            match failures.failed.into_iter().next() {
                Some((_, reason)) => Err(anyhow::anyhow!("change visibility: {reason}")),
                None => Ok(()),
            }
        }
    }
}
