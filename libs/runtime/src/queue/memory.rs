//! In-memory [`Queue`] for unit tests of the consume loop.
//!
//! Models what the loop depends on: visibility timeouts (on tokio's clock,
//! so `start_paused` tests are exact), a fresh receipt per receive that
//! invalidates the previous one, `ApproximateReceiveCount`, and redrive to a
//! DLQ once a message has been received `max_receive_count` times.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::{BatchFailures, Queue, ReceivedMessage};

#[derive(Debug)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    messages: Vec<Stored>,
    dlq: Vec<String>,
    deleted: Vec<String>,
}

#[derive(Debug)]
pub struct MemoryQueue {
    name: String,
    max_receive_count: u32,
    state: Mutex<State>,
    fail_receives: AtomicBool,
    fail_visibility_changes: AtomicU32,
    stalled: AtomicBool,
}

impl MemoryQueue {
    pub fn new(name: &str, max_receive_count: u32) -> Self {
        Self {
            name: name.to_owned(),
            max_receive_count,
            state: Mutex::default(),
            fail_receives: AtomicBool::new(false),
            fail_visibility_changes: AtomicU32::new(0),
            stalled: AtomicBool::new(false),
        }
    }

    /// Enqueues a message, returning its id.
    pub fn send(&self, body: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = format!("m{}", s.next_id);
        s.messages.push(Stored {
            id: id.clone(),
            body: body.to_owned(),
            receive_count: 0,
            visible_at: Instant::now(),
            receipt: None,
        });
        id
    }

    /// Makes the next receives fail (to test the loop's error path).
    pub fn set_fail_receives(&self, fail: bool) {
        self.fail_receives.store(fail, Ordering::SeqCst);
    }

    /// Makes the next `n` visibility changes fail as calls (as a throttled
    /// or unreachable SQS would); `u32::MAX` makes them all fail.
    pub fn fail_visibility_changes(&self, n: u32) {
        self.fail_visibility_changes.store(n, Ordering::SeqCst);
    }

    /// Makes every call hang until unset (a stalled endpoint).
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    async fn stall(&self) {
        while self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Receives so far of the message with `body` (0 if gone or unknown).
    pub fn receive_count(&self, body: &str) -> u32 {
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .find(|m| m.body == body)
            .map_or(0, |m| m.receive_count)
    }

    /// Bodies moved to the DLQ.
    pub fn dlq(&self) -> Vec<String> {
        self.state.lock().unwrap().dlq.clone()
    }

    /// Bodies deleted (acknowledged).
    pub fn deleted(&self) -> Vec<String> {
        self.state.lock().unwrap().deleted.clone()
    }

    /// Messages still in the queue (visible or not).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages visible now.
    pub fn visible(&self) -> usize {
        let now = Instant::now();
        let s = self.state.lock().unwrap();
        s.messages.iter().filter(|m| m.visible_at <= now).count()
    }

    fn take_visible(&self, max: u32, visibility: Duration) -> Vec<ReceivedMessage> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.messages.len() && out.len() < max as usize {
            if s.messages[i].visible_at > now {
                i += 1;
                continue;
            }
            if s.messages[i].receive_count >= self.max_receive_count {
                let m = s.messages.remove(i);
                s.dlq.push(m.body);
                continue;
            }
            let m = &mut s.messages[i];
            m.receive_count += 1;
            let receipt = format!("{}#{}", m.id, m.receive_count);
            m.receipt = Some(receipt.clone());
            m.visible_at = now + visibility;
            out.push(ReceivedMessage {
                message_id: m.id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
                receive_count: m.receive_count,
                attributes: HashMap::new(),
                sent_at_ms: None,
            });
            i += 1;
        }
        out
    }
}

impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        self.stall().await;
        if self.fail_receives.load(Ordering::SeqCst) {
            anyhow::bail!("receive from {}: injected failure", self.name);
        }
        let deadline = Instant::now() + wait;
        loop {
            let got = self.take_visible(max, visibility);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(100)))
                .await;
        }
    }

    async fn delete_batch(&self, receipts: &[String]) -> anyhow::Result<BatchFailures> {
        self.stall().await;
        let mut s = self.state.lock().unwrap();
        let mut failures = BatchFailures::default();
        for r in receipts {
            match s
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(r.as_str()))
            {
                Some(i) => {
                    let m = s.messages.remove(i);
                    s.deleted.push(m.body);
                }
                None => failures
                    .failed
                    .push((r.clone(), "ReceiptHandleIsInvalid".into())),
            }
        }
        Ok(failures)
    }

    async fn change_visibility_batch(
        &self,
        receipts: &[String],
        visibility: Duration,
    ) -> anyhow::Result<BatchFailures> {
        self.stall().await;
        let failing = self.fail_visibility_changes.load(Ordering::SeqCst);
        if failing > 0 {
            if failing != u32::MAX {
                self.fail_visibility_changes
                    .store(failing - 1, Ordering::SeqCst);
            }
            anyhow::bail!("change visibility in {}: injected failure", self.name);
        }
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let mut failures = BatchFailures::default();
        for r in receipts {
            match s
                .messages
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(r.as_str()))
            {
                Some(m) => m.visible_at = now + visibility,
                None => failures
                    .failed
                    .push((r.clone(), "ReceiptHandleIsInvalid".into())),
            }
        }
        Ok(failures)
    }

    async fn check_ready(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
