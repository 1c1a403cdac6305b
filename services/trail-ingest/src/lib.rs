//! trail-ingest: customers' CloudTrail log files into a per-tenant audit
//! log. See `DESIGN.md` next to this file.

pub mod directory;
pub mod ingest;
pub mod key;
pub mod normalise;
pub mod notification;
pub mod records;
pub mod rules;

use kopter_runtime::{BoxFuture, Delivery, Handler, HandlerError, ServiceContext};

/// The service's queue handler.
pub struct TrailHandler(pub ingest::Ingestor);

impl Handler for TrailHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(self.0.handle(delivery))
    }
}

/// An ingestor wired to the process's AWS clients and config.
pub fn ingestor(ctx: &ServiceContext) -> ingest::Ingestor {
    ingest::register_metrics();
    ingest::Ingestor {
        store: kopter_store::audit::AuditStore::new(ctx.aws.dynamodb(), &ctx.names),
        directory: directory::Directory::new(
            ctx.accounts.clone(),
            ctx.config.trail.directory_refresh,
        ),
        s3: s3_client(&ctx.aws.sdk),
        base_sdk: ctx.aws.sdk.clone(),
        credentials: ctx.credentials.clone(),
        outbox: Some(ctx.outbox.clone()),
        config: ctx.config.trail.clone(),
        bucket_regions: ingest::bucket_region_cache(),
        settings: ingest::settings_cache(),
    }
}

/// The service's queue handler, as `main` runs it (the all-in-one `kopter`
/// process builds every service's handler this way).
pub fn handler(ctx: &ServiceContext) -> anyhow::Result<std::sync::Arc<dyn Handler>> {
    Ok(std::sync::Arc::new(TrailHandler(ingestor(ctx))))
}

/// An S3 client with the metrics interceptor and a 100 ms first retry
/// (`kopter_runtime::aws::OWN_SERVICE_INITIAL_BACKOFF`); path-style
/// addressing when a custom endpoint (moto, LocalStack) is configured,
/// since bucket subdomains of `127.0.0.1` do not resolve.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .retry_config(kopter_runtime::aws::retry_with_initial_backoff(
            sdk,
            kopter_runtime::aws::OWN_SERVICE_INITIAL_BACKOFF,
        ))
        .force_path_style(sdk.endpoint_url().is_some())
        .retry_partition(kopter_runtime::aws::retry_partition("s3"))
        .interceptor(kopter_runtime::aws::AwsMetrics)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
