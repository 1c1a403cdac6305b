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
    let max_record_bytes = config.trail.max_record_bytes;
    let ctx = ServiceContext::new(config, Some(Service::TrailIngest)).await;
    let mut ingestor = trail_ingest::ingestor(&ctx);
    if dry_run {
        ingestor.directory = Directory::fixed(vec![]);
    }
    // Every file is tried; each failure is reported and the exit code says
    // whether any file failed, once all were tried.
    let mut failed_files = 0usize;
    let total = files.len();
    for path in &files {
        let started = Instant::now();
        let shown = path.display();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{shown}: FAILED: cannot open: {e}");
                failed_files += 1;
                continue;
            }
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // The account comes from the records themselves: a replayed file has
        // no key. The first record that names one decides; every record must
        // then name it (or none), and it must be onboarded under the tenant.
        let account = match first_recipient(path, max_record_bytes) {
            Ok(Some(a)) => a,
            Ok(None) => {
                eprintln!("{shown}: FAILED: no record names a recipientAccountId");
                failed_files += 1;
                continue;
            }
            Err(e) => {
                eprintln!("{shown}: FAILED: {e:#}");
                failed_files += 1;
                continue;
            }
        };
        if !dry_run {
            match ctx.accounts.get(&tenant, &account).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    eprintln!(
                        "{shown}: FAILED: account {account} is not onboarded under tenant {tenant}; refusing"
                    );
                    failed_files += 1;
                    continue;
                }
                Err(e) => {
                    eprintln!("{shown}: FAILED: look up account {account}: {e:#}");
                    failed_files += 1;
                    continue;
                }
            }
        }
        let bar = progress(size);
        let reader = bar.wrap_read(file);
        let result = ingestor
            .ingest_reader(&tenant, &account, reader, dry_run)
            .await;
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(r) => {
                for p in &r.problems {
                    eprintln!("{shown}: {p}");
                }
                let unlisted = (r.rejected + r.quarantined) as usize - r.problems.len();
                if unlisted > 0 {
                    eprintln!(
                        "{shown}: … and {unlisted} more rejected or unfiled records (see the log)"
                    );
                }
                println!(
                    "{shown}: records {} new {} duplicates {} segments {} rejected {} unfiled {} findings {} ({:.0} records/s)",
                    r.records,
                    r.new,
                    r.duplicates,
                    r.segments,
                    r.rejected,
                    r.quarantined,
                    r.findings.len(),
                    r.records as f64 / secs.max(1e-9)
                );
                if r.rejected + r.quarantined > 0 {
                    failed_files += 1;
                }
            }
            Err(e) => {
                eprintln!("{shown}: FAILED: {e}");
                failed_files += 1;
            }
        }
    }
    if failed_files > 0 {
        eprintln!("trail-ingest: {failed_files} of {total} files failed or had records not filed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The recipient account of the file's first record that names one.
/// Records are lent, not copied, and the configured size limit applies, so
/// an oversized first record costs no more memory than the limit.
fn first_recipient(
    path: &std::path::Path,
    max_record_bytes: usize,
) -> anyhow::Result<Option<AccountId>> {
    let file = std::fs::File::open(path)?;
    let mut records = trail_ingest::records::gzip_records(file, max_record_bytes);
    while let Some(next) = records.next_record() {
        let record = match next {
            Ok(r) => r,
            // Skipped unread; the ingest quarantines it.
            Err(e) if e.is_recoverable() => continue,
            Err(e) => return Err(anyhow::anyhow!(e)),
        };
        #[derive(serde::Deserialize)]
        struct Recipient {
            #[serde(rename = "recipientAccountId")]
            recipient: Option<String>,
        }
        if let Ok(Recipient {
            recipient: Some(account),
        }) = serde_json::from_slice(record.bytes)
        {
            return Ok(Some(AccountId::new(account)?));
        }
    }
    Ok(None)
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
