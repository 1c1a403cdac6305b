//! The consume loop against real SQS semantics (moto).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kopter_runtime::worker::WorkerSettings;
use kopter_runtime::{Delivery, FnHandler, Handler, HandlerError, SqsQueue, Worker, telemetry};
use kopter_schema::messages::{InventoryChanged, Sweep};
use kopter_schema::{AccountId, Envelope, Message, Service, TenantId};
use kopter_tests::{TestEnv, eventually, http_get};
use tokio_util::sync::CancellationToken;

fn counting(
    calls: Arc<AtomicUsize>,
    result: fn() -> Result<(), HandlerError>,
    sleep: Duration,
) -> Arc<dyn Handler> {
    Arc::new(FnHandler(move |_d: Delivery| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(sleep).await;
            result()
        }
    }))
}

async fn start_worker(
    env: &TestEnv,
    handler: Arc<dyn Handler>,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<kopter_runtime::worker::RunSummary>,
) {
    let q = SqsQueue::resolve(env.sqs(), &env.ctx.names.queue(Service::Describer))
        .await
        .unwrap();
    let token = CancellationToken::new();
    let settings = WorkerSettings::from(&env.config.worker);
    let task = tokio::spawn(Worker::new(Arc::new(q), handler, settings).run(token.clone()));
    (token, task)
}

#[tokio::test]
async fn successful_handler_deletes_its_messages() {
    let env = TestEnv::new().await;
    let url = env.queue_url(Service::Describer).await;
    for i in 0..15 {
        env.send_raw(&url, &format!("m{i}")).await;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let (stop, task) = start_worker(&env, counting(calls.clone(), || Ok(()), Duration::ZERO)).await;
    eventually(
        "15 messages handled and deleted",
        Duration::from_secs(30),
        || async {
            (calls.load(Ordering::SeqCst) >= 15 && env.depth(&url).await == (0, 0)).then_some(())
        },
    )
    .await;
    stop.cancel();
    let summary = task.await.unwrap();
    assert_eq!(summary.succeeded, 15);
    assert_eq!(calls.load(Ordering::SeqCst), 15, "no message handled twice");
    assert_eq!(env.depth(&url).await, (0, 0));
}

#[tokio::test]
async fn heartbeat_keeps_a_slow_message_invisible_past_its_timeout() {
    // Visibility 2 s, heartbeat every 1 s, handler takes 7 s.
    let env = TestEnv::with(|c| {
        c.worker.visibility_timeout = Duration::from_secs(2);
        c.worker.heartbeat_interval = Duration::from_secs(1);
    })
    .await;
    let url = env.queue_url(Service::Describer).await;
    env.send_raw(&url, "slow").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (stop, task) = start_worker(
        &env,
        counting(calls.clone(), || Ok(()), Duration::from_secs(7)),
    )
    .await;
    eventually(
        "the slow message to be picked up",
        Duration::from_secs(10),
        || async { (calls.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // Well past the 2 s timeout, the message must still be in flight only.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            env.depth(&url).await,
            (0, 1),
            "message became visible while its handler ran"
        );
    }
    eventually(
        "the slow message to be deleted",
        Duration::from_secs(15),
        || async { (env.depth(&url).await == (0, 0)).then_some(()) },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "redelivered while being handled"
    );
}

#[tokio::test]
async fn always_failing_message_lands_in_the_dlq_after_max_receive_count() {
    let env = TestEnv::with(|c| c.queues.max_receive_count = 2).await;
    let url = env.queue_url(Service::Describer).await;
    let dlq = env.dlq_url(Service::Describer).await;
    env.send_raw(&url, "poison").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (stop, task) = start_worker(
        &env,
        counting(
            calls.clone(),
            || Err(HandlerError::retry(anyhow::anyhow!("always fails"))),
            Duration::ZERO,
        ),
    )
    .await;
    let moved = eventually(
        "the poison message in the DLQ",
        Duration::from_secs(40),
        || async {
            let got = env.receive(&dlq, Duration::from_secs(30)).await;
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].body.as_deref(), Some("poison"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "handled once per allowed receive"
    );
    assert_eq!(env.depth(&url).await, (0, 0));
}

#[tokio::test]
async fn malformed_and_misrouted_messages_are_refused_permanently() {
    let env = TestEnv::with(|c| c.queues.max_receive_count = 2).await;
    let url = env.queue_url(Service::Describer).await;
    let dlq = env.dlq_url(Service::Describer).await;
    env.send_raw(&url, "{not json").await;
    let wrong = kopter_runtime::messaging::envelope(Message::PricingRefreshAll(Sweep {}));
    env.send_raw(&url, &wrong.to_json()).await;
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(|d: Delivery| async move {
        kopter_runtime::decode_for(Service::Describer, &d).map(|_| ())
    }));
    let (stop, task) = start_worker(&env, handler).await;
    let moved = eventually(
        "both messages in the DLQ",
        Duration::from_secs(30),
        || async {
            let (visible, _) = env.depth(&dlq).await;
            (visible == 2).then_some(visible)
        },
    )
    .await;
    stop.cancel();
    let summary = task.await.unwrap();
    assert_eq!(moved, 2);
    assert_eq!(summary.succeeded, 0);
    assert!(summary.failed >= 4, "{summary:?}");
}

#[tokio::test]
async fn events_reach_only_the_subscribed_queues() {
    let env = TestEnv::new().await;
    let event = kopter_runtime::messaging::envelope(Message::InventoryChanged(InventoryChanged {
        tenant: TenantId::new("acme").unwrap(),
        account: AccountId::new("111122223333").unwrap(),
        region: "eu-west-1".into(),
        resource_id: "i-0abc".into(),
        resource_kind: "instance".into(),
        change: "launched".into(),
        at: chrono::Utc::now(),
        detail: serde_json::Value::Null,
    }));
    env.ctx.outbox.publish(&event).await.unwrap();
    for service in [Service::Aggregator, Service::Notifier] {
        let url = env.queue_url(service).await;
        let got = eventually(
            &format!("the event on the {service} queue"),
            Duration::from_secs(10),
            || async {
                let m = env.receive(&url, Duration::from_secs(30)).await;
                (!m.is_empty()).then_some(m)
            },
        )
        .await;
        // Raw delivery: the body is the envelope itself, not an SNS wrapper.
        let decoded = Envelope::decode(got[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(decoded, event);
    }
    for service in [Service::Describer, Service::Pricing, Service::TrailIngest] {
        let url = env.queue_url(service).await;
        assert!(
            env.receive(&url, Duration::from_secs(1)).await.is_empty(),
            "{service} got an event it does not subscribe to"
        );
    }
}

#[tokio::test]
async fn metrics_and_health_endpoints_answer() {
    let env = TestEnv::new().await;
    let q = Arc::new(
        SqsQueue::resolve(env.sqs(), &env.ctx.names.queue(Service::Pricing))
            .await
            .unwrap(),
    );
    let stop = CancellationToken::new();
    let check_q = q.clone();
    let check: telemetry::ReadyCheck = Arc::new(move || {
        let q = check_q.clone();
        Box::pin(async move { kopter_runtime::Queue::check_ready(&*q).await })
    });
    let addr = telemetry::serve("127.0.0.1:0".parse().unwrap(), vec![check], stop.clone())
        .await
        .unwrap();
    // Touch the runtime metrics through a real receive.
    let (worker_stop, task) =
        start_worker(&env, counting(Arc::default(), || Ok(()), Duration::ZERO)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(
            "kopter_aws_requests_total{operation=\"ReceiveMessage\",outcome=\"ok\",service=\"sqs\"}"
        ),
        "{body}"
    );
    assert!(
        body.contains("# TYPE kopter_handler_duration_seconds histogram")
            || body.contains("kopter_queue_messages_received_total"),
        "{body}"
    );
    worker_stop.cancel();
    task.await.unwrap();
    stop.cancel();
}
