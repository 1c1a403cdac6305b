//! AWS SDK configuration shared by every client of a process.
//!
//! [`AwsContext::load`] builds one `SdkConfig` (one HTTP client, one
//! connection pool) with a deliberate retry policy and deadlines; every
//! client, including the per-customer-account ones, is derived from it.
//!
//! - **Deadlines**: connect, per-attempt and per-operation timeouts
//!   (`aws.connect_timeout`, `aws.attempt_timeout`, `aws.operation_timeout`)
//!   sit in the `SdkConfig`, so every client built from it — the services'
//!   own S3, SES and Price List clients too — has them. A stalled
//!   connection cannot hold a handler or a shutdown.
//! - **Retry**: standard mode (or adaptive, `aws.retry_mode`) with
//!   `aws.max_attempts`, and a retry quota per AWS service and process
//!   (`aws.retry_quota`, `aws.retry_quota_refill_per_second`; see
//!   [`retry_partition`] and `DESIGN.md` for why the SDK's default quota
//!   gives up under sustained throttling).
//! - **Errors that say what happened**: the [`AwsMetrics`] interceptor
//!   turns a 5xx whose body is not the protocol's (an HTML or text page from
//!   a load balancer or proxy) into a well-formed protocol error with code
//!   `ServiceUnavailable`/`InternalFailure`/… and the status in the message,
//!   instead of the SDK's "unhandled error: unexpected token". [`classify`]
//!   tells throttling, server errors, timeouts and connection failures from
//!   everything else, anywhere in an error chain.
//! - **Metrics**: requests, retries, throttles and server errors per AWS
//!   service and operation.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime::client::retries::{RetryPartition, TokenBucket};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::ErrorMetadata;

use crate::config::{AwsConfig, AwsRetryMode, Config};
use crate::metrics;

/// The process's AWS configuration.
#[derive(Clone, Debug)]
pub struct AwsContext {
    pub sdk: SdkConfig,
    /// `aws.dynamodb_endpoint_url`: DynamoDB's own endpoint, winning over
    /// the shared one (see [`AwsContext::dynamodb`]).
    pub dynamodb_endpoint_url: Option<String>,
}

impl AwsContext {
    pub async fn load(config: &Config) -> Self {
        let aws = &config.aws;
        set_retry_quota(RetryQuota::from(aws));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config(aws))
            .timeout_config(timeout_config(aws));
        if let Some(url) = &aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let mut sdk = loader.load().await;
        if sdk.region().is_none() {
            sdk = sdk
                .into_builder()
                .region(Region::from_static("us-east-1"))
                .build();
        }
        Self {
            sdk,
            dynamodb_endpoint_url: config.aws.dynamodb_endpoint_url.clone(),
        }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs_client(&self.sdk)
    }
    pub fn sns(&self) -> aws_sdk_sns::Client {
        sns_client(&self.sdk)
    }
    /// A DynamoDB client. Its endpoint, first found wins:
    /// `aws.dynamodb_endpoint_url`; the SDK's `AWS_ENDPOINT_URL_DYNAMODB`
    /// (aws-config ≥ 1.1 reads service-specific endpoint variables and lets
    /// them override an endpoint set on the loader, as `aws.endpoint_url`
    /// is — see the test below); `aws.endpoint_url`; `AWS_ENDPOINT_URL`;
    /// real AWS.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.dynamodb_with(&self.sdk)
    }
    /// A DynamoDB client signing with `sdk`'s credentials (e.g. a tenant's
    /// assumed-role session) at this context's DynamoDB endpoint, with the
    /// metrics and consumed-capacity interceptors, the DynamoDB retry
    /// partition and [`DYNAMODB_INITIAL_BACKOFF`].
    pub fn dynamodb_with(&self, sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
        let retry = retry_with_initial_backoff(sdk, DYNAMODB_INITIAL_BACKOFF);
        let mut conf = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(retry)
            .retry_partition(retry_partition("dynamodb"))
            .interceptor(AwsMetrics)
            .interceptor(crate::consumed_capacity::ConsumedCapacity);
        if let Some(url) = &self.dynamodb_endpoint_url {
            conf = conf.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(conf.build())
    }
    pub fn sts(&self) -> aws_sdk_sts::Client {
        sts_client(&self.sdk)
    }
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        ec2_client(&self.sdk)
    }
}

/// First retry delay's ceiling for DynamoDB calls (then doubling, full
/// jitter, as for every client). DynamoDB answers in milliseconds, so the
/// SDK's general 1 s makes a chain of sequential calls under a share of
/// throttled or failed attempts wait ~0.5 s per fault — seconds per
/// account under sustained throttling (issue 19's chaos run). DynamoDB's
/// developer guide describes backoff starting at "up to 50 milliseconds
/// before the first retry"
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.RetryAndBackoff>).
/// Real overload is still met by the retry quota
/// ([`retry_partition`]) and the stores' AIMD write limiter, which cut the
/// rate; this only shortens the wait of an attempt that will likely pass.
pub const DYNAMODB_INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// The retry policy of `aws.*`: jittered exponential backoff (1 s initial,
/// 20 s at most — the SDK's), `aws.max_attempts` attempts.
pub fn retry_config(aws: &AwsConfig) -> RetryConfig {
    let base = match aws.retry_mode {
        AwsRetryMode::Standard => RetryConfig::standard(),
        AwsRetryMode::Adaptive => RetryConfig::adaptive(),
    };
    base.with_max_attempts(aws.max_attempts)
        .with_use_static_exponential_base(false)
}

/// The deadlines of `aws.*`. No read timeout: SQS long polls legitimately
/// wait 20 s for the first byte; the attempt timeout bounds them instead.
pub fn timeout_config(aws: &AwsConfig) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(aws.connect_timeout)
        .operation_attempt_timeout(aws.attempt_timeout)
        .operation_timeout(aws.operation_timeout)
        .build()
}

/// Retry quota settings (`aws.retry_quota*`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RetryQuota {
    capacity: u32,
    refill_per_second: f64,
}

impl From<&AwsConfig> for RetryQuota {
    fn from(aws: &AwsConfig) -> Self {
        Self {
            capacity: aws.retry_quota,
            refill_per_second: aws.retry_quota_refill_per_second,
        }
    }
}

struct Partitions {
    quota: RetryQuota,
    /// By partition name: `kopter-{service}`, or `ec2-{account}-{region}`
    /// for clients into customer accounts (a few per watched account).
    by_name: HashMap<String, RetryPartition>,
}

static PARTITIONS: LazyLock<Mutex<Partitions>> = LazyLock::new(|| {
    Mutex::new(Partitions {
        quota: RetryQuota {
            capacity: 500,
            refill_per_second: 10.0,
        },
        by_name: HashMap::new(),
    })
});

fn set_retry_quota(quota: RetryQuota) {
    let mut p = PARTITIONS.lock().expect("partition map lock");
    if p.quota != quota {
        p.quota = quota;
        // Clients built from now on get buckets of the new size; clients
        // already built keep theirs.
        p.by_name.clear();
    }
}

/// The retry partition of Kopter's clients of one AWS `service`: one retry
/// quota (token bucket) per service and process, sized by
/// `aws.retry_quota` and refilled at `aws.retry_quota_refill_per_second`
/// (set by [`AwsContext::load`]). A service crate that builds its own
/// client (S3, SES, Price List) sets it with `.retry_partition(…)`.
///
/// Why not the SDK's default partition: its bucket (500 tokens, 5 per
/// retry, 10 per retried timeout) is refilled only by successes — one
/// token per first-attempt success — so sustained throttling empties it,
/// after which *every* throttled or failed call fails on its first attempt,
/// whatever `max_attempts` says. A time-based refill lets it recover.
pub fn retry_partition(service: &'static str) -> RetryPartition {
    partition_named(format!("kopter-{service}"))
}

/// The retry partition `name`, made on first use with the configured
/// quota (see [`retry_partition`]).
fn partition_named(name: String) -> RetryPartition {
    let mut p = PARTITIONS.lock().expect("partition map lock");
    let quota = p.quota;
    p.by_name
        .entry(name)
        .or_insert_with_key(|name| {
            let bucket = if quota.capacity == 0 {
                TokenBucket::unlimited()
            } else {
                TokenBucket::builder()
                    .capacity(quota.capacity as usize)
                    .refill_rate(quota.refill_per_second as f32)
                    .build()
            };
            RetryPartition::custom(name.clone())
                .token_bucket(bucket)
                .build()
        })
        .clone()
}

/// First retry delay's ceiling for Kopter's own SQS queues, SNS topics
/// and the CloudTrail objects' S3 reads (then doubling, full jitter).
/// These services answer in milliseconds and their limits are far above
/// Kopter's rate (SQS standard queues: nearly unlimited API calls per
/// second; S3: 5,500 GETs per second per prefix), so a failed attempt is
/// a blip, not a rate to back away from: the SDK's general 1 s made each
/// fault cost ~0.5 s inside a handler (issue 19's chaos run). The retry
/// quota ([`retry_partition`]) still stops retry storms. Customer-side
/// APIs (EC2, STS, CloudWatch), whose limits are per customer account,
/// keep the SDK's 1 s.
pub const OWN_SERVICE_INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// `sdk`'s retry policy with a first retry delay of at most `initial`.
pub fn retry_with_initial_backoff(sdk: &SdkConfig, initial: std::time::Duration) -> RetryConfig {
    sdk.retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard)
        .with_initial_backoff(initial)
}

macro_rules! client_with_metrics {
    ($fn:ident, $krate:ident, $service:literal) => {
        /// A client from `sdk` with the metrics interceptor and the
        /// service's retry partition ([`retry_partition`]).
        pub fn $fn(sdk: &SdkConfig) -> $krate::Client {
            let conf = $krate::config::Builder::from(sdk)
                .retry_partition(retry_partition($service))
                .interceptor(AwsMetrics)
                .build();
            $krate::Client::from_conf(conf)
        }
    };
    ($fn:ident, $krate:ident, $service:literal, own) => {
        /// A client from `sdk` with the metrics interceptor, the service's
        /// retry partition ([`retry_partition`]) and
        /// [`OWN_SERVICE_INITIAL_BACKOFF`].
        pub fn $fn(sdk: &SdkConfig) -> $krate::Client {
            let conf = $krate::config::Builder::from(sdk)
                .retry_config(retry_with_initial_backoff(sdk, OWN_SERVICE_INITIAL_BACKOFF))
                .retry_partition(retry_partition($service))
                .interceptor(AwsMetrics)
                .build();
            $krate::Client::from_conf(conf)
        }
    };
}
client_with_metrics!(sqs_client, aws_sdk_sqs, "sqs", own);
client_with_metrics!(sns_client, aws_sdk_sns, "sns", own);
client_with_metrics!(sts_client, aws_sdk_sts, "sts");
client_with_metrics!(ec2_client, aws_sdk_ec2, "ec2");
client_with_metrics!(pricing_client, aws_sdk_pricing, "pricing");

/// An EC2 client for one customer account, from the account's `SdkConfig`
/// (see `CredentialCache::sdk_config`), retrying as every Kopter client
/// does (`aws.retry_mode`, standard by default) with its own retry quota
/// per account and region (time-refilled like [`retry_partition`]'s): EC2
/// API limits are per customer account, so one throttled account drains
/// only its own quota.
///
/// Why not the SDK's adaptive mode here (it was, until the chaos run of
/// issue 19 measured it): Kopter makes a handful of Describe calls per
/// account, region and hour, a sliver of the account's EC2 request bucket
/// (`DescribeInstances` and friends refill at 20 requests/s, "Request
/// throttling for the Amazon EC2 API", EC2 API reference). When EC2
/// throttles Kopter, the customer's own tools have emptied the bucket,
/// so cutting Kopter's rate frees nothing; the adaptive limiter still cut
/// it by 30 % per throttle down to 0.5 requests/s, and under 30 % of calls
/// throttled the describes ran 17 times slower than without faults.
/// Jittered exponential backoff (1–20 s) is the back-pressure that fits.
pub fn ec2_client_for_account(
    sdk: &SdkConfig,
    account: &kopter_schema::AccountId,
) -> aws_sdk_ec2::Client {
    let region = sdk.region().map_or("none", |r| r.as_ref());
    let conf = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_partition(partition_named(format!("ec2-{account}-{region}")))
        .interceptor(AwsMetrics)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// Error codes AWS uses for throttling across protocols (the SDK's own
/// list, `aws_runtime::retries::classifiers::THROTTLING_ERRORS`).
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of a failure on AWS's side (5xx), across protocols,
/// including the ones [`AwsMetrics`] gives a non-protocol 5xx.
const SERVER_ERROR_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalErrorException",
    "InternalServiceError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "BadGateway",
    "GatewayTimeout",
    "ServerError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// What kind of transient AWS failure an error is: the ones that mean
/// "slow down and try again", which the worker treats as back-pressure
/// rather than as a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The service refused the rate (`ProvisionedThroughputExceededException`,
    /// `Throttling`, `RequestLimitExceeded`, `SlowDown`, HTTP 429, …).
    Throttling,
    /// A 5xx: the service failed (`InternalServerError`, `ServiceUnavailable`,
    /// a load balancer's HTML 503, …).
    ServerError,
    /// A connect, attempt or operation deadline passed.
    Timeout,
    /// The connection failed or was reset before a response.
    Connection,
    /// Not AWS: another Kopter worker holds what this one needs (a
    /// recompute's lease on an account-hour, [`Busy`]); try again shortly.
    Busy,
}

/// An error meaning "another Kopter worker holds this; try again
/// shortly" — classified as [`ErrorClass::Busy`], so the worker retries
/// the message in-process (without spending a receive) and per-item retry
/// loops back off, as for AWS back-pressure. Put it in an error's chain
/// (as a `#[source]`). `what`: what is held, for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("busy: {what} is held by another worker")]
pub struct Busy {
    pub what: String,
}

impl ErrorClass {
    /// Metric label: `throttling`, `server_error`, `timeout`, `connection`,
    /// `busy`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Throttling => "throttling",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Busy => "busy",
        }
    }

    /// The class of an AWS error code, if it is one of the above.
    pub fn of_code(code: &str) -> Option<Self> {
        // Query-protocol codes may carry a prefix (`AWS.SimpleQueueService.`).
        let code = code.rsplit('.').next().unwrap_or(code);
        if THROTTLE_CODES.contains(&code) {
            Some(Self::Throttling)
        } else if SERVER_ERROR_CODES.contains(&code) {
            Some(Self::ServerError)
        } else {
            None
        }
    }
}

/// The [`ErrorClass`] of the first error in `error`'s chain that has one
/// (an `anyhow` error with context, an `SdkError`, …), or `None` when the
/// failure is not transient on AWS's side.
///
/// Looks at the typed parts of the SDK's errors: the `ErrorMetadata` of an
/// unmodelled error (its code), the modelled throttling and server errors
/// of DynamoDB, SQS and SNS, the `ConnectorError` of a dispatch failure, and
/// I/O errors. A timeout is recognised by the `SdkError::TimeoutError`
/// message ("request has timed out"), the only part of it that is public.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(class) = classify_one(e) {
            return Some(class);
        }
        next = e.source();
    }
    None
}

/// [`classify`] over an `anyhow` chain.
pub fn classify_anyhow(error: &anyhow::Error) -> Option<ErrorClass> {
    error.chain().find_map(classify_one)
}

fn classify_one(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    use aws_sdk_dynamodb::types::error as ddb;
    use aws_sdk_sns::types::error as sns;
    use aws_sdk_sqs::types::error as sqs;
    if let Some(meta) = e.downcast_ref::<ErrorMetadata>() {
        return meta.code().and_then(ErrorClass::of_code);
    }
    if e.is::<Busy>() {
        return Some(ErrorClass::Busy);
    }
    if e.is::<ddb::ProvisionedThroughputExceededException>()
        || e.is::<ddb::ThrottlingException>()
        || e.is::<ddb::RequestLimitExceeded>()
        || e.is::<sqs::RequestThrottled>()
        || e.is::<sqs::KmsThrottled>()
        || e.is::<sns::ThrottledException>()
        || e.is::<sns::KmsThrottlingException>()
    {
        return Some(ErrorClass::Throttling);
    }
    if e.is::<ddb::InternalServerError>() || e.is::<sns::InternalErrorException>() {
        return Some(ErrorClass::ServerError);
    }
    if let Some(c) = e.downcast_ref::<ConnectorError>() {
        return if c.is_timeout() {
            Some(ErrorClass::Timeout)
        } else if c.is_user() {
            None
        } else {
            Some(ErrorClass::Connection)
        };
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::TimedOut => Some(ErrorClass::Timeout),
            K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotConnected => Some(ErrorClass::Connection),
            _ => None,
        };
    }
    // `SdkError`'s Display for its timeout variant; the type is generic over
    // the operation's error, so it cannot be downcast here.
    if e.to_string() == "request has timed out" {
        return Some(ErrorClass::Timeout);
    }
    None
}

/// Counts AWS requests, retries, throttles and server errors per service
/// and operation, and gives a non-protocol 5xx body a protocol error (see
/// the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsMetrics;

fn labels(cfg: &ConfigBag) -> (String, String) {
    cfg.load::<Metadata>()
        .map(|m| (m.service().to_ascii_lowercase(), m.name().to_owned()))
        .unwrap_or_else(|| ("unknown".into(), "unknown".into()))
}

/// Whether an HTTP error response is a throttle. Looks at the status, the
/// JSON/Query error headers, and the first bytes of an in-memory body.
pub fn is_throttle_response(status: u16, error_header: Option<&str>, body: Option<&[u8]>) -> bool {
    if status == 429 {
        return true;
    }
    if !(400..600).contains(&status) {
        return false;
    }
    let code_matches = |text: &str| THROTTLE_CODES.iter().any(|c| text.contains(c));
    if error_header.is_some_and(code_matches) {
        return true;
    }
    body.map(|b| &b[..b.len().min(2048)])
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .is_some_and(|text| code_matches(&text))
}

/// How an AWS service encodes its errors (for [`protocol_error_body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorProtocol {
    /// awsJson 1.0/1.1 and restJson: `{"__type": code, "message": …}`
    /// (DynamoDB, SQS, Price List, SES v2).
    Json,
    /// awsQuery: `<ErrorResponse><Error><Code>` (SNS, STS, IAM).
    Query,
    /// ec2Query: `<Response><Errors><Error><Code>`.
    Ec2,
    /// restXml: `<Error><Code>` (S3).
    RestXml,
}

impl ErrorProtocol {
    /// The protocol of an SDK service name (`Metadata::service`).
    pub fn of_service(service: &str) -> Self {
        match service.to_ascii_lowercase().as_str() {
            "ec2" => Self::Ec2,
            "s3" => Self::RestXml,
            "sns" | "sts" | "iam" | "ses" | "cloudformation" | "elasticloadbalancing" => {
                Self::Query
            }
            _ => Self::Json,
        }
    }

    /// Content type of an error body in this protocol.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/x-amz-json-1.0",
            Self::Query | Self::Ec2 => "text/xml",
            Self::RestXml => "application/xml",
        }
    }
}

/// An error body in `protocol` with `code` and `message` (XML-escaped
/// where needed). Also used by the test harness's fault-injecting proxy.
pub fn protocol_error_body(protocol: ErrorProtocol, code: &str, message: &str) -> String {
    let xml = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    match protocol {
        ErrorProtocol::Json => {
            serde_json::json!({ "__type": code, "message": message }).to_string()
        }
        ErrorProtocol::Query => format!(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>kopter</RequestId></ErrorResponse>",
            xml(code),
            xml(message)
        ),
        ErrorProtocol::Ec2 => format!(
            "<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>kopter</RequestID></Response>",
            xml(code),
            xml(message)
        ),
        ErrorProtocol::RestXml => format!(
            "<Error><Code>{}</Code><Message>{}</Message><RequestId>kopter</RequestId></Error>",
            xml(code),
            xml(message)
        ),
    }
}

/// The error code Kopter gives a 5xx status whose body is not an AWS error.
pub fn server_error_code(status: u16) -> &'static str {
    match status {
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InternalFailure",
    }
}

/// Whether a response's content type can hold the protocol's error body
/// (JSON or XML); anything else (text, HTML, none) cannot.
fn is_protocol_content_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        let c = c.to_ascii_lowercase();
        c.contains("json") || c.contains("xml")
    })
}

impl Intercept for AwsMetrics {
    fn name(&self) -> &'static str {
        "KopterAwsMetrics"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            let (service, op) = labels(cfg);
            metrics::runtime()
                .aws_retries
                .with_label_values(&[service.as_str(), op.as_str()])
                .inc();
        }
        Ok(())
    }

    /// A 5xx with a text/HTML/empty body (a load balancer, a proxy, a
    /// service's own "503 Service Unavailable" page) would fail the SDK's
    /// error parser ("unexpected token 'S'") and surface as an unhandled
    /// error without a code. Give it a body in the service's own protocol,
    /// so it is a `ServiceUnavailable`/`InternalFailure`/… error with the
    /// status in its message: retried by the SDK as a server error, and
    /// classified and logged as one.
    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let status = response.status().as_u16();
        if !(500..600).contains(&status) {
            return Ok(());
        }
        let (service, op) = labels(cfg);
        metrics::runtime()
            .aws_server_errors
            .with_label_values(&[service.as_str(), op.as_str()])
            .inc();
        let content_type = response.headers().get("content-type").map(str::to_owned);
        if is_protocol_content_type(content_type.as_deref()) {
            return Ok(());
        }
        let protocol = ErrorProtocol::of_service(&service);
        let code = server_error_code(status);
        let message = format!(
            "HTTP {status} from {service} {op} with a {} body, not an AWS error",
            content_type.as_deref().unwrap_or("untyped")
        );
        let body = protocol_error_body(protocol, code, &message);
        let headers = response.headers_mut();
        headers.insert("content-type", protocol.content_type());
        headers.insert("content-length", body.len().to_string());
        headers.remove("x-amzn-errortype");
        headers.remove("x-amzn-query-error");
        *response.body_mut() = SdkBody::from(body);
        tracing::debug!(%service, operation = %op, status, "non-protocol 5xx body replaced by a {code} error");
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(resp) = context.response() {
            let header = resp
                .headers()
                .get("x-amzn-query-error")
                .or_else(|| resp.headers().get("x-amzn-errortype"));
            if is_throttle_response(resp.status().as_u16(), header, resp.body().bytes()) {
                let (service, op) = labels(cfg);
                metrics::runtime()
                    .aws_throttles
                    .with_label_values(&[service.as_str(), op.as_str()])
                    .inc();
                tracing::debug!(%service, operation = %op, "AWS throttled a request");
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "ok",
            _ => "error",
        };
        let (service, op) = labels(cfg);
        metrics::runtime()
            .aws_requests
            .with_label_values(&[service.as_str(), op.as_str(), outcome])
            .inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
