//! Throughput of the parsing path, with no I/O besides reading the files:
//!
//! ```sh
//! cargo run --release -p trail-ingest --example bench_parse -- file.json.gz...
//! ```
//!
//! For each file: gunzip + split into records + normalise + rules, on one
//! thread, as the service does per file (split and normalise fused, see
//! `trail_ingest::normalise::next_normalised`). Prints records, seconds,
//! records/s, MB/s of uncompressed JSON (MB = 10^6 bytes) and the process's
//! peak RSS (`VmHWM`). `--split` also times a gunzip-only pass and a
//! gunzip+split pass over the same files, so the cost of each stage can be
//! read off by difference (and prints split+normalise+rules alone, the
//! per-core cost of parsing once decompression is done).
//! `--repeat N` runs every pass N times and keeps the fastest (the machine
//! may be shared). Output ends with one machine-readable line:
//! `RESULT records=… seconds=… bytes=… rss_kb=…`.

use std::fs::File;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use trail_ingest::normalise::{next_normalised, normalise};
use trail_ingest::records::{DEFAULT_MAX_RECORD_BYTES, gzip_records};
use trail_ingest::rules::evaluate;

#[derive(Default, Clone)]
struct Totals {
    records: u64,
    rejected: u64,
    findings: u64,
    bytes: u64,
    seconds: f64,
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The service's path: gunzip, then split and normalise in one pass
/// (`next_normalised`), then rules.
fn full(path: &str, t: &mut Totals) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stream = gzip_records(File::open(path)?, DEFAULT_MAX_RECORD_BYTES);
    while let Some(rec) = next_normalised(&mut stream) {
        let rec = rec.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        t.records += 1;
        match rec.value {
            Ok(audit) => t.findings += evaluate(&audit).len() as u64,
            Err(_) => t.rejected += 1,
        }
    }
    t.bytes += stream.bytes_read();
    t.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

/// The same with separate passes: split (scan) then normalise the bytes.
fn unfused(path: &str, t: &mut Totals) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stream = gzip_records(File::open(path)?, DEFAULT_MAX_RECORD_BYTES);
    while let Some(rec) = stream.next_record() {
        let rec = rec.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        t.records += 1;
        match normalise(rec.bytes) {
            Ok(audit) => t.findings += evaluate(&audit).len() as u64,
            Err(_) => t.rejected += 1,
        }
    }
    t.bytes += stream.bytes_read();
    t.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

fn split_only(path: &str, t: &mut Totals) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stream = gzip_records(File::open(path)?, DEFAULT_MAX_RECORD_BYTES);
    while let Some(rec) = stream.next_record() {
        let rec = rec.map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        t.records += 1;
        t.findings += u64::from(rec.bytes.last() == Some(&b'}'));
    }
    t.bytes += stream.bytes_read();
    t.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

fn gunzip_only(path: &str, t: &mut Totals) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut r = std::io::BufReader::with_capacity(
        256 << 10,
        flate2::read::MultiGzDecoder::new(File::open(path)?),
    );
    loop {
        let n = r.fill_buf()?.len();
        if n == 0 {
            break;
        }
        r.consume(n);
        t.bytes += n as u64;
    }
    t.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

fn report(label: &str, t: &Totals) {
    let s = t.seconds.max(1e-9);
    println!(
        "{label:<28} {:>10} records {:>8.2} s {:>10.0} records/s {:>8.1} MB/s",
        t.records,
        t.seconds,
        t.records as f64 / s,
        t.bytes as f64 / 1e6 / s
    );
}

/// Runs `stage` over all files `repeat` times; keeps the fastest run.
fn best(
    files: &[String],
    repeat: usize,
    stage: fn(&str, &mut Totals) -> anyhow::Result<()>,
) -> anyhow::Result<Totals> {
    let mut best: Option<Totals> = None;
    for _ in 0..repeat.max(1) {
        let mut t = Totals::default();
        for f in files {
            stage(f, &mut t)?;
        }
        if best.as_ref().is_none_or(|b| t.seconds < b.seconds) {
            best = Some(t);
        }
    }
    Ok(best.unwrap_or_default())
}

fn main() -> ExitCode {
    let mut split = false;
    let mut repeat = 1;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--split" => split = true,
            "--repeat" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => repeat = n,
                None => {
                    eprintln!("bench_parse: --repeat needs a number");
                    return ExitCode::from(2);
                }
            },
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        eprintln!("usage: bench_parse [--split] [--repeat N] <file.json.gz>...");
        return ExitCode::from(2);
    }
    let run = || -> anyhow::Result<()> {
        let mut gunzip_seconds = None;
        if split {
            let g = best(&files, repeat, gunzip_only)?;
            report("gunzip", &g);
            gunzip_seconds = Some(g.seconds);
            report("gunzip+split", &best(&files, repeat, split_only)?);
            report(
                "gunzip+split, then normalise",
                &best(&files, repeat, unfused)?,
            );
        }
        let t = best(&files, repeat, full)?;
        report("gunzip+split+normalise+rules", &t);
        if let Some(g) = gunzip_seconds {
            let s = (t.seconds - g).max(1e-9);
            println!(
                "{:<28} {:>10} records {:>8.2} s {:>10.0} records/s {:>8.1} MB/s (by difference)",
                "split+normalise+rules",
                t.records,
                s,
                t.records as f64 / s,
                t.bytes as f64 / 1e6 / s
            );
        }
        let rss = peak_rss_kb();
        println!(
            "rejected {} findings {} uncompressed {:.1} MB peak RSS {:.1} MB",
            t.rejected,
            t.findings,
            t.bytes as f64 / 1e6,
            rss as f64 / 1024.0
        );
        println!(
            "RESULT records={} seconds={:.3} bytes={} rss_kb={rss}",
            t.records, t.seconds, t.bytes
        );
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_parse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
