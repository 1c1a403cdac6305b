//! Hand-checked pricing of the engine (figures worked out in comments).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use kopter_store::inventory::{InstanceFields, Resource, SnapshotFields, VolumeFields};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, ReservedEntry, SpotPoint,
    StoredCounts,
};

use super::engine::*;

const R: &str = "us-east-1";
const V1: &str = "20250501000000";
const V2: &str = "20250515120000";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn od(price: f64) -> OnDemandEntry {
    OnDemandEntry {
        usd_per_hour: price,
        operating_system: "Linux".into(),
        license_model: "No License required".into(),
        pre_installed_sw: "NA".into(),
        effective: "2025-05-01T00:00:00Z".into(),
    }
}

fn instance_prices(
    version: &str,
    ty: &str,
    prices: &[(&str, f64)],
    ri: Option<f64>,
) -> InstancePrices {
    InstancePrices {
        pk: String::new(),
        sk: String::new(),
        region: R.into(),
        version: version.into(),
        instance_type: ty.into(),
        tenancy: "Shared".into(),
        on_demand: prices
            .iter()
            .map(|(op, p)| ((*op).to_string(), od(*p)))
            .collect(),
        reserved: ri
            .map(|r| {
                BTreeMap::from([(
                    "RunInstances|1yr|standard|No Upfront".to_string(),
                    ReservedEntry {
                        effective_hourly_usd: r,
                        upfront_usd: 0.0,
                        hourly_usd: r,
                        effective: String::new(),
                    },
                )])
            })
            .unwrap_or_default(),
    }
}

fn ebs(
    version: &str,
    volume: &str,
    kind: &str,
    usage: &str,
    price: f64,
    unit: &str,
) -> EbsPriceItem {
    EbsPriceItem {
        pk: String::new(),
        sk: String::new(),
        region: R.into(),
        version: version.into(),
        volume_api_name: volume.into(),
        kind: kind.into(),
        usage_type: usage.into(),
        usd_per_unit: price,
        unit: unit.into(),
        effective: String::new(),
        begin_range: 0.0,
        end_range: None,
    }
}

/// V1 from May 1st; V2 (m5.large 0.096 → 0.1) published May 15th 12:00.
fn book() -> MemoryBook {
    let mut b = MemoryBook::default();
    b.versions.insert(
        R.into(),
        vec![
            RegionPointer::new(
                R,
                V1,
                "2025-05-01T00:00:00Z",
                "x",
                None,
                StoredCounts::default(),
            ),
            RegionPointer::new(
                R,
                V2,
                "2025-05-15T12:00:00Z",
                "x",
                None,
                StoredCounts::default(),
            ),
        ],
    );
    for (v, m5) in [(V1, 0.096), (V2, 0.1)] {
        let key = |ty: &str| {
            (
                R.to_string(),
                v.to_string(),
                ty.to_string(),
                "Shared".to_string(),
            )
        };
        b.instances.insert(
            key("m5.large"),
            instance_prices(
                v,
                "m5.large",
                &[("RunInstances", m5), ("RunInstances:0002", 0.188)],
                Some(0.06),
            ),
        );
        b.instances.insert(
            key("m5.xlarge"),
            instance_prices(v, "m5.xlarge", &[("RunInstances", 0.192)], None),
        );
        b.ebs.insert(
            (R.into(), v.into()),
            vec![
                ebs(v, "gp3", "storage", "EBS:VolumeUsage.gp3", 0.08, "GB-Mo"),
                ebs(v, "gp3", "iops", "EBS:VolumeP-IOPS.gp3", 0.005, "IOPS-Mo"),
                ebs(
                    v,
                    "gp3",
                    "throughput",
                    "EBS:VolumeP-Throughput.gp3",
                    40.96,
                    "GiBps-mo",
                ),
                ebs(
                    v,
                    "snapshot",
                    "snapshot",
                    "EBS:SnapshotUsage",
                    0.05,
                    "GB-Mo",
                ),
                ebs(
                    v,
                    "snapshot",
                    "snapshot",
                    "EBS:SnapshotArchiveStorage",
                    0.0125,
                    "GB-Mo",
                ),
            ],
        );
    }
    let spot = |at: &str, p: f64| {
        SpotPoint::new(
            R,
            "m5.large",
            "us-east-1a",
            "Linux/UNIX (Amazon VPC)",
            t(at),
            p,
        )
    };
    b.spot.insert(
        (R.into(), "m5.large".into(), "us-east-1a".into()),
        vec![
            spot("2025-05-20T09:00:00Z", 0.03),
            spot("2025-05-20T10:30:00Z", 0.05),
        ],
    );
    b
}

fn inst(state: &str, ty: &str) -> Resource {
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
        tags: BTreeMap::from([("team".into(), "web".into())]),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    })
}

fn vol(state: &str, size: i64, iops: Option<i64>, throughput: Option<i64>) -> Resource {
    Resource::Volume(VolumeFields {
        state: state.into(),
        volume_type: "gp3".into(),
        size_gib: size,
        iops,
        throughput,
        attached_instance: None,
        availability_zone: "us-east-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: Default::default(),
    })
}

fn timeline(states: Vec<(&str, Resource)>) -> Timeline {
    Timeline {
        region: R.into(),
        resource_id: "r-1".into(),
        states: states.into_iter().map(|(at, r)| (t(at), r)).collect(),
    }
}

fn price(tl: &Timeline, from: &str, hours: i64) -> Vec<CostLine> {
    let mut out = Vec::new();
    price_timeline(
        tl,
        t(from),
        t(from) + Duration::hours(hours),
        &book(),
        &mut out,
    );
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn partial_first_hour_then_full_hours() {
    // May 20th: version V2 (m5.large 0.1). Launched 10:15: 0.75 h × 0.1
    // = 0.075, then 0.1.
    let tl = timeline(vec![("2025-05-20T10:15:00Z", inst("running", "m5.large"))]);
    let lines = price(&tl, "2025-05-20T09:00:00Z", 3);
    assert_eq!(lines.len(), 2, "nothing before launch: {lines:?}");
    assert_eq!(lines[0].hour, t("2025-05-20T10:00:00Z"));
    assert!(close(lines[0].usage, 0.75));
    assert!(close(lines[0].cost_usd.unwrap(), 0.075));
    assert!(close(lines[1].cost_usd.unwrap(), 0.1));
    assert_eq!((&*lines[1].family, lines[1].unit), ("m5", "hours"));
}

#[test]
fn stop_and_start_inside_an_hour() {
    // Running, stopped 10:20, started 10:50: 30 min × 0.1 → 0.05; reserved
    // alternative 0.5 × 0.06 = 0.03.
    let tl = timeline(vec![
        ("2025-05-20T08:00:00Z", inst("running", "m5.large")),
        ("2025-05-20T10:20:00Z", inst("stopped", "m5.large")),
        ("2025-05-20T10:50:00Z", inst("running", "m5.large")),
    ]);
    let l = &price(&tl, "2025-05-20T10:00:00Z", 1)[0];
    assert!(close(l.usage, 0.5));
    assert!(close(l.cost_usd.unwrap(), 0.05));
    assert!(close(l.reserved_usd.unwrap(), 0.03));
}

#[test]
fn type_change_mid_hour() {
    // m5.large until 10:30, m5.xlarge after: 0.5×0.1 + 0.5×0.192 = 0.146.
    let tl = timeline(vec![
        ("2025-05-20T08:00:00Z", inst("running", "m5.large")),
        ("2025-05-20T10:30:00Z", inst("running", "m5.xlarge")),
    ]);
    let l = &price(&tl, "2025-05-20T10:00:00Z", 1)[0];
    assert!(close(l.cost_usd.unwrap(), 0.146));
    assert_eq!(&*l.detail, "m5.xlarge");
    // m5.xlarge has no reserved price in the book: no alternative figure
    // rather than a partial one.
    assert_eq!(l.reserved_usd, None);
}

#[test]
fn price_change_mid_month_applies_from_its_publication() {
    // V2 published 2025-05-15T12:00: hour 11 at 0.096, hour 12 at 0.1.
    let tl = timeline(vec![("2025-05-01T00:00:00Z", inst("running", "m5.large"))]);
    let lines = price(&tl, "2025-05-15T11:00:00Z", 2);
    assert!(close(lines[0].cost_usd.unwrap(), 0.096));
    assert!(close(lines[1].cost_usd.unwrap(), 0.1));
}

#[test]
fn spot_instances_use_the_spot_history() {
    // 0.03 until 10:30, 0.05 after: 0.5×0.03 + 0.5×0.05 = 0.04.
    let mut r = inst("running", "m5.large");
    if let Resource::Instance(i) = &mut r {
        i.lifecycle = "spot".into();
    }
    let tl = timeline(vec![("2025-05-20T08:00:00Z", r)]);
    let lines = price(&tl, "2025-05-20T09:00:00Z", 2);
    assert!(close(lines[0].cost_usd.unwrap(), 0.03));
    assert!(close(lines[1].cost_usd.unwrap(), 0.04));
    assert_eq!(&*lines[1].lifecycle, "spot");
    assert_eq!(lines[1].reserved_usd, None);
    // Before the first spot point: missing, not 0.
    let early = price(&tl, "2025-05-20T08:00:00Z", 1);
    assert_eq!(early[0].cost_usd, None);
    assert!(
        early[0]
            .missing
            .as_deref()
            .unwrap()
            .contains("no spot price"),
        "{early:?}"
    );
}

#[test]
fn stopped_instance_costs_nothing_but_its_volume_does() {
    let stopped = timeline(vec![("2025-05-01T00:00:00Z", inst("stopped", "m5.large"))]);
    assert!(price(&stopped, "2025-05-20T10:00:00Z", 1).is_empty());
    // 100 GiB gp3 in May (31 days = 2 678 400 s): 100 × 0.08 × 3600 / 2678400.
    let v = timeline(vec![(
        "2025-05-01T00:00:00Z",
        vol("in-use", 100, Some(3000), Some(125)),
    )]);
    let l = &price(&v, "2025-05-20T10:00:00Z", 1)[0];
    assert!(close(
        l.cost_usd.unwrap(),
        100.0 * 0.08 * 3600.0 / 2_678_400.0
    ));
    assert!(close(l.usage, 100.0));
    assert_eq!((l.kind, &*l.family), ("volume", "ebs-gp3"));
}

#[test]
fn month_boundary_changes_the_proration() {
    // April has 30 days (2 592 000 s), May 31.
    let v = timeline(vec![(
        "2025-04-01T00:00:00Z",
        vol("available", 100, None, None),
    )]);
    let mut b = book();
    for (_, prices) in b.ebs.iter_mut() {
        prices.iter_mut().for_each(|p| p.version = V1.into());
    }
    b.versions.get_mut(R).unwrap()[0].publication_date = "2025-04-01T00:00:00Z".into();
    let mut lines = Vec::new();
    price_timeline(
        &v,
        t("2025-04-30T23:00:00Z"),
        t("2025-05-01T01:00:00Z"),
        &b,
        &mut lines,
    );
    assert!(close(
        lines[0].cost_usd.unwrap(),
        8.0 * 3600.0 / 2_592_000.0
    ));
    assert!(close(
        lines[1].cost_usd.unwrap(),
        8.0 * 3600.0 / 2_678_400.0
    ));
}

#[test]
fn gp3_iops_and_throughput_above_the_baseline() {
    // 100 GiB, 4000 IOPS, 250 MiB/s: 8 + 1000 × 0.005 + 125/1024 × 40.96 = 18 per month.
    let v = timeline(vec![(
        "2025-05-01T00:00:00Z",
        vol("in-use", 100, Some(4000), Some(250)),
    )]);
    let l = &price(&v, "2025-05-20T10:00:00Z", 1)[0];
    assert!(
        close(l.cost_usd.unwrap(), 18.0 * 3600.0 / 2_678_400.0),
        "{l:?}"
    );
}

#[test]
fn snapshots_are_priced_by_volume_size_at_standard_tier() {
    let s = timeline(vec![(
        "2025-05-01T00:00:00Z",
        Resource::Snapshot(SnapshotFields {
            state: "completed".into(),
            volume_size_gib: 50,
            start_time: t("2025-05-01T00:00:00Z"),
            volume_id: "vol-1".into(),
            tags: BTreeMap::new(),
        }),
    )]);
    let l = &price(&s, "2025-05-20T10:00:00Z", 1)[0];
    assert!(close(
        l.cost_usd.unwrap(),
        50.0 * 0.05 * 3600.0 / 2_678_400.0
    ));
}

#[test]
fn unknown_price_is_marked_never_zero() {
    let tl = timeline(vec![("2025-05-01T00:00:00Z", inst("running", "x9.huge"))]);
    let l = &price(&tl, "2025-05-20T10:00:00Z", 1)[0];
    assert_eq!(l.cost_usd, None);
    assert!(close(l.usage, 1.0));
    assert!(l.missing.as_deref().unwrap().contains("x9.huge"));
    let other_region = Timeline {
        region: "eu-west-9".into(),
        ..timeline(vec![("2025-05-01T00:00:00Z", inst("running", "m5.large"))])
    };
    let l = &price(&other_region, "2025-05-20T10:00:00Z", 1)[0];
    assert!(
        l.missing
            .as_deref()
            .unwrap()
            .contains("no prices for region eu-west-9")
    );
}

#[test]
fn platform_details_when_usage_operation_is_missing_and_termination() {
    let mut r = inst("running", "m5.large");
    if let Resource::Instance(i) = &mut r {
        i.usage_operation.clear();
        i.platform_details = "Windows".into();
    }
    // Terminated at 10:45: 0.75 × 0.188; nothing after.
    let tl = timeline(vec![
        ("2025-05-01T00:00:00Z", r),
        ("2025-05-20T10:45:00Z", inst("terminated", "m5.large")),
    ]);
    let lines = price(&tl, "2025-05-20T10:00:00Z", 3);
    assert_eq!(lines.len(), 1);
    assert!(close(lines[0].cost_usd.unwrap(), 0.75 * 0.188));
}

#[test]
fn version_span_agrees_with_version_at_hour_by_hour() {
    // Publication out of version order (a re-published older version) and
    // one date that does not parse: the span must still give, for every
    // hour up to `until`, what `version_at` gives for that hour.
    let records = vec![
        RegionPointer::new(
            R,
            "20250501000000",
            "2025-05-01T00:00:00Z",
            "x",
            None,
            StoredCounts::default(),
        ),
        RegionPointer::new(
            R,
            "20250510000000",
            "2025-05-12T06:30:00Z",
            "x",
            None,
            StoredCounts::default(),
        ),
        RegionPointer::new(
            R,
            "20250511000000",
            "2025-05-11T00:00:00Z",
            "x",
            None,
            StoredCounts::default(),
        ),
        RegionPointer::new(
            R,
            "20250520000000",
            "not a date",
            "x",
            None,
            StoredCounts::default(),
        ),
    ];
    let mut b = MemoryBook::default();
    b.versions.insert(R.into(), records.clone());
    let mut hour = t("2025-04-30T00:00:00Z");
    let mut changes = 0;
    let mut last = String::new();
    while hour < t("2025-05-14T00:00:00Z") {
        let (v, until) = b.version_span(R, hour).unwrap();
        let expected = &kopter_store::prices::version_at(&records, hour)
            .unwrap()
            .version;
        assert_eq!(v, expected, "at {hour}");
        assert!(until > hour.timestamp_millis(), "at {hour}");
        if v != last {
            changes += 1;
            last = v.to_string();
        }
        // Every hour before `until` has the same answer.
        let mut h = hour + Duration::hours(1);
        while h.timestamp_millis() < until && h < t("2025-05-14T00:00:00Z") {
            assert_eq!(
                b.version_span(R, h).unwrap().0,
                v,
                "at {h}, span from {hour}"
            );
            h += Duration::hours(1);
        }
        hour = h;
    }
    // 0501 (also before its publication) → 0511 (May 11th) → 0510 from
    // its publication on May 12th 06:30: versions are ordered by
    // publication time, not by their strings (issue 17, item 5). The
    // undated one is never chosen.
    assert_eq!(changes, 3);
    assert_eq!(
        b.version(R, t("2025-05-13T00:00:00Z")),
        Some("20250510000000")
    );
    assert_eq!(
        b.version_span(R, t("2025-05-13T00:00:00Z")).unwrap().1,
        i64::MAX
    );
    assert_eq!(b.version_span("eu-west-1", hour), None);
}

#[test]
fn volume_rate_follows_the_version_in_one_walk() {
    // gp3 storage 0.08 in V1 and 0.09 in V2 (published May 15th 12:00);
    // one walk across the change prices each hour with its own version.
    let mut b = book();
    for item in b.ebs.get_mut(&(R.to_string(), V2.to_string())).unwrap() {
        if item.kind == "storage" && item.volume_api_name == "gp3" {
            item.usd_per_unit = 0.09;
        }
    }
    let v = timeline(vec![(
        "2025-05-01T00:00:00Z",
        vol("in-use", 100, Some(3000), Some(125)),
    )]);
    let mut lines = Vec::new();
    price_timeline(
        &v,
        t("2025-05-15T10:00:00Z"),
        t("2025-05-15T14:00:00Z"),
        &b,
        &mut lines,
    );
    let per_hour = |p: f64| 100.0 * p * 3600.0 / 2_678_400.0;
    let got: Vec<f64> = lines.iter().map(|l| l.cost_usd.unwrap()).collect();
    assert_eq!(got.len(), 4);
    for (c, p) in got.iter().zip([0.08, 0.08, 0.09, 0.09]) {
        assert!(close(*c, per_hour(p)), "{got:?}");
    }
}
