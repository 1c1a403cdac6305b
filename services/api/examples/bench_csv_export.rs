//! Peak memory of a large CSV export (issue 15: "a CSV export of 1M cost
//! rows streams in flat memory, peak RSS reported").
//!
//! Each measurement runs in a child process of its own, so every peak RSS
//! (`VmHWM` of `/proc/self/status`, Linux) is that run's alone:
//!
//! - `stream N`: the api's export path — `list::respond` with `format=csv`
//!   over a `Fetch` that makes `N` `/v1/cost` points (`by=resource`, the
//!   widest row), 1,000 per page as the route asks for them — and the
//!   response body drained chunk by chunk as a client would read it;
//! - `collect N` (the baseline): the same points written by the same CSV
//!   writer into one buffer, the way an export that is not streamed holds
//!   it before sending.
//!
//! Pages are generated, not stored, so what is measured is the export
//! itself, not a fake table. Prints rows, bytes, seconds and peak RSS (MiB)
//! of each run and the ratios. Run with `scripts/bench-csv-export.sh [rows]`
//! (default 1,000,000).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use api::data::cost::CostPoint;
use api::data::{Page, PageKey, PageRequest};
use api::list::{Fetch, Format, ListQuery};
use futures::StreamExt;
use kopter_schema::TenantId;

const PAGE: u32 = 1000;

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("stream") => child(args.next(), true),
        Some("collect") => child(args.next(), false),
        other => parent(other.map(|n| n.parse().expect("rows: a number"))),
    }
}

fn parent(rows: Option<u64>) {
    let rows = rows.unwrap_or(1_000_000);
    let me = std::env::current_exe().expect("own path");
    let run = |mode: &str, n: u64| -> Run {
        let out = Command::new(&me)
            .args([mode, &n.to_string()])
            .output()
            .expect("run a child");
        assert!(
            out.status.success(),
            "{mode} {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("child's JSON")
    };
    let small = run("stream", rows / 10);
    let big = run("stream", rows);
    let base = run("collect", rows);
    println!("CSV export of /v1/cost points (by=resource), one process per run");
    println!(
        "{:<34} {:>10} {:>12} {:>8} {:>14}",
        "run", "rows", "bytes", "s", "peak RSS MiB"
    );
    for (name, r) in [
        ("streamed (api export), rows/10", &small),
        ("streamed (api export)", &big),
        ("collected in memory (baseline)", &base),
    ] {
        println!(
            "{name:<34} {:>10} {:>12} {:>8.2} {:>14.1}",
            r.rows,
            r.bytes,
            r.seconds,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "peak RSS streamed/baseline at {rows} rows: ×{:.3}; streamed {rows} rows / {} rows: ×{:.2} (flat ≈ ×1)",
        big.peak_rss_kib as f64 / base.peak_rss_kib as f64,
        rows / 10,
        big.peak_rss_kib as f64 / small.peak_rss_kib as f64
    );
    assert_eq!(big.bytes, base.bytes, "both runs write the same CSV");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Run {
    rows: u64,
    bytes: u64,
    seconds: f64,
    peak_rss_kib: u64,
}

fn child(rows: Option<String>, stream: bool) {
    let rows: u64 = rows.expect("rows").parse().expect("rows: a number");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let bytes = rt.block_on(async {
        if stream {
            streamed(rows).await
        } else {
            collected(rows)
        }
    });
    let run = Run {
        rows,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib(),
    };
    println!("{}", serde_json::to_string(&run).unwrap());
}

/// Point `i` of the synthetic series: one resource's hour, priced.
fn point(i: u64) -> CostPoint {
    let hour = i / 1000;
    CostPoint {
        period: format!(
            "{}",
            (chrono::DateTime::from_timestamp(1_735_689_600 + hour as i64 * 3600, 0).unwrap())
                .format("%Y-%m-%dT%H:%M:%SZ")
        ),
        group: format!("i-{:017x}", i % 1000),
        cost_usd: Some(0.096 + (i % 7) as f64 * 0.001),
        reserved_usd: Some(0.06),
        price_missing: 0,
        price_partial: 0,
        resources: 1,
        account: Some("123456789012".into()),
        price_missing_reason: None,
        price_missing_part: None,
        note: None,
    }
}

fn page_of(rows: u64, req: PageRequest) -> Page<CostPoint> {
    let start = req.after.map_or(0, |k| k.0.as_u64().expect("position"));
    let end = (start + u64::from(req.limit)).min(rows);
    Page {
        items: (start..end).map(point).collect(),
        next: (end < rows).then(|| PageKey(serde_json::json!(end))),
    }
}

async fn streamed(rows: u64) -> u64 {
    let fetch: Fetch<CostPoint> =
        Arc::new(move |req| Box::pin(async move { Ok(page_of(rows, req)) }));
    let query = ListQuery {
        filter: (),
        limit: PAGE,
        cursor: None,
        format: Format::Csv,
        canonical: String::new(),
    };
    let response = api::list::respond(
        Arc::new(api::cursor::CursorCodec::random()),
        TenantId::new("bench").unwrap(),
        "/v1/cost",
        query,
        fetch,
    )
    .await
    .expect("export");
    let mut body = response.into_body().into_data_stream();
    let mut bytes = 0;
    while let Some(chunk) = body.next().await {
        bytes += chunk.expect("chunk").len() as u64;
    }
    bytes
}

fn collected(rows: u64) -> u64 {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let mut req = PageRequest {
            after: None,
            limit: PAGE,
        };
        let mut header = true;
        loop {
            let page = page_of(rows, req);
            for p in &page.items {
                let (keys, cells) = api::list::csv_row(p).expect("a CSV row");
                if header {
                    w.write_record(&keys).unwrap();
                    header = false;
                }
                w.write_record(&cells).unwrap();
            }
            match page.next {
                Some(k) => {
                    req = PageRequest {
                        after: Some(k),
                        limit: PAGE,
                    }
                }
                None => break,
            }
        }
        w.flush().unwrap();
    }
    out.len() as u64
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}
