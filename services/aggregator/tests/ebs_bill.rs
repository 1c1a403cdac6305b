//! EBS volumes billed as AWS bills them (issue 17, items 1 and 2), hand
//! checked: a real-format offer fragment
//! (`pricing/tests/fixtures/offer_ebs_tiers.json`, see its README) →
//! the pricing service's own parser and rows → the aggregator's engine →
//! the amount of one hour.
//!
//! Prices are AWS's published us-east-1 rates
//! (<https://aws.amazon.com/ebs/pricing/>): gp3 0.08 USD per GB-month,
//! 0.005 per IOPS-month above 3,000, 0.040 per MiB/s-month above
//! 125 MiB/s (the file states it per GiB/s: 40.96); io2 0.125 per
//! GB-month and IOPS 0.065 up to 32,000, 0.0455 from 32,001 to 64,000,
//! 0.03185 above 64,000. The hour is 2025-06-02 10:00 UTC: June has
//! 2,592,000 s, so one hour is 1/720 of the monthly amount.

use aggregator::engine::{CostLine, MemoryBook, Timeline, price_timeline};
use chrono::{DateTime, Utc};
use kopter_store::inventory::{Resource, VolumeFields};
use kopter_store::prices::{RegionPointer, StoredCounts};
use pricing::offer::ParseOptions;

const OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_ebs_tiers.json");
const HOURS_IN_JUNE: f64 = 720.0;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The fragment's prices of `region`, as the pricing service stores them.
fn book(region: &str) -> MemoryBook {
    let options = ParseOptions {
        region: Some(region.into()),
        ..ParseOptions::default()
    };
    let (meta, _, set) =
        pricing::ingest::parse_into_set(OFFER.as_bytes(), &options, region).unwrap();
    let (_, ebs, _) = set.into_rows(&meta.version);
    let mut b = MemoryBook::default();
    b.versions.insert(
        region.into(),
        vec![RegionPointer::new(
            region,
            &meta.version,
            &meta.publication_date,
            "offer_ebs_tiers.json",
            None,
            StoredCounts::default(),
        )],
    );
    b.ebs.insert((region.into(), meta.version), ebs);
    b
}

/// A volume as the describer records it (built from its JSON, so fields
/// added later with defaults need no change here).
fn volume(volume_type: &str, size_gib: i64, iops: i64, throughput: Option<i64>) -> Resource {
    let mut v = serde_json::json!({
        "state": "in-use",
        "volume_type": volume_type,
        "size_gib": size_gib,
        "iops": iops,
        "availability_zone": "us-east-1a",
    });
    if let Some(th) = throughput {
        v["throughput"] = th.into();
    }
    Resource::Volume(serde_json::from_value::<VolumeFields>(v).unwrap())
}

/// The line of hour 2025-06-02T10 of a volume that exists all June.
fn hour_line(region: &str, v: Resource) -> CostLine {
    let tl = Timeline {
        region: region.into(),
        resource_id: "vol-1".into(),
        states: vec![(t("2025-06-01T00:00:00Z"), v)],
    };
    let mut out = Vec::new();
    let from = t("2025-06-02T10:00:00Z");
    price_timeline(
        &tl,
        from,
        t("2025-06-02T11:00:00Z"),
        &book(region),
        &mut out,
    );
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn gp3_throughput_is_billed_from_its_own_product_family() {
    // 500 GiB × 0.08 = 40; (1000 − 125) MiB/s = 875/1024 GiB/s × 40.96
    // = 35; IOPS at the free 3,000. 75 USD a month → 75/720 an hour.
    let l = hour_line("us-east-1", volume("gp3", 500, 3000, Some(1000)));
    assert!(close(l.cost_usd.unwrap(), 75.0 / HOURS_IN_JUNE), "{l:?}");
    assert_eq!(
        (l.missing.as_deref(), l.missing_part.as_deref()),
        (None, None)
    );

    // With IOPS above the baseline too: + (4000 − 3000) × 0.005 = 5.
    let l = hour_line("us-east-1", volume("gp3", 500, 4000, Some(1000)));
    assert!(close(l.cost_usd.unwrap(), 80.0 / HOURS_IN_JUNE), "{l:?}");
}

#[test]
fn a_component_without_a_price_leaves_the_others_billed_and_is_marked() {
    // us-west-2 of the fragment has gp3 storage and IOPS but no
    // throughput product: 500 × 0.08 + 1000 × 0.005 = 45 a month billed,
    // the throughput named as missing.
    let l = hour_line("us-west-2", volume("gp3", 500, 4000, Some(1000)));
    assert!(close(l.cost_usd.unwrap(), 45.0 / HOURS_IN_JUNE), "{l:?}");
    assert_eq!(l.missing, None);
    let part = l.missing_part.as_deref().unwrap();
    assert!(
        part.contains("gp3 throughput") && part.contains("us-west-2"),
        "{part}"
    );

    // The same volume at the free throughput needs no throughput price.
    let l = hour_line("us-west-2", volume("gp3", 500, 4000, Some(125)));
    assert!(close(l.cost_usd.unwrap(), 45.0 / HOURS_IN_JUNE), "{l:?}");
    assert_eq!(l.missing_part, None);

    // Nothing known at all (no io2 in us-west-2): unpriced as a whole,
    // never 0.
    let l = hour_line("us-west-2", volume("io2", 100, 1000, None));
    assert_eq!(l.cost_usd, None);
    let why = l.missing.as_deref().unwrap();
    assert!(
        why.contains("io2 storage") && why.contains("io2 IOPS"),
        "{why}"
    );
    assert_eq!(l.missing_part, None);
}

#[test]
fn io2_iops_are_billed_tier_by_tier_in_both_shapes_of_the_file() {
    // us-east-1 publishes the tiers as three products (usage types
    // EBS:VolumeP-IOPS.io2, .io2.tier2, .io2.tier3), us-east-2 of the
    // fragment as one product with beginRange/endRange per dimension.
    for region in ["us-east-1", "us-east-2"] {
        // 20,000 IOPS, all in the first tier: 100 × 0.125 = 12.5 +
        // 20,000 × 0.065 = 1,300 → 1,312.5 a month.
        let l = hour_line(region, volume("io2", 100, 20_000, None));
        assert!(close(l.cost_usd.unwrap(), 1312.5 / HOURS_IN_JUNE), "{l:?}");

        // The example, 500 GiB at 50,000 IOPS: 500 × 0.125 =
        // 62.5; 32,000 × 0.065 = 2,080 + 18,000 × 0.0455 = 819 → 2,961.5
        // a month. At the first tier's price it was 62.5 + 50,000 × 0.065
        // = 3,312.5 (11.9 % too much).
        let l = hour_line(region, volume("io2", 500, 50_000, None));
        assert!(close(l.cost_usd.unwrap(), 2961.5 / HOURS_IN_JUNE), "{l:?}");
        assert_eq!(l.missing_part, None);

        // 500 GiB at 256,000 IOPS: 62.5 + 2,080 + 32,000 × 0.0455 =
        // 1,456 + 192,000 × 0.03185 = 6,115.2 → 9,713.7 a month (the IOPS
        // part 9,651.2 against 16,640 at the first tier's price).
        let l = hour_line(region, volume("io2", 500, 256_000, None));
        assert!(close(l.cost_usd.unwrap(), 9713.7 / HOURS_IN_JUNE), "{l:?}");
        assert_eq!(l.missing_part, None);
    }
}
