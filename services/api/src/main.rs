//! `api`: the tenant HTTP API on `api.listen` (default `0.0.0.0:8080`),
//! with `/metrics` `/healthz` `/readyz` on `telemetry.listen` (default
//! `0.0.0.0:9106`). Exit codes: 0 after a drain on SIGTERM/SIGINT, 1 on a
//! failure, 2 on bad configuration.

use std::process::ExitCode;
use std::time::Duration;

use kopter_runtime::{AwsContext, Config, telemetry};

/// After SIGTERM, how long in-flight requests (exports included) may run
/// before the process exits anyway: under the 30 s ECS gives the container
/// (deploy/terraform/modules/api `stop_timeout`), and the load balancer has
/// already drained the task before the signal.
const DRAIN_LIMIT: Duration = Duration::from_secs(25);

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load_api() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.telemetry);
    let aws = AwsContext::load(&config).await;
    let api = match api::process::Api::from_config(&config, &aws) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("api: {e:#}");
            return ExitCode::from(2);
        }
    };
    let shutdown = telemetry::shutdown_on_signals();
    kopter_runtime::exit_watchdog(shutdown.clone(), DRAIN_LIMIT);
    let result = async {
        telemetry::serve(
            config.telemetry.listen,
            vec![api.ready_check()],
            shutdown.clone(),
        )
        .await?;
        let (_, task) = api.serve(shutdown).await?;
        task.await?;
        anyhow::Ok(())
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
