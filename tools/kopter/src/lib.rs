//! Every Kopter service in one process: each service's handler consumes
//! its own queue through the shared runtime (one worker per service, one
//! `/metrics` `/healthz` `/readyz` server, one SIGTERM drain). The unit
//! that scales is still the service; this is for small installs and the
//! local demo.

use std::sync::Arc;

use anyhow::Context;
use kopter_runtime::{Handler, ServiceContext};
use kopter_schema::Service;
use tokio_util::sync::CancellationToken;

/// The handler of one service, built as that service's binary builds it.
pub fn handler(service: Service, ctx: &ServiceContext) -> anyhow::Result<Arc<dyn Handler>> {
    match service {
        Service::Describer => describer::handler(ctx),
        Service::Pricing => pricing::handler(ctx),
        Service::Aggregator => aggregator::handler(ctx),
        Service::TrailIngest => trail_ingest::handler(ctx),
        Service::Notifier => notifier::handler(ctx),
    }
    .with_context(|| format!("start {}", service.name()))
}

/// Runs `services` (each on its own queue) in this process until
/// `shutdown`, then drains each as a single service would.
pub async fn run(
    ctx: &ServiceContext,
    services: &[Service],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut workers = Vec::new();
    for &s in services {
        workers.push((s, handler(s, ctx)?));
    }
    kopter_runtime::run_workers(ctx, workers, shutdown).await
}
