//! Classification and the 5xx-body repair, against canned HTTP answers from
//! a local socket (no AWS needed): what the SDK really makes of them.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

#[test]
fn recognises_throttles_across_protocols() {
    assert!(is_throttle_response(429, None, None));
    assert!(is_throttle_response(
        400,
        Some("AWS.SimpleQueueService.Throttling;Sender"),
        None
    ));
    assert!(is_throttle_response(
        503,
        None,
        Some(b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>")
    ));
    assert!(is_throttle_response(
        400,
        None,
        Some(br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#)
    ));
    assert!(!is_throttle_response(400, None, Some(b"AccessDenied")));
    assert!(!is_throttle_response(200, None, Some(b"SlowDown")));
}

#[test]
fn classifies_codes_and_typed_errors_anywhere_in_a_chain() {
    assert_eq!(
        ErrorClass::of_code("AWS.SimpleQueueService.RequestThrottled"),
        Some(ErrorClass::Throttling)
    );
    assert_eq!(
        ErrorClass::of_code("SlowDown"),
        Some(ErrorClass::Throttling)
    );
    assert_eq!(
        ErrorClass::of_code("ServiceUnavailable"),
        Some(ErrorClass::ServerError)
    );
    assert_eq!(ErrorClass::of_code("AccessDenied"), None);
    assert_eq!(ErrorClass::of_code("ConditionalCheckFailedException"), None);

    let meta = ErrorMetadata::builder()
        .code("RequestLimitExceeded")
        .build();
    let e = anyhow::Error::new(meta).context("describe instances");
    assert_eq!(classify_anyhow(&e), Some(ErrorClass::Throttling));

    let ptee = aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
        .message("slow down")
        .build();
    let e = anyhow::Error::new(ptee).context("write audit event");
    assert_eq!(classify_anyhow(&e), Some(ErrorClass::Throttling));

    let reset = ConnectorError::io(Box::new(std::io::Error::from(
        std::io::ErrorKind::ConnectionReset,
    )));
    assert_eq!(
        classify(&reset as &(dyn std::error::Error + 'static)),
        Some(ErrorClass::Connection)
    );
    let timeout = ConnectorError::timeout("connect timed out".into());
    assert_eq!(
        classify(&timeout as &(dyn std::error::Error + 'static)),
        Some(ErrorClass::Timeout)
    );

    let plain = anyhow::anyhow!("record 3 has no eventTime").context("parse file");
    assert_eq!(classify_anyhow(&plain), None);
    let denied = ErrorMetadata::builder().code("AccessDenied").build();
    assert_eq!(classify_anyhow(&anyhow::Error::new(denied)), None);
}

#[test]
fn protocol_error_bodies_parse_as_their_protocol() {
    let json = protocol_error_body(ErrorProtocol::Json, "ServiceUnavailable", "a <b> & c");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["__type"], "ServiceUnavailable");
    assert_eq!(v["message"], "a <b> & c");
    let ec2 = protocol_error_body(ErrorProtocol::Ec2, "RequestLimitExceeded", "a <b> & c");
    assert!(
        ec2.contains(
            "<Errors><Error><Code>RequestLimitExceeded</Code><Message>a &lt;b&gt; &amp; c</Message>"
        ),
        "{ec2}"
    );
    assert_eq!(ErrorProtocol::of_service("SQS"), ErrorProtocol::Json);
    assert_eq!(ErrorProtocol::of_service("STS"), ErrorProtocol::Query);
    assert_eq!(ErrorProtocol::of_service("S3"), ErrorProtocol::RestXml);
}

/// Serves `answer` (a whole HTTP response) to every request, or never
/// answers when `answer` is `None`; returns the endpoint URL.
async fn canned_endpoint(answer: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // One read is enough for the small requests of these tests.
                let _ = sock.read(&mut buf).await;
                match answer {
                    Some(a) => {
                        let _ = sock.write_all(a.as_bytes()).await;
                    }
                    // Accept and never answer: a stalled endpoint.
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    format!("http://{addr}")
}

fn test_config(endpoint: &str) -> Config {
    let mut c = Config::defaults(None);
    c.aws.endpoint_url = Some(endpoint.to_owned());
    c.aws.region = Some("us-east-1".into());
    c.aws.max_attempts = 2;
    c.aws.attempt_timeout = Duration::from_secs(25);
    c.aws.operation_timeout = Duration::from_secs(30);
    c
}

fn with_test_credentials() {
    // SAFETY: tests of this module set the same values; nothing reads them
    // concurrently in a way that could observe a torn write.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    }
}

#[tokio::test]
async fn a_text_503_is_a_server_error_not_an_unexpected_token() {
    with_test_credentials();
    let endpoint = canned_endpoint(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 19\r\n\r\nService Unavailable",
    ))
    .await;
    let ctx = AwsContext::load(&test_config(&endpoint)).await;

    let err = ctx
        .dynamodb()
        .describe_table()
        .table_name("t")
        .send()
        .await
        .unwrap_err();
    let text = format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert!(!text.contains("unexpected token"), "{text}");
    assert!(
        text.contains("ServiceUnavailable") && text.contains("HTTP 503"),
        "{text}"
    );
    assert_eq!(classify(&err), Some(ErrorClass::ServerError), "{text}");

    // A query-protocol (XML) service and an HTML page.
    let endpoint = canned_endpoint(Some(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 13\r\n\r\n<html></html>",
    ))
    .await;
    let ctx = AwsContext::load(&test_config(&endpoint)).await;
    let err = ctx.sts().get_caller_identity().send().await.unwrap_err();
    let text = format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert!(
        text.contains("BadGateway") && text.contains("HTTP 502"),
        "{text}"
    );
    assert_eq!(classify(&err), Some(ErrorClass::ServerError), "{text}");
}

#[tokio::test]
async fn a_modelled_throttle_is_classified_as_throttling() {
    with_test_credentials();
    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let endpoint = canned_endpoint(Some(Box::leak(answer.into_boxed_str()))).await;
    let ctx = AwsContext::load(&test_config(&endpoint)).await;
    let err = ctx
        .dynamodb()
        .describe_table()
        .table_name("t")
        .send()
        .await
        .unwrap_err();
    assert_eq!(classify(&err), Some(ErrorClass::Throttling), "{err:?}");
}

#[tokio::test]
async fn a_stalled_endpoint_times_out_at_the_attempt_deadline() {
    with_test_credentials();
    let endpoint = canned_endpoint(None).await;
    let mut config = test_config(&endpoint);
    config.worker.wait_time_seconds = 0;
    config.aws.max_attempts = 1;
    config.aws.attempt_timeout = Duration::from_secs(5);
    config.aws.operation_timeout = Duration::from_secs(6);
    config.validate().unwrap();
    let ctx = AwsContext::load(&config).await;
    let t0 = Instant::now();
    let err = ctx
        .dynamodb()
        .describe_table()
        .table_name("t")
        .send()
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    assert_eq!(classify(&err), Some(ErrorClass::Timeout), "{err:?}");
}

#[tokio::test]
async fn own_services_retry_sooner_than_customer_apis_and_keep_the_attempts() {
    with_test_credentials();
    let ctx = AwsContext::load(&test_config("http://127.0.0.1:9")).await;
    let ddb = ctx.dynamodb();
    let retry = ddb.config().retry_config().expect("a retry config is set");
    assert_eq!(retry.initial_backoff(), DYNAMODB_INITIAL_BACKOFF);
    assert_eq!(retry.initial_backoff(), Duration::from_millis(50));
    // What `aws.*` says still holds for DynamoDB.
    assert_eq!(retry.max_attempts(), 2);
    // Kopter's own queues and topics: 100 ms, the same attempts.
    for retry in [
        ctx.sqs().config().retry_config().unwrap().clone(),
        ctx.sns().config().retry_config().unwrap().clone(),
    ] {
        assert_eq!(retry.initial_backoff(), OWN_SERVICE_INITIAL_BACKOFF);
        assert_eq!(retry.initial_backoff(), Duration::from_millis(100));
        assert_eq!(retry.max_attempts(), 2);
    }
    // Customer-side APIs keep the SDK's general first delay.
    for retry in [
        ctx.ec2().config().retry_config().unwrap().clone(),
        ctx.sts().config().retry_config().unwrap().clone(),
    ] {
        assert_eq!(retry.initial_backoff(), Duration::from_secs(1));
    }
}

/// Another worker holding what a handler needs is back-pressure of its
/// own class, found anywhere in the chain (as `#[source]` of a store's
/// error, under context).
#[test]
fn busy_is_back_pressure_of_its_own_class() {
    #[derive(Debug, thiserror::Error)]
    #[error("held")]
    struct Held {
        #[source]
        busy: Busy,
    }
    let e = anyhow::Error::new(Held {
        busy: Busy {
            what: "the roll-up entry of acme 123456789012 2026-01-01T00".into(),
        },
    })
    .context("account acme/123456789012");
    assert_eq!(classify_anyhow(&e), Some(ErrorClass::Busy));
    assert_eq!(ErrorClass::Busy.label(), "busy");
    assert!(
        format!("{e:#}").contains("is held by another worker"),
        "{e:#}"
    );
}
