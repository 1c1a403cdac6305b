//! `kopter`: every service in one process.
//!
//! `kopter [--services describer,pricing,…]` reads the same configuration
//! as the service binaries (`kopter.toml`, `KOPTER_*`); its `/metrics`
//! `/healthz` `/readyz` server listens on `telemetry.listen` (default
//! `0.0.0.0:9100`) and `/readyz` checks every queue it consumes.

use std::process::ExitCode;

use clap::Parser;
use kopter_runtime::{Config, ServiceContext, telemetry};
use kopter_schema::Service;

#[derive(Parser)]
#[command(
    name = "kopter",
    version,
    about = "Run every Kopter service (or some) in one process"
)]
struct Cli {
    /// Services to run (comma-separated); default all five.
    #[arg(long, value_delimiter = ',', value_parser = parse_service)]
    services: Vec<Service>,
}

fn parse_service(s: &str) -> Result<Service, String> {
    s.parse()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let services = if cli.services.is_empty() {
        Service::ALL.to_vec()
    } else {
        cli.services
    };
    let config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kopter: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.telemetry);
    let ctx = ServiceContext::new(config, None).await;
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    tracing::info!(services = %names.join(","), "starting");
    let shutdown = telemetry::shutdown_on_signals();
    kopter_runtime::exit_watchdog(
        shutdown.clone(),
        ctx.config.worker.shutdown_grace + kopter_runtime::EXIT_MARGIN,
    );
    match kopter::run(&ctx, &services, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}
