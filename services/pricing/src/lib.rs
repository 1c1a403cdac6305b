//! Kopter's pricing service: what EC2 instances and EBS volumes cost.
//! See `DESIGN.md` next to this file.
//!
//! [`offer`] streams the AWS Price List bulk EC2 offer file into prices;
//! [`source`] finds the files, [`rows`] groups prices into rows,
//! [`store`] keeps versioned prices and spot history in DynamoDB,
//! [`ingest`] ties them together for the queue handler and the CLI.

pub mod ingest;
pub mod metrics;
pub mod offer;
pub mod rows;
pub mod source;

use kopter_runtime::{BoxFuture, Delivery, Handler, HandlerError, ServiceContext, decode_for};
use kopter_schema::{Message, Service};

/// The service's queue handler.
pub struct PricingHandler(pub ingest::Ingestor);

/// The service's queue handler, as `main` runs it (the all-in-one `kopter`
/// process builds every service's handler this way).
pub fn handler(ctx: &ServiceContext) -> anyhow::Result<std::sync::Arc<dyn Handler>> {
    Ok(std::sync::Arc::new(PricingHandler(ingest::Ingestor::new(
        ctx,
    )?)))
}

impl Handler for PricingHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let env = decode_for(Service::Pricing, delivery)?;
            match env.message {
                Message::PricingRefreshAll(_) => self.0.refresh_all().await.map(drop),
                Message::PricingRefreshRegion(r) => {
                    self.0.refresh_region(&r.region).await.map(drop)
                }
                Message::PricingRefreshSpot(s) => self.0.handle_spot(&s.regions).await.map(drop),
                other => Err(HandlerError::permanent(anyhow::anyhow!(
                    "message {}: pricing does not handle {:?}",
                    delivery.message_id,
                    other.kind()
                ))),
            }
        })
    }
}
