//! Benchmark: the waste rules over N resources (default 100,000) with a
//! year of state history each (a change a week: 52 states), in memory.
//!
//! Rows, in this process on the same data:
//! 1. **rules** — `waste::evaluate` without priced hours (the service's
//!    first pass: which resources a rule holds for, and since when), best
//!    of three, with its allocations counted (a counting global
//!    allocator: the profile);
//! 2. **full** — the service's in-memory path as it was before accrual
//!    was incremental: the first pass, the engine pricing each found
//!    resource from its `since`, the second pass summing those hours;
//! 3. **incremental** — the same an hour later, extending the rows of
//!    row 2: pricing only the new hour (its amounts checked to equal the
//!    full pricing's to the bit on a sample);
//! 4. **naive baseline** (on a sample, scaled) — a snapshot tool's way to
//!    learn "since when": for every hour of the year, scan the history for
//!    the state in force and test the condition; the first hour of the last
//!    run of true is the `since`. Its `since`s are checked to equal the
//!    rules'.
//!
//! Memory per resource: the growth of the peak RSS while building the
//! timelines, ÷ N. CloudWatch calls per 1,000 instances a day: 28 days of
//! reads as the service plans them over synthetic metrics.
//!
//! Run it with `scripts/bench-waste.sh [resources]`, which builds the code
//! in the hot loop optimised.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Instant;

use aggregator::engine::{MemoryBook, Timeline, price_timeline};
use aggregator::waste::{Priors, evaluate, evaluate_extending, idle, pricing_starts};
use chrono::{DateTime, Duration, Utc};
use kopter_schema::AccountId;
use kopter_store::inventory::{InstanceFields, Resource, SnapshotFields, VolumeFields};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, StoredCounts,
};
use kopter_store::waste::{Finding, Rule, Thresholds};

/// Counts allocations (the profile: `perf` is not on every machine). A
/// relaxed atomic add per allocation: a few ns, within the noise.
struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ALLOC_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// (allocations, bytes allocated, live bytes) so far.
fn alloc_counts() -> (usize, usize, isize) {
    (
        ALLOCS.load(Ordering::Relaxed),
        ALLOC_BYTES.load(Ordering::Relaxed),
        LIVE_BYTES.load(Ordering::Relaxed),
    )
}

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

    // 1. Rules only (the first pass). Best of three (the machine is
    // shared); the allocations of one.
    let mut rules_s = f64::MAX;
    let (a0, b0, l0) = alloc_counts();
    let mut found = evaluate(&account, &timelines, &[], now, &th, &b);
    let (a1, b1, l1) = alloc_counts();
    for _ in 0..3 {
        drop(found);
        let t0 = Instant::now();
        found = evaluate(&account, &timelines, &[], now, &th, &b);
        rules_s = rules_s.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "rules profile: {:.1} allocations and {:.0} bytes allocated a resource; the findings keep {:.0} bytes a resource ({:.0} a finding)",
        (a1 - a0) as f64 / n as f64,
        (b1 - b0) as f64 / n as f64,
        (l1 - l0) as f64 / n as f64,
        (l1 - l0) as f64 / found.len() as f64,
    );
    let mut by_rule: BTreeMap<Rule, usize> = BTreeMap::new();
    for f in &found {
        *by_rule.entry(f.rule).or_default() += 1;
    }
    println!(
        "rules:  {rules_s:.3} s for {n} resources ({:.2} µs a resource); {} findings {by_rule:?}",
        rules_s * 1e6 / n as f64,
        found.len()
    );

    // 2. The service's in-memory path, 100 resources (ten groups) at a
    // time as an account's worth. Before: the findings priced from their
    // `since` (every evaluation did this before accrual was incremental;
    // here at the hour before `now`, which gives the stored rows). After:
    // the evaluation at `now` extending those rows, pricing one hour.
    let before_at = now - Duration::hours(1);
    let chunks: Vec<&[Timeline]> = timelines.chunks(100).collect();
    let t0 = Instant::now();
    let mut priced_hours = 0usize;
    let mut stored: Vec<Priors> = Vec::with_capacity(chunks.len());
    let mut full_findings = 0usize;
    for chunk in &chunks {
        let (found, priced) = service_path(&account, chunk, before_at, &th, &b, &Priors::new());
        priced_hours += priced;
        full_findings += found.len();
        stored.push(
            found
                .into_iter()
                .map(|f| ((f.resource_id.clone(), f.rule), f))
                .collect(),
        );
    }
    let full_s = t0.elapsed().as_secs_f64();
    println!(
        "full:   {full_s:.3} s ({priced_hours} resource-hours priced from the findings' since, {full_findings} findings)"
    );
    let t0 = Instant::now();
    let mut priced_hours = 0usize;
    let (mut accrued, mut monthly, mut inc_findings) = (0.0, 0.0, 0usize);
    let mut incremental = Vec::with_capacity(chunks.len());
    for (chunk, priors) in chunks.iter().zip(&stored) {
        let (found, priced) = service_path(&account, chunk, now, &th, &b, priors);
        priced_hours += priced;
        inc_findings += found.len();
        accrued += found.iter().map(|f| f.accrued_usd).sum::<f64>();
        monthly += found.iter().filter_map(|f| f.monthly_usd).sum::<f64>();
        incremental.push(found);
    }
    let inc_s = t0.elapsed().as_secs_f64();
    println!(
        "incremental: {inc_s:.3} s ({priced_hours} resource-hours priced, {inc_findings} findings); accrued {accrued:.2} USD, {monthly:.2} USD/month; full ÷ incremental {:.0}×",
        full_s / inc_s
    );
    assert_eq!(inc_findings, found.len());
    // The incremental amounts are the full pricing's, to the bit (checked
    // on the first 20 accounts: the full pricing is the slow path).
    let mut same = 0;
    for (chunk, inc) in chunks.iter().zip(&incremental).take(20) {
        let (full, _) = service_path(&account, chunk, now, &th, &b, &Priors::new());
        assert_eq!(full.len(), inc.len());
        for (a, f) in inc.iter().zip(&full) {
            assert_eq!(
                (a.accrued_usd.to_bits(), a.unpriced_hours),
                (f.accrued_usd.to_bits(), f.unpriced_hours),
                "{}",
                a.resource_id
            );
            same += 1;
        }
    }
    println!(
        "        {same} findings of 20 accounts: incremental amounts equal the full pricing's to the bit"
    );

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
    cloudwatch_calls();
}

/// The service's path for one account at `now` (`waste/apply.rs` without
/// DynamoDB): the first pass, pricing from where the stored accruals end,
/// the second pass. Returns the findings and the resource-hours priced.
fn service_path(
    account: &AccountId,
    chunk: &[Timeline],
    now: DateTime<Utc>,
    th: &Thresholds,
    b: &MemoryBook,
    priors: &Priors,
) -> (Vec<Finding>, usize) {
    let found = evaluate(account, chunk, &[], now, th, b);
    let start = pricing_starts(&found, chunk, priors, now, b);
    let mut lines = Vec::new();
    for t in chunk {
        if let Some(s) = start.get(t.resource_id.as_str()) {
            price_timeline(t, *s, now, b, &mut lines);
        }
    }
    let idle = HashMap::new();
    let out = evaluate_extending(account, chunk, &lines, now, th, b, &idle, Some(priors));
    (out, lines.len())
}

/// GetMetricData calls for 1,000 running instances in one account and
/// region over 28 days, read as the service reads them (CPU first, network
/// for the candidates, again when `valid_days` says), from synthetic daily
/// metrics: 800 busy (CPU maximum 20–90 %), 100 idle (1 %, 1 MB), 50 with
/// low CPU but heavy network (2 %, 800 MB: candidates, busy), 50 whose
/// CPU is low on alternate days (7 of 14: busy, near the threshold).
fn cloudwatch_calls() {
    use idle::{Day, IdleRule, busy_by_cpu, calls, classify, valid_days};
    let rule = IdleRule::default();
    let day0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let metrics = |i: usize, d: i64| -> Day {
        let (cpu, net) = match i {
            0..800 => (20.0 + ((i as i64 * 7 + d * 13) % 70) as f64, 5e8),
            800..900 => (1.0, 1e6),
            900..950 => (2.0, 8e8),
            _ => (if d % 2 == 0 { 1.0 } else { 60.0 }, 1e6),
        };
        Day {
            cpu_max_percent: Some(cpu),
            network_in_bytes: Some(net / 2.0),
            network_out_bytes: Some(net / 2.0),
        }
    };
    let mut due = vec![0i64; 1000];
    let (mut per_day, mut reads) = (Vec::new(), 0usize);
    for day in 0..28i64 {
        // The due instances, then (as `apply.rs`) the standing ones due
        // soonest while the last CPU call has room.
        let mut order: Vec<usize> = (0..due.len()).filter(|i| due[*i] <= day).collect();
        let room = order.len().next_multiple_of(idle::MAX_QUERIES_PER_CALL) - order.len();
        if !order.is_empty() {
            let mut early: Vec<usize> = (0..due.len()).filter(|i| due[*i] > day).collect();
            early.sort_by_key(|i| due[*i]);
            order.extend(early.into_iter().take(room));
        }
        let (mut read, mut candidates) = (0, 0);
        for i in order {
            let next = &mut due[i];
            read += 1;
            let window: BTreeMap<DateTime<Utc>, Day> = (day - 14..day)
                .map(|d| (day0 + Duration::days(d), metrics(i, d)))
                .collect();
            let verdict = match busy_by_cpu(&window, &rule) {
                Some(v) => v,
                None => {
                    candidates += 1;
                    classify(&window, &rule)
                }
            };
            *next = day + i64::from(valid_days(&verdict, &rule));
        }
        reads += read;
        per_day.push(calls(read, candidates));
    }
    let total: usize = per_day.iter().sum();
    let steady = &per_day[14..];
    println!(
        "CloudWatch: {:.2} GetMetricData calls a day per 1,000 running instances over 28 days (first day {}, then at most {} a day; days 14–27 average {:.2}); {} instance reads ({:.2} a day each; every day before); 1 query an instance for CPU, 2 more for the network of candidates, ≤ {} a call; the previous plan: 7 a day",
        total as f64 / 28.0,
        per_day[0],
        per_day[1..].iter().max().unwrap(),
        steady.iter().sum::<usize>() as f64 / steady.len() as f64,
        reads,
        reads as f64 / 28.0 / 1000.0,
        idle::MAX_QUERIES_PER_CALL,
    );
}
