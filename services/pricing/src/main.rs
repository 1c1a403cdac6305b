//! `pricing`: with no arguments, the pricing service (consumes its queue:
//! refresh all regions / one region / spot history).
//!
//! `pricing ingest-file <offer.json> [--region R] [--dry-run]` parses a
//! local EC2 offer file with the streaming parser and reports what it found,
//! how fast, and the process's peak memory; without `--dry-run` it stores
//! the prices of region R as the file's version (made current when complete).

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use kopter_runtime::Handler;
use kopter_schema::Service;
use pricing::offer::{self, Counts, OfferMeta, ParseOptions, Price};

#[derive(Parser)]
#[command(
    name = "pricing",
    version,
    about = "EC2 and EBS prices from the AWS Price List (runs the service with no arguments)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a local EC2 offer file (`index.json` of the AWS Price List bulk
    /// API), print counts, MB/s and peak RSS, and (without `--dry-run`)
    /// store region R's prices as the file's version.
    IngestFile {
        /// The offer file, uncompressed JSON.
        file: PathBuf,
        /// Keep only products of this region (regionCode); also the region
        /// of products that have none (files before 2020). Required to store.
        #[arg(long)]
        region: Option<String>,
        /// Parse and count only, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        None => run_service(),
        Some(Command::IngestFile {
            file,
            region,
            dry_run,
        }) => {
            let result = match (dry_run, region) {
                (true, region) => ingest_file(&file, region),
                (false, Some(region)) => store_file(&file, &region),
                (false, None) => Err(anyhow::anyhow!(
                    "--region is required to store prices (or pass --dry-run)"
                )),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pricing: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_service() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pricing: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(kopter_runtime::service_main(
        Service::Pricing,
        |ctx| async move {
            let ingestor = pricing::ingest::Ingestor::new(&ctx)?;
            Ok(Arc::new(pricing::PricingHandler(ingestor)) as Arc<dyn Handler>)
        },
    ))
}

/// `ingest-file` without `--dry-run`: parse, then store as the file's
/// version of `region` (configuration and AWS as for the service).
fn store_file(path: &Path, region: &str) -> anyhow::Result<()> {
    let file = File::open(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = kopter_runtime::Config::load(Some(Service::Pricing))?;
        let ctx = kopter_runtime::ServiceContext::new(config, Some(Service::Pricing)).await;
        let ingestor = pricing::ingest::Ingestor::new(&ctx)?;
        let bar = progress_bar(size);
        let started = Instant::now();
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let result = ingestor
            .ingest_reader(bar.wrap_read(file), &name, region)
            .await;
        bar.finish_and_clear();
        let (outcome, meta, counts) = result?;
        report(path, &meta, &counts, started.elapsed().as_secs_f64(), false);
        println!("  stored in table {}: {outcome:?}", ingestor.store.table());
        Ok(())
    })
}

/// Peak resident set size of this process, in kB (`VmHWM`), if known.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn progress_bar(size: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn ingest_file(path: &Path, region: Option<String>) -> anyhow::Result<()> {
    let file = File::open(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = progress_bar(size);
    let options = ParseOptions {
        region,
        ..ParseOptions::default()
    };
    let started = Instant::now();
    // Dry run: prices are only counted (by the parser).
    let result = offer::parse_offer_with(bar.wrap_read(file), &options, |_: Price| {
        Ok::<(), std::convert::Infallible>(())
    });
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let (meta, counts) = result.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    report(path, &meta, &counts, secs, true);
    Ok(())
}

fn report(path: &Path, meta: &OfferMeta, c: &Counts, secs: f64, dry_run: bool) {
    println!(
        "{}: {} version {} published {}{}",
        path.display(),
        meta.offer_code,
        meta.version,
        meta.publication_date,
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    println!(
        "  products {} (instances {}, EBS {}, skipped {}{})",
        c.products,
        c.instance_products,
        c.ebs_products,
        c.skipped_products,
        if c.other_region_products > 0 {
            format!(", of which other regions {}", c.other_region_products)
        } else {
            String::new()
        }
    );
    println!(
        "  prices: on-demand {} reserved {} EBS {}; skipped terms {} (and {} other term types)",
        c.on_demand, c.reserved, c.ebs, c.skipped_terms, c.skipped_term_types
    );
    let rss = peak_rss_kb().unwrap_or(0);
    println!(
        "  {:.1} MB in {:.2}s: {:.0} MB/s, peak RSS {:.1} MB",
        c.bytes as f64 / 1e6,
        secs,
        c.bytes as f64 / 1e6 / secs.max(1e-9),
        rss as f64 / 1024.0
    );
    println!(
        "RESULT on_demand={} reserved={} ebs={} seconds={secs:.3} bytes={} rss_kb={rss}",
        c.on_demand, c.reserved, c.ebs, c.bytes
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_file_reads_a_file_and_refuses_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("index.json");
        std::fs::write(&good, include_str!("../tests/fixtures/offer_small.json")).unwrap();
        ingest_file(&good, None).unwrap();

        let truncated = dir.path().join("truncated.json");
        let text = include_str!("../tests/fixtures/offer_small.json");
        std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
        let e = ingest_file(&truncated, None).unwrap_err().to_string();
        assert!(
            e.contains("truncated.json") && e.contains("truncated"),
            "{e}"
        );

        let e = ingest_file(&dir.path().join("missing.json"), None).unwrap_err();
        assert!(e.to_string().starts_with("open "), "{e}");
    }

    #[test]
    fn cli_parses_ingest_file() {
        let cli = Cli::try_parse_from([
            "pricing",
            "ingest-file",
            "x.json",
            "--region",
            "eu-west-1",
            "--dry-run",
        ])
        .unwrap();
        match cli.command {
            Some(Command::IngestFile {
                file,
                region,
                dry_run,
            }) => {
                assert_eq!(file, PathBuf::from("x.json"));
                assert_eq!(region.as_deref(), Some("eu-west-1"));
                assert!(dry_run);
            }
            None => panic!("no command"),
        }
        assert!(Cli::try_parse_from(["pricing"]).unwrap().command.is_none());
    }
}
