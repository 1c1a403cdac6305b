//! The runtime under injected AWS faults, through the fault proxy
//! (`kopter_tests::faults`) in front of moto: each protocol's throttling
//! error as the real SDK sees it, a worker that must finish every message
//! exactly once-effectively at 25 % throttling + 5 % 503 + 2 % resets, and
//! a SIGTERM that ends on time while AWS stalls.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use kopter_runtime::aws::{self, AwsContext, ErrorClass};
use kopter_runtime::config::Config;
use kopter_runtime::worker::{Worker, WorkerSettings};
use kopter_runtime::{FnHandler, Handler, HandlerError, SqsQueue};
use kopter_schema::Service;
use kopter_tests::faults::{Fault, FaultPlan, FaultProxy};
use kopter_tests::{TestEnv, endpoint, eventually};
use tokio_util::sync::CancellationToken;

/// A config whose AWS calls go through `proxy`.
fn via(proxy: &FaultProxy, env: Option<&TestEnv>) -> Config {
    let mut c = env.map_or_else(|| Config::defaults(None), |e| e.config.clone());
    c.aws.endpoint_url = Some(proxy.url());
    c.aws.region = Some("us-east-1".into());
    c.worker.wait_time_seconds = 1;
    c.aws.attempt_timeout = Duration::from_secs(8);
    c.aws.operation_timeout = Duration::from_secs(30);
    c.validate().expect("valid test config");
    c
}

fn throttle_all() -> FaultPlan {
    FaultPlan {
        throttle: 1.0,
        ..FaultPlan::none()
    }
}

#[tokio::test]
async fn each_protocols_injected_throttle_is_what_the_sdk_calls_throttling() {
    let proxy = FaultProxy::start(&endpoint(), throttle_all())
        .await
        .unwrap();
    let mut config = via(&proxy, None);
    config.aws.max_attempts = 1;
    let ctx = AwsContext::load(&config).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&ctx.sdk)
            .force_path_style(true)
            .build(),
    );

    macro_rules! expect_throttle {
        ($call:expr, $code:expr) => {{
            let err = $call
                .send()
                .await
                .expect_err(concat!(stringify!($call), " throttled"));
            assert_eq!(err.code(), Some($code), "{}", DisplayErrorContext(&err));
            assert_eq!(
                aws::classify(&err),
                Some(ErrorClass::Throttling),
                "{}",
                DisplayErrorContext(&err)
            );
        }};
    }
    expect_throttle!(
        ctx.dynamodb().list_tables(),
        "ProvisionedThroughputExceededException"
    );
    expect_throttle!(ctx.sqs().list_queues(), "RequestThrottled");
    expect_throttle!(ctx.sns().list_topics(), "Throttling");
    expect_throttle!(ctx.sts().get_caller_identity(), "Throttling");
    expect_throttle!(ctx.ec2().describe_regions(), "RequestLimitExceeded");
    expect_throttle!(s3.list_buckets(), "SlowDown");
    let counts = proxy.counts();
    for service in ["dynamodb", "sqs", "sns", "sts", "ec2", "s3"] {
        assert_eq!(
            counts.of(Fault::Throttle, service),
            1,
            "{service}: {counts:?}"
        );
    }

    // A text 503: a server error that says so, not "unexpected token".
    proxy.set_plan(FaultPlan {
        server_error: 1.0,
        ..FaultPlan::none()
    });
    let err = ctx.dynamodb().list_tables().send().await.unwrap_err();
    let text = DisplayErrorContext(&err).to_string();
    assert!(!text.contains("unexpected token"), "{text}");
    assert!(
        text.contains("ServiceUnavailable") && text.contains("HTTP 503"),
        "{text}"
    );
    assert_eq!(aws::classify(&err), Some(ErrorClass::ServerError));
    let err = ctx.sts().get_caller_identity().send().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some("ServiceUnavailable"),
        "{}",
        DisplayErrorContext(&err)
    );
    assert_eq!(aws::classify(&err), Some(ErrorClass::ServerError));

    // A reset connection.
    proxy.set_plan(FaultPlan {
        reset: 1.0,
        ..FaultPlan::none()
    });
    let err = ctx.sqs().list_queues().send().await.unwrap_err();
    assert_eq!(
        aws::classify(&err),
        Some(ErrorClass::Connection),
        "{}",
        DisplayErrorContext(&err)
    );

    // No faults: calls go through to moto.
    proxy.set_plan(FaultPlan::none());
    ctx.dynamodb().list_tables().send().await.unwrap();
    ctx.sts().get_caller_identity().send().await.unwrap();
    assert!(proxy.counts().total(Fault::None) >= 2);
}

const MESSAGES: usize = 60;
const ROWS_PER_MESSAGE: usize = 5;

#[tokio::test]
async fn a_worker_finishes_every_message_once_effectively_under_throttling_5xx_and_resets() {
    // maxReceiveCount 3: a worker that let throttling spend receives would
    // dead-letter messages within seconds at these rates.
    let env = TestEnv::with(|c| c.queues.max_receive_count = 3).await;
    let direct_ddb = env.ctx.aws.dynamodb();
    let table = env.create_scratch_table("chaos").await;
    let url = env.queue_url(Service::Describer).await;
    for i in 0..MESSAGES {
        env.send_raw(&url, &format!("item-{i:03}")).await;
    }

    let proxy = FaultProxy::start(
        &endpoint(),
        FaultPlan {
            seed: 19,
            throttle: 0.25,
            server_error: 0.05,
            reset: 0.02,
        },
    )
    .await
    .unwrap();
    let config = via(&proxy, Some(&env));
    let aws_ctx = AwsContext::load(&config).await;
    let ddb = aws_ctx.dynamodb();
    let queue_name = env.ctx.names.queue(Service::Describer);
    let queue = eventually(
        "queue URL through the proxy",
        Duration::from_secs(20),
        || {
            let (sqs, name) = (aws_ctx.sqs(), queue_name.clone());
            async move { SqsQueue::resolve(sqs, &name).await.ok() }
        },
    )
    .await;

    let runs = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let handler: Arc<dyn Handler> = {
        let (runs, completed, table) = (runs.clone(), completed.clone(), table.clone());
        Arc::new(FnHandler(move |d: kopter_runtime::Delivery| {
            let (runs, completed, table, ddb) =
                (runs.clone(), completed.clone(), table.clone(), ddb.clone());
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                let rows = (0..ROWS_PER_MESSAGE)
                    .map(|k| {
                        WriteRequest::builder()
                            .put_request(
                                PutRequest::builder()
                                    .item("pk", AttributeValue::S(format!("{}#{k}", d.body)))
                                    .item("message", AttributeValue::S(d.body.clone()))
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                    })
                    .collect();
                kopter_runtime::dynamo::batch_write(&ddb, &table, rows, 2)
                    .await
                    .map_err(HandlerError::retry)?;
                // The "done" mark: written once, whatever the redeliveries.
                let marked = ddb
                    .put_item()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(format!("done#{}", d.body)))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match marked {
                    Ok(_) => completed.lock().unwrap().push(d.body.clone()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                    Err(e) => {
                        return Err(HandlerError::retry(
                            anyhow::Error::new(e).context(format!("mark {} done", d.body)),
                        ));
                    }
                }
                Ok(())
            }
        }))
    };
    let mut settings = WorkerSettings::from(&config.worker);
    settings.retry_base = Duration::from_secs(1);
    settings.retry_max = Duration::from_secs(2);
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(Arc::new(queue), handler, settings)
            .with_service_label(Service::Describer)
            .run(shutdown.clone()),
    );

    let t0 = Instant::now();
    let dlq = env.dlq_url(Service::Describer).await;
    eventually(
        "every message handled and deleted",
        Duration::from_secs(100),
        || async {
            (completed.lock().unwrap().len() == MESSAGES && env.depth(&url).await == (0, 0))
                .then_some(())
        },
    )
    .await;
    let took = t0.elapsed();
    shutdown.cancel();
    let summary = worker.await.unwrap();

    let counts = proxy.counts();
    println!("settled in {took:?}; proxy: {counts}; worker: {summary:?}");
    assert_eq!(env.depth(&dlq).await, (0, 0), "nothing dead-lettered");
    let completed = completed.lock().unwrap().clone();
    let unique: HashSet<_> = completed.iter().collect();
    assert_eq!(completed.len(), MESSAGES, "each marked done exactly once");
    assert_eq!(unique.len(), MESSAGES);
    // Every row, read back straight from moto.
    let mut items = 0;
    let mut pages = direct_ddb.scan().table_name(&table).into_paginator().send();
    while let Some(page) = pages.next().await {
        items += page.expect("scan the test table").count as usize;
    }
    assert_eq!(items, MESSAGES * (ROWS_PER_MESSAGE + 1));
    assert!(runs.load(Ordering::SeqCst) >= MESSAGES);
    // The faults really happened, to both DynamoDB and SQS.
    for fault in [Fault::Throttle, Fault::ServerError] {
        for service in ["dynamodb", "sqs"] {
            assert!(
                counts.of(fault, service) > 0,
                "{fault:?} {service}: {counts:?}"
            );
        }
    }
    assert!(counts.total(Fault::Reset) > 0, "{counts:?}");
    assert!(took < Duration::from_secs(100));
}

fn test_worker(env: &TestEnv, endpoint: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_test-worker"));
    cmd.envs(env.env_vars())
        .env("KOPTER_AWS__ENDPOINT_URL", endpoint)
        .env("TEST_WORKER_MODE", "sleep")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn sigterm_ends_within_grace_plus_five_seconds_while_aws_stalls() {
    let env = TestEnv::new().await;
    let url = env.queue_url(Service::Describer).await;
    for i in 0..3 {
        env.send_raw(&url, &format!("work-{i}")).await;
    }
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none())
        .await
        .unwrap();
    let grace = Duration::from_secs(2);
    let mut child = test_worker(&env, &proxy.url())
        .env("KOPTER_WORKER__SHUTDOWN_GRACE", "2s")
        .env("KOPTER_AWS__ATTEMPT_TIMEOUT", "20s")
        .env("KOPTER_AWS__OPERATION_TIMEOUT", "60s")
        .spawn()
        .unwrap();
    eventually("3 messages in flight", Duration::from_secs(30), || async {
        (env.depth(&url).await == (0, 3)).then_some(())
    })
    .await;
    // AWS accepts connections and never answers again: heartbeats, the
    // return of the messages and any delete all hang.
    proxy.set_stalled(true);
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) },
        0
    );
    let t0 = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker exits")
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took <= grace + Duration::from_secs(5),
        "exit took {took:?}, over shutdown_grace + 5 s"
    );
    assert!(status.success(), "{status:?}");
    assert!(proxy.counts().total(Fault::Stall) > 0);
    // Not lost: they reappear when their visibility (10 s) ends.
    eventually(
        "the messages visible again",
        Duration::from_secs(20),
        || async { (env.depth(&url).await.0 == 3).then_some(()) },
    )
    .await;
}

/// A fleet restarting into throttling must not exit: the startup queue-URL
/// lookup waits out back-pressure (and only back-pressure), and gives up
/// when asked to shut down.
#[tokio::test]
async fn the_startup_queue_lookup_waits_out_throttling_but_not_a_missing_queue() {
    let env = TestEnv::new().await;
    let name = env.ctx.names.queue(Service::Describer);
    let url = env.queue_url(Service::Describer).await;
    let proxy = FaultProxy::start(&endpoint(), FaultPlan::none())
        .await
        .unwrap();
    let mut config = via(&proxy, Some(&env));
    config.aws.max_attempts = 1;
    let ctx = AwsContext::load(&config).await;

    // GetQueueUrl's body names the queue: every lookup is throttled.
    proxy.throttle_matching(&[&name]);
    let shutdown = CancellationToken::new();
    let lookup = tokio::spawn({
        let (sqs, name, shutdown) = (ctx.sqs(), name.clone(), shutdown.clone());
        async move { SqsQueue::resolve_patiently(sqs, &name, &shutdown).await }
    });
    eventually("three throttled lookups", Duration::from_secs(20), || {
        let throttled = proxy.counts().total(Fault::Throttle);
        async move { (throttled >= 3).then_some(()) }
    })
    .await;
    assert!(
        !lookup.is_finished(),
        "a throttled lookup is retried, not returned"
    );
    proxy.throttle_matching(&[]);
    let q = tokio::time::timeout(Duration::from_secs(20), lookup)
        .await
        .expect("the lookup ends once SQS answers")
        .unwrap()
        .expect("the queue is found");
    // moto names the host it was asked on (the proxy's): compare paths.
    let path = |u: &str| {
        u.split_once("//")
            .unwrap()
            .1
            .split_once('/')
            .unwrap()
            .1
            .to_owned()
    };
    assert_eq!(path(q.url()), path(&url));

    // Shutdown ends a lookup that is still being throttled.
    proxy.throttle_matching(&[&name]);
    let shutdown = CancellationToken::new();
    let lookup = tokio::spawn({
        let (sqs, name, shutdown) = (ctx.sqs(), name.clone(), shutdown.clone());
        async move { SqsQueue::resolve_patiently(sqs, &name, &shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    shutdown.cancel();
    let err = tokio::time::timeout(Duration::from_secs(5), lookup)
        .await
        .expect("shutdown ends the lookup promptly")
        .unwrap()
        .expect_err("no queue after shutdown");
    assert!(format!("{err:#}").contains("shut down"), "{err:#}");
    proxy.throttle_matching(&[]);

    // A queue that does not exist is an error at once, not a retry loop.
    let before = proxy.calls().len();
    let missing = format!("{name}-missing");
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        SqsQueue::resolve_patiently(ctx.sqs(), &missing, &CancellationToken::new()),
    )
    .await
    .expect("a missing queue is not retried")
    .expect_err("no such queue");
    assert!(format!("{err:#}").contains(&missing), "{err:#}");
    assert_eq!(proxy.calls().len() - before, 1, "one lookup, no retries");
}
