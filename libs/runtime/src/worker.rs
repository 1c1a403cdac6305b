//! The consume loop every service runs: receive → handle → delete.
//!
//! Delivery semantics (see `queue/design.md` for the why):
//! - long-poll up to `max_messages`, never more than free handler slots;
//! - a heartbeat extends a message's visibility while its handler runs;
//! - success: the receipt goes to a batcher that deletes in groups of ≤10;
//! - AWS back-pressure (the handler failed on throttling, a 5xx, a timeout
//!   or a connection failure — [`crate::aws::classify`]): the handler is run
//!   again in-process with jittered backoff, the heartbeat holding the
//!   message, for up to `backpressure_retry_budget`; such retries do not
//!   spend the message's receives;
//! - other retryable failure or panic: the message is left, its visibility
//!   set to an exponential backoff with jitter, and SQS redrives it to the
//!   DLQ after `maxReceiveCount` receives;
//! - a heartbeat that fails is retried promptly with backoff within the
//!   visibility still held; a message whose visibility could not be held
//!   is counted and logged, and not retried in-process any more (another
//!   consumer may hold it now);
//! - permanent failure (malformed, unknown version): logged with its id and
//!   reason and made visible at once, so it reaches the DLQ quickly;
//! - every failure is also reported to a [`FailureSink`] when one is set
//!   (the service's failure log, read by `kopterctl dlq`);
//! - shutdown: stop receiving, let handlers finish within the grace period,
//!   then abort the rest and return their messages (visibility 0); the
//!   returns and the last deletes get [`SHUTDOWN_CLEANUP`] more, whatever
//!   AWS does, so `run` ends within grace + 3 s.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kopter_schema::Service;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::aws::{self, ErrorClass};
use crate::config::WorkerConfig;
use crate::metrics;
use crate::queue::failures::{FailureSink, MessageFailure};
use crate::queue::{Queue, ReceivedMessage};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a handler sees of a message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// 1 on first delivery; grows with each redelivery.
    pub receive_count: u32,
    /// String message attributes (e.g. SNS `event_type` with raw delivery).
    pub attributes: std::collections::HashMap<String, String>,
    /// The queue's `SentTimestamp` (Unix ms), when it gives one: when the
    /// message was enqueued, by the queue's clock.
    pub sent_at_ms: Option<u64>,
}

/// Why a handler did not finish the work.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (throttling, a dependency down): redeliver with
    /// backoff.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Can never succeed (malformed message): straight on to the DLQ.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn retry(e: impl Into<anyhow::Error>) -> Self {
        Self::Retry(e.into())
    }
    pub fn permanent(e: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(e.into())
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }

    /// The AWS back-pressure behind a retryable error (throttling, 5xx,
    /// timeout, connection failure), found anywhere in its chain; `None`
    /// for permanent errors and other failures.
    pub fn backpressure(&self) -> Option<ErrorClass> {
        match self {
            Self::Retry(e) => aws::classify_anyhow(e),
            Self::Permanent(_) => None,
        }
    }
}

impl From<anyhow::Error> for HandlerError {
    fn from(e: anyhow::Error) -> Self {
        Self::Retry(e)
    }
}

/// A service's message handler. Must be idempotent: SQS delivers at least
/// once.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// A handler from an async closure (tests, small services).
pub struct FnHandler<F>(pub F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin((self.0)(delivery.clone()))
    }
}

/// Loop settings (from [`WorkerConfig`]).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub max_messages: u32,
    pub wait: Duration,
    pub visibility: Duration,
    pub heartbeat: Duration,
    pub grace: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long the delete batcher waits to fill a batch.
    pub delete_linger: Duration,
    /// In-process retries after AWS back-pressure, for at most this long
    /// per message (zero: none).
    pub backpressure_budget: Duration,
}

/// First and longest in-process backoff after AWS back-pressure
/// (jittered in the upper half, doubling per retry).
pub const BACKPRESSURE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(20));

/// After the grace period, the time left to return unfinished messages
/// (visibility 0) and flush the last deletes. Each AWS call is also bounded
/// by the SDK deadlines, but those are longer; this keeps the whole drain
/// within `grace + 3 s` so a stalled AWS cannot hold a SIGTERM.
pub const SHUTDOWN_CLEANUP: Duration = Duration::from_secs(3);

/// Backoff of a failed visibility extension: first retry, longest wait.
const HEARTBEAT_RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

impl From<&WorkerConfig> for WorkerSettings {
    fn from(c: &WorkerConfig) -> Self {
        Self {
            concurrency: c.concurrency,
            max_messages: c.max_messages,
            wait: Duration::from_secs(u64::from(c.wait_time_seconds)),
            visibility: c.visibility_timeout,
            heartbeat: c.heartbeat_interval,
            grace: c.shutdown_grace,
            retry_base: c.retry_base,
            retry_max: c.retry_max,
            delete_linger: Duration::from_millis(50),
            backpressure_budget: c.backpressure_retry_budget,
        }
    }
}

/// Counts of one run, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub received: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub released: u64,
    /// Messages whose visibility could not be held while handled.
    pub visibility_lost: u64,
    /// In-process handler retries after AWS back-pressure.
    pub backpressure_retries: u64,
}

pub struct Worker<Q: Queue> {
    queue: Arc<Q>,
    handler: Arc<dyn Handler>,
    settings: WorkerSettings,
    label: String,
    failures: Option<Arc<dyn FailureSink>>,
}

enum Outcome {
    Ok,
    Failed(HandlerError),
    Panicked(String),
    Cancelled,
}

impl<Q: Queue> Worker<Q> {
    pub fn new(queue: Arc<Q>, handler: Arc<dyn Handler>, settings: WorkerSettings) -> Self {
        let label = queue.name().to_owned();
        Self {
            queue,
            handler,
            settings,
            label,
            failures: None,
        }
    }

    /// Reports every handler failure (its reason) to `sink`, before the
    /// message is made visible again.
    pub fn with_failure_sink(mut self, sink: Arc<dyn FailureSink>) -> Self {
        self.failures = Some(sink);
        self
    }

    /// Uses a service name as the `queue` metric label instead of the
    /// (environment-prefixed) queue name, keeping label values fixed.
    pub fn with_service_label(mut self, service: Service) -> Self {
        self.label = service.name().to_owned();
        self
    }

    /// Runs until `shutdown` is cancelled, then drains (see module docs).
    pub async fn run(self, shutdown: CancellationToken) -> RunSummary {
        let Worker {
            queue,
            handler,
            settings,
            label,
            failures,
        } = self;
        let m = metrics::runtime();
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let tracker = TaskTracker::new();
        let abort_handlers = CancellationToken::new();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<String>();
        let deleter = tokio::spawn(delete_batcher(
            queue.clone(),
            ack_rx,
            settings.delete_linger,
            label.clone(),
        ));
        let summary = Arc::new(std::sync::Mutex::new(RunSummary::default()));
        let mut receive_failures = 0u32;

        tracing::info!(queue = %queue.name(), concurrency = settings.concurrency, "worker started");
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let mut permits = vec![first];
            while permits.len() < settings.max_messages as usize {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let receive_started = Instant::now();
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = queue.receive(permits.len() as u32, settings.wait, settings.visibility) => r,
            };
            // SQS starts a message's visibility when it hands it out:
            // after the request began, just before the response arrived. A
            // second's margin covers the response's way back; a long poll
            // that waited 20 s must not count as 20 s of visibility spent.
            let visible_from = receive_started.max(Instant::now() - Duration::from_secs(1));
            let messages = match received {
                Ok(msgs) => {
                    receive_failures = 0;
                    msgs
                }
                Err(error) => {
                    m.receive_errors.with_label_values(&[&label]).inc();
                    receive_failures += 1;
                    let delay = retry_delay(
                        receive_failures,
                        Duration::from_millis(200),
                        Duration::from_secs(20),
                    );
                    tracing::warn!(queue = %queue.name(), error = %format!("{error:#}"), retry_in = ?delay, "receive failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            m.received
                .with_label_values(&[&label])
                .inc_by(messages.len() as u64);
            crate::queue::depth::observe_received(&label, &messages);
            summary.lock().unwrap().received += messages.len() as u64;
            for (msg, permit) in messages.into_iter().zip(permits.drain(..)) {
                let ctx = MessageTask {
                    queue: queue.clone(),
                    handler: handler.clone(),
                    settings: settings.clone(),
                    label: label.clone(),
                    ack_tx: ack_tx.clone(),
                    abort: abort_handlers.clone(),
                    summary: summary.clone(),
                    failures: failures.clone(),
                };
                let span = tracing::info_span!("message", message_id = %msg.message_id, queue = %label, receive_count = msg.receive_count);
                tracker.spawn(
                    async move {
                        ctx.run(msg, visible_from).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        tracker.close();
        let in_flight = tracker.len();
        let drain_started = Instant::now();
        let hard_deadline = drain_started + settings.grace + SHUTDOWN_CLEANUP;
        tracing::info!(queue = %queue.name(), in_flight, grace = ?settings.grace, "shutdown: stopped receiving, draining");
        if tokio::time::timeout(settings.grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(queue = %queue.name(), still_running = tracker.len(), "grace period over: returning unfinished messages to the queue");
            abort_handlers.cancel();
            if tokio::time::timeout_at(hard_deadline, tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(queue = %queue.name(), still_returning = tracker.len(), "could not return every unfinished message in time (AWS not answering); they reappear when their visibility timeout ends");
            }
        }
        drop(ack_tx);
        let mut deleter = deleter;
        match tokio::time::timeout_at(
            hard_deadline.max(Instant::now() + Duration::from_millis(200)),
            &mut deleter,
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "delete batcher ended abnormally"),
            Err(_) => {
                deleter.abort();
                tracing::error!(queue = %queue.name(), "last deletes not confirmed in time (AWS not answering); those messages will be redelivered and handled again, idempotently");
            }
        }
        let summary = summary.lock().unwrap().clone();
        tracing::info!(queue = %queue.name(), ?summary, "worker stopped");
        summary
    }
}

struct MessageTask<Q: Queue> {
    queue: Arc<Q>,
    handler: Arc<dyn Handler>,
    settings: WorkerSettings,
    label: String,
    ack_tx: mpsc::UnboundedSender<String>,
    abort: CancellationToken,
    summary: Arc<std::sync::Mutex<RunSummary>>,
    failures: Option<Arc<dyn FailureSink>>,
}

/// Seconds since a message was sent (SQS `SentTimestamp`, epoch ms), or
/// -1 when SQS did not say.
fn delivery_age_s(sent_at_ms: Option<u64>) -> f64 {
    sent_at_ms.map_or(-1.0, |sent| {
        (chrono::Utc::now().timestamp_millis() - sent as i64) as f64 / 1000.0
    })
}

/// Longest wait for a failure report before the message is released anyway.
const FAILURE_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl<Q: Queue> MessageTask<Q> {
    async fn run(self, msg: ReceivedMessage, received_at: Instant) {
        let m = metrics::runtime();
        let in_flight = m.in_flight.with_label_values(&[&self.label]);
        in_flight.inc();
        let started = Instant::now();
        let lease = Arc::new(Lease::default());
        let heartbeat = Heartbeat::start(
            self.queue.clone(),
            msg.receipt_handle.clone(),
            HeartbeatTiming {
                every: self.settings.heartbeat,
                visibility: self.settings.visibility,
                held_until: received_at + self.settings.visibility,
            },
            self.label.clone(),
            lease.clone(),
        );
        let sent_at_ms = msg.sent_at_ms;
        let delivery = Delivery {
            message_id: msg.message_id.clone(),
            body: msg.body,
            receive_count: msg.receive_count,
            attributes: msg.attributes,
            sent_at_ms: msg.sent_at_ms,
        };
        let budget_end = started + self.settings.backpressure_budget;
        let mut retries = 0u32;
        let outcome = loop {
            let outcome = self.attempt(&delivery).await;
            let Outcome::Failed(e) = &outcome else {
                break outcome;
            };
            let Some(class) = e.backpressure() else {
                break outcome;
            };
            let now = Instant::now();
            if lease.is_lost() || now >= budget_end {
                break outcome;
            }
            retries += 1;
            let delay = retry_delay(retries, BACKPRESSURE_BACKOFF.0, BACKPRESSURE_BACKOFF.1)
                .min(budget_end - now);
            m.backpressure_retries
                .with_label_values(&[&self.label, class.label()])
                .inc();
            self.summary.lock().unwrap().backpressure_retries += 1;
            tracing::info!(error = %format!("{e:#}"), class = class.label(), retry = retries, retry_in = ?delay, "AWS back-pressure: retrying in-process, message kept invisible");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.abort.cancelled() => break Outcome::Cancelled,
            }
        };
        drop(heartbeat);
        in_flight.dec();
        let elapsed = started.elapsed().as_secs_f64();
        let receipt = msg.receipt_handle;
        let outcome_label = match &outcome {
            Outcome::Ok => "ok",
            Outcome::Failed(e) if e.is_permanent() => "permanent",
            Outcome::Failed(_) => "retry",
            Outcome::Panicked(_) => "panic",
            Outcome::Cancelled => "cancelled",
        };
        m.handler_seconds
            .with_label_values(&[&self.label, outcome_label])
            .observe(elapsed);
        if lease.is_lost() {
            self.summary.lock().unwrap().visibility_lost += 1;
            tracing::warn!(
                outcome = outcome_label,
                "finished a message whose visibility was lost while it was handled: another consumer may have received it and done the same work (idempotent handlers make that safe)"
            );
        }

        let mut reason = None;
        let next_visibility = match outcome {
            Outcome::Ok => {
                // One line per message (the span names it and its receive
                // count): how long it took, and how long since it was sent
                // (queue wait, delays and earlier failed receives included).
                let age_s = delivery_age_s(sent_at_ms);
                tracing::info!(elapsed, age_s, "handled");
                self.summary.lock().unwrap().succeeded += 1;
                // The batcher outlives every message task.
                let _ = self.ack_tx.send(receipt);
                return;
            }
            Outcome::Failed(HandlerError::Permanent(error)) => {
                let text = format!("{error:#}");
                tracing::error!(error = %text, "message can never succeed; leaving it for the DLQ");
                reason = Some(text);
                Duration::ZERO
            }
            Outcome::Failed(HandlerError::Retry(error)) => {
                let delay = retry_delay(
                    msg.receive_count,
                    self.settings.retry_base,
                    self.settings.retry_max,
                );
                let text = format!("{error:#}");
                match aws::classify_anyhow(&error) {
                    Some(class) => {
                        tracing::warn!(error = %text, class = class.label(), in_process_retries = retries, retry_in = ?delay, "AWS back-pressure outlasted the in-process budget; message will be redelivered")
                    }
                    None => {
                        tracing::warn!(error = %text, retry_in = ?delay, "handler failed; message will be redelivered")
                    }
                }
                reason = Some(text);
                delay
            }
            Outcome::Panicked(text) => {
                let delay = retry_delay(
                    msg.receive_count,
                    self.settings.retry_base,
                    self.settings.retry_max,
                );
                tracing::error!(panic = %text, retry_in = ?delay, "handler panicked; message will be redelivered");
                reason = Some(format!("panic: {text}"));
                delay
            }
            Outcome::Cancelled => {
                m.released.with_label_values(&[&self.label]).inc();
                self.summary.lock().unwrap().released += 1;
                Duration::ZERO
            }
        };
        if outcome_label != "cancelled" {
            m.failed
                .with_label_values(&[&self.label, outcome_label])
                .inc();
            self.summary.lock().unwrap().failed += 1;
        }
        if let (Some(sink), Some(reason)) = (&self.failures, reason) {
            let failure = MessageFailure {
                message_id: msg.message_id.clone(),
                outcome: outcome_label,
                reason,
                receive_count: msg.receive_count,
            };
            match tokio::time::timeout(FAILURE_REPORT_TIMEOUT, sink.record(&failure)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %format!("{error:#}"), "could not record the failure reason for `kopterctl dlq`")
                }
                Err(_) => {
                    tracing::warn!(timeout = ?FAILURE_REPORT_TIMEOUT, "recording the failure reason timed out")
                }
            }
        }
        if let Err(error) = self
            .queue
            .change_visibility(&receipt, next_visibility)
            .await
        {
            tracing::warn!(error = %format!("{error:#}"), "could not set visibility; the message reappears when its timeout ends");
        }
    }

    /// Runs the handler once in its own task (so a panic is caught), or
    /// until the grace period ends.
    async fn attempt(&self, delivery: &Delivery) -> Outcome {
        let handler = self.handler.clone();
        let delivery = delivery.clone();
        let mut task =
            tokio::spawn(async move { handler.handle(&delivery).await }.in_current_span());
        tokio::select! {
            joined = &mut task => match joined {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) => Outcome::Failed(e),
                Err(e) if e.is_panic() => Outcome::Panicked(panic_text(e.into_panic())),
                Err(_) => Outcome::Cancelled,
            },
            _ = self.abort.cancelled() => {
                task.abort();
                Outcome::Cancelled
            }
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Exponential backoff with jitter: `base·2^(attempt-1)` capped at `max`,
/// then a random point in its upper half.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    let half = full / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

/// Whether a message's visibility is still held by this consumer.
#[derive(Debug, Default)]
struct Lease {
    lost: std::sync::atomic::AtomicBool,
}

impl Lease {
    fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn mark_lost(&self) {
        self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

struct HeartbeatTiming {
    every: Duration,
    visibility: Duration,
    /// Until when the visibility is surely held (from the receive).
    held_until: Instant,
}

/// Keeps one message invisible while its handler runs; dropping it stops.
///
/// A failed extension is retried at once with backoff (200 ms doubling, at
/// most 5 s), each try bounded by the visibility still held. When that runs
/// out, or SQS says the receipt is no longer valid, the lease is marked
/// lost, counted (`kopter_queue_visibility_lost_total`) and logged, and the
/// heartbeat stops: the message may be visible to other consumers now.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn start<Q: Queue>(
        queue: Arc<Q>,
        receipt: String,
        timing: HeartbeatTiming,
        label: String,
        lease: Arc<Lease>,
    ) -> Self {
        let task = tokio::spawn(
            async move {
                let m = metrics::runtime();
                let mut held_until = timing.held_until;
                loop {
                    tokio::time::sleep(timing.every).await;
                    let mut failures = 0u32;
                    loop {
                        let sent_at = Instant::now();
                        let left = held_until.saturating_duration_since(sent_at);
                        let result = match tokio::time::timeout(
                            left,
                            queue.change_visibility(&receipt, timing.visibility),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(anyhow::anyhow!(
                                "extension not confirmed before the visibility ran out"
                            )),
                        };
                        let error = match result {
                            Ok(()) => {
                                m.heartbeats.with_label_values(&[&label, "ok"]).inc();
                                held_until = sent_at + timing.visibility;
                                if failures > 0 {
                                    tracing::info!(failures, "visibility heartbeat recovered");
                                }
                                break;
                            }
                            Err(e) => e,
                        };
                        m.heartbeats.with_label_values(&[&label, "err"]).inc();
                        failures += 1;
                        let text = format!("{error:#}");
                        // SQS's codes for a receipt that no longer holds the
                        // message (it became visible and was received again).
                        let gone = text.contains("ReceiptHandleIsInvalid")
                            || text.contains("MessageNotInflight");
                        let left = held_until.saturating_duration_since(Instant::now());
                        if gone || left < HEARTBEAT_RETRY.0 / 2 {
                            lease.mark_lost();
                            m.visibility_lost.with_label_values(&[&label]).inc();
                            tracing::error!(error = %text, failures, "visibility of the message could not be held; another consumer may receive it while this one still works on it");
                            return;
                        }
                        let delay = retry_delay(failures, HEARTBEAT_RETRY.0, HEARTBEAT_RETRY.1)
                            .min(left / 2);
                        tracing::warn!(error = %text, failures, visibility_left = ?left, retry_in = ?delay, "visibility heartbeat failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            .in_current_span(),
        );
        Self { task }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deletes acknowledged receipts in batches of up to 10, waiting at most
/// `linger` to fill a batch. Ends when every sender is gone, after a last
/// flush.
async fn delete_batcher<Q: Queue>(
    queue: Arc<Q>,
    mut rx: mpsc::UnboundedReceiver<String>,
    linger: Duration,
    label: String,
) {
    let m = metrics::runtime();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(linger);
        tokio::pin!(deadline);
        while batch.len() < 10 {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(receipt) => batch.push(receipt),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        batch.sort_unstable();
        batch.dedup();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match queue.delete_batch(&batch).await {
                Ok(failures) => {
                    let failed = failures.failed.len();
                    m.deleted
                        .with_label_values(&[&label])
                        .inc_by((batch.len() - failed) as u64);
                    for (receipt, reason) in failures.failed {
                        m.delete_failures.with_label_values(&[&label]).inc();
                        tracing::warn!(%reason, receipt_prefix = %&receipt[..receipt.len().min(16)], "delete not confirmed; the message will be redelivered and must be handled idempotently");
                    }
                    break;
                }
                Err(error) if attempt < 3 => {
                    tracing::warn!(error = %format!("{error:#}"), attempt, "delete batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(error) => {
                    m.delete_failures
                        .with_label_values(&[&label])
                        .inc_by(batch.len() as u64);
                    tracing::error!(error = %format!("{error:#}"), count = batch.len(), "delete batch failed; messages will be redelivered");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
