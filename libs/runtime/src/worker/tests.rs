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
