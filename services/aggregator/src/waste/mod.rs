//! Waste rules over an account's state history and its priced hours (pure:
//! no AWS). See `DESIGN.md` next to this file.
//!
//! Input: the account's [`Timeline`]s (states in time order), the
//! [`CostLine`]s the engine priced for them, and the end of the evaluated
//! hour. Output: one [`Finding`] per (resource, rule) whose condition
//! holds at that instant, with when it began (from the history), what the
//! resource cost since (the sum of its priced hours) and what leaving it
//! costs a month.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use kopter_schema::AccountId;
use kopter_store::graph::CostLine;
use kopter_store::inventory::{InstanceFields, Resource, ResourceKind, VolumeFields};
use kopter_store::platform;
use kopter_store::waste::{Finding, HOURS_PER_MONTH, IdleVerdict, Rule, Thresholds};
use rustc_hash::FxHashMap;

use crate::engine::{PriceBook, Timeline, hour_of, price_region, volume_monthly};

/// Tag Kopter's backups put on the snapshots they manage (their retention
/// is Kopter's own; see the describer's backup job).
const MANAGED_TAG: &str = "kopter:managed";

/// Evaluates every rule over one account at `now` (the end of the
/// evaluated hour; states at or after it are ignored).
///
/// `lines` are the priced hours of the account's resources from at least
/// the earliest `since` a finding can have (the timelines' start) to
/// `now`; hours without a line count as unpriced, never as 0.
pub fn evaluate(
    account: &AccountId,
    timelines: &[Timeline],
    lines: &[CostLine],
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    book: &impl PriceBook,
) -> Vec<Finding> {
    evaluate_with_idle(
        account,
        timelines,
        lines,
        now,
        thresholds,
        book,
        &HashMap::new(),
    )
}

/// [`evaluate`] with the instances' CloudWatch verdicts (by instance id;
/// [`idle`]): a running instance whose verdict is idle is an
/// `idle-instance` finding. Without a verdict, or an undecided one, it is
/// not.
pub fn evaluate_with_idle(
    account: &AccountId,
    timelines: &[Timeline],
    lines: &[CostLine],
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    book: &impl PriceBook,
    idle: &HashMap<String, IdleVerdict>,
) -> Vec<Finding> {
    evaluate_extending(account, timelines, lines, now, thresholds, book, idle, None)
}

/// The findings of an earlier evaluation (the stored rows), by resource
/// id and rule.
pub type Priors = HashMap<(String, Rule), Finding>;

/// [`evaluate_with_idle`] that extends the stored accruals: a finding
/// whose prior can be extended ([`extendable`]) adds to its
/// `accrued_usd` only the hours from its `accrued_through` to `now`
/// (`lines` need to cover only those, and the last hour); any other is
/// summed from `since`. Every finding records `accrued_through = now` and
/// the fingerprint the next evaluation checks.
///
/// Adding hour by hour sums the same hours in the same order as pricing
/// from `since`, so the two give the same f64.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_extending(
    account: &AccountId,
    timelines: &[Timeline],
    lines: &[CostLine],
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    book: &impl PriceBook,
    idle: &HashMap<String, IdleVerdict>,
    priors: Option<&Priors>,
) -> Vec<Finding> {
    // Fx, not std's SipHash: these maps are built and probed for every
    // resource (SipHash was a quarter of the rules' time), and their keys
    // are ids from the account's own history.
    let mut hours: FxHashMap<&str, FxHashMap<i64, &CostLine>> = FxHashMap::default();
    for l in lines {
        hours
            .entry(&*l.resource_id)
            .or_default()
            .insert(l.hour.timestamp(), l);
    }
    let mut by_id: FxHashMap<&str, &Timeline> =
        FxHashMap::with_capacity_and_hasher(timelines.len(), Default::default());
    by_id.extend(timelines.iter().map(|t| (t.resource_id.as_str(), t)));
    let ctx = Ctx {
        account,
        now,
        thresholds,
        book,
        hours: &hours,
        by_id: &by_id,
        priors,
    };
    let mut out = Vec::new();
    for t in timelines {
        let states = until(t, now);
        let Some((_, last)) = states.last() else {
            continue;
        };
        if !exists(last) {
            continue;
        }
        match last {
            Resource::Volume(v) => {
                out.extend(ctx.unattached_volume(t, states, v));
                out.extend(ctx.stopped_instance_volume(t, states, v));
                out.extend(ctx.gp2_to_gp3(t, states, v));
            }
            Resource::Snapshot(_) => {
                out.extend(ctx.orphan_snapshot(t, states));
                out.extend(ctx.snapshot_past_retention(t, states));
            }
            Resource::Instance(i) => {
                out.extend(ctx.previous_generation(t, states, i));
                if let Some(v) = idle.get(&t.resource_id) {
                    out.extend(ctx.idle_instance(t, states, i, v));
                }
            }
            Resource::Host(_) => {}
        }
    }
    out.retain(|f| thresholds.enabled(f.rule));
    out
}

struct Ctx<'a, B> {
    account: &'a AccountId,
    now: DateTime<Utc>,
    thresholds: &'a Thresholds,
    book: &'a B,
    /// Resource → hour start (epoch s) → its priced line.
    hours: &'a FxHashMap<&'a str, FxHashMap<i64, &'a CostLine>>,
    by_id: &'a FxHashMap<&'a str, &'a Timeline>,
    /// Stored findings to extend; `None`: amounts from `since`, no
    /// fingerprint (the first pass, which only needs `since`).
    priors: Option<&'a Priors>,
}

/// The stored finding `prior` when this evaluation may add to its
/// accrual: same episode (`since`), fully priced (an unpriced hour may be
/// priced later: a first price version applies to the hours before it),
/// accrued through an hour no later than `now`, and computed from the same
/// inputs — the states of `t` from `since` to its `accrued_through` and
/// the price versions in force then ([`fingerprint`]). A state that
/// arrived late, or a version imported after hours it applies to, changes
/// the fingerprint: the accrual is then summed again from `since`.
pub fn extendable<'p>(
    prior: Option<&'p Finding>,
    t: &Timeline,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    book: &impl PriceBook,
) -> Option<&'p Finding> {
    let p = prior?;
    let through = p.accrued_through?;
    let usable = p.since == since
        && p.unpriced_hours == 0
        && through > since
        && through <= now
        && p.accrual_digest == Some(fingerprint(t, since, through, book));
    usable.then_some(p)
}

/// Where pass 2 has to price each resource of `candidates` (the first
/// pass's findings) from: the end of its stored accrual when that can be
/// extended ([`extendable`]; no later than the last hour, whose rate
/// gives the monthly amount), else its `since` — the earliest over the
/// resource's findings.
pub fn pricing_starts<'a>(
    candidates: &'a [Finding],
    timelines: &[Timeline],
    priors: &Priors,
    now: DateTime<Utc>,
    book: &impl PriceBook,
) -> BTreeMap<&'a str, DateTime<Utc>> {
    let by_id: HashMap<&str, &Timeline> = timelines
        .iter()
        .map(|t| (t.resource_id.as_str(), t))
        .collect();
    let last_hour = now - Duration::hours(1);
    let mut start: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for f in candidates {
        let Some(t) = by_id.get(f.resource_id.as_str()) else {
            continue;
        };
        let prior = priors.get(&(f.resource_id.clone(), f.rule));
        let from = match extendable(prior, t, f.since, now, book) {
            Some(p) => p.accrued_through.unwrap_or(f.since).min(last_hour),
            None => f.since,
        };
        let s = start.entry(f.resource_id.as_str()).or_insert(from);
        *s = (*s).min(from);
    }
    start
}

/// Fingerprint of what the accrual of `t` over `[since, until)` is
/// computed from: the states in force in it (the one at `since` and every
/// later one before `until`, with their times) and the price versions in
/// force in it. std's `DefaultHasher` with its fixed keys: stable within
/// a build; after an upgrade a mismatch costs one summing from `since`.
pub fn fingerprint(
    t: &Timeline,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    book: &impl PriceBook,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let first = t
        .states
        .partition_point(|(at, _)| *at <= since)
        .saturating_sub(1);
    let end = t.states.partition_point(|(at, _)| *at < until);
    for (at, r) in t.states.get(first..end).unwrap_or_default() {
        at.timestamp_millis().hash(&mut h);
        r.hash(&mut h);
    }
    let region = price_region(t);
    let mut hour = hour_of(since);
    while hour < until {
        let Some((v, next_ms)) = book.version_span(region, hour) else {
            0u8.hash(&mut h);
            break;
        };
        v.hash(&mut h);
        match DateTime::from_timestamp_millis(next_ms) {
            Some(next) if next > hour => {
                hour = hour_of(next - Duration::seconds(1)) + Duration::hours(1)
            }
            _ => break,
        }
    }
    h.finish()
}

/// The states of a timeline in force before `now`.
fn until(t: &Timeline, now: DateTime<Utc>) -> &[(DateTime<Utc>, Resource)] {
    // Usually the whole history is before `now`: one look at the last
    // state instead of a binary search whose every probe misses the cache
    // (a state is a few hundred bytes).
    if t.states.last().is_none_or(|(at, _)| *at < now) {
        return &t.states;
    }
    let n = t.states.partition_point(|(at, _)| *at < now);
    &t.states[..n]
}

fn exists(r: &Resource) -> bool {
    match r {
        Resource::Instance(i) => !matches!(i.state.as_str(), "terminated" | "shutting-down"),
        Resource::Volume(v) => !matches!(v.state.as_str(), "deleted" | "deleting" | "error"),
        Resource::Snapshot(s) => !matches!(s.state.as_str(), "deleted" | "error"),
        Resource::Host(h) => h.allocated(),
    }
}

/// When the run of states at the end of `states` that all satisfy `holds`
/// began; `None` when the last state does not satisfy it. The history's
/// first state may be where the loaded history starts rather than the
/// true beginning: `since` is then the start of what was read.
fn streak(
    states: &[(DateTime<Utc>, Resource)],
    holds: impl Fn(&Resource) -> bool,
) -> Option<DateTime<Utc>> {
    let mut since = None;
    for (at, r) in states.iter().rev() {
        if !holds(r) {
            break;
        }
        since = Some(*at);
    }
    since
}

/// What a resource uses in a full hour in the state in force at `at`
/// (GiB of a volume or snapshot, 1 for an instance).
fn units_at(t: &Timeline, at: DateTime<Utc>) -> Option<f64> {
    let i = t.states.partition_point(|(s, _)| *s <= at).checked_sub(1)?;
    Some(match &t.states[i].1 {
        Resource::Volume(v) => v.size_gib as f64,
        Resource::Snapshot(s) => s.volume_size_gib as f64,
        Resource::Instance(_) | Resource::Host(_) => 1.0,
    })
}

/// What a resource cost over `[since, now)` from its priced hours.
struct Accrual {
    usd: f64,
    unpriced_hours: u32,
    unpriced_reason: Option<String>,
    /// USD per hour of the last hour (`now - 1 h`) at full use, or why it
    /// is unknown.
    hourly: Result<f64, String>,
}

impl<B: PriceBook> Ctx<'_, B> {
    /// Sums the priced hours of `resource` from `from` (`since`, or the
    /// end of a prior accrual, an hour boundary) to `now`, onto `acc`. The
    /// hour containing `since` counts for its share after `since` at its
    /// own rate per unit (`units_at_since`: what the resource used in a
    /// full hour then — GiB for storage, 1 for an instance). `hourly` is
    /// the last hour's rate at `units_now`.
    fn accrual(
        &self,
        resource: &str,
        since: DateTime<Utc>,
        from: DateTime<Utc>,
        units_at_since: f64,
        units_now: f64,
        mut acc: Accrual,
    ) -> Accrual {
        let lines = self.hours.get(resource);
        let last_hour = hour_of(self.now - Duration::seconds(1));
        let not_computed = |h: DateTime<Utc>| {
            // Not chrono's `format`: it parses its pattern on every call,
            // and the first pass builds this for every finding.
            use chrono::{Datelike, Timelike};
            format!(
                "hour {:04}-{:02}-{:02}T{:02}:00Z not computed",
                h.year(),
                h.month(),
                h.day(),
                h.hour()
            )
        };
        let Some(lines) = lines else {
            // No priced hour at all (the first pass, or nothing computed):
            // counted without walking the hours.
            let hours = ((self.now - hour_of(from)).num_seconds() + 3599) / 3600;
            acc.unpriced_hours += hours.max(0) as u32;
            if hours > 0 {
                let reason = not_computed(last_hour);
                acc.hourly = Err(reason.clone());
                acc.unpriced_reason = Some(reason);
            }
            return acc;
        };
        // The reason of the last hour without a line, built once.
        let mut last_missing = None;
        // The last hour is read for its rate even when a prior accrual
        // already covers it (a redelivered evaluation).
        let mut h = hour_of(from).min(last_hour);
        let first_hour = hour_of(since);
        while h < self.now {
            let counts = h >= hour_of(from);
            match lines.get(&h.timestamp()) {
                Some(l) if l.cost_usd.is_some() && l.usage > 0.0 => {
                    let cost = l.cost_usd.unwrap_or_default();
                    let per_unit = cost / l.usage;
                    if counts && h == first_hour {
                        // Usage after `since` within its hour, at most
                        // what the line used (a volume created at `since`).
                        let after = (h + Duration::hours(1)).min(self.now) - since;
                        let usage = (after.num_milliseconds() as f64 / 3_600_000.0
                            * units_at_since)
                            .min(l.usage);
                        acc.usd += per_unit * usage;
                    } else if counts {
                        // A later hour: all of it, at the size of the hour
                        // (a resize shows in the line's usage).
                        acc.usd += per_unit * l.usage;
                    }
                    if h == last_hour {
                        acc.hourly = Ok(per_unit * units_now);
                    }
                }
                Some(l) => {
                    let reason = l.missing.clone().unwrap_or_else(|| "no usage".into());
                    if h == last_hour {
                        acc.hourly = Err(reason.clone());
                    }
                    if counts {
                        acc.unpriced_hours += 1;
                        acc.unpriced_reason = Some(reason);
                        last_missing = None;
                    }
                }
                None => {
                    if counts {
                        acc.unpriced_hours += 1;
                        last_missing = Some(h);
                    }
                    if h == last_hour {
                        acc.hourly = Err(not_computed(h));
                    }
                }
            }
            h += Duration::hours(1);
        }
        if let Some(h) = last_missing {
            acc.unpriced_reason = Some(not_computed(h));
        }
        acc
    }

    /// A finding of an idle resource: its whole price is the waste.
    /// `units_now`: what the resource uses in a full hour now (GiB, or 1).
    #[allow(clippy::too_many_arguments)]
    fn idle(
        &self,
        t: &Timeline,
        kind: ResourceKind,
        rule: Rule,
        since: DateTime<Utc>,
        units_now: f64,
        action: String,
        detail: String,
    ) -> Finding {
        let prior = self.priors.and_then(|p| {
            extendable(
                p.get(&(t.resource_id.clone(), rule)),
                t,
                since,
                self.now,
                self.book,
            )
        });
        let start = Accrual {
            usd: prior.map_or(0.0, |p| p.accrued_usd),
            unpriced_hours: 0,
            unpriced_reason: None,
            hourly: Err("no priced hour".into()),
        };
        let from = prior.and_then(|p| p.accrued_through).unwrap_or(since);
        let a = self.accrual(
            &t.resource_id,
            since,
            from,
            units_at(t, since).unwrap_or(units_now),
            units_now,
            start,
        );
        Finding {
            account: self.account.clone(),
            region: t.region.clone(),
            resource_id: t.resource_id.clone(),
            kind,
            rule,
            since,
            accrued_usd: a.usd,
            unpriced_hours: a.unpriced_hours,
            unpriced_reason: a.unpriced_reason,
            accrued_through: self.priors.map(|_| self.now),
            accrual_digest: self
                .priors
                .map(|_| fingerprint(t, since, self.now, self.book)),
            monthly_usd: a.hourly.ok().map(|h| h * HOURS_PER_MONTH),
            action,
            detail,
        }
    }

    fn unattached_volume(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
        v: &VolumeFields,
    ) -> Option<Finding> {
        let since = streak(
            states,
            |r| matches!(r, Resource::Volume(v) if v.state == "available" && v.attached_instance.is_none()),
        )?;
        let limit = Duration::hours(i64::from(self.thresholds.unattached_volume_hours));
        if self.now - since <= limit {
            return None;
        }
        Some(self.idle(
            t,
            ResourceKind::Volume,
            Rule::UnattachedVolume,
            since,
            v.size_gib as f64,
            "Snapshot the volume if its data is still needed, then delete it".into(),
            format!(
                "{} GiB {} volume attached to nothing since {}",
                v.size_gib,
                v.volume_type,
                since.to_rfc3339()
            ),
        ))
    }

    fn stopped_instance_volume(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
        v: &VolumeFields,
    ) -> Option<Finding> {
        let instance = v.attached_instance.as_deref()?;
        let it = self.by_id.get(instance)?;
        let stopped = streak(
            until(it, self.now),
            |r| matches!(r, Resource::Instance(i) if matches!(i.state.as_str(), "stopped" | "stopping")),
        )?;
        let limit = Duration::days(i64::from(self.thresholds.stopped_instance_days));
        if self.now - stopped <= limit {
            return None;
        }
        let attached = streak(
            states,
            |r| matches!(r, Resource::Volume(v) if exists(r) && v.attached_instance.as_deref() == Some(instance)),
        )?;
        let since = stopped.max(attached);
        Some(self.idle(
            t,
            ResourceKind::Volume,
            Rule::StoppedInstanceVolume,
            since,
            v.size_gib as f64,
            format!(
                "Terminate {instance} if it is no longer needed (snapshot or delete its volumes), or start it again"
            ),
            format!(
                "{} GiB {} volume of instance {instance}, stopped since {}",
                v.size_gib,
                v.volume_type,
                stopped.to_rfc3339()
            ),
        ))
    }

    fn orphan_snapshot(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
    ) -> Option<Finding> {
        let Resource::Snapshot(s) = &states.last()?.1 else {
            return None;
        };
        if s.tags.get(MANAGED_TAG).is_some_and(|v| v == "true") {
            return None;
        }
        let limit = Duration::days(i64::from(self.thresholds.orphan_snapshot_days));
        if self.now - s.start_time <= limit {
            return None;
        }
        // The source volume is gone when Kopter never saw it in the account
        // (deleted before onboarding, or the `vol-ffffffff` placeholder of
        // copied snapshots) or its history ends deleted.
        let gone_at = match self.by_id.get(s.volume_id.as_str()) {
            None => None,
            Some(vt) => {
                let vs = until(vt, self.now);
                match vs.last() {
                    Some((at, r)) if !exists(r) => Some(*at),
                    Some(_) => return None,
                    None => None,
                }
            }
        };
        let since = gone_at.map_or(s.start_time, |g| g.max(s.start_time));
        Some(self.idle(
            t,
            ResourceKind::Snapshot,
            Rule::OrphanSnapshot,
            since,
            s.volume_size_gib as f64,
            "Delete the snapshot if nothing restores from it (or archive it)".into(),
            match gone_at {
                Some(g) => format!(
                    "snapshot of {} ({} GiB), deleted {}; taken {}",
                    s.volume_id,
                    s.volume_size_gib,
                    g.to_rfc3339(),
                    s.start_time.to_rfc3339()
                ),
                None => format!(
                    "snapshot of {} ({} GiB), a volume not in the account; taken {}",
                    s.volume_id,
                    s.volume_size_gib,
                    s.start_time.to_rfc3339()
                ),
            },
        ))
    }

    fn snapshot_past_retention(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
    ) -> Option<Finding> {
        let days = self.thresholds.snapshot_retention_days?;
        let Resource::Snapshot(s) = &states.last()?.1 else {
            return None;
        };
        if s.tags.get(MANAGED_TAG).is_some_and(|v| v == "true") {
            return None;
        }
        let since = s.start_time + Duration::days(i64::from(days));
        if since >= self.now {
            return None;
        }
        Some(self.idle(
            t,
            ResourceKind::Snapshot,
            Rule::SnapshotPastRetention,
            since,
            s.volume_size_gib as f64,
            format!("Delete the snapshot: it is older than the retention of {days} days"),
            format!(
                "snapshot of {} ({} GiB) taken {}",
                s.volume_id,
                s.volume_size_gib,
                s.start_time.to_rfc3339()
            ),
        ))
    }

    /// A gp2 volume that would cost less as gp3 with the same size and at
    /// least gp2's baseline: IOPS 3 per GiB (100 to 16,000), throughput
    /// 128 MiB/s up to 170 GiB and 250 MiB/s above
    /// (<https://docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html>;
    /// gp3 includes 3,000 IOPS and 125 MiB/s).
    fn gp2_to_gp3(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
        v: &VolumeFields,
    ) -> Option<Finding> {
        if v.volume_type != "gp2" {
            return None;
        }
        // Resizes keep the finding: the volume stayed gp2 all along.
        let since = streak(
            states,
            |r| matches!(r, Resource::Volume(x) if x.volume_type == "gp2" && exists(r)),
        )?;
        let region = price_region(t);
        let version = self.book.version(region, self.last_hour())?;
        let gp2 = volume_monthly(self.book, region, version, v).ok()?;
        let iops = (3 * v.size_gib).clamp(100, 16_000).max(3000);
        let throughput = if v.size_gib <= 170 { 128 } else { 250 };
        let gp3_equivalent = VolumeFields {
            volume_type: "gp3".into(),
            iops: Some(iops),
            throughput: Some(throughput),
            ..v.clone()
        };
        let gp3 = volume_monthly(self.book, region, version, &gp3_equivalent).ok()?;
        // Incomplete prices on either side cannot show a saving.
        if gp2.missing.is_some() || gp3.missing.is_some() || gp3.monthly >= gp2.monthly {
            return None;
        }
        let mut f = self.idle(
            t,
            ResourceKind::Volume,
            Rule::Gp2ToGp3,
            since,
            v.size_gib as f64,
            format!(
                "Modify the volume to gp3 ({iops} IOPS, {throughput} MiB/s): no detach or downtime"
            ),
            format!(
                "{} GiB gp2: {:.4} USD/month as gp2, {:.4} as gp3 (price version {version})",
                v.size_gib, gp2.monthly, gp3.monthly
            ),
        );
        f.monthly_usd = f.monthly_usd.map(|m| m * (1.0 - gp3.monthly / gp2.monthly));
        Some(f)
    }

    /// A running on-demand instance of a previous-generation type whose
    /// current-generation equivalent ([`current_generation`]) has a lower
    /// on-demand rate for the same operation and tenancy.
    fn previous_generation(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
        i: &InstanceFields,
    ) -> Option<Finding> {
        if i.state != "running" || i.lifecycle != "on-demand" || !i.host_id.is_empty() {
            return None;
        }
        let newer = current_generation(&i.instance_type)?;
        let since = streak(
            states,
            |r| matches!(r, Resource::Instance(x) if x.instance_type == i.instance_type && matches!(x.state.as_str(), "running" | "pending")),
        )?;
        let region = price_region(t);
        let version = self.book.version(region, self.last_hour())?;
        let tenancy = platform::offer_tenancy(&i.tenancy)?;
        let operation = if i.usage_operation.is_empty() {
            platform::usage_operation(&i.platform_details)?
        } else {
            i.usage_operation.as_str()
        };
        let rate = |ty: &str| {
            self.book
                .instance(region, version, ty, tenancy)?
                .on_demand
                .get(operation)
                .map(|e| e.usd_per_hour)
        };
        let (old, new) = (rate(&i.instance_type)?, rate(&newer)?);
        if new >= old {
            return None;
        }
        let mut f = self.idle(
            t,
            ResourceKind::Instance,
            Rule::PreviousGeneration,
            since,
            1.0,
            format!("Change the instance type to {newer} (stop, modify, start)"),
            format!(
                "{} at {old} USD/hour; {newer} at {new} USD/hour (price version {version})",
                i.instance_type
            ),
        );
        f.monthly_usd = f.monthly_usd.map(|m| m * (1.0 - new / old));
        Some(f)
    }

    /// A running instance CloudWatch found idle on most of the last 14
    /// days; since the later of its first idle day and the start of its
    /// current run.
    fn idle_instance(
        &self,
        t: &Timeline,
        states: &[(DateTime<Utc>, Resource)],
        i: &InstanceFields,
        verdict: &IdleVerdict,
    ) -> Option<Finding> {
        let IdleVerdict::Idle {
            idle_days,
            first_idle_day,
        } = verdict
        else {
            return None;
        };
        if i.state != "running" {
            return None;
        }
        let running = streak(
            states,
            |r| matches!(r, Resource::Instance(x) if matches!(x.state.as_str(), "running" | "pending")),
        )?;
        let since = running.max(*first_idle_day);
        Some(self.idle(
            t,
            ResourceKind::Instance,
            Rule::IdleInstance,
            since,
            1.0,
            "Stop or terminate the instance if nothing needs it (or move it to a smaller type)"
                .into(),
            format!(
                "{}: CPU maximum below {} % and network below {} MB a day on {idle_days} of the last 14 days (CloudWatch)",
                i.instance_type, self.thresholds.idle_cpu_percent, self.thresholds.idle_network_mb
            ),
        ))
    }

    fn last_hour(&self) -> DateTime<Utc> {
        hour_of(self.now - Duration::seconds(1))
    }
}

/// The current-generation type of the same size for a previous-generation
/// one, by family: AWS's "Amazon EC2 previous generation instances" page
/// (<https://aws.amazon.com/ec2/previous-generation/>) lists the families
/// and the upgrade path of each. Sizes that the newer family lacks are
/// found absent in the price data and yield no finding.
pub fn current_generation(instance_type: &str) -> Option<String> {
    let (family, size) = instance_type.split_once('.')?;
    let newer = match family {
        "m1" | "m3" | "m4" => "m5",
        "m2" | "r3" | "r4" => "r5",
        "c1" | "c3" | "c4" => "c5",
        "t1" | "t2" => "t3",
        "i2" => "i3",
        "d2" => "d3",
        "g2" | "g3" => "g4dn",
        "p2" => "p3",
        "x1" => "x2idn",
        _ => return None,
    };
    Some(format!("{newer}.{size}"))
}

mod apply;
pub mod idle;
pub use apply::WasteReport;

#[cfg(test)]
mod tests;
