//! Hand-checked waste findings: each amount worked out in a comment. The
//! lines come from the real engine (`price_timeline`) over the fixture's
//! history, as in the aggregator.
//!
//! May 2025 has 31 days = 744 hours, so a GB-month price P costs P/744
//! per GiB-hour in May.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use kopter_schema::AccountId;
use kopter_store::inventory::{InstanceFields, Resource, SnapshotFields, VolumeFields};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, StoredCounts,
};
use kopter_store::waste::{Finding, Rule, Thresholds};

use super::*;
use crate::engine::{MemoryBook, Timeline, price_timeline};

const R: &str = "us-east-1";
const V1: &str = "20250501000000";
const V2: &str = "20250515120000";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn ebs(version: &str, volume: &str, kind: &str, price: f64) -> EbsPriceItem {
    EbsPriceItem {
        pk: String::new(),
        sk: String::new(),
        region: R.into(),
        version: version.into(),
        volume_api_name: volume.into(),
        kind: kind.into(),
        usage_type: format!("EBS:{volume}.{kind}"),
        usd_per_unit: price,
        unit: String::new(),
        effective: String::new(),
        begin_range: 0.0,
        end_range: None,
    }
}

fn instance_prices(version: &str, ty: &str, usd: f64) -> InstancePrices {
    InstancePrices {
        pk: String::new(),
        sk: String::new(),
        region: R.into(),
        version: version.into(),
        instance_type: ty.into(),
        tenancy: "Shared".into(),
        on_demand: BTreeMap::from([(
            "RunInstances".to_string(),
            OnDemandEntry {
                usd_per_hour: usd,
                operating_system: "Linux".into(),
                license_model: "No License required".into(),
                pre_installed_sw: "NA".into(),
                effective: String::new(),
            },
        )]),
        reserved: BTreeMap::new(),
    }
}

/// V1 from May 1st: gp3 0.08, gp2 0.10, snapshots 0.05 per GB-month;
/// m4.large 0.10, m5.large 0.096, t2.micro 0.0116 (no t3.micro row).
/// V2 from May 15th 12:00: gp3 storage 0.10 (`gp3_v2`: `None` = no gp3
/// storage price at all in V2), the rest unchanged.
fn book(gp3_v2: Option<f64>) -> MemoryBook {
    let mut b = MemoryBook::default();
    b.versions.insert(
        R.into(),
        [(V1, "2025-05-01T00:00:00Z"), (V2, "2025-05-15T12:00:00Z")]
            .into_iter()
            .map(|(v, p)| RegionPointer::new(R, v, p, "x", None, StoredCounts::default()))
            .collect(),
    );
    for (v, gp3) in [(V1, Some(0.08)), (V2, gp3_v2)] {
        let mut items = vec![
            ebs(v, "gp2", "storage", 0.10),
            ebs(v, "gp3", "iops", 0.005),
            // 40.96 per GiBps-month = 0.04 per MiB/s-month.
            ebs(v, "gp3", "throughput", 40.96),
            ebs(v, "snapshot", "snapshot", 0.05),
        ];
        if let Some(p) = gp3 {
            items.push(ebs(v, "gp3", "storage", p));
        }
        b.ebs.insert((R.into(), v.into()), items);
        for (ty, usd) in [
            ("m4.large", 0.10),
            ("m5.large", 0.096),
            ("t2.micro", 0.0116),
        ] {
            b.instances.insert(
                (R.into(), v.into(), ty.into(), "Shared".into()),
                instance_prices(v, ty, usd),
            );
        }
    }
    b
}

fn instance(state: &str, ty: &str) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: ty.into(),
        usage_operation: "RunInstances".into(),
        platform_details: "Linux/UNIX".into(),
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

fn volume(ty: &str, size: i64, attached: Option<&str>) -> Resource {
    Resource::Volume(VolumeFields {
        state: if attached.is_some() {
            "in-use"
        } else {
            "available"
        }
        .into(),
        volume_type: ty.into(),
        size_gib: size,
        iops: None,
        throughput: None,
        attached_instance: attached.map(Into::into),
        availability_zone: "us-east-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: Default::default(),
    })
}

fn deleted(mut r: Resource) -> Resource {
    r.set_state("deleted");
    r
}

fn snapshot(volume_id: &str, size: i64, start: &str, managed: bool) -> Resource {
    Resource::Snapshot(SnapshotFields {
        state: "completed".into(),
        volume_size_gib: size,
        start_time: t(start),
        volume_id: volume_id.into(),
        tags: if managed {
            BTreeMap::from([("kopter:managed".into(), "true".into())])
        } else {
            BTreeMap::new()
        },
    })
}

fn timeline(id: &str, states: Vec<(&str, Resource)>) -> Timeline {
    Timeline {
        region: R.into(),
        resource_id: id.into(),
        states: states.into_iter().map(|(at, r)| (t(at), r)).collect(),
    }
}

/// Prices `[from, now)` with the engine, then evaluates at `now`.
fn run(
    timelines: &[Timeline],
    book: &MemoryBook,
    from: &str,
    now: &str,
    thresholds: &Thresholds,
) -> Vec<Finding> {
    let mut lines = Vec::new();
    for tl in timelines {
        price_timeline(tl, t(from), t(now), book, &mut lines);
    }
    evaluate(
        &AccountId::new("111111111111").unwrap(),
        timelines,
        &lines,
        t(now),
        thresholds,
        book,
    )
}

fn only(findings: &[Finding], rule: Rule) -> &Finding {
    let of_rule: Vec<&Finding> = findings.iter().filter(|f| f.rule == rule).collect();
    assert_eq!(of_rule.len(), 1, "one {rule} finding: {findings:#?}");
    of_rule[0]
}

/// A 100 GiB gp3 volume detached on May 10th 10:30, gp3 storage 0.08 →
/// 0.10 from May 15th 12:00, evaluated at May 20th 00:00.
fn detached_volume() -> Vec<Timeline> {
    vec![timeline(
        "vol-1",
        vec![
            ("2025-05-01T00:00:00Z", volume("gp3", 100, Some("i-1"))),
            ("2025-05-10T10:30:00Z", volume("gp3", 100, None)),
        ],
    )]
}

#[test]
fn volume_detached_mid_month_across_a_price_change() {
    let findings = run(
        &detached_volume(),
        &book(Some(0.10)),
        "2025-05-10T00:00:00Z",
        "2025-05-20T00:00:00Z",
        &Thresholds::default(),
    );
    let f = only(&findings, Rule::UnattachedVolume);
    assert_eq!(
        f.since,
        t("2025-05-10T10:30:00Z"),
        "since the detach, from history"
    );
    // 10:30 May 10 → 12:00 May 15 = 121.5 h at 100 × 0.08 / 744 = 8/744 an
    // hour (972/744); then 108 h to May 20 at 10/744 (1080/744):
    // 2052/744 = 2.758064516… USD.
    assert!(close(f.accrued_usd, 2052.0 / 744.0), "{}", f.accrued_usd);
    assert_eq!(f.unpriced_hours, 0);
    // The current hourly price 10/744 × 730 h = 9.811827956… USD/month.
    assert!(
        close(f.monthly_usd.unwrap(), 7300.0 / 744.0),
        "{:?}",
        f.monthly_usd
    );
    assert_eq!(f.resource_id, "vol-1");
    // Attached to an instance Kopter has no history of: no other rule.
    assert_eq!(findings.len(), 1, "{findings:#?}");
}

#[test]
fn unattached_volume_below_the_threshold_is_no_finding() {
    // 23.5 h unattached at May 11th 10:00 (default threshold 24 h).
    let findings = run(
        &detached_volume(),
        &book(Some(0.10)),
        "2025-05-10T00:00:00Z",
        "2025-05-11T10:00:00Z",
        &Thresholds::default(),
    );
    assert!(findings.is_empty(), "{findings:#?}");
    // A tenant's 12 h threshold: found.
    let th = Thresholds {
        unattached_volume_hours: 12,
        ..Thresholds::default()
    };
    let findings = run(
        &detached_volume(),
        &book(Some(0.10)),
        "2025-05-10T00:00:00Z",
        "2025-05-11T10:00:00Z",
        &th,
    );
    only(&findings, Rule::UnattachedVolume);
    // And a tenant that turned the rule off.
    let off = Thresholds {
        disabled: vec![Rule::UnattachedVolume],
        ..th
    };
    assert!(
        run(
            &detached_volume(),
            &book(Some(0.10)),
            "2025-05-10T00:00:00Z",
            "2025-05-11T10:00:00Z",
            &off,
        )
        .is_empty()
    );
}

#[test]
fn unpriced_hours_are_counted_not_zero() {
    // No gp3 storage price in V2: the 108 hours from May 15th 12:00 have
    // no price; the 121.5 hours before are priced (972/744).
    let findings = run(
        &detached_volume(),
        &book(None),
        "2025-05-10T00:00:00Z",
        "2025-05-20T00:00:00Z",
        &Thresholds::default(),
    );
    let f = only(&findings, Rule::UnattachedVolume);
    assert!(close(f.accrued_usd, 972.0 / 744.0), "{}", f.accrued_usd);
    assert_eq!(f.unpriced_hours, 108);
    assert!(
        f.unpriced_reason.as_deref().unwrap().contains("gp3"),
        "{:?}",
        f.unpriced_reason
    );
    assert_eq!(f.monthly_usd, None, "the current hour has no price");

    // Hours never computed (lines only from May 12th) are unpriced too:
    // May 10th 10:00–24:00 and May 11th = 38 hours; 8 days at 10/744…
    let tl = detached_volume();
    let b = book(Some(0.10));
    let mut lines = Vec::new();
    price_timeline(
        &tl[0],
        t("2025-05-12T00:00:00Z"),
        t("2025-05-20T00:00:00Z"),
        &b,
        &mut lines,
    );
    let f = evaluate(
        &AccountId::new("111111111111").unwrap(),
        &tl,
        &lines,
        t("2025-05-20T00:00:00Z"),
        &Thresholds::default(),
        &b,
    )
    .remove(0);
    assert_eq!(f.unpriced_hours, 38);
    assert!(f.unpriced_reason.unwrap().contains("not computed"));
    // …priced: May 12th 00:00 → 15th 12:00 = 84 h × 8/744, then 108 h ×
    // 10/744: 1752/744.
    assert!(close(f.accrued_usd, 1752.0 / 744.0), "{}", f.accrued_usd);
}

/// i-1 running from May 1st, stopped May 5th 00:00, started again May
/// 14th 00:00; its 50 GiB gp3 volume attached throughout.
fn stopped_instance() -> Vec<Timeline> {
    vec![
        timeline(
            "i-1",
            vec![
                ("2025-05-01T00:00:00Z", instance("running", "m5.large")),
                ("2025-05-05T00:00:00Z", instance("stopped", "m5.large")),
                ("2025-05-14T00:00:00Z", instance("running", "m5.large")),
            ],
        ),
        timeline(
            "vol-2",
            vec![("2025-05-01T00:00:00Z", volume("gp3", 50, Some("i-1")))],
        ),
    ]
}

#[test]
fn volumes_of_a_stopped_instance_then_started_again() {
    let tl = stopped_instance();
    let b = book(Some(0.08));
    // One day stopped: below the 7-day default.
    assert!(
        run(
            &tl,
            &b,
            "2025-05-01T00:00:00Z",
            "2025-05-06T00:00:00Z",
            &Thresholds::default()
        )
        .is_empty()
    );
    // Eight days stopped (May 13th 00:00): the volume is found, since the
    // stop; 192 h × 50 × 0.08 / 744 = 768/744 = 1.032258… USD; a month
    // 4/744 × 730 = 2920/744 = 3.924731… USD.
    let findings = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-13T00:00:00Z",
        &Thresholds::default(),
    );
    let f = only(&findings, Rule::StoppedInstanceVolume);
    assert_eq!(f.resource_id, "vol-2");
    assert_eq!(f.since, t("2025-05-05T00:00:00Z"));
    assert!(close(f.accrued_usd, 768.0 / 744.0), "{}", f.accrued_usd);
    assert!(close(f.monthly_usd.unwrap(), 2920.0 / 744.0));
    assert!(f.action.contains("i-1"), "{}", f.action);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    // Started again on May 14th: nothing (the store resolves the row).
    assert!(
        run(
            &tl,
            &b,
            "2025-05-01T00:00:00Z",
            "2025-05-14T01:00:00Z",
            &Thresholds::default()
        )
        .is_empty()
    );
}

#[test]
fn orphan_and_old_snapshots() {
    let tl = vec![
        // Source volume deleted May 3rd.
        timeline(
            "vol-gone",
            vec![
                ("2025-04-01T00:00:00Z", volume("gp3", 100, None)),
                ("2025-05-03T00:00:00Z", deleted(volume("gp3", 100, None))),
            ],
        ),
        timeline(
            "snap-orphan",
            vec![(
                "2025-04-01T00:00:00Z",
                snapshot("vol-gone", 100, "2025-04-01T00:00:00Z", false),
            )],
        ),
        // Source volume never in the account.
        timeline(
            "snap-foreign",
            vec![(
                "2025-04-01T00:00:00Z",
                snapshot("vol-ffffffff", 100, "2025-04-01T00:00:00Z", false),
            )],
        ),
        // Kopter's own backup: its retention is Kopter's.
        timeline(
            "snap-managed",
            vec![(
                "2025-04-01T00:00:00Z",
                snapshot("vol-gone", 100, "2025-04-01T00:00:00Z", true),
            )],
        ),
        // Source volume still there.
        timeline(
            "vol-here",
            vec![("2025-04-01T00:00:00Z", volume("gp3", 10, Some("i-9")))],
        ),
        timeline(
            "snap-kept",
            vec![(
                "2025-04-01T00:00:00Z",
                snapshot("vol-here", 10, "2025-04-01T00:00:00Z", false),
            )],
        ),
        // Too young (20 days at May 10th).
        timeline(
            "snap-young",
            vec![(
                "2025-04-20T00:00:00Z",
                snapshot("vol-gone", 100, "2025-04-20T00:00:00Z", false),
            )],
        ),
    ];
    let b = book(Some(0.08));
    let findings = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-10T00:00:00Z",
        &Thresholds::default(),
    );
    let orphans: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == Rule::OrphanSnapshot)
        .collect();
    assert_eq!(
        orphans
            .iter()
            .map(|f| f.resource_id.as_str())
            .collect::<Vec<_>>(),
        ["snap-orphan", "snap-foreign"],
        "{findings:#?}"
    );
    // Since the volume was deleted (May 3rd): 168 h × 100 × 0.05 / 744 =
    // 840/744 = 1.129032… USD; 5/744 × 730 = 3650/744 a month.
    let o = orphans[0];
    assert_eq!(o.since, t("2025-05-03T00:00:00Z"));
    assert!(close(o.accrued_usd, 840.0 / 744.0), "{}", o.accrued_usd);
    assert!(close(o.monthly_usd.unwrap(), 3650.0 / 744.0));
    // The foreign one since it was taken (April 1st); Kopter priced from
    // May 1st only, so April's 720 hours are unpriced, May's 216 priced
    // (1080/744).
    let f = orphans[1];
    assert_eq!(f.since, t("2025-04-01T00:00:00Z"));
    assert_eq!(f.unpriced_hours, 720);
    assert!(close(f.accrued_usd, 1080.0 / 744.0), "{}", f.accrued_usd);
    assert_eq!(
        findings.len(),
        2,
        "retention is off by default: {findings:#?}"
    );

    // A 30-day retention: every unmanaged snapshot taken April 1st is past
    // it since May 1st (216 h: 1080/744 for 100 GiB; 108/744 for 10 GiB).
    let th = Thresholds {
        snapshot_retention_days: Some(30),
        ..Thresholds::default()
    };
    let findings = run(&tl, &b, "2025-05-01T00:00:00Z", "2025-05-10T00:00:00Z", &th);
    let old: BTreeMap<&str, &Finding> = findings
        .iter()
        .filter(|f| f.rule == Rule::SnapshotPastRetention)
        .map(|f| (f.resource_id.as_str(), f))
        .collect();
    assert_eq!(
        old.keys().copied().collect::<Vec<_>>(),
        ["snap-foreign", "snap-kept", "snap-orphan"]
    );
    assert_eq!(old["snap-kept"].since, t("2025-05-01T00:00:00Z"));
    assert!(close(old["snap-kept"].accrued_usd, 108.0 / 744.0));
    assert!(close(old["snap-orphan"].accrued_usd, 1080.0 / 744.0));
}

#[test]
fn gp2_that_costs_less_as_gp3() {
    let tl = vec![timeline(
        "vol-3",
        vec![
            ("2025-05-01T00:00:00Z", volume("gp3", 100, Some("i-9"))),
            // Changed to gp2 on May 2nd (a restore, say).
            ("2025-05-02T00:00:00Z", volume("gp2", 100, Some("i-9"))),
        ],
    )];
    let b = book(Some(0.08));
    let findings = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-03T00:00:00Z",
        &Thresholds::default(),
    );
    let f = only(&findings, Rule::Gp2ToGp3);
    assert_eq!(f.since, t("2025-05-02T00:00:00Z"));
    // As gp2: 24 h × 100 × 0.10 / 744 = 240/744 accrued.
    assert!(close(f.accrued_usd, 240.0 / 744.0), "{}", f.accrued_usd);
    // gp2 10.00 a month; gp3 at gp2's baseline (300 → 3,000 included
    // IOPS; 128 MiB/s = 3 MiB/s × 0.04 above the included 125): 8.12.
    // Saving: 730 × 10/744 × (1 − 8.12/10) = 1372.4/744 = 1.844623… a month.
    assert!(
        close(f.monthly_usd.unwrap(), 1372.4 / 744.0),
        "{:?}",
        f.monthly_usd
    );
    assert!(f.action.contains("3000 IOPS, 128 MiB/s"), "{}", f.action);

    // With gp3 dearer than gp2 in V2 (0.12/GB-month) there is no saving.
    let dear = book(Some(0.12));
    let findings = run(
        &tl,
        &dear,
        "2025-05-01T00:00:00Z",
        "2025-05-20T00:00:00Z",
        &Thresholds::default(),
    );
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn previous_generation_with_a_cheaper_equivalent() {
    let tl = vec![
        timeline(
            "i-old",
            vec![
                ("2025-05-09T00:00:00Z", instance("stopped", "m4.large")),
                ("2025-05-10T00:00:00Z", instance("running", "m4.large")),
            ],
        ),
        // t3.micro has no price row here: no finding.
        timeline(
            "i-t2",
            vec![("2025-05-01T00:00:00Z", instance("running", "t2.micro"))],
        ),
        // Current generation: no finding.
        timeline(
            "i-new",
            vec![("2025-05-01T00:00:00Z", instance("running", "m5.large"))],
        ),
    ];
    let b = book(Some(0.08));
    let findings = run(
        &tl,
        &b,
        "2025-05-09T00:00:00Z",
        "2025-05-11T00:00:00Z",
        &Thresholds::default(),
    );
    let f = only(&findings, Rule::PreviousGeneration);
    assert_eq!(f.resource_id, "i-old");
    assert_eq!(
        f.since,
        t("2025-05-10T00:00:00Z"),
        "since it runs as m4.large"
    );
    // 24 h × 0.10 = 2.40 USD; saving 730 × (0.10 − 0.096) = 2.92 a month.
    assert!(close(f.accrued_usd, 2.4), "{}", f.accrued_usd);
    assert!(close(f.monthly_usd.unwrap(), 2.92), "{:?}", f.monthly_usd);
    assert!(f.action.contains("m5.large"));
    assert_eq!(findings.len(), 1, "{findings:#?}");

    assert_eq!(current_generation("t2.micro").as_deref(), Some("t3.micro"));
    assert_eq!(current_generation("m7g.large"), None);
}

/// One evaluation as the service runs it (`apply.rs`): the first pass,
/// pricing each found resource from where its stored accrual ends (or its
/// `since`), the second pass extending `priors`. Returns the findings and
/// how many resource-hours were priced.
fn evaluate_as_the_service(
    timelines: &[Timeline],
    book: &MemoryBook,
    priors: &Priors,
    now: DateTime<Utc>,
) -> (Vec<Finding>, usize) {
    let account = AccountId::new("111111111111").unwrap();
    let th = Thresholds::default();
    let idle = HashMap::new();
    let candidates = evaluate(&account, timelines, &[], now, &th, book);
    let start = pricing_starts(&candidates, timelines, priors, now, book);
    let mut lines = Vec::new();
    for tl in timelines {
        if let Some(s) = start.get(tl.resource_id.as_str()) {
            price_timeline(tl, *s, now, book, &mut lines);
        }
    }
    let found = evaluate_extending(
        &account,
        timelines,
        &lines,
        now,
        &th,
        book,
        &idle,
        Some(priors),
    );
    (found, lines.len())
}

fn stored(findings: &[Finding]) -> Priors {
    findings
        .iter()
        .map(|f| ((f.resource_id.clone(), f.rule), f.clone()))
        .collect()
}

/// Same amounts to the bit: the hour-by-hour sum must be the very sum the
/// pricing from `since` makes, not one close to it.
fn assert_same_amounts(a: &Finding, b: &Finding) {
    assert_eq!(a.since, b.since);
    assert_eq!(
        a.accrued_usd.to_bits(),
        b.accrued_usd.to_bits(),
        "{} vs {}",
        a.accrued_usd,
        b.accrued_usd
    );
    assert_eq!(a.unpriced_hours, b.unpriced_hours);
    assert_eq!(a.unpriced_reason, b.unpriced_reason);
    assert_eq!(
        a.monthly_usd.map(f64::to_bits),
        b.monthly_usd.map(f64::to_bits)
    );
}

#[test]
fn hour_by_hour_accrual_equals_pricing_from_since() {
    // The detached volume of `volume_detached_mid_month_across_a_price_change`
    // evaluated every hour from the detach to May 20th, each evaluation
    // extending the one before; at every hour the amounts equal pricing
    // from `since`, and each extension prices one hour only.
    let tl = detached_volume();
    let b = book(Some(0.10));
    let mut priors = Priors::new();
    let mut now = t("2025-05-10T11:00:00Z");
    let mut extended = 0;
    while now <= t("2025-05-20T00:00:00Z") {
        let (inc, priced) = evaluate_as_the_service(&tl, &b, &priors, now);
        let full = run(
            &tl,
            &b,
            "2025-05-01T00:00:00Z",
            &now.to_rfc3339(),
            &Thresholds::default(),
        );
        assert_eq!(inc.len(), full.len(), "at {now}");
        for (i, f) in inc.iter().zip(&full) {
            assert_same_amounts(i, f);
            assert_eq!(i.accrued_through, Some(now));
        }
        if !priors.is_empty() {
            assert_eq!(priced, 1, "only the new hour is priced at {now}");
            extended += 1;
        }
        priors = stored(&inc);
        now += Duration::hours(1);
    }
    // Found from May 11th 11:00 (24 h after 10:30); extended at every
    // hour's end from 12:00 to May 20th 00:00, both included.
    assert_eq!(extended, 8 * 24 + 12 + 1);
    // The hand-checked amount of that test: 2052/744 USD.
    let last = &priors[&("vol-1".to_string(), Rule::UnattachedVolume)];
    assert!(
        close(last.accrued_usd, 2052.0 / 744.0),
        "{}",
        last.accrued_usd
    );
}

#[test]
fn a_redelivered_or_older_evaluation_adds_no_hour_twice() {
    let tl = detached_volume();
    let b = book(Some(0.10));
    let h = |s: &str| t(s);
    let mut priors = Priors::new();
    let mut now = h("2025-05-11T11:00:00Z");
    while now <= h("2025-05-15T00:00:00Z") {
        priors = stored(&evaluate_as_the_service(&tl, &b, &priors, now).0);
        now += Duration::hours(1);
    }
    let at = h("2025-05-15T00:00:00Z");
    let full = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-15T00:00:00Z",
        &Thresholds::default(),
    );
    // The same hour again (its row already written): nothing added.
    let (again, priced) = evaluate_as_the_service(&tl, &b, &priors, at);
    assert_same_amounts(&again[0], &full[0]);
    assert_eq!(priced, 1, "the last hour is read for its rate only");
    // An older hour delivered late, over the newer row: summed from
    // `since` (the store then keeps the newer row).
    let older = h("2025-05-14T00:00:00Z");
    let (late, _) = evaluate_as_the_service(&tl, &b, &priors, older);
    let full_older = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-14T00:00:00Z",
        &Thresholds::default(),
    );
    assert_same_amounts(&late[0], &full_older[0]);
    // Two hours later from the same stored row (an hour's evaluation lost
    // or running concurrently): both hours added once.
    let later = h("2025-05-15T02:00:00Z");
    let (two, priced) = evaluate_as_the_service(&tl, &b, &priors, later);
    let full_later = run(
        &tl,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-15T02:00:00Z",
        &Thresholds::default(),
    );
    assert_same_amounts(&two[0], &full_later[0]);
    assert_eq!(priced, 2);
}

#[test]
fn a_late_state_or_price_version_in_the_accrued_hours_resums_from_since() {
    let b = book(Some(0.10));
    let th = Thresholds::default();
    let accrue = |tl: &[Timeline], b: &MemoryBook, until: &str| {
        let mut priors = Priors::new();
        let mut now = t("2025-05-11T11:00:00Z");
        while now <= t(until) {
            priors = stored(&evaluate_as_the_service(tl, b, &priors, now).0);
            now += Duration::hours(1);
        }
        priors
    };
    // Accrued through May 18th with the history as it was; then a resize
    // to 200 GiB on May 12th 00:00 (still unattached: same `since`)
    // arrives late.
    let priors = accrue(&detached_volume(), &b, "2025-05-18T00:00:00Z");
    let mut late = detached_volume();
    late[0]
        .states
        .push((t("2025-05-12T00:00:00Z"), volume("gp3", 200, None)));
    let now = t("2025-05-18T01:00:00Z");
    let (f, priced) = evaluate_as_the_service(&late, &b, &priors, now);
    let full = run(
        &late,
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-18T01:00:00Z",
        &th,
    );
    assert_same_amounts(&f[0], &full[0]);
    assert!(priced > 1, "summed again from since");
    // 10:30 May 10 → 00:00 May 12 = 37.5 h × 8/744 (300/744); to May 15th
    // 12:00 84 h × 16/744 (1344/744); to May 18th 01:00 61 h × 20/744
    // (1220/744): 2864/744.
    assert!(
        close(f[0].accrued_usd, 2864.0 / 744.0),
        "{}",
        f[0].accrued_usd
    );

    // A price version imported late: accrued through May 18th with V1
    // only, then V2 (published May 15th 12:00) appears.
    // (A fresh book: a used one has indexed its versions.)
    let mut v1_only = book(Some(0.10));
    v1_only.versions.get_mut(R).unwrap().truncate(1);
    let priors = accrue(&detached_volume(), &v1_only, "2025-05-18T00:00:00Z");
    let (f, _) = evaluate_as_the_service(&detached_volume(), &b, &priors, now);
    let full = run(
        &detached_volume(),
        &b,
        "2025-05-01T00:00:00Z",
        "2025-05-18T01:00:00Z",
        &th,
    );
    assert_same_amounts(&f[0], &full[0]);
    // 121.5 h × 8/744 + 61 h × 10/744 = 1582/744.
    assert!(
        close(f[0].accrued_usd, 1582.0 / 744.0),
        "{}",
        f[0].accrued_usd
    );
}
