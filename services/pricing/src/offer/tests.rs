//! Golden tests on `tests/fixtures/offer_small.json`: a hand-made offer file
//! in AWS's exact layout whose prices were worked out by hand (see the
//! fixture README), plus every bad input and every chunk boundary.

use std::io::{self, Read};

use super::*;

const SMALL: &str = include_str!("../../tests/fixtures/offer_small.json");

const M5_LINUX: &str = "TQ4WBPXUS6NVAC8E";
const M5_WINDOWS: &str = "W9X2BZC7KQ4HJ5DE";
const C5_DEDICATED: &str = "D3DCT8HJ2NQW6P4R";
const CAPACITY_RESERVATION: &str = "CR7YHQ3M2VXN8B5K";

type Parsed = (OfferMeta, Counts, Vec<Price>);

fn parse_opts(reader: impl Read, options: &ParseOptions) -> Result<Parsed, OfferError> {
    let mut prices = Vec::new();
    let (meta, counts) = parse_offer_with(reader, options, |p| {
        prices.push(p);
        Ok::<(), std::convert::Infallible>(())
    })?;
    Ok((meta, counts, prices))
}

fn parse(text: &str) -> Result<Parsed, OfferError> {
    parse_opts(text.as_bytes(), &ParseOptions::default())
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replacen(from, to, 1)
}

fn on_demand<'a>(prices: &'a [Price], sku: &str) -> &'a OnDemandPrice {
    prices
        .iter()
        .find_map(|p| match p {
            Price::OnDemand(p) if &*p.sku == sku => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no on-demand price for {sku}"))
}

fn reserved<'a>(
    prices: &'a [Price],
    sku: &str,
    years: u8,
    class: &str,
    option: &str,
) -> &'a ReservedPrice {
    prices
        .iter()
        .find_map(|p| match p {
            Price::Reserved(p)
                if &*p.sku == sku
                    && p.lease_years == years
                    && &*p.offering_class == class
                    && &*p.purchase_option == option =>
            {
                Some(p)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no reserved {years}yr {class} {option} price for {sku}"))
}

fn ebs(prices: &[Price], kind: EbsKind) -> &EbsPrice {
    prices
        .iter()
        .find_map(|p| match p {
            Price::Ebs(p) if p.kind == kind => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no EBS {kind:?} price"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn real_getproducts_m5_large() {
    let text = include_str!("../../tests/fixtures/getproducts_m5_large_offer.json");
    // No regionCode in 2021 attributes: without a region it is an error.
    let e = parse(text).unwrap_err();
    assert!(e.to_string().contains("no regionCode"), "{e}");
    let options = ParseOptions {
        region: Some("us-east-1".into()),
        ..ParseOptions::default()
    };
    let (meta, counts, prices) = parse_opts(text.as_bytes(), &options).unwrap();
    assert_eq!(meta.version, "20210205204500");
    assert_eq!((counts.on_demand, counts.reserved, counts.ebs), (1, 12, 0));
    let sku = "6C86BEPQVG73ZGGR";
    let od = on_demand(&prices, sku);
    assert_eq!(
        (od.usd_per_hour, &*od.key.operation),
        (0.096, "RunInstances")
    );
    assert_eq!(&*od.key.region, "us-east-1");
    assert_eq!(&*od.effective, "2021-02-01T00:00:00Z");
    // 3yr standard Partial Upfront: 0.019 + 505 / 26280
    let p = reserved(&prices, sku, 3, "standard", "Partial Upfront");
    assert_eq!((p.upfront_usd, p.hourly_usd), (505.0, 0.019));
    assert!(close(p.effective_hourly_usd, 0.038_216_133_942_161_3));
    // 1yr standard All Upfront: 494 / 8760
    let a = reserved(&prices, sku, 1, "standard", "All Upfront");
    assert!(close(a.effective_hourly_usd, 0.056_392_694_063_926_94));
    // 1yr convertible No Upfront: just the hourly rate
    let c = reserved(&prices, sku, 1, "convertible", "No Upfront");
    assert_eq!((c.upfront_usd, c.effective_hourly_usd), (0.0, 0.071));
}

#[test]
fn golden_counts_and_meta() {
    let (meta, counts, prices) = parse(SMALL).unwrap();
    assert_eq!(
        meta,
        OfferMeta {
            format_version: "v1.0".into(),
            offer_code: "AmazonEC2".into(),
            version: "20250523232744".into(),
            publication_date: "2025-05-23T23:27:44Z".into(),
        }
    );
    assert_eq!(
        counts,
        Counts {
            bytes: SMALL.len() as u64,
            products: 9,
            instance_products: 3,
            ebs_products: 4,
            // the capacity reservation and the data transfer
            skipped_products: 2,
            other_region_products: 0,
            on_demand: 3,
            reserved: 5,
            ebs: 4,
            skipped_terms: 2,
            skipped_term_types: 0,
        }
    );
    assert_eq!(prices.len(), 12);
    assert!(prices.iter().all(|p| p.sku() != CAPACITY_RESERVATION));
}

#[test]
fn golden_on_demand() {
    let (_, _, prices) = parse(SMALL).unwrap();
    let p = on_demand(&prices, M5_LINUX);
    assert_eq!(
        p.key,
        InstanceKey {
            region: "us-east-1".into(),
            instance_type: "m5.large".into(),
            operating_system: "Linux".into(),
            tenancy: "Shared".into(),
            license_model: "No License required".into(),
            pre_installed_sw: "NA".into(),
            operation: "RunInstances".into(),
        }
    );
    assert_eq!(p.usd_per_hour, 0.096);
    assert_eq!(p.usd_per_hour_exact.to_string(), "0.096");
    assert_eq!(&*p.effective, "2025-05-01T00:00:00Z");

    let w = on_demand(&prices, M5_WINDOWS);
    assert_eq!(&*w.key.operating_system, "Windows");
    assert_eq!(&*w.key.operation, "RunInstances:0002");
    assert_eq!(
        platform::platform_details(&w.key.operation),
        Some("Windows")
    );
    assert_eq!(w.usd_per_hour, 0.188);

    let d = on_demand(&prices, C5_DEDICATED);
    assert_eq!(&*d.key.tenancy, "Dedicated");
    assert_eq!(&*d.key.instance_type, "c5.xlarge");
    assert_eq!(d.usd_per_hour, 0.187);
}

#[test]
fn golden_reserved() {
    let (_, _, prices) = parse(SMALL).unwrap();

    let no_upfront = reserved(&prices, M5_LINUX, 1, "standard", "No Upfront");
    assert_eq!(&*no_upfront.offering_class, "standard");
    assert_eq!(no_upfront.upfront_usd, 0.0);
    assert_eq!(no_upfront.hourly_usd, 0.06);
    assert_eq!(no_upfront.effective_hourly_usd, 0.06);
    assert_eq!(&*no_upfront.effective, "2024-04-01T00:00:00Z");

    // 0.034 + 294 / 8760 = 0.034 + 0.0335616438356… = 0.0675616438356…
    let partial = reserved(&prices, M5_LINUX, 1, "standard", "Partial Upfront");
    assert_eq!(partial.upfront_exact, Usd::parse("294").unwrap());
    assert_eq!(partial.hourly_exact.to_string(), "0.034");
    assert!(close(partial.effective_hourly_usd, 0.067_561_643_835_616_4));

    // 1656 / (3 × 8760) = 1656 / 26280 = 0.0630136986301…
    let all = reserved(&prices, M5_LINUX, 3, "convertible", "All Upfront");
    assert_eq!(&*all.offering_class, "convertible");
    assert_eq!(all.hourly_usd, 0.0);
    assert_eq!(all.upfront_usd, 1656.0);
    assert!(close(all.effective_hourly_usd, 0.063_013_698_630_137));

    // Windows: 0.125 + 1100 / 8760 = 0.25057077625570776
    let win = reserved(&prices, M5_WINDOWS, 1, "standard", "Partial Upfront");
    assert_eq!(&*win.key.operating_system, "Windows");
    assert!(close(win.effective_hourly_usd, 0.250_570_776_255_707_8));

    // Dedicated: 0.068 + 1800 / 26280 = 0.1364931506849315
    let ded = reserved(&prices, C5_DEDICATED, 3, "standard", "Partial Upfront");
    assert_eq!(&*ded.key.tenancy, "Dedicated");
    assert!(close(ded.effective_hourly_usd, 0.136_493_150_684_931_5));
}

#[test]
fn golden_ebs() {
    let (_, _, prices) = parse(SMALL).unwrap();
    let storage = ebs(&prices, EbsKind::Storage);
    assert_eq!(
        (
            &*storage.volume_api_name,
            &*storage.unit,
            storage.usd_per_unit
        ),
        ("gp3", "GB-Mo", 0.08)
    );
    assert_eq!(&*storage.region, "us-east-1");
    assert_eq!(&*storage.usage_type, "EBS:VolumeUsage.gp3");
    let iops = ebs(&prices, EbsKind::Iops);
    assert_eq!(
        (&*iops.volume_api_name, &*iops.unit, iops.usd_per_unit),
        ("gp3", "IOPS-Mo", 0.005)
    );
    let thr = ebs(&prices, EbsKind::Throughput);
    assert_eq!(
        (&*thr.volume_api_name, &*thr.unit, thr.usd_per_unit),
        ("gp3", "GiBps-mo", 40.96)
    );
    let snap = ebs(&prices, EbsKind::Snapshot);
    assert_eq!(
        (&*snap.volume_api_name, &*snap.unit, snap.usd_per_unit),
        ("snapshot", "GB-Mo", 0.05)
    );
    assert_eq!(snap.usd_per_unit_exact.to_string(), "0.05");
}

/// A reader that hands out at most `step` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A reader that returns `data[..split]` then `data[split..]`.
struct Split<'a> {
    data: &'a [u8],
    split: usize,
}

impl Read for Split<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.split > 0 {
            self.split.min(buf.len())
        } else {
            buf.len()
        }
        .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.split = self.split.saturating_sub(n);
        Ok(n)
    }
}

#[test]
fn every_chunk_size_gives_identical_results() {
    let expected = parse(SMALL).unwrap();
    let sizes = (1..=64).chain([97, 128, 255, 256, 257, 1000, 1024, 4096, 8191, 65536]);
    for chunk in sizes {
        let options = ParseOptions {
            chunk_bytes: chunk,
            ..ParseOptions::default()
        };
        let got = parse_opts(SMALL.as_bytes(), &options).unwrap();
        assert_eq!(got, expected, "chunk size {chunk}");
    }
}

#[test]
fn one_byte_reads_give_identical_results() {
    let expected = parse(SMALL).unwrap();
    for chunk in [1, 7, 4096] {
        let options = ParseOptions {
            chunk_bytes: chunk,
            ..ParseOptions::default()
        };
        let reader = Trickle {
            data: SMALL.as_bytes(),
            step: 1,
        };
        assert_eq!(parse_opts(reader, &options).unwrap(), expected);
    }
}

#[test]
fn a_read_boundary_at_every_byte_gives_identical_results() {
    let expected = parse(SMALL).unwrap();
    let options = ParseOptions {
        chunk_bytes: 4096,
        ..ParseOptions::default()
    };
    for split in 1..SMALL.len() {
        let reader = Split {
            data: SMALL.as_bytes(),
            split,
        };
        let got = parse_opts(reader, &options).unwrap();
        assert!(got == expected, "split at byte {split}");
    }
}

#[test]
fn truncated_anywhere_is_an_error_at_the_end() {
    let options = ParseOptions {
        chunk_bytes: 97,
        ..ParseOptions::default()
    };
    for cut in (1..SMALL.len()).step_by(13).chain([SMALL.len() - 1]) {
        match parse_opts(&SMALL.as_bytes()[..cut], &options) {
            Err(OfferError::Truncated { offset, inside }) => {
                assert_eq!(offset, cut as u64, "cut {cut}: {inside}");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let e = parse(&SMALL[..SMALL.find("\"terms\"").unwrap() + 200]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(e.to_string().contains("terms.OnDemand of SKU"), "{e}");
}

#[test]
fn invalid_json_names_offset_and_sku() {
    // A broken product.
    let bad = replace_once(SMALL, "\"vcpu\" : \"4\"", "\"vcpu\" ; \"4\"");
    let at = bad.find("\"vcpu\" ; ").unwrap() as u64;
    let e = parse(&bad).unwrap_err();
    assert!(matches!(e, OfferError::InvalidJson { .. }), "{e}");
    assert_eq!(e.sku(), Some(C5_DEDICATED));
    assert!(e.offset().abs_diff(at) < 10, "{e} vs {at}");

    // Between products.
    let bad = replace_once(
        SMALL,
        "  },\n    \"W9X2BZC7KQ4HJ5DE\" : {",
        "  }\n    \"W9X2BZC7KQ4HJ5DE\" : {",
    );
    let e = parse(&bad).unwrap_err();
    assert!(
        matches!(e, OfferError::InvalidJson { sku: None, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("expected ',' or '}'"), "{e}");

    // Inside a kept SKU's terms.
    let bad = replace_once(
        SMALL,
        "\"offerTermCode\" : \"HU7G6KETJZ\",",
        "\"offerTermCode\" : \"HU7G6KETJZ\",,",
    );
    let e = parse(&bad).unwrap_err();
    assert!(matches!(e, OfferError::InvalidJson { .. }), "{e}");
    assert_eq!(e.sku(), Some(M5_LINUX));

    // A kept attribute of the wrong type.
    let bad = replace_once(
        SMALL,
        "\"instanceType\" : \"m5.large\"",
        "\"instanceType\" : 5",
    );
    let e = parse(&bad).unwrap_err();
    assert!(matches!(e, OfferError::InvalidJson { .. }), "{e}");
    assert_eq!(e.sku(), Some(M5_LINUX));
    assert!(e.to_string().contains("expected a string"), "{e}");

    // Trailing garbage.
    let e = parse(&format!("{SMALL}\n}}")).unwrap_err();
    assert!(e.to_string().contains("data after the end"), "{e}");
}

#[test]
fn price_not_a_number() {
    let bad = replace_once(SMALL, "\"USD\" : \"0.1880000000\"", "\"USD\" : \"0.18x\"");
    let at = bad.find("0.18x").unwrap() as u64;
    match parse(&bad).unwrap_err() {
        OfferError::PriceNotANumber { offset, sku, value } => {
            assert_eq!(
                (offset, sku.as_str(), value.as_str()),
                (at, M5_WINDOWS, "0.18x")
            );
        }
        e => panic!("{e}"),
    }
    // A JSON number instead of a string is refused too.
    let bad = replace_once(SMALL, "\"USD\" : \"294\"", "\"USD\" : 294");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.sku(), Some(M5_LINUX), "{e}");
}

#[test]
fn currency_other_than_usd() {
    let bad = replace_once(SMALL, "\"USD\" : \"0.0800000000\"", "\"CNY\" : \"0.5\"");
    let at = bad.find("CNY").unwrap() as u64;
    match parse(&bad).unwrap_err() {
        OfferError::NotUsd {
            offset,
            sku,
            currency,
        } => assert_eq!(
            (offset, sku.as_str(), currency.as_str()),
            (at, "GP3STRG5Q2W8E4RT", "CNY")
        ),
        e => panic!("{e}"),
    }
}

#[test]
fn sku_in_terms_without_product() {
    let from = "\"W9X2BZC7KQ4HJ5DE\" : {\n        \"W9X2BZC7KQ4HJ5DE.HU7G6KETJZ\"";
    let bad = replace_once(
        SMALL,
        from,
        "\"NOSUCHPRODUCT123\" : {\n        \"W9X2BZC7KQ4HJ5DE.HU7G6KETJZ\"",
    );
    let at = bad.find("\"NOSUCHPRODUCT123\"").unwrap() as u64;
    let e = parse(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "SKU NOSUCHPRODUCT123 in terms.Reserved (byte offset {at}) has no product in `products`"
        )
    );
    assert_eq!(e.sku(), Some("NOSUCHPRODUCT123"));
}

#[test]
fn unexpected_top_level_shapes() {
    let shape = |text: &str| match parse(text) {
        Err(OfferError::UnexpectedShape { what, .. }) => what,
        other => panic!("{text:?}: {other:?}"),
    };
    assert!(shape("").contains("empty"));
    assert!(shape("  [1, 2]").contains("not a JSON object"));
    assert!(shape(r#"{"products": []}"#).contains("`products` is not an object"));
    assert!(shape(r#"{"products": {}, "terms": 3}"#).contains("`terms` is not an object"));
    assert!(shape(r#"{"products": {}, "terms": {"OnDemand": "x"}}"#).contains("terms.OnDemand"));
    assert!(shape(r#"{"offerCode": 7}"#).contains("offerCode is not a string"));
    assert!(shape(r#"{"formatVersion": "v1.0"}"#).contains("no `products`"));
    assert!(shape(r#"{"products": {}}"#).contains("no `terms`"));
    let lambda = replace_once(
        SMALL,
        "\"offerCode\" : \"AmazonEC2\"",
        "\"offerCode\" : \"AWSLambda\"",
    );
    assert!(shape(&lambda).contains("\"AWSLambda\", not \"AmazonEC2\""));
    // Minimal but complete: fine, and unknown keys anywhere are skipped.
    let (_, counts, prices) = parse(
        r#"{"x": [1, {"y": "}"}, null, -2.5e3, true], "products": {}, "z": "\"{",
            "terms": {"Spot": {"a": [{}]}, "OnDemand": {}}}"#,
    )
    .unwrap();
    assert_eq!((counts.skipped_term_types, prices.len()), (1, 0));
}

#[test]
fn terms_before_products_is_refused() {
    let bad = r#"{"terms": {"OnDemand": {}}, "products": {}}"#;
    match parse(bad).unwrap_err() {
        OfferError::TermsBeforeProducts { offset } => assert_eq!(offset, 1),
        e => panic!("{e}"),
    }
}

#[test]
fn oversized_entry_is_refused() {
    let options = ParseOptions {
        chunk_bytes: 64,
        max_entry_bytes: 1024,
        region: None,
    };
    let e = parse_opts(SMALL.as_bytes(), &options).unwrap_err();
    assert!(
        matches!(e, OfferError::EntryTooLarge { limit: 1024, .. }),
        "{e}"
    );
    assert_eq!(e.sku(), Some(M5_LINUX));
}

#[test]
fn sink_error_stops_the_parse() {
    let mut seen = 0;
    let e = parse_offer(SMALL.as_bytes(), |_| {
        seen += 1;
        if seen == 2 {
            Err("storage is down")
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(matches!(e, OfferError::Sink { .. }), "{e}");
    assert_eq!(e.sku(), Some(M5_WINDOWS));
    assert!(e.to_string().contains("storage is down"));
}

#[test]
fn read_errors_name_the_offset() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let e = parse_opts(Failing(&SMALL.as_bytes()[..5000]), &ParseOptions::default()).unwrap_err();
    assert!(matches!(e, OfferError::Io { offset: 5000, .. }), "{e}");
}

#[test]
fn region_filter_and_fallback() {
    let options = ParseOptions {
        region: Some("eu-west-1".into()),
        ..ParseOptions::default()
    };
    let (_, counts, prices) = parse_opts(SMALL.as_bytes(), &options).unwrap();
    assert!(prices.is_empty());
    assert_eq!(counts.other_region_products, 7);
    assert_eq!(counts.skipped_products, 9);

    // Products without regionCode take the given region…
    let old = SMALL.replace("\"regionCode\" : \"us-east-1\",", "");
    let options = ParseOptions {
        region: Some("us-east-1".into()),
        ..ParseOptions::default()
    };
    let (_, _, prices) = parse_opts(old.as_bytes(), &options).unwrap();
    assert_eq!(prices, parse(SMALL).unwrap().2);
    // …and without one, a kept product without regionCode is an error.
    let e = parse(&old).unwrap_err();
    assert!(e.to_string().contains("no regionCode"), "{e}");
}

#[test]
fn escapes_in_strings() {
    // Escapes in kept values are decoded; brackets and quotes inside strings
    // of skipped values do not confuse the skipper.
    let text = replace_once(
        SMALL,
        "\"instanceType\" : \"c5.xlarge\"",
        "\"instanceType\" : \"c5.\\u0078large\"",
    );
    let text = replace_once(
        &text,
        "\"description\" : \"$0.090 per GB",
        "\"description\" : \"}}]] \\\" {{ \\\\ $0.090 per GB",
    );
    let text = replace_once(
        &text,
        "\"description\" : \"$0.096 per Linux m5.large Instance Hour in Capacity",
        "\"description\" : \"\\\\\\\"}\\\\{[x Capacity",
    );
    let expected = parse(SMALL).unwrap().2;
    for chunk in [1, 2, 3, 5, 64, 1 << 20] {
        let options = ParseOptions {
            chunk_bytes: chunk,
            ..ParseOptions::default()
        };
        let (_, _, prices) = parse_opts(text.as_bytes(), &options).unwrap();
        assert_eq!(prices, expected, "chunk {chunk}");
    }
}

#[test]
fn unexpected_dimensions_are_errors() {
    // An on-demand instance price that is not hourly.
    let bad = replace_once(
        SMALL,
        "\"unit\" : \"Hrs\",\n              \"pricePerUnit\" : {\n                \"USD\" : \"0.0960000000\"",
        "\"unit\" : \"GB\",\n              \"pricePerUnit\" : {\n                \"USD\" : \"0.0960000000\"",
    );
    let e = parse(&bad).unwrap_err();
    assert!(matches!(e, OfferError::UnexpectedPrice { .. }), "{e}");
    assert_eq!(e.sku(), Some(M5_LINUX));
    // A reserved term with a lease length we cannot read.
    let bad = replace_once(
        SMALL,
        "\"LeaseContractLength\" : \"3yr\"",
        "\"LeaseContractLength\" : \"36 months\"",
    );
    let e = parse(&bad).unwrap_err();
    assert!(e.to_string().contains("lease length \"36 months\""), "{e}");
    // A product listed twice.
    let dup = SMALL.replacen(
        "\"W9X2BZC7KQ4HJ5DE\" : {\n      \"sku\"",
        "\"TQ4WBPXUS6NVAC8E\" : {\n      \"sku\"",
        1,
    );
    let e = parse(&dup).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
}

const TIERS: &str = include_str!("../../tests/fixtures/offer_ebs_tiers.json");

fn ebs_of<'a>(prices: &'a [Price], region: &str, usage: &str) -> Vec<&'a EbsPrice> {
    prices
        .iter()
        .filter_map(|p| match p {
            Price::Ebs(p) if &*p.region == region && &*p.usage_type == usage => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn provisioned_throughput_family_and_tier_ranges_are_read() {
    let (_, counts, prices) = parse(TIERS).unwrap();
    assert_eq!(counts.skipped_products, 0);
    // gp3 throughput: family `Provisioned Throughput`, per GiBps-mo.
    let [thr] = ebs_of(&prices, "us-east-1", "EBS:VolumeP-Throughput.gp3")[..] else {
        panic!("one gp3 throughput price in us-east-1");
    };
    assert_eq!(
        (
            thr.kind,
            &*thr.volume_api_name,
            &*thr.unit,
            thr.usd_per_unit
        ),
        (EbsKind::Throughput, "gp3", "GiBps-mo", 40.96)
    );
    assert_eq!((thr.begin_range, thr.end_range), (0.0, None));
    // Tier products: each 0–Inf in the file.
    let [t2] = ebs_of(&prices, "us-east-1", "EBS:VolumeP-IOPS.io2.tier2")[..] else {
        panic!("one io2 tier-2 price");
    };
    assert_eq!((t2.kind, t2.usd_per_unit), (EbsKind::Iops, 0.0455));
    // One product with three ranged dimensions: three prices.
    let tiers: Vec<(f64, Option<f64>, f64)> =
        ebs_of(&prices, "us-east-2", "USE2-EBS:VolumeP-IOPS.io2")
            .iter()
            .map(|p| (p.begin_range, p.end_range, p.usd_per_unit))
            .collect();
    assert_eq!(
        tiers,
        vec![
            (0.0, Some(32000.0), 0.065),
            (32000.0, Some(64000.0), 0.0455),
            (64000.0, None, 0.03185)
        ]
    );
}

#[test]
fn a_throughput_product_without_volume_api_name_is_named_by_its_usage_type() {
    let text = replace_once(
        TIERS,
        ",\n        \"volumeApiName\" : \"gp3\"\n      }\n    },\n    \"EBSTIO2STORUSE1A\"",
        "\n      }\n    },\n    \"EBSTIO2STORUSE1A\"",
    );
    let (_, _, prices) = parse(&text).unwrap();
    let [thr] = ebs_of(&prices, "us-east-1", "EBS:VolumeP-Throughput.gp3")[..] else {
        panic!("one gp3 throughput price");
    };
    assert_eq!(&*thr.volume_api_name, "gp3");
}

#[test]
fn a_bad_tier_range_is_refused_with_its_sku() {
    for (from, to) in [
        ("\"beginRange\" : \"32000\"", "\"beginRange\" : \"lots\""),
        ("\"endRange\" : \"32000\"", "\"endRange\" : \"0\""),
    ] {
        let err = parse(&replace_once(TIERS, from, to)).unwrap_err();
        assert!(
            matches!(&err, OfferError::UnexpectedPrice { sku, .. } if sku == "EBSTIO2IOPSUSE2A"),
            "{err}"
        );
    }
}
