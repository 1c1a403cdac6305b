//! `kopterctl cost` and `kopterctl budget` against moto: the price graph
//! the aggregator wrote, per tenant, as a table and as JSON.

use std::collections::BTreeMap;
use std::process::Output;

use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::keys;
use kopter_schema::messages::AggregateHour;
use kopter_schema::{AccountId, Table, TenantId};
use kopter_store::inventory::{
    Change, EventRow, InstanceFields, InventoryRow, Resource, inventory_sk,
};
use kopter_tests::{TestEnv, random_account, unique};

const OFFER: &str = include_str!("../../../services/pricing/tests/fixtures/offer_small.json");

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    env.run(env!("CARGO_BIN_EXE_kopterctl"), args).await
}

#[tokio::test]
async fn cost_prints_the_tenants_series_and_budget_is_kept() {
    let env = TestEnv::new().await;
    let tenant = TenantId::new(unique("acme-")).unwrap();
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
    pricing::ingest::Ingestor::new(&env.ctx)
        .unwrap()
        .ingest_reader(
            std::io::Cursor::new(OFFER.as_bytes().to_vec()),
            "offer_small.json",
            "us-east-1",
        )
        .await
        .unwrap();
    // One m5.large Linux (0.096/h) running 2025-06-02 from 10:00 on.
    let at: chrono::DateTime<chrono::Utc> = "2025-06-02T10:00:00Z".parse().unwrap();
    let r = Resource::Instance(InstanceFields {
        state: "running".into(),
        instance_type: "m5.large".into(),
        usage_operation: "RunInstances".into(),
        platform_details: "Linux/UNIX".into(),
        tenancy: "default".into(),
        lifecycle: "on-demand".into(),
        availability_zone: "us-east-1a".into(),
        launch_time: Some(at),
        state_transition_reason: String::new(),
        tags: BTreeMap::from([("team".into(), "web".into())]),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    });
    env.put_row(
        Table::Ec2Events,
        &EventRow::new(
            &tenant,
            &account,
            "us-east-1",
            "i-1",
            Change::Launched,
            at,
            at,
            r.clone(),
        ),
    )
    .await;
    env.put_row(
        Table::Inventory,
        &InventoryRow {
            pk: keys::tenant_account(&tenant, &account),
            sk: inventory_sk("us-east-1", r.kind(), "i-1"),
            tenant: tenant.clone(),
            account: account.clone(),
            region: "us-east-1".into(),
            resource_id: "i-1".into(),
            gone: false,
            first_seen: at,
            last_seen: at,
            last_change_at: Some(at),
            version: 1,
            unpublished: vec![],
            resource: r,
        },
    )
    .await;
    let agg = aggregator::Aggregator::new(&env.ctx);
    agg.aggregate(&AggregateHour {
        hour: "2025-06-02T12:00:00Z".parse().unwrap(),
        backfill_hours: 2,
        tenant: None,
    })
    .await
    .unwrap();

    let out = kopterctl(
        &env,
        &[
            "cost",
            "--tenant",
            tenant.as_str(),
            "--from",
            "2025-06-02",
            "--to",
            "2025-06-02",
            "--by",
            "tag:team",
            "--format",
            "json",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let series: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let points = series.as_array().unwrap();
    assert_eq!(points.len(), 1, "{series}");
    assert_eq!(points[0]["group"], "web");
    assert_eq!(points[0]["period"], "2025-06-02");
    assert!(
        (points[0]["cost_usd"].as_f64().unwrap() - 3.0 * 0.096).abs() < 1e-9,
        "{series}"
    );

    let out = kopterctl(
        &env,
        &[
            "cost",
            "--tenant",
            tenant.as_str(),
            "--from",
            "2025-06-02T10:00:00Z",
            "--to",
            "2025-06-02T12:00:00Z",
            "--granularity",
            "hour",
            "--by",
            "family",
        ],
    )
    .await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("2025-06-02T1") && l.contains(" m5 "))
            .count(),
        3,
        "{table}"
    );
    assert!(table.contains("0.0960"), "{table}");

    // Another tenant sees nothing; bad arguments are refused (exit 2).
    let out = kopterctl(
        &env,
        &[
            "cost",
            "--tenant",
            "globex",
            "--from",
            "2025-06-02",
            "--to",
            "2025-06-02",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    let out = kopterctl(
        &env,
        &["cost", "--tenant", tenant.as_str(), "--by", "tag:nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tag:team"));

    let out = kopterctl(
        &env,
        &[
            "budget",
            "set",
            "--tenant",
            tenant.as_str(),
            "--monthly-usd",
            "250",
            "--thresholds",
            "100,50",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = agg.graph.budget(&tenant).await.unwrap().unwrap();
    assert_eq!((b.monthly_usd, b.thresholds), (250.0, vec![50, 100]));
    let out = kopterctl(
        &env,
        &[
            "budget",
            "set",
            "--tenant",
            tenant.as_str(),
            "--monthly-usd",
            "-3",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

/// A volume billed for some components only shows in the PARTIAL column
/// and the JSON's `price_partial`, its known part in the cost; an unpriced
/// instance in MISSING, never as 0.
#[tokio::test]
async fn cost_shows_partly_priced_resources_next_to_unpriced_ones() {
    use kopter_store::graph::{CostLine, GraphStore, expiry};
    use std::sync::Arc;

    let env = TestEnv::new().await;
    let tenant = TenantId::new(unique("acme-")).unwrap();
    let account = AccountId::new(random_account()).unwrap();
    let hour: chrono::DateTime<chrono::Utc> = "2025-06-02T10:00:00Z".parse().unwrap();
    let line = |id: &str, kind: &'static str, cost: Option<f64>, part: Option<&str>| CostLine {
        resource_id: id.into(),
        kind,
        region: "us-east-1".into(),
        hour,
        usage: 1.0,
        unit: "Hrs",
        cost_usd: cost,
        reserved_usd: None,
        missing: cost
            .is_none()
            .then(|| "no on-demand price for x9.huge".into()),
        missing_part: part.map(str::to_owned),
        family: "m5".into(),
        detail: String::new().into(),
        lifecycle: "".into(),
        tags: Arc::new(BTreeMap::new()),
        note: None,
    };
    GraphStore::new(env.ctx.aws.dynamodb(), &env.ctx.names)
        .replace_hour(
            &tenant,
            &account,
            hour,
            &[
                line("i-1", "instance", Some(0.096), None),
                line(
                    "vol-1",
                    "volume",
                    Some(0.08),
                    Some("gp3 throughput: no price"),
                ),
                line("i-2", "instance", None, None),
            ],
            &[],
            expiry(hour, 30),
        )
        .await
        .unwrap();
    let args = |format: &'static str| {
        [
            "cost",
            "--tenant",
            tenant.as_str(),
            "--from",
            "2025-06-02T10:00:00Z",
            "--to",
            "2025-06-02T10:00:00Z",
            "--granularity",
            "hour",
            "--format",
            format,
        ]
        .map(str::to_owned)
    };
    let run = |format| {
        let args = args(format);
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = kopterctl(env, &args).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let json: serde_json::Value = serde_json::from_str(&run("json").await).unwrap();
    assert_eq!(json[0]["price_missing"], 1, "{json}");
    assert_eq!(json[0]["price_partial"], 1, "{json}");
    assert!((json[0]["cost_usd"].as_f64().unwrap() - 0.176).abs() < 1e-9);
    let table = run("table").await;
    let header = table.lines().next().unwrap();
    assert!(header.ends_with("MISSING  PARTIAL"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("2025-06-02T10"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "2025-06-02T10",
            account.as_str(),
            "0.1760",
            "0.1760",
            "1",
            "1"
        ]
    );
    assert!(
        table.contains("1 resource-period(s) priced for some components only"),
        "{table}"
    );
}
