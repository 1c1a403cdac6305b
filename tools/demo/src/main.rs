//! `kopter-demo`: what `make demo` runs once moto is up (scripts/demo.sh
//! starts and stops moto). Sets everything up, prints the report, and
//! keeps Kopter running until Ctrl-C (or SIGTERM, or SIGHUP when its
//! terminal is closed); then drains the services (SIGTERM) and exits 0 if
//! every service exited 0. Before anything starts it checks that every
//! port it needs is free (`ports.rs`); while it runs, `.run/demo.env`
//! points another shell's `kopterctl` at it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use kopter_demo::{Demo, Mode, Options};

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// One process per service (the five service binaries).
    Separate,
    /// Every service in one process (the `kopter` binary).
    AllInOne,
}

#[derive(Parser)]
#[command(
    name = "kopter-demo",
    version,
    about = "Kopter on a local AWS, with a demo estate and a report"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Only serve the demo's price-list files (bulk layout) and take
    /// webhook posts, until SIGTERM (the compose file's price-file server).
    ServePrices {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The local AWS endpoint (moto).
    #[arg(long, env = "MOTO_ENDPOINT", default_value = "http://127.0.0.1:5055")]
    endpoint: String,
    #[arg(long, value_enum, default_value = "separate")]
    mode: ModeArg,
    /// Where the service binaries are (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Service logs go here.
    #[arg(long, default_value = ".run")]
    run_dir: PathBuf,
    /// Metrics port of the describer; the others follow (9101–9105); the
    /// all-in-one uses the one before (9100).
    #[arg(long, default_value_t = 9101)]
    first_port: u16,
    /// Print the report and stop instead of waiting for Ctrl-C.
    #[arg(long)]
    no_wait: bool,
}

/// The web console's lines: its URL and how to sign in locally.
fn console_lines(demo: &Demo) -> String {
    let tenants: Vec<String> = demo.tenants().iter().map(|t| t.to_string()).collect();
    format!(
        "\n== web console\n  {}/console\n  sign in on the development issuer's page: choose \"{} admin\" (or {}, viewer or admin)\n",
        demo.config.api.public_url,
        tenants.first().map_or("acme", String::as_str),
        tenants.join(", ")
    )
}

/// The report's last lines: a token per demo tenant (in the run directory)
/// and two `curl` lines against the running api.
fn api_lines(demo: &Demo) -> anyhow::Result<String> {
    use std::fmt::Write;
    let c = &demo.config;
    let mut out = String::from("\n== tenant API (OpenAPI: ");
    let _ = writeln!(out, "{}/docs)", c.api.public_url);
    for t in demo.tenants() {
        let token = kopter_demo::demo_token(c, t.as_str(), true, Duration::from_secs(12 * 3600))?;
        let path = demo.opts.run_dir.join(format!("token-{t}"));
        std::fs::write(&path, format!("{token}\n"))?;
        let _ = writeln!(out, "{t}: admin token (12 h) in {}", path.display());
    }
    let first = demo
        .tenants()
        .into_iter()
        .next()
        .context("no demo tenant")?;
    let token = demo.opts.run_dir.join(format!("token-{first}"));
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $(cat {})\" {}/v1/accounts",
        token.display(),
        c.api.public_url
    );
    let _ = writeln!(
        out,
        "  curl -s -H \"Authorization: Bearer $(cat {})\" '{}/v1/prices?region=eu-west-1&instance_type=m5.&format=csv'",
        token.display(),
        c.api.public_url
    );
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command, run: cli } = Cli::parse();
    let cancel = kopter_runtime::telemetry::shutdown_on_signals();
    if let Some(Command::ServePrices { listen }) = command {
        return serve_prices(listen, cancel).await;
    }
    let bin_dir = match cli.bin_dir.clone().or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
    }) {
        Some(d) => d,
        None => {
            eprintln!("kopter-demo: cannot tell where the binaries are; pass --bin-dir");
            return ExitCode::from(2);
        }
    };
    let mode = match cli.mode {
        ModeArg::Separate => Mode::Separate { bin_dir },
        ModeArg::AllInOne => Mode::AllInOne { bin_dir },
    };
    let mut opts = Options::standard(cli.endpoint, mode);
    opts.run_dir = cli.run_dir;
    opts.first_port = cli.first_port;
    opts.cancel = cancel.clone();
    let busy = kopter_demo::ports::busy(&opts.ports());
    if !busy.is_empty() {
        for b in &busy {
            eprintln!("kopter-demo: {b}");
        }
        eprintln!(
            "kopter-demo: stop what holds them (a demo left from a closed terminal: kill the pids above), then run it again"
        );
        return ExitCode::from(2);
    }
    let mut demo = match Demo::up(opts).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kopter-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    match demo.report().await {
        Ok(r) => {
            println!();
            print!("{}", r.render());
        }
        Err(e) => {
            eprintln!("kopter-demo: reading the report: {e:#}");
            failed = true;
        }
    }
    if !failed {
        match api_lines(&demo) {
            Ok(lines) => print!("{lines}{}", console_lines(&demo)),
            Err(e) => {
                eprintln!("kopter-demo: tenant API tokens: {e:#}");
                failed = true;
            }
        }
    }
    let mut env_file = None;
    if !cli.no_wait && !failed {
        let bin_dir = match &demo.opts.mode {
            Mode::Separate { bin_dir } | Mode::AllInOne { bin_dir } => Some(bin_dir.clone()),
            Mode::InProcess => None,
        };
        match demo.write_env_file(bin_dir.as_deref()) {
            Ok(path) => {
                println!(
                    "\nKopter is running. In another shell, try:\n  source {}\n  kopterctl cost --tenant acme --by resource --granularity hour\n  kopterctl inventory --tenant acme\n  kopterctl notifications --tenant acme --severity critical,warning\n  kopterctl org list\n  kopterctl accounts list --tenant initech   # $KOPTER_DEMO_ORG_ACCOUNTS: ids moto chose\nLogs: {}/*.log. Press Ctrl-C to stop.",
                    path.display(),
                    demo.opts.run_dir.display()
                );
                env_file = Some(path);
            }
            Err(e) => {
                eprintln!("kopter-demo: {e:#}");
                failed = true;
            }
        }
    }
    if !cli.no_wait && !failed {
        // Last, so it is what the terminal shows: the console and its sign-in.
        println!(
            "Web console: {}/console (sign in: choose \"acme admin\" on the development issuer's page)",
            demo.config.api.public_url
        );
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    if let Some(Err(e)) = demo.fleet.as_mut().map(|f| f.check_alive()) {
                        eprintln!("kopter-demo: {e:#}");
                        failed = true;
                        break;
                    }
                }
            }
        }
    }
    if let Some(path) = env_file {
        // Stale once the demo is gone: sourcing it would aim at nothing.
        let _ = std::fs::remove_file(path);
    }
    // The terminal may be gone (SIGHUP): these lines must not panic the
    // drain away, so write errors are ignored.
    say("\nstopping services (SIGTERM, drain)…");
    for (name, status) in demo.down().await {
        match status {
            Some(s) if s.success() => say(format!("  {name} exited 0")),
            Some(s) => {
                say(format!("  {name} exited with {s}"));
                failed = true;
            }
            None => {
                say(format!("  {name} did not stop in time and was killed"));
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A line on stdout, ignoring a closed terminal.
fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

async fn serve_prices(
    listen: std::net::SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
) -> ExitCode {
    let files = match kopter_demo::offers::site_files(&kopter_demo::REGIONS) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kopter-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match kopter_demo::offers::PriceSite::start(files, listen, cancel.clone()).await {
        Ok(site) => {
            println!(
                "serving {} regions' price lists at {}/offers/v1.0/aws/index.json",
                kopter_demo::REGIONS.len(),
                site.base_url
            );
            cancel.cancelled().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kopter-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
