//! Every Kopter service in one process: each service's handler consumes
//! its own queue through the shared runtime (one worker per service, one
//! `/metrics` `/healthz` `/readyz` server, one SIGTERM drain), and the
//! tenant API serves HTTP beside them on `api.listen`. The unit that scales
//! is still the service; this is for small installs and the local demo.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use kopter_runtime::{Handler, ServiceContext};
use kopter_schema::Service;
use tokio_util::sync::CancellationToken;

/// What one `kopter` process can run: a queue service, or the api (an
/// HTTP server with no queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Service(Service),
    Api,
}

impl Part {
    /// The five services and the api: what `kopter` runs by default.
    pub fn all() -> Vec<Part> {
        Service::ALL
            .into_iter()
            .map(Part::Service)
            .chain([Part::Api])
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::Service(s) => s.name(),
            Part::Api => "api",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Part {
    type Err = String;

    /// A service name (`describer`, …) or `api`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "api" {
            return Ok(Part::Api);
        }
        s.parse().map(Part::Service).map_err(|_| {
            let known: Vec<_> = Part::all().iter().map(|p| p.name()).collect();
            format!("unknown service {s:?} (known: {})", known.join(", "))
        })
    }
}

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
    run_with_api(ctx, services, None, shutdown).await
}

/// [`run`], and with `api` the tenant API beside the services: it listens
/// on `api.listen` before the workers start, its readiness (the issuers'
/// keys) joins the queues' on `/readyz`, and on `shutdown` it stops
/// accepting and lets in-flight requests finish while the workers drain.
///
/// # Errors
/// A service fails to start or its worker fails; the API's address cannot
/// be bound; the API server stops before `shutdown` (the workers are then
/// shut down and drained too, so the process does not live on half-way).
pub async fn run_with_api(
    ctx: &ServiceContext,
    services: &[Service],
    api: Option<api::process::Api>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut workers = Vec::new();
    for &s in services {
        workers.push((s, handler(s, ctx)?));
    }
    let Some(api) = api else {
        return kopter_runtime::run_workers(ctx, workers, shutdown).await;
    };
    let ready = api.ready_check();
    let (addr, mut server) = api.serve(shutdown.clone()).await?;
    tracing::info!(%addr, "api listening");
    let run = kopter_runtime::run_workers_with_checks(ctx, workers, vec![ready], shutdown.clone());
    tokio::pin!(run);
    tokio::select! {
        workers = &mut run => {
            // With no services the workers return at once: the api alone
            // keeps the process up until shutdown. A worker failure stops
            // the api as well.
            if workers.is_err() {
                shutdown.cancel();
            }
            server.await.context("api server task")?;
            workers
        }
        served = &mut server => {
            let stopped_early = !shutdown.is_cancelled();
            shutdown.cancel();
            let workers = run.await;
            served.context("api server task")?;
            if stopped_early {
                anyhow::bail!("the api server stopped before shutdown (see the log above)");
            }
            workers
        }
    }
}
