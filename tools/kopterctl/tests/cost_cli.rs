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
    env.create_tenants(&[tenant.as_str(), "globex"]).await;
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
        tags: BTreeMap::from([
            ("team".into(), "web".into()),
            ("Name".into(), "web-1".into()),
        ]),
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

    // The RESERVED column is explained under every cost table.
    assert!(
        table.contains("RESERVED ALT: what the on-demand instance hours would have cost"),
        "{table}"
    );

    // Per resource: each hour of i-1 with its Name, as JSON and as CSV.
    let by_resource = |format: &'static str| {
        let tenant = tenant.to_string();
        let env = &env;
        async move {
            let out = kopterctl(
                env,
                &[
                    "cost",
                    "--tenant",
                    &tenant,
                    "--from",
                    "2025-06-02T10:00:00Z",
                    "--to",
                    "2025-06-02T12:00:00Z",
                    "--granularity",
                    "hour",
                    "--by",
                    "resource",
                    "--format",
                    format,
                ],
            )
            .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let json: serde_json::Value = serde_json::from_str(&by_resource("json").await).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{json}");
    for (r, hour) in rows
        .iter()
        .zip(["2025-06-02T10", "2025-06-02T11", "2025-06-02T12"])
    {
        assert_eq!(r["period"], hour, "{json}");
        assert_eq!(r["resource_id"], "i-1");
        assert_eq!(r["name"], "web-1");
        assert_eq!(r["detail"], "m5.large");
        assert!(
            (r["cost_usd"].as_f64().unwrap() - 0.096).abs() < 1e-9,
            "{json}"
        );
    }
    let csv = by_resource("csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(
        lines[0],
        "PERIOD,ACCOUNT,REGION,KIND,RESOURCE,NAME,DETAIL,COST USD,RESERVED ALT USD,MISSING"
    );
    assert!(
        lines[1].starts_with(&format!(
            "2025-06-02T10,{account},us-east-1,instance,i-1,web-1,m5.large,0.0960,"
        )),
        "{csv}"
    );
    let table = by_resource("table").await;
    assert!(
        table.contains("web-1") && table.contains("0.0960"),
        "{table}"
    );
    assert!(
        table.contains("3 resource-period(s), total 0.2880 USD"),
        "{table}"
    );

    // inventory: Name and the newest computed hour's cost (this hour).
    let now = chrono::Utc::now();
    agg.aggregate(&AggregateHour {
        hour: chrono::DurationRound::duration_trunc(now, chrono::Duration::hours(1)).unwrap(),
        backfill_hours: 0,
        tenant: None,
    })
    .await
    .unwrap();
    let out = kopterctl(
        &env,
        &["inventory", "--tenant", tenant.as_str(), "--format", "json"],
    )
    .await;
    let inv: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inv[0]["resource_id"], "i-1", "{inv}");
    assert_eq!(inv[0]["name"], "web-1", "{inv}");
    assert!(
        (inv[0]["cost_usd"].as_f64().unwrap() - 0.096).abs() < 1e-9,
        "{inv}"
    );
    let out = kopterctl(&env, &["inventory", "--tenant", tenant.as_str()]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("NAME") && header.contains("COST/H USD"),
        "{table}"
    );
    let row = table.lines().find(|l| l.contains("i-1")).unwrap();
    assert!(row.contains("web-1") && row.contains("0.0960"), "{table}");
    assert!(
        table.contains("COST/H USD: the newest computed hour"),
        "{table}"
    );

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
            "cost",
            "--tenant",
            tenant.as_str(),
            "--from",
            "last tuesday",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--from: \"last tuesday\" is not a time")
    );

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
    env.create_tenants(&[tenant.as_str()]).await;
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
    let csv = run("csv").await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("PERIOD,ACCOUNT,COST USD,RESERVED ALT USD,MISSING,PARTIAL"),
        "{csv}"
    );
    assert_eq!(
        lines.next(),
        Some(format!("2025-06-02T10,{account},0.1760,0.1760,1,1").as_str()),
        "{csv}"
    );
    let table = run("table").await;
    assert!(
        table.contains("1 resource-period(s) priced for some components only"),
        "{table}"
    );
}
