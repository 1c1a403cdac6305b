//! Unit tests of the consume loop against [`MemoryQueue`], on tokio's
//! paused clock so timeouts and backoffs are exact and instant.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::queue::MemoryQueue;
use crate::queue::failures::{FailureSink, MessageFailure};

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        max_messages: 10,
        wait: Duration::from_secs(20),
        visibility: Duration::from_secs(30),
        heartbeat: Duration::from_secs(10),
        grace: Duration::from_secs(5),
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(60),
        delete_linger: Duration::from_millis(50),
        backpressure_budget: Duration::from_secs(120),
    }
}

fn handler<F, Fut>(f: F) -> Arc<dyn Handler>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    Arc::new(FnHandler(f))
}

/// Runs the worker until `done` holds (checked every simulated 100 ms) or
/// `limit` passes, then shuts it down and returns its summary.
async fn run_until(
    queue: Arc<MemoryQueue>,
    h: Arc<dyn Handler>,
    s: WorkerSettings,
    limit: Duration,
    done: impl Fn(&MemoryQueue) -> bool,
) -> RunSummary {
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(queue.clone(), h, s).run(shutdown.clone()));
    let start = Instant::now();
    while !done(&queue) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    worker.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn successful_messages_are_deleted_in_batches() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    for i in 0..25 {
        q.send(&format!("msg-{i}"));
    }
    let summary = run_until(
        q.clone(),
        handler(|_| async { Ok(()) }),
        settings(),
        Duration::from_secs(60),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(q.deleted().len(), 25);
    assert!(q.is_empty());
    assert_eq!(summary.succeeded, 25);
    assert_eq!(summary.failed, 0);
}

#[tokio::test(start_paused = true)]
async fn always_failing_message_reaches_the_dlq_after_max_receives() {
    let q = Arc::new(MemoryQueue::new("q", 3));
    q.send("poison");
    q.send("good");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let summary = run_until(
        q.clone(),
        handler(move |d| {
            let c = c.clone();
            async move {
                if d.body == "poison" {
                    c.fetch_add(1, Ordering::SeqCst);
                    Err(HandlerError::retry(anyhow::anyhow!(
                        "downstream unavailable"
                    )))
                } else {
                    Ok(())
                }
            }
        }),
        settings(),
        Duration::from_secs(600),
        |q| !q.dlq().is_empty(),
    )
    .await;
    assert_eq!(q.dlq(), vec!["poison".to_string()]);
    assert_eq!(q.deleted(), vec!["good".to_string()]);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call per receive");
    assert_eq!(summary.failed, 3);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_not_delayed() {
    let q = Arc::new(MemoryQueue::new("q", 4));
    q.send("{malformed");
    let start = Instant::now();
    run_until(
        q.clone(),
        handler(|_| async { Err(HandlerError::permanent(anyhow::anyhow!("not JSON"))) }),
        settings(),
        Duration::from_secs(600),
        |q| !q.dlq().is_empty(),
    )
    .await;
    assert_eq!(q.dlq().len(), 1);
    // No backoff between receives: made visible again at once each time.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_a_slow_message_invisible() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("slow");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    run_until(
        q.clone(),
        handler(move |_| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                // Three visibility timeouts long.
                tokio::time::sleep(Duration::from_secs(90)).await;
                Ok(())
            }
        }),
        settings(),
        Duration::from_secs(300),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "redelivered while running");
    assert_eq!(q.deleted(), vec!["slow".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn panics_are_caught_and_the_message_redelivered() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("boom-once");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let summary = run_until(
        q.clone(),
        handler(move |_| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("handler bug");
                }
                Ok(())
            }
        }),
        settings(),
        Duration::from_secs(300),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(q.deleted().len(), 1);
    assert_eq!(summary.failed, 1);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    for i in 0..20 {
        q.send(&i.to_string());
    }
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    run_until(
        q.clone(),
        handler(move |_| {
            let (n, p) = (n.clone(), p.clone());
            async move {
                let cur = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(cur, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        }),
        settings(),
        Duration::from_secs(120),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(q.deleted().len(), 20);
    assert_eq!(peak.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_unfinished_messages_after_the_grace_period() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("quick");
    q.send("stuck");
    let started = Arc::new(AtomicUsize::new(0));
    let s2 = started.clone();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            q.clone(),
            handler(move |d| {
                let s2 = s2.clone();
                async move {
                    s2.fetch_add(1, Ordering::SeqCst);
                    let secs = if d.body == "quick" { 2 } else { 3600 };
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    Ok(())
                }
            }),
            settings(),
        )
        .run(shutdown.clone()),
    );
    while started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    shutdown.cancel();
    let summary = worker.await.unwrap();
    let took = t0.elapsed();
    // "quick" finished inside the 5 s grace and was deleted; "stuck" was
    // returned to the queue as soon as the grace ran out.
    assert_eq!(q.deleted(), vec!["quick".to_string()]);
    assert_eq!(q.len(), 1);
    assert_eq!(
        q.visible(),
        1,
        "stuck message must be visible again at once"
    );
    assert_eq!(summary.released, 1);
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn receive_errors_back_off_and_recover() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("later");
    q.set_fail_receives(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            q.clone(),
            handler(move |d| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(d.body);
                    Ok(())
                }
            }),
            settings(),
        )
        .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(seen.lock().unwrap().is_empty());
    q.set_fail_receives(false);
    tokio::time::sleep(Duration::from_secs(30)).await;
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["later".to_string()]);
    assert!(q.is_empty());
}

#[test]
fn retry_delay_grows_and_is_capped() {
    let base = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    for _ in 0..100 {
        let d1 = retry_delay(1, base, max);
        assert!(d1 >= Duration::from_secs(1) && d1 <= base);
        let d4 = retry_delay(4, base, max);
        assert!(d4 >= Duration::from_secs(8) && d4 <= Duration::from_secs(16));
        let d20 = retry_delay(20, base, max);
        assert!(d20 >= Duration::from_secs(30) && d20 <= max);
    }
}

/// Collects what the worker reports.
#[derive(Default)]
struct Recorded(Mutex<Vec<MessageFailure>>);

impl FailureSink for Recorded {
    fn record<'a>(&'a self, failure: &'a MessageFailure) -> BoxFuture<'a, anyhow::Result<()>> {
        self.0.lock().unwrap().push(failure.clone());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(start_paused = true)]
async fn every_failure_is_reported_with_its_reason_and_successes_are_not() {
    let q = Arc::new(MemoryQueue::new("q", 2));
    q.send("poison");
    q.send("good");
    let sink = Arc::new(Recorded::default());
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        q.clone(),
        handler(|d| async move {
            if d.body == "poison" {
                Err(HandlerError::permanent(anyhow::anyhow!(
                    "cannot parse {}",
                    d.body
                )))
            } else {
                Ok(())
            }
        }),
        settings(),
    )
    .with_failure_sink(sink.clone());
    let task = tokio::spawn(worker.run(shutdown.clone()));
    let start = Instant::now();
    while q.dlq().is_empty() && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.outcome, "permanent");
        assert_eq!(f.reason, "cannot parse poison");
        assert_eq!(f.receive_count, i as u32 + 1);
        assert_eq!(f.message_id, got[0].message_id);
    }
}

fn throttled() -> HandlerError {
    let meta = aws_smithy_types::error::ErrorMetadata::builder()
        .code("ProvisionedThroughputExceededException")
        .message("rate exceeded")
        .build();
    HandlerError::retry(anyhow::Error::new(meta).context("write audit event"))
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_in_process_without_spending_receives() {
    // maxReceiveCount 2: were each throttle a redelivery, the message would
    // be dead-lettered after the second.
    let q = Arc::new(MemoryQueue::new("q", 2));
    q.send("hot-partition");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let summary = run_until(
        q.clone(),
        handler(move |_| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 6 {
                    Err(throttled())
                } else {
                    Ok(())
                }
            }
        }),
        settings(),
        Duration::from_secs(600),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    assert_eq!(q.deleted(), vec!["hot-partition".to_string()]);
    assert!(q.dlq().is_empty());
    assert_eq!(summary.received, 1, "one receive for all seven runs");
    assert_eq!(summary.backpressure_retries, 6);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.visibility_lost, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_past_the_budget_returns_the_message_and_other_errors_are_not_retried_in_process()
 {
    let q = Arc::new(MemoryQueue::new("q", 10));
    q.send("throttled-forever");
    q.send("logic-error");
    let calls = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
    let c = calls.clone();
    let mut s = settings();
    s.backpressure_budget = Duration::from_secs(30);
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            q.clone(),
            handler(move |d| {
                let c = c.clone();
                async move {
                    *c.lock().unwrap().entry(d.body.clone()).or_default() += 1;
                    if d.body == "logic-error" {
                        Err(HandlerError::retry(anyhow::anyhow!("price missing")))
                    } else {
                        Err(throttled())
                    }
                }
            }),
            s,
        )
        .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    let seen = calls.lock().unwrap().clone();
    assert_eq!(
        seen["logic-error"] as u32,
        q.receive_count("logic-error"),
        "a non-AWS failure goes straight back: one run per receive"
    );
    assert!(
        seen["throttled-forever"] >= 4,
        "throttling retried in-process: {seen:?}"
    );
    assert_eq!(q.receive_count("throttled-forever"), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    // The budget ran out: back to the queue with a backoff, one receive
    // spent.
    assert_eq!(q.receive_count("throttled-forever"), 2);
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert!(summary.failed >= 2, "{summary:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_heartbeat_is_retried_promptly_and_the_message_held() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("slow");
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let q2 = q.clone();
    let summary = run_until(
        q.clone(),
        handler(move |_| {
            let (c, q2) = (c.clone(), q2.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                // The first heartbeat (at 10 s) and its next three retries
                // fail; the fifth try, well within the 30 s visibility,
                // holds it.
                q2.fail_visibility_changes(4);
                tokio::time::sleep(Duration::from_secs(75)).await;
                Ok(())
            }
        }),
        settings(),
        Duration::from_secs(300),
        |q| q.is_empty(),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "redelivered while running");
    assert_eq!(q.deleted(), vec!["slow".to_string()]);
    assert_eq!(summary.visibility_lost, 0);
}

#[tokio::test(start_paused = true)]
async fn visibility_that_cannot_be_held_is_recorded_and_stops_in_process_retries() {
    let q = Arc::new(MemoryQueue::new("q-lost", 5));
    q.send("m");
    let runs = Arc::new(Mutex::new(Vec::<u32>::new()));
    let r = runs.clone();
    let q2 = q.clone();
    let before = metrics::runtime()
        .visibility_lost
        .with_label_values(&["q-lost"])
        .get();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            q.clone(),
            handler(move |d| {
                let (r, q2) = (r.clone(), q2.clone());
                async move {
                    r.lock().unwrap().push(d.receive_count);
                    // SQS stops taking visibility changes.
                    q2.fail_visibility_changes(u32::MAX);
                    // Throttled for longer than the 30 s visibility.
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    Err(throttled())
                }
            }),
            settings(),
        )
        .run(shutdown.clone()),
    );
    tokio::time::sleep(Duration::from_secs(45)).await;
    shutdown.cancel();
    let summary = worker.await.unwrap();
    assert_eq!(summary.visibility_lost, 1, "{summary:?}");
    assert_eq!(
        metrics::runtime()
            .visibility_lost
            .with_label_values(&["q-lost"])
            .get(),
        before + 1
    );
    let runs = runs.lock().unwrap().clone();
    // First receive: runs at 0, ~8.5, ~17.5, ~27.5 s; the lease is lost at
    // ~30 s, so no in-process retry follows the run that ends after it.
    let first = runs.iter().filter(|&&c| c == 1).count();
    assert!((3..=4).contains(&first), "{runs:?}");
    // Meanwhile the message was visible again and received a second time.
    assert!(runs.contains(&2), "{runs:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_on_time_when_the_queue_stalls() {
    let q = Arc::new(MemoryQueue::new("q", 5));
    q.send("done-before-stall");
    q.send("stuck");
    let started = Arc::new(AtomicUsize::new(0));
    let s2 = started.clone();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            q.clone(),
            handler(move |d| {
                let s2 = s2.clone();
                async move {
                    s2.fetch_add(1, Ordering::SeqCst);
                    let secs = if d.body == "stuck" { 3600 } else { 1 };
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    Ok(())
                }
            }),
            settings(),
        )
        .run(shutdown.clone()),
    );
    while started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // AWS stops answering: deletes, heartbeats and returns all hang.
    q.set_stalled(true);
    let t0 = Instant::now();
    shutdown.cancel();
    let summary = worker.await.unwrap();
    let took = t0.elapsed();
    assert!(
        took <= settings().grace + SHUTDOWN_CLEANUP + Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(summary.succeeded, 1);
}
