//! Queue health without CloudWatch: a task that polls each worker's queue
//! and DLQ every `telemetry.queue_poll_interval` and exports
//!
//! - `kopter_queue_depth_messages{queue,kind=main|dlq,state=visible|in_flight|delayed}`
//!   (`GetQueueAttributes`, approximate like everything SQS counts);
//! - `kopter_queue_oldest_message_age_seconds{queue,kind}`: how long the
//!   oldest waiting message has been in the queue (0 when none waits);
//! - `kopter_queue_depth_polls_total{queue,outcome=ok|error}`.
//!
//! SQS has no API for the age of the oldest message (CloudWatch's
//! `ApproximateAgeOfOldestMessage` is computed inside AWS), so:
//! - **DLQ**: while it holds messages, the poller peeks at up to 10 of them
//!   (`VisibilityTimeout=0`, so they stay visible; a DLQ has no redrive, so
//!   the extra receive count is harmless) and takes the oldest
//!   `SentTimestamp`. SQS keeps a message's original enqueue time when it
//!   moves it to the DLQ, so this is the age since the work was first sent.
//! - **main queue**: peeking would count towards `maxReceiveCount` and push
//!   work into the DLQ, so the worker reports the oldest `SentTimestamp` of
//!   what it received ([`observe_received`]). While messages are visible,
//!   the age is `now − oldest received since the last poll`; if nothing was
//!   received since, the previous estimate keeps growing; if the backlog
//!   appeared before anything was received, it counts from when the poller
//!   first saw it (a lower bound). With nothing visible it is 0.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use tokio_util::sync::CancellationToken;

use super::ReceivedMessage;
use crate::metrics;

/// One worker's queues, by metric label (the service name).
#[derive(Debug, Clone)]
pub struct Watched {
    pub label: String,
    pub url: String,
    /// `None` if the DLQ could not be resolved (logged at start).
    pub dlq_url: Option<String>,
}

/// Oldest `SentTimestamp` (Unix ms) received per queue label since the
/// poller last looked.
static RECEIVED: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Called by the worker with each received batch.
pub fn observe_received(label: &str, messages: &[ReceivedMessage]) {
    let Some(oldest) = messages.iter().filter_map(|m| m.sent_at_ms).min() else {
        return;
    };
    let mut seen = RECEIVED.lock().unwrap();
    let e = seen.entry(label.to_owned()).or_insert(oldest);
    *e = (*e).min(oldest);
}

fn take_received(label: &str) -> Option<u64> {
    RECEIVED.lock().unwrap().remove(label)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The main queue's age estimate (see the module docs). `base` is the
/// estimate's start, kept between polls.
fn main_queue_age(base: &mut Option<u64>, visible: u64, received: Option<u64>, now: u64) -> f64 {
    if visible == 0 {
        *base = None;
        return 0.0;
    }
    match (received, *base) {
        (Some(r), _) => *base = Some(r),
        (None, None) => *base = Some(now),
        (None, Some(_)) => {}
    }
    base.map_or(0.0, |b| now.saturating_sub(b) as f64 / 1000.0)
}

/// Messages in a queue, as SQS approximates them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// The depth of the queue named `name` (tools: `kopterctl queues`, the
/// demo's report).
pub async fn depth_by_name(client: &Client, name: &str) -> anyhow::Result<Depth> {
    let url = client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("look up queue {name} (has `kopterctl bootstrap` run?)"))?
        .queue_url
        .unwrap_or_default();
    depth(client, &url).await
}

/// The depth of the queue at `url`.
pub async fn depth(client: &Client, url: &str) -> anyhow::Result<Depth> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .with_context(|| format!("read the depth of {url}"))?;
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: QueueAttributeName| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        visible: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
    })
}

/// Oldest `SentTimestamp` among up to 10 DLQ messages, leaving them visible.
async fn peek_oldest(client: &Client, url: &str) -> anyhow::Result<Option<u64>> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .send()
        .await?;
    Ok(out
        .messages
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            m.attributes
                .as_ref()?
                .get(&MessageSystemAttributeName::SentTimestamp)?
                .parse::<u64>()
                .ok()
        })
        .min())
}

fn export(label: &str, kind: &str, d: Depth, age: f64) {
    let m = metrics::runtime();
    for (state, v) in [
        ("visible", d.visible),
        ("in_flight", d.in_flight),
        ("delayed", d.delayed),
    ] {
        m.queue_depth
            .with_label_values(&[label, kind, state])
            .set(v as i64);
    }
    m.queue_oldest_age
        .with_label_values(&[label, kind])
        .set(age);
}

#[derive(Default)]
struct State {
    main_base: Option<u64>,
    dlq_age: f64,
}

async fn poll_once(client: &Client, w: &Watched, st: &mut State) -> anyhow::Result<()> {
    let main = depth(client, &w.url).await?;
    let now = now_ms();
    let age = main_queue_age(
        &mut st.main_base,
        main.visible,
        take_received(&w.label),
        now,
    );
    export(&w.label, "main", main, age);
    if let Some(dlq_url) = &w.dlq_url {
        let dlq = depth(client, dlq_url).await?;
        if dlq.visible + dlq.in_flight == 0 {
            st.dlq_age = 0.0;
        } else if let Some(oldest) = peek_oldest(client, dlq_url).await? {
            st.dlq_age = now.saturating_sub(oldest) as f64 / 1000.0;
        }
        export(&w.label, "dlq", dlq, st.dlq_age);
    }
    Ok(())
}

/// Polls every watched queue each `interval` until `shutdown`.
pub fn spawn(
    client: Client,
    watched: Vec<Watched>,
    interval: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut states: Vec<State> = watched.iter().map(|_| State::default()).collect();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            for (w, st) in watched.iter().zip(states.iter_mut()) {
                let outcome = match poll_once(&client, w, st).await {
                    Ok(()) => "ok",
                    Err(e) => {
                        tracing::warn!(queue = %w.label, error = %format!("{e:#}"), "queue depth poll failed");
                        "error"
                    }
                };
                metrics::runtime()
                    .queue_polls
                    .with_label_values(&[&w.label, outcome])
                    .inc();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_queue_age_follows_receives_and_resets_when_empty() {
        let mut base = None;
        // Empty queue: 0, no base.
        assert_eq!(main_queue_age(&mut base, 0, None, 10_000), 0.0);
        // Backlog seen before anything was received: counts from now.
        assert_eq!(main_queue_age(&mut base, 3, None, 10_000), 0.0);
        assert_eq!(main_queue_age(&mut base, 3, None, 70_000), 60.0);
        // The worker received a message sent at 4 s: its age wins.
        assert_eq!(main_queue_age(&mut base, 3, Some(4_000), 74_000), 70.0);
        // Nothing received since: the estimate keeps growing.
        assert_eq!(main_queue_age(&mut base, 1, None, 84_000), 80.0);
        // Fresh receives replace an old estimate.
        assert_eq!(main_queue_age(&mut base, 1, Some(83_000), 84_000), 1.0);
        // Drained.
        assert_eq!(main_queue_age(&mut base, 0, Some(83_000), 90_000), 0.0);
        assert_eq!(base, None);
    }

    #[test]
    fn observe_received_keeps_the_oldest_until_taken() {
        let msg = |sent: Option<u64>| ReceivedMessage {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: String::new(),
            receive_count: 1,
            attributes: HashMap::new(),
            sent_at_ms: sent,
        };
        observe_received("depth-test", &[msg(Some(500)), msg(None)]);
        observe_received("depth-test", &[msg(Some(300)), msg(Some(900))]);
        observe_received("depth-test", &[msg(None)]);
        assert_eq!(take_received("depth-test"), Some(300));
        assert_eq!(take_received("depth-test"), None);
    }
}
