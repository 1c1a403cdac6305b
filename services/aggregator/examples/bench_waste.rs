//! Benchmark: the waste rules over N resources (default 100,000) with a
//! year of state history each (a change a week: 52 states), in memory.
//!
//! Rows, in this process on the same data:
//! 1. **rules** — `waste::evaluate` without priced hours (the service's
//!    first pass: which resources a rule holds for, and since when);
//! 2. **full** — the service's whole in-memory path: the first pass, the
//!    engine pricing each found resource from its `since`, the second pass
//!    summing those hours;
//! 3. **naive baseline** (on a sample, scaled) — a snapshot tool's way to
//!    learn "since when": for every hour of the year, scan the history for
//!    the state in force and test the condition; the first hour of the last
//!    run of true is the `since`. Its `since`s are checked to equal the
//!    rules'.
//!
//! Memory per resource: the growth of the peak RSS while building the
//! timelines, ÷ N. CloudWatch calls per 1,000 instances a day: from the
//! batching plan (each instance read once a day).
//!
//! Run it with `scripts/bench-waste.sh [resources]`, which builds the code
//! in the hot loop optimised.

use std::collections::BTreeMap;
use std::time::Instant;

use aggregator::engine::{MemoryBook, Timeline, price_timeline};
use aggregator::waste::{evaluate, idle};
use chrono::{DateTime, Duration, Utc};
use kopter_schema::AccountId;
use kopter_store::inventory::{InstanceFields, Resource, SnapshotFields, VolumeFields};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, StoredCounts,
};
use kopter_store::waste::{Rule, Thresholds};

const R: &str = "us-east-1";
const V: &str = "20250101000000";

fn instance(state: &str, ty: &str) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: ty.into(),
        usage_operation: "RunInstances".into(),
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

fn volume(ty: &str, attached: Option<String>) -> Resource {
    Resource::Volume(VolumeFields {
        state: if attached.is_some() {
            "in-use"
        } else {
            "available"
        }
        .into(),
        volume_type: ty.into(),
        size_gib: 100,
        iops: None,
        throughput: None,
        attached_instance: attached,
        availability_zone: "us-east-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: Default::default(),
    })
}

fn snapshot(volume_id: String, start: DateTime<Utc>) -> Resource {
    Resource::Snapshot(SnapshotFields {
        state: "completed".into(),
        volume_size_gib: 100,
        start_time: start,
        volume_id,
        tags: BTreeMap::new(),
    })
}

fn ebs(volume: &str, kind: &str, usd: f64) -> EbsPriceItem {
    EbsPriceItem {
        pk: String::new(),
        sk: String::new(),
        region: R.into(),
        version: V.into(),
        volume_api_name: volume.into(),
        kind: kind.into(),
        usage_type: format!("EBS:{volume}.{kind}"),
        usd_per_unit: usd,
        unit: String::new(),
        effective: String::new(),
        begin_range: 0.0,
        end_range: None,
    }
}

fn book() -> MemoryBook {
    let mut b = MemoryBook::default();
    b.versions.insert(
        R.into(),
        vec![RegionPointer::new(
            R,
            V,
            "2025-01-01T00:00:00Z",
            "x",
            None,
            StoredCounts::default(),
        )],
    );
    b.ebs.insert(
        (R.into(), V.into()),
        vec![
            ebs("gp3", "storage", 0.08),
            ebs("gp3", "iops", 0.005),
            ebs("gp3", "throughput", 40.96),
            ebs("gp2", "storage", 0.10),
            ebs("snapshot", "snapshot", 0.05),
        ],
    );
    for (ty, usd) in [("m4.large", 0.10), ("m5.large", 0.096)] {
        b.instances.insert(
            (R.into(), V.into(), ty.into(), "Shared".into()),
            InstancePrices {
                pk: String::new(),
                sk: String::new(),
                region: R.into(),
                version: V.into(),
                instance_type: ty.into(),
                tenancy: "Shared".into(),
                on_demand: BTreeMap::from([(
                    "RunInstances".to_string(),
                    OnDemandEntry {
                        usd_per_hour: usd,
                        operating_system: "Linux".into(),
                        license_model: String::new(),
                        pre_installed_sw: String::new(),
                        effective: String::new(),
                    },
                )]),
                reserved: BTreeMap::new(),
            },
        );
    }
    b
}

/// N resources, a year each (52 weekly changes, at odd minutes): per 10,
/// 4 instances (one of them m4), 4 volumes (one gp2), 2 snapshots (one
/// of a volume that is gone). Each resource's last weeks decide whether a
/// rule holds for it.
fn estate(n: usize, start: DateTime<Utc>) -> Vec<Timeline> {
    let mut out = Vec::with_capacity(n);
    let week = Duration::minutes(7 * 24 * 60 + 13);
    for k in 0..n {
        let id = format!("r-{k:07}");
        let group = k / 10;
        let inst = format!("r-{:07}", group * 10);
        let states: Vec<(DateTime<Utc>, Resource)> = match k % 10 {
            0..=3 => {
                let ty = if k % 10 == 3 { "m4.large" } else { "m5.large" };
                // Running, stopped every other week; every 7th group ends
                // stopped for 5 weeks.
                (0..52)
                    .map(|w| {
                        let stopped = w % 2 == 1 || (group % 7 == 0 && w >= 47);
                        let running = !stopped || (k % 10 != 0 && w >= 47);
                        (
                            start + week * w,
                            instance(if running { "running" } else { "stopped" }, ty),
                        )
                    })
                    .collect()
            }
            4..=7 => {
                let ty = if k % 10 == 7 { "gp2" } else { "gp3" };
                // Attached to the group's first instance, detached every
                // third week; every 5th group ends detached for 3 weeks.
                (0..52)
                    .map(|w| {
                        let detached = w % 3 == 2 || (group % 5 == 0 && w >= 49);
                        (
                            start + week * w,
                            volume(ty, (!detached).then(|| inst.clone())),
                        )
                    })
                    .collect()
            }
            _ => {
                let source = if k % 10 == 8 {
                    format!("r-{:07}", group * 10 + 4)
                } else {
                    format!("vol-gone-{k}")
                };
                let taken = start + week * (k % 40) as i32;
                (0..52)
                    .map(|w| (start + week * w, snapshot(source.clone(), taken)))
                    .collect()
            }
        };
        out.push(Timeline {
            region: R.into(),
            resource_id: id,
            states,
        });
    }
    out
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

/// The naive `since` of "volume unattached": hour by hour over the year,
/// the state in force found by scanning the history.
fn naive_unattached_since(
    t: &Timeline,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut since = None;
    let mut h = start;
    while h < now {
        let state = t
            .states
            .iter()
            .rev()
            .find(|(at, _)| *at <= h)
            .map(|(_, r)| r);
        let unattached = matches!(state, Some(Resource::Volume(v)) if v.state == "available");
        match (unattached, since) {
            (true, None) => {
                // The run began at the change inside the previous hour.
                let began = t
                    .states
                    .iter()
                    .rev()
                    .find(|(at, _)| *at <= h)
                    .map(|(at, _)| *at)
                    .unwrap_or(h);
                since = Some(began);
            }
            (false, Some(_)) => since = None,
            _ => {}
        }
        h += Duration::hours(1);
    }
    since
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("resources: a number"))
        .unwrap_or(100_000);
    let start: DateTime<Utc> = "2025-01-01T00:07:00Z".parse().unwrap();
    let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let account = AccountId::new("111111111111").unwrap();
    let th = Thresholds::default();
    let b = book();

    let rss0 = peak_rss_mb();
    let timelines = estate(n, start);
    let rss1 = peak_rss_mb();
    let states: usize = timelines.iter().map(|t| t.states.len()).sum();
    println!(
        "{n} resources, {states} states (a year, one change a week each); {:.1} KB of history per resource (peak RSS +{:.0} MB)",
        (rss1 - rss0) * 1024.0 / n as f64,
        rss1 - rss0
    );

    // 1. Rules only (the first pass).
    let t0 = Instant::now();
    let found = evaluate(&account, &timelines, &[], now, &th, &b);
    let rules_s = t0.elapsed().as_secs_f64();
    let mut by_rule: BTreeMap<Rule, usize> = BTreeMap::new();
    for f in &found {
        *by_rule.entry(f.rule).or_default() += 1;
    }
    println!(
        "rules:  {rules_s:.3} s for {n} resources ({:.2} µs a resource); {} findings {by_rule:?}",
        rules_s * 1e6 / n as f64,
        found.len()
    );

    // 2. The full in-memory path, 100 resources (ten groups) at a time as
    // an account's worth: price each found resource from its `since`,
    // then evaluate with those hours.
    let t0 = Instant::now();
    let mut priced_hours = 0usize;
    let (mut accrued, mut monthly, mut full_findings) = (0.0, 0.0, 0usize);
    for chunk in timelines.chunks(100) {
        let found = evaluate(&account, chunk, &[], now, &th, &b);
        let mut since: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
        for f in &found {
            let s = since.entry(f.resource_id.as_str()).or_insert(f.since);
            *s = (*s).min(f.since);
        }
        let mut lines = Vec::new();
        for t in chunk {
            if let Some(s) = since.get(t.resource_id.as_str()) {
                price_timeline(t, *s, now, &b, &mut lines);
            }
        }
        priced_hours += lines.len();
        let full = evaluate(&account, chunk, &lines, now, &th, &b);
        full_findings += full.len();
        accrued += full.iter().map(|f| f.accrued_usd).sum::<f64>();
        monthly += full.iter().filter_map(|f| f.monthly_usd).sum::<f64>();
    }
    let full_s = t0.elapsed().as_secs_f64();
    println!(
        "full:   {full_s:.3} s ({priced_hours} resource-hours priced from the findings' since, {full_findings} findings); accrued {accrued:.2} USD, {monthly:.2} USD/month"
    );
    assert_eq!(full_findings, found.len());

    // 3. Naive baseline on a sample of volumes, scaled to N.
    let sample: Vec<&Timeline> = timelines
        .iter()
        .filter(|t| matches!(t.states.last(), Some((_, Resource::Volume(_)))))
        .take((n / 100).max(40))
        .collect();
    let t0 = Instant::now();
    let mut checked = 0;
    for t in &sample {
        let naive = naive_unattached_since(t, start, now);
        let rule = found
            .iter()
            .find(|f| f.resource_id == t.resource_id && f.rule == Rule::UnattachedVolume)
            .map(|f| f.since);
        if let Some(r) = rule {
            assert_eq!(naive, Some(r), "{}", t.resource_id);
            checked += 1;
        }
    }
    let naive_per = t0.elapsed().as_secs_f64() / sample.len() as f64;
    let naive_s = naive_per * n as f64;
    println!(
        "naive:  {naive_s:.1} s for {n} resources, scaled from {} volumes ({:.1} µs a resource, one rule); {checked} sinces equal the rules'",
        sample.len(),
        naive_per * 1e6
    );
    println!(
        "ratio: rules {:.0}× the naive baseline's speed (and it checks one rule, the rules six); peak RSS {:.0} MB",
        naive_s / rules_s,
        peak_rss_mb()
    );
    println!(
        "CloudWatch: {} GetMetricData calls a day per 1,000 running instances ({} queries a call at most, {} an instance, once a day)",
        idle::calls_per_day(1000),
        idle::MAX_QUERIES_PER_CALL,
        idle::QUERIES_PER_INSTANCE
    );
}
