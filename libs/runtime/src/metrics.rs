//! Process-wide Prometheus metrics of the runtime.
//!
//! One registry per process ([`registry`]); services register their own
//! collectors there too. Handles are resolved once (`LazyLock`), and label
//! sets are small and closed: queue (a service name), outcome, AWS service
//! and operation. Never tenant, account, instance or message ids.

use std::sync::LazyLock;

use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
    &REGISTRY
}

/// Registers a collector in the process registry, returning it.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    registry()
        .register(Box::new(c.clone()))
        .expect("metric registered twice");
    c
}

/// Text exposition of the registry.
pub fn render() -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry().gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("exposition is UTF-8")
}

pub struct RuntimeMetrics {
    /// `kopter_queue_messages_received_total{queue}`
    pub received: IntCounterVec,
    /// `kopter_queue_messages_deleted_total{queue}`
    pub deleted: IntCounterVec,
    /// `kopter_queue_messages_failed_total{queue,reason=retry|permanent|panic|cancelled}`
    pub failed: IntCounterVec,
    /// `kopter_queue_messages_released_total{queue}` (returned at shutdown)
    pub released: IntCounterVec,
    /// `kopter_queue_delete_failures_total{queue}`
    pub delete_failures: IntCounterVec,
    /// `kopter_queue_receive_errors_total{queue}`
    pub receive_errors: IntCounterVec,
    /// `kopter_queue_heartbeats_total{queue,outcome}`
    pub heartbeats: IntCounterVec,
    /// `kopter_handler_duration_seconds{queue,outcome}`
    pub handler_seconds: HistogramVec,
    /// `kopter_handler_in_flight{queue}`
    pub in_flight: IntGaugeVec,
    /// `kopter_sts_assume_role_total{outcome=ok|denied|error}`
    pub assume_role: IntCounterVec,
    /// `kopter_aws_requests_total{service,operation,outcome}`
    pub aws_requests: IntCounterVec,
    /// `kopter_dynamodb_consumed_capacity_units_total{table,operation,capacity}`:
    /// capacity units DynamoDB reported consumed (`capacity` = read|write;
    /// see [`crate::consumed_capacity`])
    pub dynamodb_consumed: CounterVec,
    /// `kopter_aws_throttles_total{service,operation}`
    pub aws_throttles: IntCounterVec,
    /// `kopter_aws_retries_total{service,operation}`
    pub aws_retries: IntCounterVec,
    /// `kopter_aws_server_errors_total{service,operation}` (5xx attempts)
    pub aws_server_errors: IntCounterVec,
    /// `kopter_queue_backpressure_retries_total{queue,class}`: handler runs
    /// repeated in-process after throttling/5xx/timeout/connection errors
    pub backpressure_retries: IntCounterVec,
    /// `kopter_queue_visibility_lost_total{queue}`: messages whose
    /// visibility could not be held while their handler ran
    pub visibility_lost: IntCounterVec,
    /// `kopter_limiter_concurrency_limit{limiter}`: current AIMD limit
    pub limiter_limit: IntGaugeVec,
    /// `kopter_limiter_throttled_total{limiter}`: throttles reported to a
    /// limiter
    pub limiter_throttled: IntCounterVec,
    /// `kopter_limiter_decreases_total{limiter}`: multiplicative decreases
    pub limiter_decreases: IntCounterVec,
    /// `kopter_limiter_write_retries_total{limiter,class}`: single writes
    /// retried on their own after back-pressure (`dynamo::write_patiently`)
    pub write_retries: IntCounterVec,
    /// `kopter_queue_depth_messages{queue,kind=main|dlq,state=visible|in_flight|delayed}`
    /// (polled; see `queue::depth`)
    pub queue_depth: IntGaugeVec,
    /// `kopter_queue_oldest_message_age_seconds{queue,kind=main|dlq}`
    pub queue_oldest_age: GaugeVec,
    /// `kopter_queue_depth_polls_total{queue,outcome=ok|error}`
    pub queue_polls: IntCounterVec,
}

pub fn runtime() -> &'static RuntimeMetrics {
    static METRICS: LazyLock<RuntimeMetrics> = LazyLock::new(|| {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        RuntimeMetrics {
            received: counter(
                "kopter_queue_messages_received_total",
                "Messages received from the service queue.",
                &["queue"],
            ),
            deleted: counter(
                "kopter_queue_messages_deleted_total",
                "Messages deleted after their work was durably done.",
                &["queue"],
            ),
            failed: counter(
                "kopter_queue_messages_failed_total",
                "Messages whose handling failed and were left for redelivery or the DLQ.",
                &["queue", "reason"],
            ),
            released: counter(
                "kopter_queue_messages_released_total",
                "In-flight messages returned to the queue (visibility 0) at shutdown.",
                &["queue"],
            ),
            delete_failures: counter(
                "kopter_queue_delete_failures_total",
                "Deletes that SQS did not confirm (the message will be redelivered).",
                &["queue"],
            ),
            receive_errors: counter(
                "kopter_queue_receive_errors_total",
                "ReceiveMessage calls that failed.",
                &["queue"],
            ),
            heartbeats: counter(
                "kopter_queue_heartbeats_total",
                "Visibility extensions of in-flight messages.",
                &["queue", "outcome"],
            ),
            handler_seconds: register(
                HistogramVec::new(
                    HistogramOpts::new(
                        "kopter_handler_duration_seconds",
                        "Time spent handling one message.",
                    )
                    .buckets(vec![
                        0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    ]),
                    &["queue", "outcome"],
                )
                .expect("valid metric"),
            ),
            in_flight: register(
                IntGaugeVec::new(
                    Opts::new("kopter_handler_in_flight", "Messages being handled now."),
                    &["queue"],
                )
                .expect("valid metric"),
            ),
            dynamodb_consumed: register(
                CounterVec::new(
                    Opts::new(
                        "kopter_dynamodb_consumed_capacity_units_total",
                        "DynamoDB capacity units consumed, as DynamoDB reported them.",
                    ),
                    &["table", "operation", "capacity"],
                )
                .expect("valid metric"),
            ),
            assume_role: counter(
                "kopter_sts_assume_role_total",
                "AssumeRole calls into customer accounts.",
                &["outcome"],
            ),
            aws_requests: counter(
                "kopter_aws_requests_total",
                "AWS API calls (after retries).",
                &["service", "operation", "outcome"],
            ),
            aws_throttles: counter(
                "kopter_aws_throttles_total",
                "AWS API attempts answered with a throttling error.",
                &["service", "operation"],
            ),
            aws_retries: counter(
                "kopter_aws_retries_total",
                "AWS API attempts after the first.",
                &["service", "operation"],
            ),
            aws_server_errors: counter(
                "kopter_aws_server_errors_total",
                "AWS API attempts answered with a 5xx.",
                &["service", "operation"],
            ),
            backpressure_retries: counter(
                "kopter_queue_backpressure_retries_total",
                "Handler runs repeated in-process after AWS back-pressure (throttling, 5xx, timeout, connection failure), by class.",
                &["queue", "class"],
            ),
            visibility_lost: counter(
                "kopter_queue_visibility_lost_total",
                "Messages whose visibility could not be held while their handler ran (another consumer may have received them).",
                &["queue"],
            ),
            limiter_limit: register(
                IntGaugeVec::new(
                    Opts::new(
                        "kopter_limiter_concurrency_limit",
                        "Current concurrency limit of an AIMD limiter.",
                    ),
                    &["limiter"],
                )
                .expect("valid metric"),
            ),
            limiter_throttled: counter(
                "kopter_limiter_throttled_total",
                "Throttles reported to an AIMD limiter.",
                &["limiter"],
            ),
            limiter_decreases: counter(
                "kopter_limiter_decreases_total",
                "Multiplicative decreases of an AIMD limiter's concurrency.",
                &["limiter"],
            ),
            write_retries: counter(
                "kopter_limiter_write_retries_total",
                "Single writes under an AIMD limiter retried on their own after back-pressure, by class.",
                &["limiter", "class"],
            ),
            queue_depth: register(
                IntGaugeVec::new(
                    Opts::new(
                        "kopter_queue_depth_messages",
                        "Approximate messages in the service's queue or DLQ, by state (polled).",
                    ),
                    &["queue", "kind", "state"],
                )
                .expect("valid metric"),
            ),
            queue_oldest_age: register(
                GaugeVec::new(
                    Opts::new(
                        "kopter_queue_oldest_message_age_seconds",
                        "Age of the oldest message waiting in the queue or DLQ (0 when none; polled).",
                    ),
                    &["queue", "kind"],
                )
                .expect("valid metric"),
            ),
            queue_polls: counter(
                "kopter_queue_depth_polls_total",
                "Queue depth polls by outcome.",
                &["queue", "outcome"],
            ),
        }
    });
    &METRICS
}
