//! Runs the fault-injecting proxy ([`kopter_tests::faults`]) standalone, in
//! front of a local AWS endpoint, for chaos runs by hand or by a script:
//!
//! ```sh
//! fault-proxy --upstream http://127.0.0.1:5055 --listen 127.0.0.1:5070 \
//!     --throttle 0.3 --server-error 0.05 --reset 0.02 --seed 7
//! KOPTER_AWS__ENDPOINT_URL=http://127.0.0.1:5070 describer
//! ```
//!
//! Prints its counts every `--report-every-secs` and once more on Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kopter_tests::faults::{FaultPlan, FaultProxy};

#[derive(Debug, Parser)]
#[command(about = "Fault-injecting proxy in front of a local AWS endpoint")]
struct Args {
    /// The endpoint calls are forwarded to (`http://host:port`).
    #[arg(long)]
    upstream: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5070")]
    listen: SocketAddr,
    /// Share of calls answered with the service's throttling error (0-1).
    #[arg(long, default_value_t = 0.0)]
    throttle: f64,
    /// Share of calls answered `503 Service Unavailable` with a text body.
    #[arg(long, default_value_t = 0.0)]
    server_error: f64,
    /// Share of calls whose connection is reset.
    #[arg(long, default_value_t = 0.0)]
    reset: f64,
    /// Seed of the fault sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How often to print the counts, in seconds.
    #[arg(long, default_value_t = 10)]
    report_every_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plan = FaultPlan {
        seed: args.seed,
        throttle: args.throttle,
        server_error: args.server_error,
        reset: args.reset,
    };
    let proxy = match FaultProxy::start_on(args.listen, &args.upstream, plan).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("fault-proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("fault-proxy {} → {} ({plan:?})", proxy.url(), args.upstream);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut tick = tokio::time::interval(Duration::from_secs(args.report_every_secs.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => println!("{}", proxy.counts()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    println!("{}", proxy.counts());
    ExitCode::SUCCESS
}
