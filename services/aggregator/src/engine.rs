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
//!   IOPS / throughput above the free baseline, each priced tier by tier
//!   (`beginRange`/`endRange`); a component without a price leaves the
//!   others billed and is named in the line's `missing_part`;
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

use chrono::{DateTime, Datelike, TimeZone, Utc};
pub use kopter_store::graph::CostLine;
use kopter_store::inventory::{HostFields, InstanceFields, Resource, SnapshotFields, VolumeFields};
use kopter_store::platform;
use kopter_store::prices::{EbsPriceItem, InstancePrices, SpotPoint, VersionRecord, reserved_key};

/// A resource's states over time (sorted by `at`, oldest first).
#[derive(Debug, Clone)]
pub struct Timeline {
    pub region: String,
    pub resource_id: String,
    pub states: Vec<(DateTime<Utc>, Resource)>,
}

/// Prices in memory, as the engine reads them.
pub trait PriceBook {
    /// The price-list version in force at `hour` in `region`.
    fn version(&self, region: &str, hour: DateTime<Utc>) -> Option<&str>;
    /// The version in force at `hour` and the instant (epoch ms) until
    /// which that answer stays the same — the next publication in the
    /// region. The engine asks again only then; the default answers for
    /// one hour at a time.
    fn version_span(&self, region: &str, hour: DateTime<Utc>) -> Option<(&str, i64)> {
        self.version(region, hour)
            .map(|v| (v, hour.timestamp_millis() + 3_600_000))
    }
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

/// Region → (publication time, version), oldest publication first
/// (`kopter_store::prices::by_publication`).
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

impl MemoryBook {
    fn index(&self) -> &VersionIndex {
        self.index.get_or_init(|| {
            self.versions
                .iter()
                .map(|(r, vs)| {
                    let list = kopter_store::prices::by_publication(vs)
                        .into_iter()
                        .map(|(p, v)| (p, v.version.clone()))
                        .collect();
                    (r.clone(), list)
                })
                .collect()
        })
    }
}

impl PriceBook for MemoryBook {
    /// Same rule as [`kopter_store::prices::version_at`], on a prepared index.
    fn version(&self, region: &str, hour: DateTime<Utc>) -> Option<&str> {
        self.version_span(region, hour).map(|(v, _)| v)
    }
    fn version_span(&self, region: &str, hour: DateTime<Utc>) -> Option<(&str, i64)> {
        let list = self.index().get(region)?;
        let version = list
            .iter()
            .rev()
            .find(|(p, _)| p.is_some_and(|p| p <= hour))
            .or_else(|| list.first())
            .map(|(_, v)| v.as_str())?;
        // The answer changes only when one more version's publication
        // time has passed.
        let until = list
            .iter()
            .filter_map(|(p, _)| *p)
            .filter(|p| *p > hour)
            .min()
            .map_or(i64::MAX, |p| p.timestamp_millis());
        Some((version, until))
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
pub(crate) fn spot_products(platform_details: &str) -> [String; 2] {
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
        Resource::Host(h) => h.allocated(),
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
    note: Option<Arc<str>>,
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
            Resource::Host(h) => (
                "host",
                "host-hours",
                h.instance_family.as_str().into(),
                if h.instance_type.is_empty() {
                    h.instance_family.as_str().into()
                } else {
                    h.instance_type.as_str().into()
                },
                "".into(),
                &h.tags,
            ),
        };
    Shown {
        kind,
        unit,
        family: family_,
        detail,
        lifecycle,
        tags: Arc::new(tags.clone()),
        note: note(r).map(Into::into),
    }
}

/// Per state, what the walk needs on every hour, worked out once.
#[derive(Clone, Copy)]
struct StateFlags {
    /// The resource exists (not terminated / deleted).
    exists: bool,
    /// It is billed by the second while in this state (instance running
    /// or pending; every existing volume and snapshot).
    billed: bool,
}

fn flags(r: &Resource) -> StateFlags {
    let exists = exists(r);
    let billed = exists
        && match r {
            // `pending` is counted as running: the describer sees it only
            // for moments, and times the start from it.
            Resource::Instance(i) => i.state == "running" || i.state == "pending",
            Resource::Volume(_) | Resource::Snapshot(_) | Resource::Host(_) => true,
        };
    StateFlags { exists, billed }
}

/// Prices every hour in `[from, to)` (hour starts) of one timeline.
/// Lines with no usage are left out.
pub fn price_timeline<'b>(
    timeline: &Timeline,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    book: &'b impl PriceBook,
    out: &mut Vec<CostLine>,
) {
    let states = &timeline.states;
    if states.is_empty() {
        return;
    }
    // Times as epoch milliseconds: the walk does integer arithmetic only;
    // chrono is used once per month, price version and output line.
    let ts: Vec<i64> = states.iter().map(|(t, _)| t.timestamp_millis()).collect();
    let state_flags: Vec<StateFlags> = states.iter().map(|(_, r)| flags(r)).collect();
    let mut shown_cache: Vec<Option<Shown>> = vec![None; states.len()];
    let resource_id: Arc<str> = timeline.resource_id.as_str().into();
    let region: Arc<str> = timeline.region.as_str().into();
    let price_region = price_region(timeline);
    let mut memo = Memo::<'b>::default();
    // Index of the first state starting after the hour's start (cursor).
    let mut next = 0usize;
    let to_ms = to.timestamp_millis();
    let mut hour_ms = hour_of(from).timestamp_millis();
    while hour_ms < to_ms {
        let end_ms = hour_ms + 3_600_000;
        while next < ts.len() && ts[next] <= hour_ms {
            next += 1;
        }
        // Fast skip: nothing exists for the whole hour (before the first
        // state, or gone and unchanged).
        let current = next.checked_sub(1);
        let changes_inside = next < ts.len() && ts[next] < end_ms;
        if !changes_inside && current.is_none_or(|c| !state_flags[c].exists) {
            hour_ms = end_ms;
            continue;
        }
        let mut hour = HourCtx {
            start_ms: hour_ms,
            book,
            region: price_region,
            memo: &mut memo,
        };
        // Segments: the state in force at the hour's start (if any), then
        // every state that starts inside the hour.
        let mut acc = Acc::default();
        let mut seg_start = hour_ms;
        let mut current = current;
        let mut i = next;
        loop {
            let seg_end = if i < ts.len() && ts[i] < end_ms {
                ts[i]
            } else {
                end_ms
            };
            if let Some(c) = current
                && seg_end > seg_start
                && state_flags[c].exists
            {
                acc.last = Some(c);
                if state_flags[c].billed {
                    acc.add(timeline, c, &states[c].1, seg_start, seg_end, &mut hour);
                }
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
                hour: DateTime::from_timestamp_millis(hour_ms).expect("valid hour"),
                usage: acc.usage,
                unit: shown.unit,
                cost_usd: acc.missing.is_none().then_some(acc.cost),
                reserved_usd: (acc.missing.is_none()
                    && !acc.reserved_unknown
                    && shown.kind == "instance")
                    .then_some(acc.reserved),
                missing_part: acc.missing.is_none().then_some(acc.missing_part).flatten(),
                missing: acc.missing,
                family: shown.family,
                detail: shown.detail,
                lifecycle: shown.lifecycle,
                tags: shown.tags,
                note: shown.note,
            });
        }
        hour_ms = end_ms;
    }
}

/// A state's rate under one price version: instances (on-demand USD per
/// hour, reserved alternative per hour); volumes and snapshots (USD per
/// month, `None`); or why it is unknown.
type Rates = Result<(f64, Option<f64>), String>;

/// What the walk of one timeline remembers between hours: the price
/// version in force (until its next change), the month's length, and the
/// last rate looked up — consecutive hours of a resource almost always
/// reuse all three, so a long backfill costs one lookup per state or price
/// change, not per hour.
#[derive(Default)]
struct Memo<'b> {
    /// (version, valid from ms, valid until ms) or `None` when the region
    /// has no prices at all in that span.
    version: Option<(Option<&'b str>, i64, i64)>,
    /// Bumped whenever the version in force changes.
    epoch: u32,
    /// (month start ms, next month start ms, seconds in the month).
    month: Option<(i64, i64, f64)>,
    /// Rate of (state index, version epoch).
    rate: Option<(usize, u32, Rates)>,
    /// Volume rate of (state index, version epoch).
    volume: Option<(usize, u32, VolumeRates)>,
    /// The last instance rate by what it was looked up with (version,
    /// type, tenancy, operation), shared by states that differ in other
    /// fields only (stop/start).
    instance: Option<(String, String, String, String, Rates)>,
}

/// One hour of one timeline: where prices come from.
struct HourCtx<'a, 'b, B: PriceBook> {
    start_ms: i64,
    book: &'b B,
    region: &'a str,
    memo: &'a mut Memo<'b>,
}

impl<'b, B: PriceBook> HourCtx<'_, 'b, B> {
    fn hour(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.start_ms).expect("valid hour")
    }

    /// The price version in force for the hour, and its epoch.
    fn version(&mut self) -> Result<(&'b str, u32), String> {
        let fresh = matches!(self.memo.version, Some((_, from, until))
            if from <= self.start_ms && self.start_ms < until);
        if !fresh {
            let span = self.book.version_span(self.region, self.hour());
            let (v, until) = match span {
                Some((v, until)) => (Some(v), until),
                None => (None, self.start_ms + 3_600_000),
            };
            if self.memo.version.is_none_or(|(old, _, _)| old != v) {
                self.memo.epoch = self.memo.epoch.wrapping_add(1);
            }
            self.memo.version = Some((v, self.start_ms, until));
        }
        match self.memo.version {
            Some((Some(v), _, _)) => Ok((v, self.memo.epoch)),
            _ => Err(format!("no prices for region {}", self.region)),
        }
    }

    fn seconds_in_month(&mut self) -> f64 {
        match self.memo.month {
            Some((from, until, secs)) if from <= self.start_ms && self.start_ms < until => secs,
            _ => {
                let hour = self.hour();
                let secs = seconds_in_month(hour);
                let start = Utc
                    .with_ymd_and_hms(hour.year(), hour.month(), 1, 0, 0, 0)
                    .single()
                    .expect("first of month")
                    .timestamp_millis();
                self.memo.month = Some((start, start + (secs * 1000.0) as i64, secs));
                secs
            }
        }
    }

    /// The rate of state `index` in this hour's version, from the memo or
    /// worked out by `lookup`.
    fn rates(&mut self, index: usize, lookup: impl FnOnce(&mut Self, &'b str) -> Rates) -> Rates {
        let (version, epoch) = self.version()?;
        if let Some((i, e, r)) = &self.memo.rate
            && *i == index
            && *e == epoch
        {
            return r.clone();
        }
        let r = lookup(self, version);
        self.memo.rate = Some((index, epoch, r.clone()));
        r
    }
}

impl<'b, B: PriceBook> HourCtx<'_, 'b, B> {
    /// The rate of volume state `index` in this hour's version, memoised
    /// like [`HourCtx::rates`] (a volume's rate carries which components
    /// are unpriced, so it has its own slot).
    fn volume_rates(&mut self, index: usize, v: &VolumeFields) -> VolumeRates {
        let (version, epoch) = self.version()?;
        if let Some((i, e, r)) = &self.memo.volume
            && *i == index
            && *e == epoch
        {
            return r.clone();
        }
        let r = volume_monthly(self.book, self.region, version, v);
        self.memo.volume = Some((index, epoch, r.clone()));
        r
    }
}

#[derive(Default)]
struct Acc {
    usage: f64,
    cost: f64,
    reserved: f64,
    /// Some running second had no reserved rate: no alternative figure.
    reserved_unknown: bool,
    missing: Option<String>,
    /// Components of a volume whose price is unknown while others are
    /// known (those are in `cost`).
    missing_part: Option<String>,
    /// Index of the last existing state seen in the hour.
    last: Option<usize>,
}

impl Acc {
    /// Adds a billed segment `[start_ms, end_ms)` of state `index`.
    fn add<B: PriceBook>(
        &mut self,
        t: &Timeline,
        index: usize,
        state: &Resource,
        start_ms: i64,
        end_ms: i64,
        hour: &mut HourCtx<'_, '_, B>,
    ) {
        let secs = (end_ms - start_ms) as f64 / 1000.0;
        let cost = match state {
            Resource::Instance(i) => {
                self.usage += secs / 3600.0;
                if let Some(reason) = unpriced_purchase(i) {
                    Err(reason)
                } else if i.lifecycle == "spot" {
                    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).expect("valid");
                    spot_cost(t, i, at(start_ms), at(end_ms), hour.book).map(|c| (c, None))
                } else {
                    hour.rates(index, |h, version| instance_rates(h, version, i))
                        .map(|(od, ri)| (od * secs / 3600.0, ri.map(|r| r * secs / 3600.0)))
                }
            }
            Resource::Volume(v) => {
                self.usage += v.size_gib as f64 * secs / 3600.0;
                let month = hour.seconds_in_month();
                hour.volume_rates(index, v).map(|r| {
                    if r.missing.is_some() {
                        self.missing_part = r.missing;
                    }
                    (r.monthly * secs / month, None)
                })
            }
            Resource::Snapshot(s) => {
                self.usage += s.volume_size_gib as f64 * secs / 3600.0;
                let month = hour.seconds_in_month();
                hour.rates(index, |h, version| snapshot_monthly(h, version, s))
                    .map(|(m, _)| (m * secs / month, None))
            }
            Resource::Host(host) => {
                self.usage += secs / 3600.0;
                hour.rates(index, |h, version| host_rate(h, version, host))
                    .map(|(rate, _)| (rate * secs / 3600.0, None))
            }
        };
        match cost {
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
}

/// On-demand and 1-yr standard no-upfront rates per hour of an instance.
fn instance_rates<B: PriceBook>(
    hour: &mut HourCtx<'_, '_, B>,
    version: &str,
    i: &InstanceFields,
) -> Rates {
    let region = hour.region;
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
    if let Some((v, ty, ten, op, r)) = &hour.memo.instance
        && v == version
        && *ty == i.instance_type
        && ten == tenancy
        && op == operation
    {
        return r.clone();
    }
    let r = hour
        .book
        .instance(region, version, &i.instance_type, tenancy)
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
                "no on-demand price for {} {operation} {tenancy} in {region} (version {version})",
                i.instance_type
            )
        });
    hour.memo.instance = Some((
        version.to_string(),
        i.instance_type.clone(),
        tenancy.to_string(),
        operation.to_string(),
        r.clone(),
    ));
    r
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

/// A volume's price per month from the components whose prices are
/// known, and what is not known (`None`: every component is priced).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VolumeRate {
    pub(crate) monthly: f64,
    pub(crate) missing: Option<String>,
}

/// A volume's rate, or why none of its components has a price.
type VolumeRates = Result<VolumeRate, String>;

/// USD per month of a volume, component by component — storage, and
/// provisioned IOPS and throughput above the free baseline — each priced
/// tier by tier ([`tiered_cost`]). A component without a price leaves the
/// others billed and is named in `missing`; only a volume none of whose
/// components has a price is unpriced as a whole.
///
/// Billed quantities (<https://aws.amazon.com/ebs/pricing/>): gp3 IOPS
/// above 3,000 and throughput above 125 MiB/s (priced per GiBps-month:
/// MiB/s ÷ 1024); io1/io2 every provisioned IOPS.
pub(crate) fn volume_monthly(
    book: &impl PriceBook,
    region: &str,
    version: &str,
    v: &VolumeFields,
) -> VolumeRates {
    let items = book.ebs(region, version);
    let iops = v.iops.unwrap_or(0) as f64;
    let mut parts = vec![("storage", "storage", v.size_gib as f64)];
    let billable_iops = match v.volume_type.as_str() {
        "gp3" => (iops - 3000.0).max(0.0),
        "io1" | "io2" => iops,
        _ => 0.0,
    };
    if billable_iops > 0.0 {
        parts.push(("iops", "IOPS", billable_iops));
    }
    if v.volume_type == "gp3" {
        let extra_mibps = (v.throughput.unwrap_or(125) as f64 - 125.0).max(0.0);
        if extra_mibps > 0.0 {
            parts.push(("throughput", "throughput", extra_mibps / 1024.0));
        }
    }
    let mut monthly = 0.0;
    let mut priced = 0;
    let mut missing = Vec::new();
    for (kind, name, quantity) in parts {
        let (cost, any, gap) = tiered_cost(items, &v.volume_type, kind, quantity);
        monthly += cost;
        if any {
            priced += 1;
        }
        if let Some((from, to)) = gap {
            let range = if !any {
                String::new()
            } else {
                match to {
                    Some(to) => format!(" for {from}–{to} of {quantity}"),
                    None => format!(" above {from} of {quantity}"),
                }
            };
            missing.push(format!(
                "no EBS {} {name} price{range} in {region} (version {version})",
                v.volume_type
            ));
        }
    }
    if priced == 0 {
        return Err(missing.join("; "));
    }
    Ok(VolumeRate {
        monthly,
        missing: (!missing.is_empty()).then(|| missing.join("; ")),
    })
}

/// The monthly cost of `quantity` units of a volume type's `kind`, each
/// price applying to the part of the quantity inside its range
/// ([`EbsPriceItem::applies_to`]: the file's `beginRange`/`endRange`, or
/// the tier its usage type names). Where prices of one range repeat
/// (several usage types), the shortest usage type's wins, as AWS's
/// regional variants only add suffixes.
///
/// Returns (cost of the priced part, whether any price applied, the first
/// part of `[0, quantity)` no price covers).
fn tiered_cost(
    items: &[EbsPriceItem],
    volume: &str,
    kind: &str,
    quantity: f64,
) -> (f64, bool, Option<(f64, Option<f64>)>) {
    let mut tiers: Vec<(f64, Option<f64>, &EbsPriceItem)> = items
        .iter()
        .filter(|e| e.volume_api_name == volume && e.kind == kind)
        .map(|e| {
            let (from, to) = e.applies_to();
            (from, to, e)
        })
        .collect();
    tiers.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.2.usage_type.len().cmp(&b.2.usage_type.len()))
    });
    let mut cost = 0.0;
    let mut any = false;
    let mut gap = None;
    // Everything below `covered` has a price.
    let mut covered = 0.0_f64;
    for (from, to, item) in tiers {
        if covered >= quantity {
            break;
        }
        if from > covered {
            gap.get_or_insert((covered, Some(from.min(quantity))));
            covered = from;
            if covered >= quantity {
                break;
            }
        }
        let upper = to.map_or(quantity, |t| t.min(quantity));
        if upper > covered {
            cost += (upper - covered) * item.usd_per_unit;
            any = true;
            covered = upper;
        }
    }
    if covered < quantity {
        gap.get_or_insert((covered, None));
    }
    (cost, any, gap)
}

/// USD per month of a snapshot (source volume size × GB-month price).
fn snapshot_monthly<B: PriceBook>(
    hour: &mut HourCtx<'_, '_, B>,
    version: &str,
    s: &SnapshotFields,
) -> Rates {
    let region = hour.region;
    let price = hour
        .book
        .ebs(region, version)
        .iter()
        .filter(|e| e.kind == "snapshot")
        .min_by_key(|e| {
            (
                e.usage_type.contains("Archive") || e.usage_type.contains("Recycle"),
                e.usage_type.len(),
            )
        })
        .map(|e| e.usd_per_unit)
        .ok_or_else(|| format!("no EBS snapshot price in {region} (version {version})"))?;
    Ok((s.volume_size_gib as f64 * price, None))
}

/// The Price List region a timeline is priced in: its Local or Wavelength
/// Zone's group when the describer recorded one (any state: a resource
/// never changes zone, and history rows written before zones were read
/// have none), else its region.
pub(crate) fn price_region(t: &Timeline) -> &str {
    t.states
        .iter()
        .rev()
        .find_map(|(_, r)| {
            let zone = match r {
                Resource::Instance(i) => &i.zone,
                Resource::Volume(v) => &v.zone,
                Resource::Host(h) => &h.zone,
                Resource::Snapshot(_) => return None,
            };
            (!zone.price_region.is_empty()).then_some(zone.price_region.as_str())
        })
        .unwrap_or(&t.region)
}

/// What a line of this state says beside its amount, when the amount is
/// not simply the resource's own rate × usage.
///
/// An instance running in an On-Demand Capacity Reservation is billed at
/// the on-demand rate and the reservation costs nothing for that instance;
/// the reservation's *unused* capacity is billed at the same rate to the
/// reservation ("Capacity Reservations are charged at the equivalent
/// On-Demand rate whether you run instances in reserved capacity or not
/// … When you run an instance that matches the attributes of a
/// reservation, you just pay for the instance and nothing for the
/// reservation",
/// <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-reservations-pricing-billing.html>).
/// Reservations are not described, so that unused part is in no figure.
fn note(r: &Resource) -> Option<String> {
    let Resource::Instance(i) = r else {
        return None;
    };
    if i.lifecycle != "spot" && (!i.host_id.is_empty() || i.tenancy == "host") {
        let host = if i.host_id.is_empty() {
            "its Dedicated Host"
        } else {
            i.host_id.as_str()
        };
        return Some(format!(
            "on Dedicated Host {host}: the host's hourly charge covers the compute \
             (see the host's line); this line is the offer file's Host-tenancy rate \
             (0.00 unless a license is billed per instance)"
        ));
    }
    if i.lifecycle == "on-demand" && !i.capacity_reservation_id.is_empty() {
        return Some(format!(
            "in capacity reservation {}: billed at the on-demand rate, as AWS bills \
             instances running in an On-Demand Capacity Reservation; the reservation's \
             unused capacity is billed to it and not counted here",
            i.capacity_reservation_id
        ));
    }
    None
}

/// Why an instance's hours have no price in the offer file, when they are
/// paid another way. Only on-demand (`InstanceLifecycle` absent; empty in
/// rows written before the field) and spot hours have hourly rates Kopter
/// reads; every other purchase option is marked, never priced as
/// on-demand:
///
/// * `capacity-block`: paid up front when the block is bought, at a price
///   set for that offering (`CapacityBlockOffering.upfrontFee`,
///   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CapacityBlockOffering.html>;
///   <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/capacity-blocks-pricing-billing.html>),
///   which no offer-file row gives.
/// * `scheduled`, `interruptible-capacity-reservation` and any value EC2
///   adds later (`InstanceLifecycleType`,
///   <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html>):
///   billed under their own terms, not the on-demand rate.
fn unpriced_purchase(i: &InstanceFields) -> Option<String> {
    let reservation = if i.capacity_reservation_id.is_empty() {
        String::new()
    } else {
        format!(" ({})", i.capacity_reservation_id)
    };
    match i.lifecycle.as_str() {
        "" | "on-demand" | "spot" => None,
        "capacity-block" => Some(format!(
            "Capacity Block instance{reservation}: paid as the block's upfront fee, which \
             the price list does not give"
        )),
        other => Some(format!(
            "instance lifecycle {other:?}{reservation}: billed under its own terms, not at \
             the on-demand rate, and the price list gives no hourly rate for it"
        )),
    }
}

/// USD per hour of a Dedicated Host: the on-demand rate of its family's
/// `Dedicated Host` product, which pricing stores as instance type = the
/// family (`mac1`), tenancy `Host` (see the pricing DESIGN.md).
fn host_rate<B: PriceBook>(hour: &mut HourCtx<'_, '_, B>, version: &str, h: &HostFields) -> Rates {
    let region = hour.region;
    let prices = hour
        .book
        .instance(
            region,
            version,
            &h.instance_family,
            platform::HOST_PRICE_TENANCY,
        )
        .ok_or_else(|| {
            format!(
                "no Dedicated Host price for family {:?} in {region} (version {version})",
                h.instance_family
            )
        })?;
    let rate = prices
        .on_demand
        .get("RunInstances")
        .or_else(|| prices.on_demand.values().next())
        .ok_or_else(|| {
            format!(
                "no on-demand Dedicated Host rate for family {:?} in {region} (version {version})",
                h.instance_family
            )
        })?;
    Ok((rate.usd_per_hour, None))
}
