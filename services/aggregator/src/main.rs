//! The aggregator service: consumes its queue (hourly `aggregate.hour`,
//! `inventory.changed` and `prices.updated` events). See `DESIGN.md`.

use std::process::ExitCode;
use std::sync::Arc;

use kopter_runtime::Handler;
use kopter_schema::Service;

#[tokio::main]
async fn main() -> ExitCode {
    kopter_runtime::service_main(Service::Aggregator, |ctx| async move {
        let aggregator = aggregator::Aggregator::new(&ctx);
        Ok(Arc::new(aggregator::AggregatorHandler(aggregator)) as Arc<dyn Handler>)
    })
    .await
}
