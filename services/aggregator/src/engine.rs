//! Pricing resource-hours in memory: state history × prices in force.
//!
//! Input: each resource's *timeline* — its states in time order, each in
//! force from its `at` until the next (the describer's history rows carry
//! the full state after every change). Output: one [`CostLine`] per
//! resource and hour in which it cost something or was used.
//!
//! Rules (see `DESIGN.md`):
//! * instance: seconds in state `running` × the hourly price in force
//!   (on-demand by operation × tenancy; the spot price history, integrated
//!   over the seconds, for `spot` instances); type changes and stop/start
//!   inside an hour split it; the alternative "reserved" figure is the 1-yr
//!   standard no-upfront effective rate for the same seconds;
//! * volume: size × GB-month price × (seconds it existed in the hour ÷
//!   seconds of that month), whatever its instance does, plus provisioned
//!   IOPS / throughput above the free baseline;
//! * snapshot: the source volume's size (an upper bound — EBS bills the
//!   changed blocks, which DescribeSnapshots does not give) × snapshot
//!   GB-month price, prorated the same way;
//! * a price that cannot be found gives the line with its usage,
//!   `cost_usd = None` and the reason in `missing` — never 0.
//!
//! Hours are walked with a cursor per timeline and the last price lookup
//! is memoised, so a long backfill costs one pass over the states and one
//! lookup per price change.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use describer::rows::{InstanceFields, Resource, SnapshotFields, VolumeFields};
use pricing::offer::platform;
use pricing::store::{EbsPriceItem, InstancePrices, SpotPoint, VersionRecord, reserved_key};

/// A resource's states over time (sorted by `at`, oldest first).
#[derive(Debug, Clone)]
pub struct Timeline {
    pub region: String,
    pub resource_id: String,
    pub states: Vec<(DateTime<Utc>, Resource)>,
}

/// What a resource cost in one hour.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    pub resource_id: Arc<str>,
    /// `instance`, `volume`, `snapshot`.
    pub kind: &'static str,
    pub region: Arc<str>,
    pub hour: DateTime<Utc>,
    /// Instance: running hours; volume / snapshot: GB-hours.
    pub usage: f64,
    pub unit: &'static str,
    pub cost_usd: Option<f64>,
    /// Instances on demand: the same seconds at the 1-yr standard
    /// no-upfront reserved rate.
    pub reserved_usd: Option<f64>,
    /// Why the price is unknown (then `cost_usd` is `None`).
    pub missing: Option<String>,
    /// `m5` (instance family), `ebs-gp3`, `ebs-snapshot`.
    pub family: Arc<str>,
    /// Instance type or volume type at the end of the hour.
    pub detail: Arc<str>,
    /// `on-demand`, `spot`, … (instances only; empty otherwise).
    pub lifecycle: Arc<str>,
    pub tags: Arc<BTreeMap<String, String>>,
}

/// Prices in memory, as the engine reads them.
pub trait PriceBook {
    /// The price-list version in force at `hour` in `region`.
    fn version(&self, region: &str, hour: DateTime<Utc>) -> Option<&str>;
    fn instance(
        &self,
        region: &str,
        version: &str,
        instance_type: &str,
        tenancy: &str,
    ) -> Option<&InstancePrices>;
    fn ebs(&self, region: &str, version: &str) -> &[EbsPriceItem];
    /// Spot points of an instance type in an AZ (every product), by time.
    fn spot(&self, region: &str, instance_type: &str, availability_zone: &str) -> &[SpotPoint];
}

/// Region → (publication time, version), sorted by version.
type VersionIndex = HashMap<String, Vec<(Option<DateTime<Utc>>, String)>>;

/// A [`PriceBook`] of plain maps (filled by the loader or by tests).
/// Fill `versions` before the first lookup: it is indexed then.
#[derive(Debug, Default, Clone)]
pub struct MemoryBook {
    pub versions: HashMap<String, Vec<VersionRecord>>,
    /// `versions` sorted by version, with parsed publication times.
    index: std::sync::OnceLock<VersionIndex>,
    pub instances: HashMap<(String, String, String, String), InstancePrices>,
    pub ebs: HashMap<(String, String), Vec<EbsPriceItem>>,
    pub spot: HashMap<(String, String, String), Vec<SpotPoint>>,
}

impl PriceBook for MemoryBook {
    /// Same rule as [`pricing::store::version_at`], on a prepared index.
    fn version(&self, region: &str, hour: DateTime<Utc>) -> Option<&str> {
        let index = self.index.get_or_init(|| {
            self.versions
                .iter()
                .map(|(r, vs)| {
                    let mut list: Vec<_> = vs
                        .iter()
                        .map(|v| (v.published(), v.version.clone()))
                        .collect();
                    list.sort_by(|a, b| a.1.cmp(&b.1));
                    (r.clone(), list)
                })
                .collect()
        });
        let list = index.get(region)?;
        list.iter()
            .rev()
            .find(|(p, _)| p.is_some_and(|p| p <= hour))
            .or_else(|| list.first())
            .map(|(_, v)| v.as_str())
    }
    fn instance(
        &self,
        region: &str,
        version: &str,
        instance_type: &str,
        tenancy: &str,
    ) -> Option<&InstancePrices> {
        self.instances.get(&(
            region.to_string(),
            version.to_string(),
            instance_type.to_string(),
            tenancy.to_string(),
        ))
    }
    fn ebs(&self, region: &str, version: &str) -> &[EbsPriceItem] {
        self.ebs
            .get(&(region.to_string(), version.to_string()))
            .map_or(&[], Vec::as_slice)
    }
    fn spot(&self, region: &str, instance_type: &str, availability_zone: &str) -> &[SpotPoint] {
        self.spot
            .get(&(
                region.to_string(),
                instance_type.to_string(),
                availability_zone.to_string(),
            ))
            .map_or(&[], Vec::as_slice)
    }
}

/// The start of the hour containing `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp() - t.timestamp().rem_euclid(3600), 0)
        .single()
        .expect("valid hour")
}

/// Seconds in the calendar month (UTC) containing `t`.
pub fn seconds_in_month(t: DateTime<Utc>) -> f64 {
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .expect("first of month");
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let next = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .expect("first of next month");
    (next - start).num_seconds() as f64
}

/// The instance family of a type (`m5.large` → `m5`).
pub fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// Spot product descriptions to try for a platform, most specific first.
fn spot_products(platform_details: &str) -> [String; 2] {
    let base = if platform_details.is_empty() {
        "Linux/UNIX"
    } else {
        platform_details
    };
    [format!("{base} (Amazon VPC)"), base.to_string()]
}

fn exists(r: &Resource) -> bool {
    match r {
        Resource::Instance(i) => i.state != "terminated",
        Resource::Volume(v) => !matches!(v.state.as_str(), "deleted" | "deleting" | "error"),
        Resource::Snapshot(s) => !matches!(s.state.as_str(), "deleted" | "error"),
    }
}

/// What a line shows of a state, shared by every line of that state.
#[derive(Clone)]
struct Shown {
    kind: &'static str,
    unit: &'static str,
    family: Arc<str>,
    detail: Arc<str>,
    lifecycle: Arc<str>,
    tags: Arc<BTreeMap<String, String>>,
}

fn shown(r: &Resource) -> Shown {
    let (kind, unit, family_, detail, lifecycle, tags): (_, _, Arc<str>, Arc<str>, Arc<str>, _) =
        match r {
            Resource::Instance(i) => (
                "instance",
                "hours",
                family(&i.instance_type).into(),
                i.instance_type.as_str().into(),
                i.lifecycle.as_str().into(),
                &i.tags,
            ),
            Resource::Volume(v) => (
                "volume",
                "GB-hours",
                format!("ebs-{}", v.volume_type).into(),
                v.volume_type.as_str().into(),
                "".into(),
                &v.tags,
            ),
            Resource::Snapshot(s) => (
                "snapshot",
                "GB-hours",
                "ebs-snapshot".into(),
                "snapshot".into(),
                "".into(),
                &s.tags,
            ),
        };
    Shown {
        kind,
        unit,
        family: family_,
        detail,
        lifecycle,
        tags: Arc::new(tags.clone()),
    }
}

/// Prices every hour in `[from, to)` (hour starts) of one timeline.
/// Lines with no usage are left out.
pub fn price_timeline(
    timeline: &Timeline,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    book: &impl PriceBook,
    out: &mut Vec<CostLine>,
) {
    let states = &timeline.states;
    if states.is_empty() {
        return;
    }
    // Times as epoch milliseconds: the walk does integer arithmetic only.
    let ts: Vec<i64> = states.iter().map(|(t, _)| t.timestamp_millis()).collect();
    let mut shown_cache: Vec<Option<Shown>> = vec![None; states.len()];
    let resource_id: Arc<str> = timeline.resource_id.as_str().into();
    let region: Arc<str> = timeline.region.as_str().into();
    let mut memo = Memo::default();
    // Index of the first state starting after the hour's start (cursor).
    let mut next = 0usize;
    let mut hour = hour_of(from);
    let to_ms = to.timestamp_millis();
    let mut hour_ms = hour.timestamp_millis();
    while hour_ms < to_ms {
        let end_ms = hour_ms + 3_600_000;
        while next < ts.len() && ts[next] <= hour_ms {
            next += 1;
        }
        // Segments: the state in force at the hour's start (if any), then
        // every state that starts inside the hour.
        let mut acc = Acc::default();
        let mut seg_start = hour_ms;
        let mut current = next.checked_sub(1);
        let mut i = next;
        loop {
            let seg_end = if i < ts.len() && ts[i] < end_ms {
                ts[i]
            } else {
                end_ms
            };
            if let Some(c) = current
                && seg_end > seg_start
            {
                acc.add(
                    timeline,
                    c,
                    &states[c].1,
                    seg_start,
                    seg_end,
                    hour,
                    book,
                    &mut memo,
                );
            }
            if seg_end >= end_ms {
                break;
            }
            current = Some(i);
            seg_start = seg_end;
            i += 1;
        }
        if let Some(last) = acc.last
            && acc.usage > 0.0
        {
            let shown = shown_cache[last]
                .get_or_insert_with(|| shown(&states[last].1))
                .clone();
            out.push(CostLine {
                resource_id: resource_id.clone(),
                kind: shown.kind,
                region: region.clone(),
                hour,
                usage: acc.usage,
                unit: shown.unit,
                cost_usd: acc.missing.is_none().then_some(acc.cost),
                reserved_usd: (acc.missing.is_none()
                    && !acc.reserved_unknown
                    && shown.kind == "instance")
                    .then_some(acc.reserved),
                missing: acc.missing,
                family: shown.family,
                detail: shown.detail,
                lifecycle: shown.lifecycle,
                tags: shown.tags,
            });
        }
        hour += Duration::hours(1);
        hour_ms = end_ms;
    }
}

/// (on-demand, reserved alternative) per hour, or why unknown.
type Rates = Result<(f64, Option<f64>), String>;

/// The last instance price looked up, by (version, type, tenancy,
/// operation): consecutive hours of one instance almost always reuse it.
#[derive(Default)]
struct Memo {
    instance: Option<(String, String, String, String, Rates)>,
}

#[derive(Default)]
struct Acc {
    usage: f64,
    cost: f64,
    reserved: f64,
    /// Some running second had no reserved rate: no alternative figure.
    reserved_unknown: bool,
    missing: Option<String>,
    /// Index of the last existing state seen in the hour.
    last: Option<usize>,
}

impl Acc {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        t: &Timeline,
        index: usize,
        state: &Resource,
        start_ms: i64,
        end_ms: i64,
        hour: DateTime<Utc>,
        book: &impl PriceBook,
        memo: &mut Memo,
    ) {
        if !exists(state) {
            return;
        }
        self.last = Some(index);
        let secs = (end_ms - start_ms) as f64 / 1000.0;
        match state {
            Resource::Instance(i) => {
                // `pending` is counted as running: the describer sees it
                // only for moments, and times the start from it.
                if i.state != "running" && i.state != "pending" {
                    return;
                }
                self.usage += secs / 3600.0;
                match instance_cost(t, i, start_ms, end_ms, secs, hour, book, memo) {
                    Ok((cost, reserved)) => {
                        self.cost += cost;
                        match reserved {
                            Some(r) => self.reserved += r,
                            None => self.reserved_unknown = true,
                        }
                    }
                    Err(reason) => self.missing = Some(reason),
                }
            }
            Resource::Volume(v) => {
                self.usage += v.size_gib as f64 * secs / 3600.0;
                match volume_cost(t, v, secs, hour, book) {
                    Ok(c) => self.cost += c,
                    Err(reason) => self.missing = Some(reason),
                }
            }
            Resource::Snapshot(s) => {
                self.usage += s.volume_size_gib as f64 * secs / 3600.0;
                match snapshot_cost(t, s, secs, hour, book) {
                    Ok(c) => self.cost += c,
                    Err(reason) => self.missing = Some(reason),
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn instance_cost(
    t: &Timeline,
    i: &InstanceFields,
    start_ms: i64,
    end_ms: i64,
    secs: f64,
    hour: DateTime<Utc>,
    book: &impl PriceBook,
    memo: &mut Memo,
) -> Result<(f64, Option<f64>), String> {
    if i.lifecycle == "spot" {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).expect("valid time");
        return spot_cost(t, i, at(start_ms), at(end_ms), book).map(|c| (c, None));
    }
    let version = book
        .version(&t.region, hour)
        .ok_or_else(|| format!("no prices for region {}", t.region))?;
    let tenancy = platform::offer_tenancy(&i.tenancy)
        .ok_or_else(|| format!("unknown tenancy {:?}", i.tenancy))?;
    let operation = if !i.usage_operation.is_empty() {
        i.usage_operation.as_str()
    } else {
        platform::usage_operation(&i.platform_details).ok_or_else(|| {
            format!(
                "no UsageOperation, unknown platform {:?}",
                i.platform_details
            )
        })?
    };
    let rates = match &memo.instance {
        Some((v, ty, ten, op, r))
            if v == version && *ty == i.instance_type && ten == tenancy && op == operation =>
        {
            r.clone()
        }
        _ => {
            let r = book
                .instance(&t.region, version, &i.instance_type, tenancy)
                .and_then(|p| {
                    let od = p.on_demand.get(operation)?.usd_per_hour;
                    let ri = p
                        .reserved
                        .get(&reserved_key(operation, 1, "standard", "No Upfront"))
                        .map(|r| r.effective_hourly_usd);
                    Some((od, ri))
                })
                .ok_or_else(|| {
                    format!(
                        "no on-demand price for {} {operation} {tenancy} in {} (version {version})",
                        i.instance_type, t.region
                    )
                });
            memo.instance = Some((
                version.to_string(),
                i.instance_type.clone(),
                tenancy.to_string(),
                operation.to_string(),
                r.clone(),
            ));
            r
        }
    }?;
    Ok((rates.0 * secs / 3600.0, rates.1.map(|r| r * secs / 3600.0)))
}

fn spot_cost(
    t: &Timeline,
    i: &InstanceFields,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    book: &impl PriceBook,
) -> Result<f64, String> {
    let points = book.spot(&t.region, &i.instance_type, &i.availability_zone);
    for product in spot_products(&i.platform_details) {
        let mine: Vec<&SpotPoint> = points
            .iter()
            .filter(|p| p.product_description == product)
            .collect();
        if mine.is_empty() {
            continue;
        }
        // Price in force at `start`, then each change inside the segment.
        let first = mine.partition_point(|p| p.at <= start);
        if first == 0 {
            return Err(format!(
                "no spot price for {} {product} in {} at {start}",
                i.instance_type, i.availability_zone
            ));
        }
        let mut cost = 0.0;
        let mut price = mine[first - 1].usd_per_hour;
        let mut from = start;
        for p in &mine[first..] {
            if p.at >= end {
                break;
            }
            cost += price * (p.at - from).num_milliseconds() as f64 / 3_600_000.0;
            price = p.usd_per_hour;
            from = p.at;
        }
        cost += price * (end - from).num_milliseconds() as f64 / 3_600_000.0;
        return Ok(cost);
    }
    Err(format!(
        "no spot price history for {} ({}) in {}",
        i.instance_type,
        if i.platform_details.is_empty() {
            "Linux/UNIX"
        } else {
            &i.platform_details
        },
        i.availability_zone
    ))
}

/// An EBS price of `kind` for `volume_api_name`; for tiered prices (io2
/// IOPS) the first tier's.
fn ebs_price(
    book: &impl PriceBook,
    region: &str,
    version: &str,
    volume: &str,
    kind: &str,
) -> Option<f64> {
    let mut found: Vec<&EbsPriceItem> = book
        .ebs(region, version)
        .iter()
        .filter(|e| e.volume_api_name == volume && e.kind == kind)
        .collect();
    found.sort_by_key(|e| {
        (
            e.usage_type.contains("tier") && !e.usage_type.contains("tier1"),
            e.usage_type.len(),
        )
    });
    found.first().map(|e| e.usd_per_unit)
}

fn volume_cost(
    t: &Timeline,
    v: &VolumeFields,
    secs: f64,
    hour: DateTime<Utc>,
    book: &impl PriceBook,
) -> Result<f64, String> {
    let version = book
        .version(&t.region, hour)
        .ok_or_else(|| format!("no prices for region {}", t.region))?;
    let share = secs / seconds_in_month(hour);
    let storage =
        ebs_price(book, &t.region, version, &v.volume_type, "storage").ok_or_else(|| {
            format!(
                "no EBS {} storage price in {} (version {version})",
                v.volume_type, t.region
            )
        })?;
    let mut monthly = v.size_gib as f64 * storage;
    let iops = v.iops.unwrap_or(0) as f64;
    let billable_iops = match v.volume_type.as_str() {
        "gp3" => (iops - 3000.0).max(0.0),
        "io1" | "io2" => iops,
        _ => 0.0,
    };
    if billable_iops > 0.0 {
        let p = ebs_price(book, &t.region, version, &v.volume_type, "iops")
            .ok_or_else(|| format!("no EBS {} IOPS price in {}", v.volume_type, t.region))?;
        monthly += billable_iops * p;
    }
    if v.volume_type == "gp3" {
        let extra_mibps = (v.throughput.unwrap_or(125) as f64 - 125.0).max(0.0);
        if extra_mibps > 0.0 {
            let p = ebs_price(book, &t.region, version, "gp3", "throughput")
                .ok_or_else(|| format!("no EBS gp3 throughput price in {}", t.region))?;
            monthly += extra_mibps / 1024.0 * p;
        }
    }
    Ok(monthly * share)
}

fn snapshot_cost(
    t: &Timeline,
    s: &SnapshotFields,
    secs: f64,
    hour: DateTime<Utc>,
    book: &impl PriceBook,
) -> Result<f64, String> {
    let version = book
        .version(&t.region, hour)
        .ok_or_else(|| format!("no prices for region {}", t.region))?;
    let price = book
        .ebs(&t.region, version)
        .iter()
        .filter(|e| e.kind == "snapshot")
        .min_by_key(|e| {
            (
                e.usage_type.contains("Archive") || e.usage_type.contains("Recycle"),
                e.usage_type.len(),
            )
        })
        .map(|e| e.usd_per_unit)
        .ok_or_else(|| format!("no EBS snapshot price in {} (version {version})", t.region))?;
    Ok(s.volume_size_gib as f64 * price * secs / seconds_in_month(hour))
}
