//! EBS volumes end to end on moto (issue 17, items 1 and 2): the offer
//! fragment `pricing/tests/fixtures/offer_ebs_tiers.json` stored by the
//! pricing service's ingest, the describer's history rows in DynamoDB,
//! the hour computed through the aggregator's entry point and the price
//! graph read back. Arithmetic as in `ebs_bill.rs` (June: 1 h = 1/720 of
//! a month; AWS's us-east-1 rates, <https://aws.amazon.com/ebs/pricing/>).

use std::collections::HashMap;

use aggregator::Aggregator;
use chrono::{DateTime, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::keys;
use kopter_schema::messages::AggregateHour;
use kopter_schema::{AccountId, Table, TenantId};
use kopter_store::inventory::{Change, EventRow, InventoryRow, Resource, inventory_sk};
use kopter_tests::{TestEnv, random_account, unique};

const OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_ebs_tiers.json");
const HOURS_IN_JUNE: f64 = 720.0;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn volume(volume_type: &str, size_gib: i64, iops: i64, throughput: i64) -> Resource {
    Resource::Volume(
        serde_json::from_value(serde_json::json!({
            "state": "in-use",
            "volume_type": volume_type,
            "size_gib": size_gib,
            "iops": iops,
            "throughput": throughput,
            "availability_zone": "us-east-1a",
        }))
        .unwrap(),
    )
}

/// Writes a volume created at June 1st as the describer does: its
/// history row and its inventory row.
async fn created(
    env: &TestEnv,
    tenant: &TenantId,
    account: &AccountId,
    region: &str,
    id: &str,
    r: Resource,
) {
    let at = t("2025-06-01T00:00:00Z");
    let row = EventRow::new(
        tenant,
        account,
        region,
        id,
        Change::Created,
        at,
        at,
        r.clone(),
    );
    env.put_row(Table::Ec2Events, &row).await;
    let inv = InventoryRow {
        pk: keys::tenant_account(tenant, account),
        sk: inventory_sk(region, r.kind(), id),
        tenant: tenant.clone(),
        account: account.clone(),
        region: region.into(),
        resource_id: id.into(),
        gone: false,
        first_seen: at,
        last_seen: t("2025-06-02T12:00:00Z"),
        last_change_at: Some(at),
        version: 1,
        unpublished: vec![],
        resource: r,
    };
    env.put_row(Table::Inventory, &inv).await;
}

#[tokio::test]
async fn gp3_throughput_io2_tiers_and_a_missing_component_through_the_aggregator() {
    let env = TestEnv::new().await;
    let tenant = TenantId::new(unique("ebs-")).unwrap();
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
    let pricing = pricing::ingest::Ingestor::new(&env.ctx).unwrap();
    for region in ["us-east-1", "us-west-2"] {
        pricing
            .ingest_reader(
                std::io::Cursor::new(OFFER.as_bytes().to_vec()),
                "offer_ebs_tiers.json",
                region,
            )
            .await
            .unwrap();
    }
    let volumes = [
        ("us-east-1", "vol-gp3", volume("gp3", 500, 3000, 1000)),
        ("us-east-1", "vol-io2", volume("io2", 500, 50_000, 0)),
        ("us-east-1", "vol-io2-max", volume("io2", 500, 256_000, 0)),
        ("us-west-2", "vol-part", volume("gp3", 500, 4000, 1000)),
    ];
    for (region, id, v) in volumes {
        created(&env, &tenant, &account, region, id, v).await;
    }

    let agg = Aggregator::new(&env.ctx);
    let reports = agg
        .aggregate(&AggregateHour {
            hour: t("2025-06-02T10:00:00Z"),
            backfill_hours: 0,
            tenant: Some(tenant.clone()),
        })
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].missing, reports[0].partial), (0, 1));

    let rows: HashMap<String, _> = agg
        .graph
        .resource_hours(&tenant, &account, t("2025-06-02T10:00:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.resource_id.clone(), r))
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    // 500 × 0.08 + 875/1024 × 40.96 = 40 + 35 = 75 a month.
    let gp3 = 75.0 / HOURS_IN_JUNE;
    // 62.5 + 32,000 × 0.065 + 18,000 × 0.0455 = 2,961.5 a month.
    let io2 = 2961.5 / HOURS_IN_JUNE;
    // 62.5 + 2,080 + 1,456 + 192,000 × 0.03185 = 9,713.7 a month.
    let io2_max = 9713.7 / HOURS_IN_JUNE;
    // us-west-2 has no throughput price: 40 + 1,000 × 0.005 = 45 billed.
    let part = 45.0 / HOURS_IN_JUNE;
    for (id, want) in [
        ("vol-gp3", gp3),
        ("vol-io2", io2),
        ("vol-io2-max", io2_max),
        ("vol-part", part),
    ] {
        let got = rows[id].cost_usd.unwrap();
        assert!(close(got, want), "{id}: {got} ≠ {want}");
    }
    assert_eq!(rows["vol-part"].price_missing, None);
    assert!(
        rows["vol-part"]
            .price_missing_part
            .as_deref()
            .unwrap()
            .contains("gp3 throughput")
    );
    assert_eq!(rows["vol-gp3"].price_missing_part, None);

    // Roll-ups: the known part counted in the cost, the volume counted
    // as partial, not as unpriced.
    let by_region = agg
        .graph
        .series(
            &tenant,
            None,
            "hour",
            "region",
            "2025-06-02T10",
            "2025-06-02T10",
        )
        .await
        .unwrap();
    let by: HashMap<_, _> = by_region.iter().map(|p| (p.group.as_str(), p)).collect();
    assert!(close(by["us-east-1"].cost_usd, gp3 + io2 + io2_max));
    assert_eq!(
        (by["us-east-1"].price_missing, by["us-east-1"].price_partial),
        (0, 0)
    );
    assert!(close(by["us-west-2"].cost_usd, part));
    assert_eq!(
        (by["us-west-2"].price_missing, by["us-west-2"].price_partial),
        (0, 1)
    );
    let day = agg
        .graph
        .series(
            &tenant,
            Some(&account),
            "day",
            "account",
            "2025-06-02",
            "2025-06-02",
        )
        .await
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].price_partial, 1);
}
