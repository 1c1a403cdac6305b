//! AWS SDK configuration shared by every client of a process.
//!
//! [`AwsContext::load`] builds one `SdkConfig` (one HTTP client, one
//! connection pool) with adaptive retry; every client, including the
//! per-customer-account ones, is derived from it. The [`AwsMetrics`]
//! interceptor counts requests, retries and throttles per AWS service and
//! operation, so throttling at scale shows up in `/metrics`.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::config::Config;
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
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            RetryConfig::adaptive()
                .with_max_attempts(config.aws.max_attempts)
                .with_use_static_exponential_base(false),
        );
        if let Some(url) = &config.aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(region) = &config.aws.region {
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
        let mut conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(AwsMetrics);
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

macro_rules! client_with_metrics {
    ($fn:ident, $krate:ident) => {
        /// A client from `sdk` with the metrics interceptor installed.
        pub fn $fn(sdk: &SdkConfig) -> $krate::Client {
            let conf = $krate::config::Builder::from(sdk)
                .interceptor(AwsMetrics)
                .build();
            $krate::Client::from_conf(conf)
        }
    };
}
client_with_metrics!(sqs_client, aws_sdk_sqs);
client_with_metrics!(sns_client, aws_sdk_sns);
client_with_metrics!(sts_client, aws_sdk_sts);
client_with_metrics!(ec2_client, aws_sdk_ec2);
client_with_metrics!(pricing_client, aws_sdk_pricing);

/// An EC2 client for one customer account, from the account's `SdkConfig`
/// (see `CredentialCache::sdk_config`). Its adaptive-retry state (token
/// bucket, client-side rate limiter) is partitioned per account and region,
/// so one throttled account slows down only itself.
pub fn ec2_client_for_account(
    sdk: &SdkConfig,
    account: &kopter_schema::AccountId,
) -> aws_sdk_ec2::Client {
    let region = sdk.region().map_or("none", |r| r.as_ref());
    let conf = aws_sdk_ec2::config::Builder::from(sdk)
        .retry_partition(aws_smithy_runtime::client::retries::RetryPartition::new(
            format!("ec2-{account}-{region}"),
        ))
        .interceptor(AwsMetrics)
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

/// Error codes AWS uses for throttling across protocols.
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

/// Counts AWS requests, retries and throttles per service and operation.
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
mod tests {
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
}
