//! The naive baseline: read the whole offer file into a `serde_json::Value`
//! and walk it, counting the same prices `pricing ingest-file` emits (same
//! product rules). What most tools do; here to be compared against.
//!
//! ```sh
//! cargo run --release -p pricing --example naive_offer -- index.json
//! ```
//!
//! Prints the counts, seconds, MB/s (MB = 10^6 bytes) and peak RSS
//! (`VmHWM`), and a last machine-readable line
//! `RESULT on_demand=… reserved=… ebs=… seconds=… bytes=… rss_kb=…`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Instance,
    Ebs,
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

fn classify(product: &Value) -> Option<Kind> {
    let family = product["productFamily"].as_str().unwrap_or("");
    let a = &product["attributes"];
    let s = |k: &str| a.get(k).and_then(Value::as_str);
    match family {
        "Compute Instance" | "Compute Instance (bare metal)" => {
            let used = s("capacitystatus").is_none_or(|c| c == "Used");
            let market = s("marketoption").is_none_or(|m| m == "OnDemand");
            (used && market).then_some(Kind::Instance)
        }
        "Storage" => s("volumeApiName")
            .filter(|v| ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"].contains(v))
            .map(|_| Kind::Ebs),
        "System Operation" | "Provisioned Throughput" => {
            let u = s("usagetype").unwrap_or("");
            let ebs = u.contains("EBS:VolumeP-IOPS") || u.contains("EBS:VolumeP-Throughput");
            (ebs && s("volumeApiName").is_some_and(|v| !v.is_empty())).then_some(Kind::Ebs)
        }
        // On-Demand hosts are priced like instances (reserved hosts are
        // their own products, left out).
        "Dedicated Host" => {
            let u = s("usagetype").unwrap_or("");
            (u.contains("HostUsage:") && !u.contains("ReservedHostUsage")).then_some(Kind::Instance)
        }
        "Storage Snapshot" => s("usagetype")
            .is_some_and(|u| u.contains("EBS:Snapshot"))
            .then_some(Kind::Ebs),
        _ => None,
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: naive_offer <offer.json>");
        return ExitCode::from(2);
    };
    let started = Instant::now();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("naive_offer: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let size = bytes.len();
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("naive_offer: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    drop(bytes);
    let mut kinds: HashMap<&str, Kind> = HashMap::new();
    if let Some(products) = doc["products"].as_object() {
        for (sku, p) in products {
            if let Some(k) = classify(p) {
                kinds.insert(sku, k);
            }
        }
    }
    let (mut on_demand, mut reserved, mut ebs) = (0u64, 0u64, 0u64);
    let price_ok = |d: &Value| {
        d["pricePerUnit"]["USD"]
            .as_str()
            .is_some_and(|p| p.parse::<f64>().is_ok())
    };
    if let Some(terms) = doc["terms"]["OnDemand"].as_object() {
        for (sku, offers) in terms {
            let Some(&kind) = kinds.get(sku.as_str()) else {
                continue;
            };
            for offer in offers.as_object().into_iter().flat_map(|o| o.values()) {
                let dims = offer["priceDimensions"].as_object();
                for d in dims.into_iter().flat_map(|d| d.values()) {
                    if price_ok(d) {
                        if kind == Kind::Instance {
                            on_demand += 1;
                        } else {
                            ebs += 1;
                        }
                    }
                }
            }
        }
    }
    if let Some(terms) = doc["terms"]["Reserved"].as_object() {
        for (sku, offers) in terms {
            if kinds.get(sku.as_str()) != Some(&Kind::Instance) {
                continue;
            }
            for offer in offers.as_object().into_iter().flat_map(|o| o.values()) {
                let dims = offer["priceDimensions"].as_object();
                if dims.into_iter().flat_map(|d| d.values()).all(price_ok) {
                    reserved += 1;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_kb();
    println!(
        "{path}: on-demand {on_demand} reserved {reserved} ebs {ebs} in {secs:.2}s ({:.0} MB/s), peak RSS {} MB",
        size as f64 / 1e6 / secs,
        rss / 1024
    );
    println!(
        "RESULT on_demand={on_demand} reserved={reserved} ebs={ebs} seconds={secs:.3} bytes={size} rss_kb={rss}"
    );
    ExitCode::SUCCESS
}
