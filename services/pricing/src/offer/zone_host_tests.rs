//! Local Zone and Dedicated Host products, on fragments in AWS's layout
//! (`tests/fixtures/offer_lax_fragment.json`, `offer_usw2_fragment.json`;
//! see the fixture README for where each figure comes from).

use super::*;

const LAX: &str = include_str!("../../tests/fixtures/offer_lax_fragment.json");
const USW2: &str = include_str!("../../tests/fixtures/offer_usw2_fragment.json");

fn parse(text: &str, region: &str) -> (Counts, Vec<Price>) {
    let mut prices = Vec::new();
    let options = ParseOptions {
        region: Some(region.into()),
        ..ParseOptions::default()
    };
    let (_, counts) = parse_offer_with(text.as_bytes(), &options, |p| {
        prices.push(p);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    (counts, prices)
}

fn on_demand(prices: &[Price]) -> Vec<(String, String, String, f64)> {
    let mut out: Vec<_> = prices
        .iter()
        .filter_map(|p| match p {
            Price::OnDemand(p) => Some((
                p.key.region.to_string(),
                p.key.instance_type.to_string(),
                p.key.tenancy.to_string(),
                p.usd_per_hour,
            )),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// A Local Zone's file carries its own `regionCode`: its prices are kept
/// under it, not under the parent region.
#[test]
fn a_local_zone_file_is_priced_under_its_own_region_code() {
    let (_, prices) = parse(LAX, "us-west-2-lax-1");
    assert_eq!(
        on_demand(&prices),
        [(
            "us-west-2-lax-1".into(),
            "m5.xlarge".into(),
            "Shared".into(),
            0.23
        )]
    );
    let Some(Price::Ebs(gp3)) = prices.iter().find(|p| matches!(p, Price::Ebs(_))) else {
        panic!("no EBS price")
    };
    assert_eq!(
        (&*gp3.region, &*gp3.volume_api_name, gp3.usd_per_unit),
        ("us-west-2-lax-1", "gp3", 0.096)
    );
    // Read as the parent region, the Local Zone's products are another
    // region's: nothing is kept.
    let (counts, prices) = parse(LAX, "us-west-2");
    assert!(prices.is_empty());
    assert_eq!(counts.other_region_products, 2);
}

/// The On-Demand `Dedicated Host` product (`HostUsage:mac1`) is kept under
/// the family and tenancy `Host`; the reserved host product is skipped;
/// the Host-tenancy `mac1.metal` instance row (0.00) is kept as it is.
#[test]
fn on_demand_dedicated_hosts_are_kept_by_family() {
    let (counts, prices) = parse(USW2, "us-west-2");
    assert_eq!(
        on_demand(&prices),
        [
            (
                "us-west-2".into(),
                "m5.xlarge".into(),
                "Shared".into(),
                0.192
            ),
            ("us-west-2".into(), "mac1".into(), "Host".into(), 1.083),
            ("us-west-2".into(), "mac1.metal".into(), "Host".into(), 0.0),
        ]
    );
    // m5.xlarge, the mac1 host and mac1.metal kept as instance rows; the
    // reserved host product skipped.
    assert_eq!(counts.instance_products, 3);
    assert_eq!(counts.skipped_products, 1);
    assert!(prices.iter().all(|p| p.sku() != "MAC1RSVD8V1C4X7Z"));
}
