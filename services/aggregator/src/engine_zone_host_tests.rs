//! Hand-checked pricing of Local Zone resources and Dedicated Hosts
//! (issue 17 items 3 and 4). Rates are those of the fixtures
//! `services/pricing/tests/fixtures/offer_{lax,usw2}_fragment.json`:
//! m5.xlarge Linux 0.192/h in us-west-2 and 0.23/h in the Los Angeles Local
//! Zone (`us-west-2-lax-1`); gp3 0.08 and 0.096 per GB-month; the mac1
//! Dedicated Host 1.083/h; mac1.metal on a host 0.00/h.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use kopter_store::graph::CostLine;
use kopter_store::inventory::{HostFields, InstanceFields, Resource, VolumeFields, ZoneInfo};
use kopter_store::prices::{
    EbsPriceItem, InstancePrices, OnDemandEntry, RegionPointer, StoredCounts,
};

use super::engine::*;

const USW2: &str = "us-west-2";
const LAX: &str = "us-west-2-lax-1";
const V: &str = "20250523232744";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn rates(region: &str, ty: &str, tenancy: &str, usd: f64) -> InstancePrices {
    InstancePrices {
        pk: String::new(),
        sk: String::new(),
        region: region.into(),
        version: V.into(),
        instance_type: ty.into(),
        tenancy: tenancy.into(),
        on_demand: BTreeMap::from([(
            "RunInstances".to_string(),
            OnDemandEntry {
                usd_per_hour: usd,
                operating_system: "Linux".into(),
                license_model: "No License required".into(),
                pre_installed_sw: "NA".into(),
                effective: "2025-05-01T00:00:00Z".into(),
            },
        )]),
        reserved: BTreeMap::new(),
    }
}

fn gp3(region: &str, usd: f64) -> EbsPriceItem {
    EbsPriceItem {
        pk: String::new(),
        sk: String::new(),
        region: region.into(),
        version: V.into(),
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

/// us-west-2 and its Los Angeles Local Zone, each its own Price List
/// region with its own version.
fn book(with_lax: bool) -> MemoryBook {
    let mut b = MemoryBook::default();
    let mut regions = vec![(USW2, 0.192, 0.08)];
    if with_lax {
        regions.push((LAX, 0.23, 0.096));
    }
    for (r, m5, gp3_usd) in regions {
        b.versions.insert(
            r.into(),
            vec![RegionPointer::new(
                r,
                V,
                "2025-05-23T23:27:44Z",
                "x",
                None,
                StoredCounts::default(),
            )],
        );
        let key = |ty: &str, ten: &str| {
            (
                r.to_string(),
                V.to_string(),
                ty.to_string(),
                ten.to_string(),
            )
        };
        b.instances.insert(
            key("m5.xlarge", "Shared"),
            rates(r, "m5.xlarge", "Shared", m5),
        );
        b.ebs.insert((r.into(), V.into()), vec![gp3(r, gp3_usd)]);
    }
    let key = |ty: &str| {
        (
            USW2.to_string(),
            V.to_string(),
            ty.to_string(),
            "Host".to_string(),
        )
    };
    b.instances
        .insert(key("mac1"), rates(USW2, "mac1", "Host", 1.083));
    b.instances
        .insert(key("mac1.metal"), rates(USW2, "mac1.metal", "Host", 0.0));
    b
}

fn lax_zone() -> ZoneInfo {
    ZoneInfo {
        zone_type: "local-zone".into(),
        price_region: LAX.into(),
    }
}

fn instance(ty: &str, zone: ZoneInfo, host_id: &str) -> Resource {
    Resource::Instance(InstanceFields {
        state: "running".into(),
        instance_type: ty.into(),
        usage_operation: "RunInstances".into(),
        platform_details: "Linux/UNIX".into(),
        tenancy: if host_id.is_empty() {
            "default"
        } else {
            "host"
        }
        .into(),
        lifecycle: "on-demand".into(),
        availability_zone: if zone.price_region.is_empty() {
            "us-west-2a"
        } else {
            "us-west-2-lax-1a"
        }
        .into(),
        launch_time: None,
        state_transition_reason: String::new(),
        tags: BTreeMap::new(),
        volume_ids: vec![],
        zone,
        host_id: host_id.into(),
        capacity_reservation_id: String::new(),
    })
}

fn host(state: &str, family: &str) -> Resource {
    Resource::Host(HostFields {
        state: state.into(),
        instance_family: family.into(),
        instance_type: format!("{family}.metal"),
        availability_zone: "us-west-2a".into(),
        allocation_time: None,
        release_time: None,
        instance_ids: vec![],
        tags: BTreeMap::new(),
        zone: ZoneInfo::default(),
    })
}

fn price(
    book: &MemoryBook,
    id: &str,
    states: Vec<(&str, Resource)>,
    from: &str,
    to: &str,
) -> HashMap<String, CostLine> {
    let timeline = Timeline {
        region: USW2.into(),
        resource_id: id.into(),
        states: states.into_iter().map(|(at, r)| (t(at), r)).collect(),
    };
    let mut out = Vec::new();
    price_timeline(&timeline, t(from), t(to), book, &mut out);
    out.into_iter()
        .map(|l| (l.hour.format("%H").to_string(), l))
        .collect()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Issue 17's example: an m5.xlarge in `us-west-2-lax-1a` for one hour is
/// 0.23 (the Local Zone's rate), not us-west-2's 0.192; its 100 GiB gp3
/// volume is 100 × 0.096 × 3600 / 2 592 000 (June: 30 days) = 0.013333…,
/// not 100 × 0.08 × 3600 / 2 592 000 = 0.011111…. The line keeps the
/// resource's region.
#[test]
fn local_zone_resources_are_priced_from_the_zone_groups_rows() {
    let b = book(true);
    let lines = price(
        &b,
        "i-lax",
        vec![(
            "2025-06-02T00:00:00Z",
            instance("m5.xlarge", lax_zone(), ""),
        )],
        "2025-06-02T10:00:00Z",
        "2025-06-02T11:00:00Z",
    );
    let l = &lines["10"];
    assert!(close(l.cost_usd, 0.23), "{:?}", l.cost_usd);
    assert_eq!(&*l.region, USW2);
    let vol = Resource::Volume(VolumeFields {
        state: "in-use".into(),
        volume_type: "gp3".into(),
        size_gib: 100,
        iops: Some(3000),
        throughput: Some(125),
        attached_instance: Some("i-lax".into()),
        availability_zone: "us-west-2-lax-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: lax_zone(),
    });
    let lines = price(
        &b,
        "vol-lax",
        vec![("2025-06-02T00:00:00Z", vol)],
        "2025-06-02T10:00:00Z",
        "2025-06-02T11:00:00Z",
    );
    assert!(close(
        lines["10"].cost_usd,
        100.0 * 0.096 * 3600.0 / 2_592_000.0
    ));
    // A row written before zones were read (no zone info) is still priced
    // as before: by its region, 0.192.
    let lines = price(
        &b,
        "i-old",
        vec![(
            "2025-06-02T00:00:00Z",
            instance("m5.xlarge", ZoneInfo::default(), ""),
        )],
        "2025-06-02T10:00:00Z",
        "2025-06-02T11:00:00Z",
    );
    assert!(close(lines["10"].cost_usd, 0.192));
    // A history row without zone info followed by one with it: the zone
    // never changes, so the whole timeline is the Local Zone's.
    let lines = price(
        &b,
        "i-mixed",
        vec![
            (
                "2025-06-02T00:00:00Z",
                instance("m5.xlarge", ZoneInfo::default(), ""),
            ),
            (
                "2025-06-02T10:30:00Z",
                instance("m5.xlarge", lax_zone(), ""),
            ),
        ],
        "2025-06-02T10:00:00Z",
        "2025-06-02T11:00:00Z",
    );
    assert!(close(lines["10"].cost_usd, 0.23));
}

/// Without the Local Zone's prices the line is marked, never priced at
/// the parent region's rate.
#[test]
fn a_local_zone_without_prices_is_marked_not_priced_as_its_parent() {
    let b = book(false);
    let lines = price(
        &b,
        "i-lax",
        vec![(
            "2025-06-02T00:00:00Z",
            instance("m5.xlarge", lax_zone(), ""),
        )],
        "2025-06-02T10:00:00Z",
        "2025-06-02T11:00:00Z",
    );
    let l = &lines["10"];
    assert_eq!(l.cost_usd, None);
    assert!(
        l.missing.as_deref().unwrap().contains(LAX),
        "{:?}",
        l.missing
    );
    assert!((l.usage - 1.0).abs() < 1e-12);
}

/// A mac1 host allocated 10:15 and released 12:30 is billed 1.083/h for
/// the time it was allocated: 0.75 × 1.083 = 0.81225, then 1.083, then
/// 0.5 × 1.083 = 0.5415. The mac1.metal on it is priced from its
/// Host-tenancy row, 0.00, with a note naming the host — not a silent 0.
#[test]
fn a_dedicated_host_carries_the_charge_of_its_instances() {
    let b = book(true);
    let lines = price(
        &b,
        "h-1",
        vec![
            ("2025-06-02T10:15:00Z", host("available", "mac1")),
            ("2025-06-02T12:30:00Z", host("released", "mac1")),
        ],
        "2025-06-02T09:00:00Z",
        "2025-06-02T14:00:00Z",
    );
    assert_eq!(lines.len(), 3, "no line before allocation or after release");
    assert!(close(lines["10"].cost_usd, 0.75 * 1.083));
    assert!(close(lines["11"].cost_usd, 1.083));
    assert!(close(lines["12"].cost_usd, 0.5 * 1.083));
    assert_eq!(
        (lines["11"].kind, lines["11"].unit, &*lines["11"].family),
        ("host", "host-hours", "mac1")
    );
    assert_eq!(lines["11"].reserved_usd, None);

    let lines = price(
        &b,
        "i-mac",
        vec![(
            "2025-06-02T00:00:00Z",
            instance("mac1.metal", ZoneInfo::default(), "h-1"),
        )],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    let l = &lines["11"];
    assert_eq!(l.cost_usd, Some(0.0));
    assert_eq!(l.missing, None);
    assert!(l.note.as_deref().unwrap().contains("h-1"), "{:?}", l.note);
}

/// A host of a family the file has no host price for, and an instance on
/// a host whose type has no Host-tenancy row, are marked.
#[test]
fn unpriced_hosts_and_host_instances_are_marked() {
    let b = book(true);
    let lines = price(
        &b,
        "h-2",
        vec![("2025-06-02T00:00:00Z", host("available", "m7i"))],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    assert_eq!(lines["11"].cost_usd, None);
    assert!(
        lines["11"]
            .missing
            .as_deref()
            .unwrap()
            .contains("Dedicated Host price for family \"m7i\"")
    );
    let lines = price(
        &b,
        "i-on-host",
        vec![(
            "2025-06-02T00:00:00Z",
            instance("m5.xlarge", ZoneInfo::default(), "h-9"),
        )],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    assert_eq!(lines["11"].cost_usd, None);
    assert!(
        lines["11"].missing.as_deref().unwrap().contains("Host"),
        "{:?}",
        lines["11"].missing
    );
}

/// Issue 17 item 7. An instance launched into an On-Demand Capacity
/// Reservation is billed at the on-demand rate (0.192 × 1 h) with a note
/// naming the reservation; one in a Capacity Block (`InstanceLifecycle`
/// `capacity-block`) was priced as on-demand before, though the block is
/// paid up front: now its hours are marked, not priced.
#[test]
fn capacity_reservations_are_noted_and_capacity_blocks_marked() {
    let b = book(true);
    let with = |lifecycle: &str, reservation: &str| {
        let Resource::Instance(mut i) = instance("m5.xlarge", ZoneInfo::default(), "") else {
            unreachable!()
        };
        i.lifecycle = lifecycle.into();
        i.capacity_reservation_id = reservation.into();
        Resource::Instance(i)
    };
    let lines = price(
        &b,
        "i-odcr",
        vec![(
            "2025-06-02T00:00:00Z",
            with("on-demand", "cr-0123456789abcdef0"),
        )],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    let l = &lines["11"];
    assert!(close(l.cost_usd, 0.192));
    assert!(l.note.as_deref().unwrap().contains("cr-0123456789abcdef0"));
    let lines = price(
        &b,
        "i-block",
        vec![(
            "2025-06-02T00:00:00Z",
            with("capacity-block", "cr-0fedcba9876543210"),
        )],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    let l = &lines["11"];
    assert_eq!(l.cost_usd, None);
    assert!((l.usage - 1.0).abs() < 1e-12, "the hours are still counted");
    let reason = l.missing.as_deref().unwrap();
    assert!(
        reason.contains("Capacity Block") && reason.contains("cr-0fedcba9876543210"),
        "{reason}"
    );
    // A plain on-demand instance has no note.
    let lines = price(
        &b,
        "i-plain",
        vec![("2025-06-02T00:00:00Z", with("on-demand", ""))],
        "2025-06-02T11:00:00Z",
        "2025-06-02T12:00:00Z",
    );
    assert_eq!(lines["11"].note, None);
    assert!(close(lines["11"].cost_usd, 0.192));
    // Other purchase options have their own terms: marked with the
    // lifecycle named, never the on-demand 0.192.
    for lifecycle in ["scheduled", "interruptible-capacity-reservation"] {
        let lines = price(
            &b,
            "i-other",
            vec![(
                "2025-06-02T00:00:00Z",
                with(lifecycle, "cr-0aaaabbbbccccdddd"),
            )],
            "2025-06-02T11:00:00Z",
            "2025-06-02T12:00:00Z",
        );
        let l = &lines["11"];
        assert_eq!(l.cost_usd, None, "{lifecycle}");
        let reason = l.missing.as_deref().unwrap();
        assert!(
            reason.contains(lifecycle) && reason.contains("cr-0aaaabbbbccccdddd"),
            "{reason}"
        );
        assert_eq!(l.note, None, "{lifecycle}: marked, so no on-demand note");
    }
}
