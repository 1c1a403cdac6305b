//! Benchmark: price 1M instance-hours in memory (1000 instances × 1000
//! hours, each stopped and started every ~2 days and changing type once,
//! under two price versions), with the engine and with a naive per-hour
//! baseline that finds each hour's state by scanning the history and each
//! price by a formatted string key. Both run in this process on the same
//! data; the totals must agree.
//!
//! Run it with `scripts/bench-aggregator.sh [instances] [hours]`, which
//! builds the code in the hot loop optimised.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use aggregator::engine::{MemoryBook, PriceBook, Timeline, hour_of, price_timeline};
use chrono::{DateTime, Duration, TimeZone, Utc};
use kopter_store::inventory::{InstanceFields, Resource, VolumeFields};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, StoredCounts, version_at,
};

const TYPES: &[&str] = &[
    "m5.large",
    "m5.xlarge",
    "c5.large",
    "c5.xlarge",
    "r5.large",
    "t3.medium",
];
const OPS: &[&str] = &["RunInstances", "RunInstances:0002", "RunInstances:0010"];

fn instance(state: &str, ty: &str, op: &str) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: ty.into(),
        usage_operation: op.into(),
        platform_details: String::new(),
        tenancy: "default".into(),
        lifecycle: "on-demand".into(),
        availability_zone: "us-east-1a".into(),
        launch_time: None,
        state_transition_reason: String::new(),
        tags: BTreeMap::new(),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    })
}

fn volume(state: &str, size_gib: i64, attached: Option<&str>) -> Resource {
    Resource::Volume(VolumeFields {
        state: state.into(),
        volume_type: "gp3".into(),
        size_gib,
        iops: Some(3000),
        throughput: Some(125),
        attached_instance: attached.map(Into::into),
        availability_zone: "us-east-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: Default::default(),
    })
}

fn gp3_storage(region: &str, version: &str, usd: f64) -> EbsPriceItem {
    EbsPriceItem {
        pk: String::new(),
        sk: String::new(),
        region: region.into(),
        version: version.into(),
        volume_api_name: "gp3".into(),
        kind: "storage".into(),
        usage_type: "EBS:VolumeUsage.gp3".into(),
        usd_per_unit: usd,
        unit: "GB-Mo".into(),
        effective: String::new(),
        begin_range: 0.0,
        end_range: None,
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The naive way: per hour, scan the whole history for the states in
/// force, and look every price up by a string key.
fn naive(
    timelines: &[Timeline],
    prices: &HashMap<String, f64>,
    versions: &[RegionPointer],
    from: DateTime<Utc>,
    hours: i64,
) -> f64 {
    let mut total = 0.0;
    for t in timelines {
        for h in 0..hours {
            let start = from + Duration::hours(h);
            let end = start + Duration::hours(1);
            let version = &version_at(versions, start).unwrap().version;
            // Every second boundary where the state changes, by scanning.
            let mut cuts = vec![start];
            for (at, _) in &t.states {
                if *at > start && *at < end {
                    cuts.push(*at);
                }
            }
            cuts.push(end);
            for w in cuts.windows(2) {
                let state = t
                    .states
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= w[0])
                    .map(|(_, r)| r);
                if let Some(Resource::Instance(i)) = state
                    && i.state == "running"
                {
                    let key = format!(
                        "{}|{version}|{}|Shared|{}",
                        t.region, i.instance_type, i.usage_operation
                    );
                    let p = prices[&key];
                    total += p * (w[1] - w[0]).num_milliseconds() as f64 / 3_600_000.0;
                }
            }
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let hours: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let from = Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap();
    let region = "us-east-1";

    // Two price versions; V2 published mid-way.
    let mut book = MemoryBook::default();
    let mid = from + Duration::hours(hours / 2);
    let versions = vec![
        RegionPointer::new(
            region,
            "20250501000000",
            &from.to_rfc3339(),
            "bench",
            None,
            StoredCounts::default(),
        ),
        RegionPointer::new(
            region,
            "20250601000000",
            &mid.to_rfc3339(),
            "bench",
            None,
            StoredCounts::default(),
        ),
    ];
    let mut flat = HashMap::new();
    for (vi, v) in versions.iter().enumerate() {
        for (ti, ty) in TYPES.iter().enumerate() {
            let mut on_demand = BTreeMap::new();
            for (oi, op) in OPS.iter().enumerate() {
                let p = 0.05 * (ti + 1) as f64 + 0.1 * oi as f64 + 0.001 * vi as f64;
                flat.insert(format!("{region}|{}|{ty}|Shared|{op}", v.version), p);
                on_demand.insert(
                    (*op).to_string(),
                    OnDemandEntry {
                        usd_per_hour: p,
                        operating_system: String::new(),
                        license_model: String::new(),
                        pre_installed_sw: String::new(),
                        effective: String::new(),
                    },
                );
            }
            book.instances.insert(
                (
                    region.into(),
                    v.version.clone(),
                    (*ty).into(),
                    "Shared".into(),
                ),
                InstancePrices {
                    pk: String::new(),
                    sk: String::new(),
                    region: region.into(),
                    version: v.version.clone(),
                    instance_type: (*ty).into(),
                    tenancy: "Shared".into(),
                    on_demand,
                    reserved: BTreeMap::new(),
                },
            );
        }
    }
    for (vi, v) in versions.iter().enumerate() {
        book.ebs.insert(
            (region.into(), v.version.clone()),
            vec![gp3_storage(region, &v.version, 0.08 + 0.01 * vi as f64)],
        );
    }
    book.versions.insert(region.into(), versions.clone());

    // Histories: running, stopped for 5 h every ~47 h (odd minutes), one
    // type change at a third of the way.
    let mut timelines = Vec::with_capacity(n);
    for i in 0..n {
        let op = OPS[i % OPS.len()];
        let (t1, t2) = (TYPES[i % TYPES.len()], TYPES[(i + 1) % TYPES.len()]);
        let mut states = vec![(from - Duration::hours(1), instance("running", t1, op))];
        let mut t = from + Duration::minutes(37 + (i % 50) as i64);
        let mut ty = t1;
        while t < from + Duration::hours(hours) {
            if t > from + Duration::hours(hours / 3) {
                ty = t2;
            }
            states.push((t, instance("stopped", ty, op)));
            states.push((
                t + Duration::minutes(5 * 60 + 13),
                instance("running", ty, op),
            ));
            t += Duration::minutes(47 * 60 + 11);
        }
        timelines.push(Timeline {
            region: region.into(),
            resource_id: format!("i-{i:08x}"),
            states,
        });
    }
    let to = from + Duration::hours(hours);
    let instance_hours = (n as f64) * hours as f64;
    assert!(book.version(region, hour_of(from)).is_some());

    let started = Instant::now();
    let mut lines = Vec::with_capacity(n * hours as usize);
    for t in &timelines {
        price_timeline(t, from, to, &book, &mut lines);
    }
    let engine_s = started.elapsed().as_secs_f64();
    let engine_total: f64 = lines.iter().filter_map(|l| l.cost_usd).sum();
    assert!(lines.iter().all(|l| l.missing.is_none()));
    drop(lines);

    let started = Instant::now();
    let naive_total = naive(&timelines, &flat, &versions, from, hours);
    let naive_s = started.elapsed().as_secs_f64();
    assert!(
        (engine_total - naive_total).abs() < 1e-6 * naive_total.max(1.0),
        "engine {engine_total} vs naive {naive_total}"
    );

    // Volumes: the same number of volume-hours, each volume detached and
    // attached again with its instance (every state exists, so every hour
    // is billed: size × GB-month price × share of the month).
    let volumes: Vec<Timeline> = timelines
        .iter()
        .enumerate()
        .map(|(i, t)| Timeline {
            region: region.into(),
            resource_id: format!("vol-{i:08x}"),
            states: t
                .states
                .iter()
                .map(|(at, r)| {
                    let attached = matches!(r, Resource::Instance(x) if x.state == "running");
                    let state = if attached { "in-use" } else { "available" };
                    (
                        *at,
                        volume(state, 8 + (i % 5) as i64 * 10, attached.then_some("i")),
                    )
                })
                .collect(),
        })
        .collect();
    let started = Instant::now();
    let mut lines = Vec::with_capacity(n * hours as usize);
    for t in &volumes {
        price_timeline(t, from, to, &book, &mut lines);
    }
    let volume_s = started.elapsed().as_secs_f64();
    assert_eq!(lines.len(), n * hours as usize);
    let volume_total: f64 = lines.iter().filter_map(|l| l.cost_usd).sum();
    // Expected: Σ size × price(version of the hour) × 3600 s ÷ seconds of
    // the hour's month.
    let mut expected = 0.0;
    for h in 0..hours {
        let hour = from + Duration::hours(h);
        let price = if hour >= mid { 0.09 } else { 0.08 };
        let month = aggregator::engine::seconds_in_month(hour);
        let gib: i64 = (0..n).map(|i| 8 + (i % 5) as i64 * 10).sum();
        expected += gib as f64 * price * 3600.0 / month;
    }
    assert!(
        (volume_total - expected).abs() < 1e-6 * expected,
        "volumes {volume_total} vs expected {expected}"
    );
    drop(lines);

    println!(
        "{n} instances × {hours} hours = {instance_hours:.0} instance-hours, total {engine_total:.2} USD (both agree)"
    );
    println!(
        "engine: {engine_s:.3} s ({:.2} M instance-hours/s; {:.3} s per 1M)",
        instance_hours / engine_s / 1e6,
        engine_s / instance_hours * 1e6
    );
    println!(
        "naive per-hour lookup: {naive_s:.3} s ({:.2} M instance-hours/s)",
        instance_hours / naive_s / 1e6
    );
    println!(
        "engine, volumes: {volume_s:.3} s per {:.0} volume-hours ({:.2} M volume-hours/s), total {volume_total:.2} USD as computed by hand",
        instance_hours,
        instance_hours / volume_s / 1e6
    );
    println!(
        "ratio: engine is {:.1}× the naive throughput; peak RSS of the process {:.0} MB",
        naive_s / engine_s,
        peak_rss_mb()
    );
}
