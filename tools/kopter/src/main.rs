//! `kopter`: every service and the tenant API in one process.
//!
//! `kopter [--services describer,pricing,…,api]` reads the same
//! configuration as the service binaries (`kopter.toml`, `KOPTER_*`); its
//! `/metrics` `/healthz` `/readyz` server listens on `telemetry.listen`
//! (default `0.0.0.0:9100`) and `/readyz` checks every queue it consumes
//! and, with the api, that the token issuers' keys are loaded. The api
//! serves on `api.listen` (default `0.0.0.0:8080`) and needs a token
//! issuer (`api.issuers`, or `api.dev_issuer` locally). Exit codes: 0
//! after a drain, 1 on a failure, 2 on bad configuration.

use std::process::ExitCode;

use clap::Parser;
use kopter::Part;
use kopter_runtime::{Config, ServiceContext, telemetry};
use kopter_schema::Service;

#[derive(Parser)]
#[command(
    name = "kopter",
    version,
    about = "Run every Kopter service and the api (or some) in one process"
)]
struct Cli {
    /// What to run (comma-separated service names and `api`); default the
    /// five services and the api.
    #[arg(long, value_delimiter = ',', value_parser = parse_part)]
    services: Vec<Part>,
}

fn parse_part(s: &str) -> Result<Part, String> {
    s.parse()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let parts = if cli.services.is_empty() {
        Part::all()
    } else {
        cli.services
    };
    let services: Vec<Service> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Service(s) => Some(*s),
            Part::Api => None,
        })
        .collect();
    let with_api = parts.contains(&Part::Api);
    let config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kopter: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.telemetry);
    let ctx = ServiceContext::new(config, None).await;
    let api = if with_api {
        match api::process::Api::from_config(&ctx.config, &ctx.aws) {
            Ok(a) => Some(a),
            Err(e) => {
                let without: Vec<&str> = services.iter().map(|s| s.name()).collect();
                eprintln!(
                    "kopter: api: {e:#}\n(to run without the api: --services {})",
                    without.join(",")
                );
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let names: Vec<&str> = parts.iter().map(|p| p.name()).collect();
    tracing::info!(services = %names.join(","), "starting");
    let shutdown = telemetry::shutdown_on_signals();
    kopter_runtime::exit_watchdog(
        shutdown.clone(),
        ctx.config.worker.shutdown_grace + kopter_runtime::EXIT_MARGIN,
    );
    match kopter::run_with_api(&ctx, &services, api, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}
