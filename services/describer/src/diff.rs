//! From "what EC2 returned" and "what the inventory holds" to inventory
//! writes and history rows. Pure: no AWS, so the timing rules are unit
//! tested here (see `DESIGN.md`, "When a change happened").

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use kopter_schema::items::keys;
use kopter_schema::{AccountId, TenantId};

use kopter_store::inventory::{
    Change, EventRow, HostFields, InstanceFields, InventoryRow, Resource, ResourceKind, Write,
    inventory_sk,
};

/// Who and when of one describe.
#[derive(Debug, Clone)]
pub struct DiffContext {
    pub tenant: TenantId,
    pub account: AccountId,
    pub region: String,
    /// Resources that appeared at or after this are `launched`/`created`;
    /// older ones are `discovered`.
    pub onboarded_at: DateTime<Utc>,
    pub observed_at: DateTime<Utc>,
}

/// Which previous rows the observation covers: rows in scope that EC2 did
/// not return have vanished.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Everything of the region.
    Full,
    /// Only these resources (a targeted describe).
    Only(BTreeSet<(ResourceKind, String)>),
    /// Everything of the region except one kind, which was not read (the
    /// role may not list Dedicated Hosts): its rows stay as they were.
    AllBut(ResourceKind),
}

impl Scope {
    fn covers(&self, kind: ResourceKind, id: &str) -> bool {
        match self {
            Scope::Full => true,
            Scope::Only(ids) => ids.contains(&(kind, id.to_owned())),
            Scope::AllBut(skipped) => kind != *skipped,
        }
    }
}

/// How stale an unchanged resource's `last_seen` may get: it is written
/// again only when at least this old (so `last_seen` is "seen by then",
/// up to 6 hours behind the newest describe; state changes and every
/// other field are written at once).
pub const TOUCH_EVERY: chrono::Duration = chrono::Duration::hours(6);

/// Version of what [`observed_digest`] hashes: **bump it whenever the
/// diff's rules or the rows' fields change what the same observation
/// writes**, so that a release re-reads every region at once instead of
/// within [`TOUCH_EVERY`]. (The package version is hashed too, but the
/// workspace's does not move with every release.)
const DIGEST_FORMAT: u32 = 1;

/// Hex SHA-256 of a whole-region describe's result and what else the diff
/// depends on (tenant, account, region, onboarding time, scope,
/// [`DIGEST_FORMAT`]). Two describes with the same digest write the same inventory:
/// the diff compares every field it stores. Resources are hashed in
/// (kind, id) order, so EC2's page order does not matter.
pub fn observed_digest(
    ctx: &DiffContext,
    scope: &Scope,
    observed: &[(String, Resource)],
) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&(String, Resource)> = observed.iter().collect();
    sorted.sort_by(|a, b| (a.1.kind().as_str(), &a.0).cmp(&(b.1.kind().as_str(), &b.0)));
    let mut h = Sha256::new();
    let head = serde_json::json!({
        "format": DIGEST_FORMAT,
        "package": env!("CARGO_PKG_VERSION"),
        "tenant": ctx.tenant,
        "account": ctx.account,
        "region": ctx.region,
        "onboarded_at": ctx.onboarded_at,
        "scope": format!("{scope:?}"),
    });
    h.update(head.to_string().as_bytes());
    for (id, r) in sorted {
        h.update(b"\n");
        h.update(id.as_bytes());
        h.update(b"\t");
        // Serializing a resource cannot fail (plain fields and maps).
        h.update(serde_json::to_vec(r).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Until when a region's digest may stand in for reading its inventory:
/// the oldest `last_seen` among the observed resources' rows after
/// `writes` (a written or touched row is seen at `observed_at`), plus
/// [`TOUCH_EVERY`], so a row due for a touch is still touched on time.
pub fn digest_valid_until(
    ctx: &DiffContext,
    previous: &HashMap<String, InventoryRow>,
    writes: &[Write],
    observed_sks: &[String],
) -> DateTime<Utc> {
    let written: BTreeSet<&str> = writes
        .iter()
        .map(|w| match w {
            Write::Touch { sk } => sk.as_str(),
            Write::Put { row, .. } => row.sk.as_str(),
        })
        .collect();
    observed_sks
        .iter()
        .map(|sk| match previous.get(sk) {
            Some(p) if !written.contains(sk.as_str()) => p.last_seen,
            _ => ctx.observed_at,
        })
        .min()
        .unwrap_or(ctx.observed_at)
        + TOUCH_EVERY
}

/// Observed resources (`id`, state) against the previous rows of the
/// region, keyed by sort key.
pub fn diff(
    ctx: &DiffContext,
    previous: &HashMap<String, InventoryRow>,
    observed: Vec<(String, Resource)>,
    scope: &Scope,
) -> Vec<Write> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (id, current) in observed {
        let sk = inventory_sk(&ctx.region, current.kind(), &id);
        seen.insert(sk.clone());
        let prev = previous.get(&sk).filter(|p| !p.gone);
        let changes = match prev {
            None => first_sight(ctx, &current),
            Some(p) => changes(ctx, p, &current),
        };
        let fields_same = prev.is_some_and(|p| p.resource == current);
        if changes.is_empty() && fields_same {
            // `last_seen` moves only when TOUCH_EVERY old: a touch per
            // unchanged resource per describe was most of the describer's
            // writes (issue 23).
            if prev.is_some_and(|p| ctx.observed_at - p.last_seen >= TOUCH_EVERY) {
                out.push(Write::Touch { sk });
            }
            continue;
        }
        out.push(put(
            ctx,
            previous.get(&sk),
            &id,
            sk,
            current,
            changes,
            false,
        ));
    }
    for (sk, prev) in previous {
        if seen.contains(sk) || prev.gone || !scope.covers(prev.kind(), &prev.resource_id) {
            continue;
        }
        let mut last = prev.resource.clone();
        let change = match &mut last {
            Resource::Instance(i) => {
                i.state = "terminated".into();
                Change::Gone
            }
            Resource::Volume(v) => {
                v.state = "deleted".into();
                v.attached_instance = None;
                Change::Deleted
            }
            Resource::Snapshot(s) => {
                s.state = "deleted".into();
                Change::Deleted
            }
            Resource::Host(h) => {
                h.state = "released".into();
                h.instance_ids.clear();
                Change::Deleted
            }
        };
        let already_deleted = match &prev.resource {
            Resource::Instance(_) => false,
            Resource::Host(h) => !h.allocated(),
            _ => prev.state() == "deleted",
        };
        let changes = if already_deleted {
            vec![]
        } else {
            vec![(change, ctx.observed_at, last.clone())]
        };
        out.push(put(
            ctx,
            Some(prev),
            &prev.resource_id,
            sk.clone(),
            last,
            changes,
            true,
        ));
    }
    out
}

fn put(
    ctx: &DiffContext,
    prev: Option<&InventoryRow>,
    id: &str,
    sk: String,
    resource: Resource,
    changes: Vec<(Change, DateTime<Utc>, Resource)>,
    gone: bool,
) -> Write {
    let prev_at = prev.and_then(|p| p.last_change_at);
    let mut floor = prev_at;
    let events: Vec<EventRow> = changes
        .into_iter()
        .map(|(change, at, state)| {
            // History of one resource is strictly increasing in time, so
            // no row can overwrite an earlier one's key.
            let at = match floor {
                Some(f) if at <= f => f + Duration::milliseconds(1),
                _ => at,
            };
            floor = Some(at);
            EventRow::new(
                &ctx.tenant,
                &ctx.account,
                &ctx.region,
                id,
                change,
                at,
                ctx.observed_at,
                state,
            )
        })
        .collect();
    let mut unpublished: Vec<String> = prev.map(|p| p.unpublished.clone()).unwrap_or_default();
    unpublished.extend(events.iter().map(|e| e.sk.clone()));
    let row = InventoryRow {
        pk: keys::tenant_account(&ctx.tenant, &ctx.account),
        sk,
        tenant: ctx.tenant.clone(),
        account: ctx.account.clone(),
        region: ctx.region.clone(),
        resource_id: id.to_owned(),
        gone,
        first_seen: prev.map_or(ctx.observed_at, |p| p.first_seen),
        last_seen: if gone {
            prev.map_or(ctx.observed_at, |p| p.last_seen)
        } else {
            ctx.observed_at
        },
        last_change_at: events.last().map(|e| e.at).or(prev_at),
        version: prev.map_or(1, |p| p.version + 1),
        unpublished,
        resource,
    };
    Write::Put {
        row: Box::new(row),
        expected_version: prev.map(|p| p.version),
        events,
    }
}

/// The time in a `StateTransitionReason` such as
/// `User initiated (2024-01-01 10:00:00 GMT)`.
pub fn reason_time(reason: &str) -> Option<DateTime<Utc>> {
    let start = reason.rfind('(')?;
    let inner = reason[start + 1..].strip_suffix(')')?;
    let inner = inner
        .strip_suffix(" GMT")
        .or_else(|| inner.strip_suffix(" UTC"))?;
    NaiveDateTime::parse_from_str(inner.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

fn is_up(state: &str) -> bool {
    matches!(state, "pending" | "running")
}

fn is_ending(state: &str) -> bool {
    matches!(state, "shutting-down" | "terminated")
}

/// The time of a transition into a non-running state: the reason's time
/// if it is after `after` and not in the future, else the observation.
fn down_time(
    i: &InstanceFields,
    after: Option<DateTime<Utc>>,
    observed: DateTime<Utc>,
) -> DateTime<Utc> {
    reason_time(&i.state_transition_reason)
        .filter(|t| *t <= observed && after.is_none_or(|a| *t > a))
        .unwrap_or(observed)
}

fn down_change(prev_state: Option<&str>, state: &str) -> Change {
    if is_ending(state) && !prev_state.is_some_and(is_ending) {
        Change::Terminated
    } else {
        Change::StateChanged
    }
}

fn as_running(i: &InstanceFields) -> Resource {
    let mut up = i.clone();
    up.state = "running".into();
    Resource::Instance(up)
}

fn first_sight(ctx: &DiffContext, current: &Resource) -> Vec<(Change, DateTime<Utc>, Resource)> {
    let obs = ctx.observed_at;
    let new_or = |t: Option<DateTime<Utc>>, new: Change| match t {
        Some(t) if t >= ctx.onboarded_at => new,
        _ => Change::Discovered,
    };
    match current {
        Resource::Instance(i) => {
            let launch = i.launch_time.map(|t| t.min(obs));
            let base = new_or(launch, Change::Launched);
            if is_up(&i.state) {
                return vec![(base, launch.unwrap_or(obs), current.clone())];
            }
            let down = down_time(i, launch, obs);
            match launch {
                // Launched (since onboarding) and already stopped or
                // terminated when first seen: it ran from launch until then.
                Some(l) if base == Change::Launched && l < down => vec![
                    (Change::Launched, l, as_running(i)),
                    (
                        down_change(Some("running"), &i.state),
                        down,
                        current.clone(),
                    ),
                ],
                _ => vec![(base, down, current.clone())],
            }
        }
        Resource::Volume(v) => {
            let created = v.create_time.map(|t| t.min(obs));
            vec![(
                new_or(created, Change::Created),
                created.unwrap_or(obs),
                current.clone(),
            )]
        }
        Resource::Snapshot(s) => {
            let started = s.start_time.min(obs);
            vec![(
                new_or(Some(started), Change::Created),
                started,
                current.clone(),
            )]
        }
        Resource::Host(h) => {
            let allocated = h.allocation_time.map(|t| t.min(obs));
            let base = new_or(allocated, Change::Created);
            let released = release_time(h, allocated, obs);
            match (allocated, released) {
                // Allocated since onboarding and already released when
                // first seen: billed from allocation until release.
                (Some(a), Some(r)) if base == Change::Created && a < r => {
                    let mut up = h.clone();
                    up.state = "available".into();
                    vec![
                        (Change::Created, a, Resource::Host(up)),
                        (Change::Deleted, r, current.clone()),
                    ]
                }
                (_, Some(r)) => vec![(base, r, current.clone())],
                (a, None) => vec![(base, a.unwrap_or(obs), current.clone())],
            }
        }
    }
}

/// When a released host was released: EC2's `ReleaseTime` if it is after
/// `after` and not in the future, else the observation. `None` while the
/// host is allocated.
fn release_time(
    h: &HostFields,
    after: Option<DateTime<Utc>>,
    observed: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if h.allocated() {
        return None;
    }
    Some(
        h.release_time
            .filter(|t| *t <= observed && after.is_none_or(|a| *t > a))
            .unwrap_or(observed),
    )
}

fn changes(
    ctx: &DiffContext,
    prev: &InventoryRow,
    current: &Resource,
) -> Vec<(Change, DateTime<Utc>, Resource)> {
    let obs = ctx.observed_at;
    let prev_at = prev.last_change_at;
    match (&prev.resource, current) {
        (Resource::Instance(p), Resource::Instance(c)) => {
            let restarted = matches!((p.launch_time, c.launch_time), (Some(a), Some(b)) if b > a);
            let launch = c.launch_time.map(|t| t.min(obs));
            if is_up(&c.state) && (!is_up(&p.state) || restarted) {
                // Started again: EC2's LaunchTime is the start time.
                let at = launch
                    .filter(|l| prev_at.is_none_or(|a| *l > a))
                    .unwrap_or(obs);
                return vec![(Change::StateChanged, at, current.clone())];
            }
            if !is_up(&c.state) && (c.state != p.state || restarted) {
                let mut out = Vec::new();
                let mut after = prev_at;
                if restarted && !is_up(&p.state) {
                    // Started and stopped again between two describes.
                    if let Some(l) = launch.filter(|l| prev_at.is_none_or(|a| *l > a)) {
                        out.push((Change::StateChanged, l, as_running(c)));
                        after = Some(l);
                    }
                }
                let prev_state = if out.is_empty() {
                    p.state.as_str()
                } else {
                    "running"
                };
                out.push((
                    down_change(Some(prev_state), &c.state),
                    down_time(c, after, obs),
                    current.clone(),
                ));
                return out;
            }
            if c.state != p.state {
                // pending → running, or the like: no new time information.
                return vec![(Change::StateChanged, obs, current.clone())];
            }
            if c.instance_type != p.instance_type {
                return vec![(Change::TypeChanged, obs, current.clone())];
            }
            vec![]
        }
        (Resource::Volume(p), Resource::Volume(c)) => {
            let deleted = |s: &str| matches!(s, "deleting" | "deleted");
            if deleted(&c.state) && !deleted(&p.state) {
                return vec![(Change::Deleted, obs, current.clone())];
            }
            if (&p.volume_type, p.size_gib, p.iops, p.throughput)
                != (&c.volume_type, c.size_gib, c.iops, c.throughput)
            {
                return vec![(Change::Resized, obs, current.clone())];
            }
            if p.state != c.state || p.attached_instance != c.attached_instance {
                return vec![(Change::StateChanged, obs, current.clone())];
            }
            vec![]
        }
        (Resource::Snapshot(p), Resource::Snapshot(c)) => {
            if p.state != c.state {
                return vec![(Change::StateChanged, obs, current.clone())];
            }
            vec![]
        }
        (Resource::Host(p), Resource::Host(c)) => {
            if p.allocated() && !c.allocated() {
                let at = release_time(c, prev_at, obs).unwrap_or(obs);
                return vec![(Change::Deleted, at, current.clone())];
            }
            if p.instance_family != c.instance_family {
                // ModifyHosts: the host is now priced as another family.
                return vec![(Change::TypeChanged, obs, current.clone())];
            }
            if p.state != c.state {
                return vec![(Change::StateChanged, obs, current.clone())];
            }
            // Instances placed or removed: the row is updated, no history
            // (the host's price does not depend on them).
            vec![]
        }
        // The same sort key always has the same kind.
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use kopter_store::inventory::{SnapshotFields, VolumeFields};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn ctx(observed: &str) -> DiffContext {
        DiffContext {
            tenant: TenantId::new("acme").unwrap(),
            account: AccountId::new("111122223333").unwrap(),
            region: "eu-west-1".into(),
            onboarded_at: t("2024-01-01T00:00:00Z"),
            observed_at: t(observed),
        }
    }

    fn inst(state: &str, launch: &str, reason: &str) -> Resource {
        Resource::Instance(InstanceFields {
            state: state.into(),
            instance_type: "t3.micro".into(),
            usage_operation: "RunInstances".into(),
            platform_details: "Linux/UNIX".into(),
            tenancy: "default".into(),
            lifecycle: "on-demand".into(),
            availability_zone: "eu-west-1a".into(),
            launch_time: Some(t(launch)),
            state_transition_reason: reason.into(),
            tags: BTreeMap::new(),
            volume_ids: vec![],
            zone: Default::default(),
            host_id: String::new(),
            capacity_reservation_id: String::new(),
        })
    }

    /// Applies writes to a map, as the store would.
    fn apply(prev: &mut HashMap<String, InventoryRow>, writes: &[Write]) -> Vec<EventRow> {
        let mut events = Vec::new();
        for w in writes {
            if let Write::Put { row, events: e, .. } = w {
                prev.insert(row.sk.clone(), (**row).clone());
                events.extend(e.iter().cloned());
            }
        }
        events
    }

    fn step(
        inv: &mut HashMap<String, InventoryRow>,
        c: &DiffContext,
        observed: Vec<(String, Resource)>,
        scope: &Scope,
    ) -> Vec<EventRow> {
        let w = diff(c, inv, observed, scope);
        apply(inv, &w)
    }

    fn summary(events: &[EventRow]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.change.to_string(),
                    kopter_store::inventory::fixed_time(e.at),
                    e.resource.state().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn reason_times_parse() {
        assert_eq!(
            reason_time("User initiated (2024-01-01 10:00:00 GMT)"),
            Some(t("2024-01-01T10:00:00Z"))
        );
        assert_eq!(
            reason_time("Service initiated (2024-02-29 23:59:59 GMT)"),
            Some(t("2024-02-29T23:59:59Z"))
        );
        assert_eq!(reason_time(""), None);
        assert_eq!(reason_time("User initiated"), None);
        assert_eq!(reason_time("User initiated (garbage GMT)"), None);
    }

    #[test]
    fn running_instance_history_follows_launch_stop_start_terminate() {
        let mut inv = HashMap::new();
        // First describe: launched at 10:00 (after onboarding), seen 10:30.
        let w = diff(
            &ctx("2024-03-01T10:30:00Z"),
            &inv,
            vec![("i-1".into(), inst("running", "2024-03-01T10:00:00Z", ""))],
            &Scope::Full,
        );
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [(
                "launched".into(),
                "2024-03-01T10:00:00.000Z".into(),
                "running".into()
            )]
        );
        // Same observation an hour later: nothing written; six hours after
        // the last write, only a touch.
        let w = diff(
            &ctx("2024-03-01T11:30:00Z"),
            &inv,
            vec![("i-1".into(), inst("running", "2024-03-01T10:00:00Z", ""))],
            &Scope::Full,
        );
        assert!(w.is_empty(), "{w:?}");
        let w = diff(
            &ctx("2024-03-01T16:30:00Z"),
            &inv,
            vec![("i-1".into(), inst("running", "2024-03-01T10:00:00Z", ""))],
            &Scope::Full,
        );
        assert!(matches!(w.as_slice(), [Write::Touch { .. }]));
        // Stopped at 11:45 (from the reason), seen 12:30.
        let w = diff(
            &ctx("2024-03-01T12:30:00Z"),
            &inv,
            vec![(
                "i-1".into(),
                inst(
                    "stopped",
                    "2024-03-01T10:00:00Z",
                    "User initiated (2024-03-01 11:45:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [(
                "state_changed".into(),
                "2024-03-01T11:45:00.000Z".into(),
                "stopped".into()
            )]
        );
        // Started at 13:10 and stopped at 13:20 between two describes.
        let w = diff(
            &ctx("2024-03-01T13:30:00Z"),
            &inv,
            vec![(
                "i-1".into(),
                inst(
                    "stopped",
                    "2024-03-01T13:10:00Z",
                    "User initiated (2024-03-01 13:20:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [
                (
                    "state_changed".into(),
                    "2024-03-01T13:10:00.000Z".into(),
                    "running".into()
                ),
                (
                    "state_changed".into(),
                    "2024-03-01T13:20:00.000Z".into(),
                    "stopped".into()
                ),
            ]
        );
        // Terminated at 14:05.
        let w = diff(
            &ctx("2024-03-01T14:30:00Z"),
            &inv,
            vec![(
                "i-1".into(),
                inst(
                    "terminated",
                    "2024-03-01T13:10:00Z",
                    "User initiated (2024-03-01 14:05:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [(
                "terminated".into(),
                "2024-03-01T14:05:00.000Z".into(),
                "terminated".into()
            )]
        );
        // An hour later EC2 no longer returns it.
        let w = diff(&ctx("2024-03-01T15:30:00Z"), &inv, vec![], &Scope::Full);
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [(
                "gone".into(),
                "2024-03-01T15:30:00.000Z".into(),
                "terminated".into()
            )]
        );
        let row = inv.values().next().unwrap();
        assert!(row.gone);
        assert_eq!(row.last_seen, t("2024-03-01T14:30:00Z"));
        assert_eq!(row.version, 5);
        // Gone stays gone: nothing more.
        let w = diff(&ctx("2024-03-01T16:30:00Z"), &inv, vec![], &Scope::Full);
        assert!(w.is_empty());
    }

    #[test]
    fn launched_and_stopped_between_describes_ran_in_between() {
        let w = diff(
            &ctx("2024-03-01T11:00:00Z"),
            &HashMap::new(),
            vec![(
                "i-2".into(),
                inst(
                    "terminated",
                    "2024-03-01T10:10:00Z",
                    "User initiated (2024-03-01 10:40:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        let mut inv = HashMap::new();
        let ev = apply(&mut inv, &w);
        assert_eq!(
            summary(&ev),
            [
                (
                    "launched".into(),
                    "2024-03-01T10:10:00.000Z".into(),
                    "running".into()
                ),
                (
                    "terminated".into(),
                    "2024-03-01T10:40:00.000Z".into(),
                    "terminated".into()
                ),
            ]
        );
    }

    #[test]
    fn instances_older_than_the_onboarding_are_discovered() {
        let w = diff(
            &ctx("2024-03-01T11:00:00Z"),
            &HashMap::new(),
            vec![
                ("i-old".into(), inst("running", "2023-06-01T00:00:00Z", "")),
                (
                    "i-stopped".into(),
                    inst(
                        "stopped",
                        "2023-06-01T00:00:00Z",
                        "User initiated (2023-07-01 00:00:00 GMT)",
                    ),
                ),
                (
                    "i-noreason".into(),
                    inst("stopped", "2023-06-01T00:00:00Z", ""),
                ),
            ],
            &Scope::Full,
        );
        let mut inv = HashMap::new();
        let mut ev = apply(&mut inv, &w);
        ev.sort_by(|a, b| a.resource_id.cmp(&b.resource_id));
        assert_eq!(
            summary(&ev),
            [
                (
                    "discovered".into(),
                    "2024-03-01T11:00:00.000Z".into(),
                    "stopped".into()
                ),
                (
                    "discovered".into(),
                    "2023-06-01T00:00:00.000Z".into(),
                    "running".into()
                ),
                (
                    "discovered".into(),
                    "2023-07-01T00:00:00.000Z".into(),
                    "stopped".into()
                ),
            ]
        );
    }

    #[test]
    fn type_changes_and_times_never_go_backwards() {
        let mut inv = HashMap::new();
        let c = ctx("2024-03-01T10:30:00Z");
        step(
            &mut inv,
            &c,
            vec![(
                "i-1".into(),
                inst(
                    "stopped",
                    "2023-01-01T00:00:00Z",
                    "User initiated (2024-03-01 10:00:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        let mut bigger = inst(
            "stopped",
            "2023-01-01T00:00:00Z",
            "User initiated (2024-03-01 10:00:00 GMT)",
        );
        if let Resource::Instance(i) = &mut bigger {
            i.instance_type = "m5.xlarge".into();
        }
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T11:30:00Z"),
            vec![("i-1".into(), bigger)],
            &Scope::Full,
        );
        assert_eq!(
            summary(&ev),
            [(
                "type_changed".into(),
                "2024-03-01T11:30:00.000Z".into(),
                "stopped".into()
            )]
        );
        // A reason time older than the last row cannot reorder history.
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T12:30:00Z"),
            vec![(
                "i-1".into(),
                inst(
                    "terminated",
                    "2023-01-01T00:00:00Z",
                    "User initiated (2024-03-01 09:00:00 GMT)",
                ),
            )],
            &Scope::Full,
        );
        assert_eq!(ev[0].at, t("2024-03-01T12:30:00Z"));
    }

    fn host(state: &str, family: &str, instances: &[&str], released: Option<&str>) -> Resource {
        Resource::Host(HostFields {
            state: state.into(),
            instance_family: family.into(),
            instance_type: String::new(),
            availability_zone: "eu-west-1a".into(),
            allocation_time: Some(t("2024-03-01T10:00:00Z")),
            release_time: released.map(t),
            instance_ids: instances.iter().map(|i| i.to_string()).collect(),
            tags: BTreeMap::new(),
            zone: Default::default(),
        })
    }

    /// A host is billed from allocation to release: history rows at those
    /// times (EC2's `AllocationTime` / `ReleaseTime`), a family change
    /// (ModifyHosts) is a type change, instances placed on it are not
    /// history, and a host that vanishes is released when last seen.
    #[test]
    fn hosts_from_allocation_to_release() {
        let mut inv = HashMap::new();
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T10:30:00Z"),
            vec![("h-1".into(), host("available", "mac1", &[], None))],
            &Scope::Full,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].change, ev[0].at),
            (Change::Created, t("2024-03-01T10:00:00Z"))
        );
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T11:30:00Z"),
            vec![("h-1".into(), host("available", "mac1", &["i-1"], None))],
            &Scope::Full,
        );
        assert!(ev.is_empty(), "{ev:?}");
        let Resource::Host(h) = &inv["eu-west-1#host#h-1"].resource else {
            panic!("not a host")
        };
        assert_eq!(h.instance_ids, ["i-1"]);
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T12:30:00Z"),
            vec![("h-1".into(), host("available", "mac2", &[], None))],
            &Scope::Full,
        );
        assert_eq!(ev[0].change, Change::TypeChanged);
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T13:30:00Z"),
            vec![(
                "h-1".into(),
                host("released", "mac2", &[], Some("2024-03-01T13:10:00Z")),
            )],
            &Scope::Full,
        );
        assert_eq!(
            (ev[0].change, ev[0].at),
            (Change::Deleted, t("2024-03-01T13:10:00Z"))
        );
        // Gone from DescribeHosts later: already released, nothing new.
        let ev = step(&mut inv, &ctx("2024-03-02T13:30:00Z"), vec![], &Scope::Full);
        assert!(ev.is_empty(), "{ev:?}");

        // Allocated and released between two describes.
        let mut inv = HashMap::new();
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T12:00:00Z"),
            vec![(
                "h-2".into(),
                host("released", "m5", &[], Some("2024-03-01T11:00:00Z")),
            )],
            &Scope::Full,
        );
        let got: Vec<_> = ev
            .iter()
            .map(|e| (e.change, e.at, e.resource.state().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Change::Created,
                    t("2024-03-01T10:00:00Z"),
                    "available".to_string()
                ),
                (
                    Change::Deleted,
                    t("2024-03-01T11:00:00Z"),
                    "released".to_string()
                ),
            ]
        );

        // Vanished while allocated: released when last looked for.
        let mut inv = HashMap::new();
        step(
            &mut inv,
            &ctx("2024-03-01T10:30:00Z"),
            vec![("h-3".into(), host("available", "m5", &[], None))],
            &Scope::Full,
        );
        // Hosts not read this time (role without ec2:DescribeHosts): kept.
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T11:30:00Z"),
            vec![],
            &Scope::AllBut(ResourceKind::Host),
        );
        assert!(ev.is_empty(), "{ev:?}");
        let ev = step(&mut inv, &ctx("2024-03-01T12:30:00Z"), vec![], &Scope::Full);
        assert_eq!(
            (ev[0].change, ev[0].at),
            (Change::Deleted, t("2024-03-01T12:30:00Z"))
        );
        assert_eq!(ev[0].resource.state(), "released");
    }

    #[test]
    fn targeted_scope_only_retires_named_resources() {
        let mut inv = HashMap::new();
        apply(
            &mut inv,
            &diff(
                &ctx("2024-03-01T10:30:00Z"),
                &HashMap::new(),
                vec![
                    ("i-1".into(), inst("running", "2024-03-01T10:00:00Z", "")),
                    ("i-2".into(), inst("running", "2024-03-01T10:00:00Z", "")),
                ],
                &Scope::Full,
            ),
        );
        let scope = Scope::Only(BTreeSet::from([(ResourceKind::Instance, "i-1".into())]));
        let w = diff(&ctx("2024-03-01T10:40:00Z"), &inv, vec![], &scope);
        assert_eq!(w.len(), 1);
        let Write::Put { row, events, .. } = &w[0] else {
            panic!("expected a put")
        };
        assert_eq!(row.resource_id, "i-1");
        assert_eq!(events[0].change, Change::Gone);
    }

    #[test]
    fn volumes_and_snapshots() {
        let vol = |state: &str, size: i64, att: Option<&str>| {
            Resource::Volume(VolumeFields {
                state: state.into(),
                volume_type: "gp3".into(),
                size_gib: size,
                iops: Some(3000),
                throughput: Some(125),
                attached_instance: att.map(Into::into),
                availability_zone: "eu-west-1a".into(),
                create_time: Some(t("2024-03-01T10:00:00Z")),
                tags: BTreeMap::new(),
                zone: Default::default(),
            })
        };
        let snap = |state: &str| {
            Resource::Snapshot(SnapshotFields {
                state: state.into(),
                volume_size_gib: 8,
                start_time: t("2023-12-01T00:00:00Z"),
                volume_id: "vol-1".into(),
                tags: BTreeMap::new(),
            })
        };
        let mut inv = HashMap::new();
        let ev = apply(
            &mut inv,
            &diff(
                &ctx("2024-03-01T10:30:00Z"),
                &HashMap::new(),
                vec![
                    ("vol-1".into(), vol("available", 8, None)),
                    ("snap-1".into(), snap("pending")),
                ],
                &Scope::Full,
            ),
        );
        let mut s = summary(&ev);
        s.sort();
        assert_eq!(
            s,
            [
                (
                    "created".into(),
                    "2024-03-01T10:00:00.000Z".into(),
                    "available".into()
                ),
                (
                    "discovered".into(),
                    "2023-12-01T00:00:00.000Z".into(),
                    "pending".into()
                ),
            ]
        );
        let ev = step(
            &mut inv,
            &ctx("2024-03-01T11:30:00Z"),
            vec![
                ("vol-1".into(), vol("in-use", 16, Some("i-1"))),
                ("snap-1".into(), snap("completed")),
            ],
            &Scope::Full,
        );
        let mut s = summary(&ev);
        s.sort();
        assert_eq!(
            s,
            [
                (
                    "resized".into(),
                    "2024-03-01T11:30:00.000Z".into(),
                    "in-use".into()
                ),
                (
                    "state_changed".into(),
                    "2024-03-01T11:30:00.000Z".into(),
                    "completed".into()
                ),
            ]
        );
        let ev = step(&mut inv, &ctx("2024-03-01T12:30:00Z"), vec![], &Scope::Full);
        let mut s = summary(&ev);
        s.sort();
        assert_eq!(
            s,
            [
                (
                    "deleted".into(),
                    "2024-03-01T12:30:00.000Z".into(),
                    "deleted".into()
                ),
                (
                    "deleted".into(),
                    "2024-03-01T12:30:00.000Z".into(),
                    "deleted".into()
                ),
            ]
        );
        assert!(inv.values().all(|r| r.gone));
        // Unpublished keys accumulate until the store clears them.
        assert_eq!(inv.values().next().unwrap().unpublished.len(), 3);
    }

    #[test]
    fn a_digest_names_the_observation_not_its_order_or_time() {
        let a = (
            "i-1".to_owned(),
            inst("running", "2024-03-01T10:00:00Z", ""),
        );
        let b = (
            "i-2".to_owned(),
            inst("stopped", "2024-03-01T09:00:00Z", ""),
        );
        let c1 = ctx("2024-03-01T11:00:00Z");
        let d = observed_digest(&c1, &Scope::Full, &[a.clone(), b.clone()]);
        assert_eq!(d.len(), 64);
        // EC2's order and the describe's time do not matter.
        let c2 = ctx("2024-03-01T12:00:00Z");
        assert_eq!(
            d,
            observed_digest(&c2, &Scope::Full, &[b.clone(), a.clone()])
        );
        // Any field, the set, the scope, the onboarding time and the
        // region do.
        let stopped = (
            "i-1".to_owned(),
            inst("stopped", "2024-03-01T10:00:00Z", ""),
        );
        assert_ne!(d, observed_digest(&c1, &Scope::Full, &[stopped, b.clone()]));
        assert_ne!(
            d,
            observed_digest(&c1, &Scope::Full, std::slice::from_ref(&a))
        );
        assert_ne!(
            d,
            observed_digest(
                &c1,
                &Scope::AllBut(ResourceKind::Host),
                &[a.clone(), b.clone()]
            )
        );
        let mut later = c1.clone();
        later.onboarded_at = t("2024-02-01T00:00:00Z");
        assert_ne!(
            d,
            observed_digest(&later, &Scope::Full, &[a.clone(), b.clone()])
        );
        let mut other = c1.clone();
        other.region = "eu-west-2".into();
        assert_ne!(d, observed_digest(&other, &Scope::Full, &[a, b]));
    }

    /// What the digest relies on: once a diff's writes are applied, the
    /// same observation writes nothing until a row is due for a touch, and
    /// `digest_valid_until` is exactly when the first one is.
    #[test]
    fn a_reconciled_observation_writes_nothing_until_its_digest_expires() {
        let observed = vec![
            (
                "i-1".to_owned(),
                inst("running", "2024-03-01T10:00:00Z", ""),
            ),
            (
                "i-2".to_owned(),
                inst("stopped", "2024-03-01T09:00:00Z", ""),
            ),
        ];
        let sks: Vec<String> = observed
            .iter()
            .map(|(id, r)| inventory_sk("eu-west-1", r.kind(), id))
            .collect();
        let mut inv = HashMap::new();
        let c = ctx("2024-03-01T10:30:00Z");
        let writes = diff(&c, &inv, observed.clone(), &Scope::Full);
        let until = digest_valid_until(&c, &inv, &writes, &sks);
        assert_eq!(until, t("2024-03-01T16:30:00Z"));
        apply(&mut inv, &writes);
        // The same observation at 12:00 writes nothing and keeps the
        // validity.
        let c = ctx("2024-03-01T12:00:00Z");
        let w = diff(&c, &inv, observed.clone(), &Scope::Full);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(digest_valid_until(&c, &inv, &w, &sks), until);
        // Just before it, still nothing; at it, the touches.
        let c = ctx("2024-03-01T16:29:59Z");
        assert!(diff(&c, &inv, observed.clone(), &Scope::Full).is_empty());
        let c = ctx("2024-03-01T16:30:00Z");
        let w = diff(&c, &inv, observed, &Scope::Full);
        assert_eq!(w.len(), 2);
        assert!(w.iter().all(|w| matches!(w, Write::Touch { .. })));
        // After the touches, the next expiry is six hours on.
        assert_eq!(
            digest_valid_until(&c, &inv, &w, &sks),
            t("2024-03-01T22:30:00Z")
        );
        // An empty region: six hours from the describe.
        assert_eq!(
            digest_valid_until(&c, &HashMap::new(), &[], &[]),
            t("2024-03-01T22:30:00Z")
        );
    }

    #[test]
    fn the_oldest_unwritten_row_sets_the_digest_expiry() {
        let observed = vec![
            (
                "i-1".to_owned(),
                inst("running", "2024-03-01T10:00:00Z", ""),
            ),
            (
                "i-2".to_owned(),
                inst("running", "2024-03-01T10:00:00Z", ""),
            ),
        ];
        let sks: Vec<String> = observed
            .iter()
            .map(|(id, r)| inventory_sk("eu-west-1", r.kind(), id))
            .collect();
        let mut inv = HashMap::new();
        let first = diff(
            &ctx("2024-03-01T10:30:00Z"),
            &inv,
            observed.clone(),
            &Scope::Full,
        );
        apply(&mut inv, &first);
        // i-1 last seen 10:30, i-2 touched at 12:00: i-1 is due first.
        inv.get_mut(&sks[1]).unwrap().last_seen = t("2024-03-01T12:00:00Z");
        let c = ctx("2024-03-01T13:00:00Z");
        let w = diff(&c, &inv, observed.clone(), &Scope::Full);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            digest_valid_until(&c, &inv, &w, &sks),
            t("2024-03-01T16:30:00Z")
        );
        // A row written now counts as seen now; the other one decides.
        let w = vec![Write::Touch { sk: sks[0].clone() }];
        assert_eq!(
            digest_valid_until(&c, &inv, &w, &sks),
            t("2024-03-01T18:00:00Z")
        );
    }
}
