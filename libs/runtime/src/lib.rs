//! Kopter's worker runtime, shared by every service.
//!
//! A service's `main` is one call to [`service_main`] with a function that
//! builds its [`Handler`] from the [`ServiceContext`]; everything else —
//! config, logs, metrics and health endpoints, the SQS consume loop with
//! heartbeats, batched deletes, DLQ-bound failures and the SIGTERM drain,
//! cross-account credentials and AWS retry — lives here, once.

pub mod accounts;
pub mod aws;
pub mod config;
pub mod consumed_capacity;
pub mod credentials;
pub mod dynamo;
pub mod limiter;
pub mod messaging;
pub mod metrics;
pub mod org;
pub mod provision;
pub mod queue;
pub mod telemetry;
pub mod worker;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use kopter_schema::{Envelope, Names, Service};
use tokio_util::sync::CancellationToken;

pub use crate::aws::AwsContext;
pub use crate::config::Config;
pub use crate::credentials::{AssumeRoleError, CredentialCache, CustomerRole, TaggedRole};
pub use crate::queue::{Queue, SqsQueue};
pub use crate::worker::{BoxFuture, Delivery, FnHandler, Handler, HandlerError, Worker};

/// What a service's handler is built from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceContext {
    pub config: Config,
    pub names: Names,
    pub aws: AwsContext,
    pub credentials: CredentialCache,
    pub outbox: messaging::Outbox,
    pub accounts: accounts::AccountStore,
    /// The service this process runs, or `None` for the all-in-one.
    pub service: Option<Service>,
}

impl ServiceContext {
    pub async fn new(config: Config, service: Option<Service>) -> Self {
        let aws = AwsContext::load(&config).await;
        let names = config.names();
        let label = service.map_or("all", |s| s.name());
        Self {
            credentials: CredentialCache::new(aws.sts(), label, &config.credentials),
            outbox: messaging::Outbox::new(aws.sqs(), aws.sns(), names.clone()),
            accounts: accounts::AccountStore::new(aws.dynamodb(), &names),
            names,
            aws,
            config,
            service,
        }
    }
}

/// Entry point of a service binary: load config (exit 2 with every problem
/// listed if invalid), start telemetry, build the handler, consume until
/// SIGTERM/SIGINT/SIGHUP, drain, exit 0.
pub async fn service_main<F, Fut>(service: Service, make_handler: F) -> ExitCode
where
    F: FnOnce(ServiceContext) -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<dyn Handler>>>,
{
    let config = match Config::load(Some(service)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e:#}", service.name());
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.telemetry);
    let ctx = ServiceContext::new(config, Some(service)).await;
    let result = async {
        let handler = make_handler(ctx.clone())
            .await
            .with_context(|| format!("start {}", service.name()))?;
        let shutdown = telemetry::shutdown_on_signals();
        exit_watchdog(
            shutdown.clone(),
            ctx.config.worker.shutdown_grace + EXIT_MARGIN,
        );
        run_workers(&ctx, vec![(service, handler)], shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// How long after `worker.shutdown_grace` a process may take to exit once
/// shut down, whatever AWS does: the drain takes at most
/// `worker::SHUTDOWN_CLEANUP` (3 s) more, and the watchdog ends the process
/// 1.5 s later, before ECS's SIGKILL at `stopTimeout` (grace + 5 s,
/// set by the Terraform).
pub const EXIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(4500);

/// Once `shutdown` is cancelled, ends the process with exit code 1 if it
/// has not exited within `limit`. The drain is itself bounded (see
/// `worker::SHUTDOWN_CLEANUP`); this is the backstop for anything else that
/// could hang an exit. A plain thread, so a blocked runtime cannot stop it.
pub fn exit_watchdog(shutdown: CancellationToken, limit: std::time::Duration) {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            tracing::error!(?limit, "shutdown did not finish in time; exiting now");
            eprintln!("shutdown did not finish within {limit:?}; exiting");
            std::process::exit(1);
        });
    });
}

/// Runs one worker per `(service, handler)` against the services' queues,
/// with one metrics/health server, until `shutdown`; then drains each.
pub async fn run_workers(
    ctx: &ServiceContext,
    workers: Vec<(Service, Arc<dyn Handler>)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_workers_with_checks(ctx, workers, Vec::new(), shutdown).await
}

/// [`run_workers`] with more `/readyz` checks beside the queues' (the
/// all-in-one `kopter` adds the api's).
pub async fn run_workers_with_checks(
    ctx: &ServiceContext,
    workers: Vec<(Service, Arc<dyn Handler>)>,
    extra_checks: Vec<telemetry::ReadyCheck>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut queues = Vec::new();
    for (service, handler) in workers {
        let q = SqsQueue::resolve_patiently(ctx.aws.sqs(), &ctx.names.queue(service), &shutdown)
            .await?;
        queues.push((service, Arc::new(q), handler));
    }
    let checks: Vec<telemetry::ReadyCheck> = queues
        .iter()
        .map(|(_, q, _)| {
            let q = q.clone();
            Arc::new(move || {
                let q = q.clone();
                Box::pin(async move { q.check_ready().await }) as BoxFuture<'static, _>
            }) as telemetry::ReadyCheck
        })
        .chain(extra_checks)
        .collect();
    telemetry::serve(ctx.config.telemetry.listen, checks, shutdown.clone()).await?;
    let mut watched = Vec::new();
    for (service, q, _) in &queues {
        let dlq_name = ctx.names.dlq(*service);
        let dlq_url = match SqsQueue::resolve_patiently(ctx.aws.sqs(), &dlq_name, &shutdown).await {
            Ok(d) => Some(d.url().to_owned()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no DLQ depth metrics for {}", service.name());
                None
            }
        };
        watched.push(queue::depth::Watched {
            label: service.name().to_owned(),
            url: q.url().to_owned(),
            dlq_url,
        });
    }
    let poller = queue::depth::spawn(
        ctx.aws.sqs(),
        watched,
        ctx.config.telemetry.queue_poll_interval,
        shutdown.clone(),
    );
    let settings = worker::WorkerSettings::from(&ctx.config.worker);
    let mut tasks = Vec::new();
    for (service, q, handler) in queues {
        // A reason outlives the DLQ message it explains by a day.
        let failure_log = queue::failures::FailureLog::new(
            ctx.aws.dynamodb(),
            &ctx.names,
            service,
            ctx.config.queues.dlq_retention + std::time::Duration::from_secs(86_400),
        );
        let w = Worker::new(q, handler, settings.clone())
            .with_service_label(service)
            .with_failure_sink(Arc::new(failure_log));
        tasks.push(tokio::spawn(w.run(shutdown.clone())));
    }
    for t in tasks {
        t.await.context("worker task")?;
    }
    poller.abort();
    Ok(())
}

/// Decodes a delivery as an envelope meant for `service`. Malformed bodies,
/// unknown versions and kinds, and kinds that belong to another queue are
/// permanent failures, named with the message id.
pub fn decode_for(service: Service, delivery: &Delivery) -> Result<Envelope, HandlerError> {
    let env = Envelope::decode(&delivery.body).map_err(|e| {
        HandlerError::permanent(anyhow::anyhow!(
            "message {} on the {} queue: {e}",
            delivery.message_id,
            service.name()
        ))
    })?;
    if !service.accepts(env.message.kind()) {
        return Err(HandlerError::permanent(anyhow::anyhow!(
            "message {} on the {} queue has kind {:?}, which is not for this service",
            delivery.message_id,
            service.name(),
            env.message.kind()
        )));
    }
    Ok(env)
}

/// Handler of a service whose logic is not in this build yet: it checks
/// the contract (so wrong and malformed messages are named as such) and
/// then refuses every message permanently, so nothing is acknowledged that
/// was not done. The messages wait in the DLQ for a build that handles them.
pub struct UnimplementedHandler(pub Service);

impl Handler for UnimplementedHandler {
    fn handle<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let env = decode_for(self.0, delivery)?;
            Err(HandlerError::permanent(anyhow::anyhow!(
                "message {}: the {} service does not handle {:?} in this build yet",
                delivery.message_id,
                self.0.name(),
                env.message.kind()
            )))
        })
    }
}
