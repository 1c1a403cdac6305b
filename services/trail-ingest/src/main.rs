//! `trail-ingest`: consume the trail-ingest queue (no arguments), or
//! `trail-ingest replay <file.json.gz>... [--tenant T] [--dry-run]`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use kopter_runtime::{Config, Handler, ServiceContext};
use kopter_schema::{AccountId, Service, TenantId};
use trail_ingest::directory::Directory;

#[derive(Parser)]
#[command(
    name = "trail-ingest",
    version,
    about = "CloudTrail log files into the audit log"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest local CloudTrail files (`.json.gz` as CloudTrail writes them).
    Replay {
        files: Vec<PathBuf>,
        /// Tenant the files belong to; every record's account must be
        /// onboarded under it. Required unless --dry-run.
        #[arg(long)]
        tenant: Option<String>,
        /// Parse, normalise and match rules only: no AWS calls.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        None => {
            kopter_runtime::service_main(Service::TrailIngest, |ctx| async move {
                Ok(
                    Arc::new(trail_ingest::TrailHandler(trail_ingest::ingestor(&ctx)))
                        as Arc<dyn Handler>,
                )
            })
            .await
        }
        Some(Command::Replay {
            files,
            tenant,
            dry_run,
        }) => match replay(files, tenant, dry_run).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("trail-ingest: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn replay(
    files: Vec<PathBuf>,
    tenant: Option<String>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        eprintln!("trail-ingest: replay needs at least one file");
        return Ok(ExitCode::from(2));
    }
    let tenant = match (tenant.map(TenantId::new).transpose(), dry_run) {
        (Err(e), _) => {
            eprintln!("trail-ingest: {e}");
            return Ok(ExitCode::from(2));
        }
        (Ok(None), false) => {
            eprintln!("trail-ingest: replay needs --tenant (or --dry-run)");
            return Ok(ExitCode::from(2));
        }
        (Ok(t), _) => t.unwrap_or_else(|| TenantId::new("dry-run").expect("valid id")),
    };
    let config = match Config::load(Some(Service::TrailIngest)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trail-ingest: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let ctx = ServiceContext::new(config, Some(Service::TrailIngest)).await;
    let mut ingestor = trail_ingest::ingestor(&ctx);
    let mut failed = false;
    for path in files {
        let started = Instant::now();
        let file = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let bar = progress(size);
        // The account comes from the records themselves: a replayed file has
        // no key. Each record's recipient account must be onboarded under the
        // tenant; the first record decides which account the file is.
        let account = match first_recipient(&path)? {
            Some(a) => a,
            None => {
                eprintln!("{}: no records", path.display());
                continue;
            }
        };
        if dry_run {
            ingestor.directory = Directory::fixed(vec![]);
        } else {
            match ctx.accounts.get(&tenant, &account).await? {
                Some(_) => {}
                None => {
                    eprintln!(
                        "{}: account {account} is not onboarded under tenant {tenant}; refusing",
                        path.display()
                    );
                    failed = true;
                    continue;
                }
            }
        }
        let reader = bar.wrap_read(file);
        let result = ingestor
            .ingest_reader(&tenant, &account, reader, dry_run)
            .await;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(r) => println!(
                "{}: records {} new {} duplicates {} rejected {} findings {} ({:.0} records/s)",
                path.display(),
                r.records,
                r.new,
                r.duplicates,
                r.rejected,
                r.findings.len(),
                r.records as f64 / secs.max(1e-9)
            ),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The recipient account of a file's first record.
fn first_recipient(path: &std::path::Path) -> anyhow::Result<Option<AccountId>> {
    let file = std::fs::File::open(path)?;
    let mut records = trail_ingest::records::gzip_records(file, 64 << 20);
    let Some(first) = records.next() else {
        return Ok(None);
    };
    let first = first.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let rec = trail_ingest::normalise::normalise(&first.bytes)
        .map_err(|e| anyhow::anyhow!("{}: first record: {e}", path.display()))?;
    let account = rec.recipient_account.ok_or_else(|| {
        anyhow::anyhow!("{}: first record has no recipientAccountId", path.display())
    })?;
    Ok(Some(AccountId::new(account)?))
}

fn progress(bytes: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template"),
    );
    bar
}
