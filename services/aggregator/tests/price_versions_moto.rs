//! Price versions (issue 17, item 5) on moto: versions are ordered by the
//! offer file's `publicationDate`, not by their `version` string; a
//! version already stored is never overwritten with other content; an
//! unexpected `formatVersion` is logged and counted. Offer files are
//! `pricing/tests/fixtures/offer_small.json` (m5.large Linux 0.096/h)
//! with the version, date, format or m5.large price changed, stored by the
//! pricing service's ingest; the hour is priced by the aggregator.

use std::collections::BTreeMap;

use aggregator::Aggregator;
use chrono::{DateTime, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::keys;
use kopter_schema::messages::AggregateHour;
use kopter_schema::{AccountId, Table, TenantId};
use kopter_store::inventory::{Change, EventRow, InventoryRow, Resource, inventory_sk};
use kopter_tests::{TestEnv, random_account, unique};
use pricing::ingest::{RegionOutcome, VersionConflict};

const OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_small.json");
const REGION: &str = "us-east-1";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The fixture as version `version` published at `published`, m5.large
/// Linux at `m5_large` (the file's text, e.g. `0.1000000000`).
fn offer(version: &str, published: &str, m5_large: &str, format: &str) -> Vec<u8> {
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "fixture lacks {from:?}");
        text.replacen(from, to, 1)
    };
    let mut text = OFFER.to_owned();
    text = replace(text, "\"20250523232744\"", &format!("\"{version}\""));
    text = replace(
        text,
        "\"2025-05-23T23:27:44Z\"",
        &format!("\"{published}\""),
    );
    text = replace(text, "\"0.0960000000\"", &format!("\"{m5_large}\""));
    text = replace(
        text,
        "\"formatVersion\" : \"v1.0\"",
        &format!("\"formatVersion\" : \"{format}\""),
    );
    text.into_bytes()
}

/// A counter's value in the process registry (0 before first use).
fn counter(name: &str) -> f64 {
    kopter_runtime::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn versions_are_ordered_by_publication_and_never_rewritten() {
    let env = TestEnv::new().await;
    let pricing = pricing::ingest::Ingestor::new(&env.ctx).unwrap();
    let ingest = |bytes: Vec<u8>| {
        let pricing = pricing.clone();
        async move {
            pricing
                .ingest_reader(std::io::Cursor::new(bytes), "offer.json", REGION)
                .await
        }
    };

    // A: AWS's timestamp version, published August 1st, 0.096.
    let (a, _, _) = ingest(offer(
        "20250801000000",
        "2025-08-01T00:00:00Z",
        "0.0960000000",
        "v1.0",
    ))
    .await
    .unwrap();
    assert!(
        matches!(
            a,
            RegionOutcome::Ingested {
                committed: true,
                ..
            }
        ),
        "{a:?}"
    );
    // B: a reprice published August 3rd under a version string that sorts
    // *before* A's. Compared as strings it was "older" and not committed.
    let (b, _, _) = ingest(offer(
        "0801-reprice",
        "2025-08-03T00:00:00Z",
        "0.1000000000",
        "v1.0",
    ))
    .await
    .unwrap();
    assert!(
        matches!(
            b,
            RegionOutcome::Ingested {
                committed: true,
                ..
            }
        ),
        "{b:?}"
    );
    assert_eq!(
        pricing
            .store
            .current(REGION)
            .await
            .unwrap()
            .unwrap()
            .version,
        "0801-reprice"
    );

    // B again with other content (m5.large 9.999): refused before any
    // row is written, and counted.
    let conflicts = counter("kopter_pricing_version_conflicts_total");
    let err = ingest(offer(
        "0801-reprice",
        "2025-08-03T00:00:00Z",
        "9.9990000000",
        "v1.0",
    ))
    .await
    .unwrap_err();
    let conflict = err
        .chain()
        .find_map(|e| e.downcast_ref::<VersionConflict>())
        .unwrap_or_else(|| panic!("not a version conflict: {err:#}"));
    assert_eq!(conflict.version, "0801-reprice");
    assert_ne!(conflict.stored_sha256, conflict.new_sha256);
    assert!(counter("kopter_pricing_version_conflicts_total") >= conflicts + 1.0);
    let stored = pricing
        .store
        .instance_prices(REGION, "0801-reprice", "m5.large", "Shared")
        .await
        .unwrap()
        .unwrap();
    assert!(close(stored.on_demand["RunInstances"].usd_per_hour, 0.1));
    // The same content again is harmless: nothing changes.
    let (again, _, _) = ingest(offer(
        "0801-reprice",
        "2025-08-03T00:00:00Z",
        "0.1000000000",
        "v1.0",
    ))
    .await
    .unwrap();
    assert_eq!(
        again,
        RegionOutcome::Unchanged {
            version: "0801-reprice".into()
        }
    );
    // An older version re-ingested unchanged stays where it was.
    let (a2, _, _) = ingest(offer(
        "20250801000000",
        "2025-08-01T00:00:00Z",
        "0.0960000000",
        "v1.0",
    ))
    .await
    .unwrap();
    assert!(
        matches!(
            a2,
            RegionOutcome::Ingested {
                committed: false,
                ..
            }
        ),
        "{a2:?}"
    );

    // A file of another formatVersion is stored, logged and counted.
    let formats = counter("kopter_pricing_unexpected_format_total");
    let (c, _, _) = ingest(offer(
        "20250901000000",
        "2025-09-01T00:00:00Z",
        "0.0960000000",
        "v2.0",
    ))
    .await
    .unwrap();
    assert!(
        matches!(
            c,
            RegionOutcome::Ingested {
                committed: true,
                ..
            }
        ),
        "{c:?}"
    );
    assert!(counter("kopter_pricing_unexpected_format_total") >= formats + 1.0);
    // A file whose publicationDate is not a time cannot be ordered.
    let err = ingest(offer("20251001000000", "yesterday", "0.0960000000", "v1.0"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("publicationDate"), "{err:#}");

    // The aggregator prices each hour from the version published before
    // it: an m5.large running since August 1st costs 0.096 (A) in an hour
    // of August 2nd and 0.1 (B) in an hour of August 5th — 1 h × price.
    let tenant = TenantId::new(unique("versions-")).unwrap();
    let account = AccountId::new(random_account()).unwrap();
    env.ctx
        .accounts
        .onboard(
            Onboarding::parse(
                tenant.as_str(),
                account.as_str(),
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &[],
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let web: Resource = Resource::Instance(
        serde_json::from_value(serde_json::json!({
            "state": "running",
            "instance_type": "m5.large",
            "usage_operation": "RunInstances",
            "platform_details": "Linux/UNIX",
            "tenancy": "default",
            "lifecycle": "on-demand",
            "availability_zone": "us-east-1a",
        }))
        .unwrap(),
    );
    let at = t("2025-08-01T00:00:00Z");
    let row = EventRow::new(
        &tenant,
        &account,
        REGION,
        "i-web",
        Change::Launched,
        at,
        at,
        web.clone(),
    );
    env.put_row(Table::Ec2Events, &row).await;
    env.put_row(
        Table::Inventory,
        &InventoryRow {
            pk: keys::tenant_account(&tenant, &account),
            sk: inventory_sk(REGION, web.kind(), "i-web"),
            tenant: tenant.clone(),
            account: account.clone(),
            region: REGION.into(),
            resource_id: "i-web".into(),
            gone: false,
            first_seen: at,
            last_seen: t("2025-08-06T00:00:00Z"),
            last_change_at: Some(at),
            version: 1,
            unpublished: vec![],
            resource: web,
        },
    )
    .await;
    let agg = Aggregator::new(&env.ctx);
    let mut cost = BTreeMap::new();
    for hour in ["2025-08-02T10:00:00Z", "2025-08-05T10:00:00Z"] {
        agg.aggregate(&AggregateHour {
            hour: t(hour),
            backfill_hours: 0,
            tenant: Some(tenant.clone()),
        })
        .await
        .unwrap();
        let rows = agg
            .graph
            .resource_hours(&tenant, &account, t(hour))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        cost.insert(hour, rows[0].cost_usd.unwrap());
    }
    assert!(close(cost["2025-08-02T10:00:00Z"], 0.096), "{cost:?}");
    assert!(close(cost["2025-08-05T10:00:00Z"], 0.1), "{cost:?}");
}
