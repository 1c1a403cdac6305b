//! Waste findings against moto: describer history and the pricing
//! service's own ingest in DynamoDB, an `aggregate.hour` through the
//! aggregator, the finding rows read back, `waste.finding` events received
//! on the notifier's queue (topic → filtered subscription), then the
//! conditions end and the rows are resolved — each event once.
//!
//! Prices (`offer_small.json`, published 2025-05-23): gp3 0.08 per
//! GB-month. May has 744 hours, June 720.

use std::collections::BTreeMap;

use aggregator::Aggregator;
use chrono::{DateTime, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::keys;
use kopter_schema::messages::AggregateHour;
use kopter_schema::{AccountId, Envelope, Message, Service, Table, TenantId};
use kopter_store::inventory::{
    Change, EventRow, InstanceFields, InventoryRow, Resource, VolumeFields, inventory_sk,
};
use kopter_store::waste::{Rule, Status};
use kopter_tests::{TestEnv, random_account, unique};

const OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_small.json");

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn instance(state: &str) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: "m5.large".into(),
        usage_operation: "RunInstances".into(),
        platform_details: String::new(),
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

fn volume(state: &str, attached: Option<&str>) -> Resource {
    Resource::Volume(VolumeFields {
        state: state.into(),
        volume_type: "gp3".into(),
        size_gib: 100,
        iops: Some(3000),
        throughput: Some(125),
        attached_instance: attached.map(Into::into),
        availability_zone: "us-east-1a".into(),
        create_time: None,
        tags: BTreeMap::new(),
        zone: Default::default(),
    })
}

struct World {
    env: TestEnv,
    agg: Aggregator,
    tenant: TenantId,
    account: AccountId,
}

/// Appends states to a resource's history and makes the last one its
/// inventory row, as the describer does.
async fn history(w: &World, id: &str, states: &[(&str, Change, Resource)]) {
    for (at, change, r) in states {
        let row = EventRow::new(
            &w.tenant,
            &w.account,
            "us-east-1",
            id,
            *change,
            t(at),
            t(at),
            r.clone(),
        );
        w.env.put_row(Table::Ec2Events, &row).await;
    }
    let (last_at, _, last) = states.last().unwrap();
    let inv = InventoryRow {
        pk: keys::tenant_account(&w.tenant, &w.account),
        sk: inventory_sk("us-east-1", last.kind(), id),
        tenant: w.tenant.clone(),
        account: w.account.clone(),
        region: "us-east-1".into(),
        resource_id: id.into(),
        gone: false,
        first_seen: t(states[0].0),
        last_seen: t(last_at),
        last_change_at: Some(t(last_at)),
        version: 1,
        unpublished: vec![],
        resource: last.clone(),
    };
    w.env.put_row(Table::Inventory, &inv).await;
}

async fn world() -> World {
    let env = TestEnv::new().await;
    let tenant = TenantId::new(unique("waste-")).unwrap();
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
    let agg = Aggregator::new(&env.ctx);
    World {
        env,
        agg,
        tenant,
        account,
    }
}

async fn aggregate(w: &World, hour: &str) {
    w.agg
        .aggregate(&AggregateHour {
            hour: t(hour),
            backfill_hours: 0,
            tenant: Some(w.tenant.clone()),
        })
        .await
        .unwrap();
}

/// The `waste.finding` events on the notifier's queue: (resource, status).
async fn waste_events(w: &World) -> Vec<(String, String)> {
    let url = w.env.queue_url(Service::Notifier).await;
    let mut out = Vec::new();
    loop {
        let got = w
            .env
            .receive(&url, std::time::Duration::from_secs(600))
            .await;
        if got.is_empty() {
            out.sort();
            return out;
        }
        for m in got {
            if let Message::WasteFinding(f) = Envelope::decode(m.body.as_deref().unwrap())
                .unwrap()
                .message
            {
                assert_eq!(f.tenant, w.tenant);
                out.push((f.resource_id, f.status));
            }
        }
    }
}

#[tokio::test]
async fn findings_open_with_their_cost_and_resolve_once() {
    let w = world().await;
    // vol-idle: attached to i-run, detached June 2nd 06:00.
    history(
        &w,
        "i-run",
        &[(
            "2025-05-24T00:00:00Z",
            Change::Launched,
            instance("running"),
        )],
    )
    .await;
    history(
        &w,
        "vol-idle",
        &[
            (
                "2025-06-01T00:00:00Z",
                Change::Created,
                volume("in-use", Some("i-run")),
            ),
            (
                "2025-06-02T06:00:00Z",
                Change::StateChanged,
                volume("available", None),
            ),
        ],
    )
    .await;
    // vol-web: on i-stop, stopped May 25th 00:00.
    history(
        &w,
        "i-stop",
        &[
            (
                "2025-05-24T00:00:00Z",
                Change::Launched,
                instance("running"),
            ),
            (
                "2025-05-25T00:00:00Z",
                Change::StateChanged,
                instance("stopped"),
            ),
        ],
    )
    .await;
    history(
        &w,
        "vol-web",
        &[(
            "2025-05-24T00:00:00Z",
            Change::Created,
            volume("in-use", Some("i-stop")),
        )],
    )
    .await;

    // Evaluated after the hour 05:00 of June 4th (now = 06:00).
    aggregate(&w, "2025-06-04T05:00:00Z").await;
    let rows = w.agg.waste.findings(&w.tenant).await.unwrap();
    let by: BTreeMap<(&str, Rule), _> = rows
        .iter()
        .map(|r| ((r.finding.resource_id.as_str(), r.finding.rule), r))
        .collect();
    assert_eq!(by.len(), 2, "{rows:#?}");
    let idle = by[&("vol-idle", Rule::UnattachedVolume)];
    assert_eq!(idle.status, Status::Open);
    assert_eq!(idle.finding.since, t("2025-06-02T06:00:00Z"));
    // 48 h × 100 × 0.08 / 720 = 0.5333…; a month 8/720 × 730 = 8.1111….
    assert!(
        close(idle.finding.accrued_usd, 384.0 / 720.0),
        "{:?}",
        idle.finding
    );
    assert!(close(idle.finding.monthly_usd.unwrap(), 5840.0 / 720.0));
    assert_eq!(idle.finding.unpriced_hours, 0);
    let web = by[&("vol-web", Rule::StoppedInstanceVolume)];
    assert_eq!(web.finding.since, t("2025-05-25T00:00:00Z"));
    // May 25th → June 1st: 168 h × 8/744 = 1344/744; then 78 h × 8/720.
    assert!(
        close(web.finding.accrued_usd, 1344.0 / 744.0 + 624.0 / 720.0),
        "{:?}",
        web.finding
    );
    assert_eq!(
        waste_events(&w).await,
        [
            ("vol-idle".to_string(), "open".to_string()),
            ("vol-web".into(), "open".into())
        ]
    );

    // The same hour again (a redelivery): nothing new is published, the
    // rows are the same.
    aggregate(&w, "2025-06-04T05:00:00Z").await;
    assert_eq!(waste_events(&w).await, []);
    assert_eq!(w.agg.waste.findings(&w.tenant).await.unwrap(), rows);

    // i-stop started at 06:30, vol-idle deleted at 06:15.
    history(
        &w,
        "i-stop",
        &[(
            "2025-06-04T06:30:00Z",
            Change::StateChanged,
            instance("running"),
        )],
    )
    .await;
    history(
        &w,
        "vol-idle",
        &[(
            "2025-06-04T06:15:00Z",
            Change::Deleted,
            volume("deleted", None),
        )],
    )
    .await;
    aggregate(&w, "2025-06-04T06:00:00Z").await;
    let rows = w.agg.waste.findings(&w.tenant).await.unwrap();
    assert!(
        rows.iter().all(|r| r.status == Status::Resolved),
        "{rows:#?}"
    );
    let resolution = |id: &str| {
        rows.iter()
            .find(|r| r.finding.resource_id == id)
            .and_then(|r| r.resolution.clone())
            .unwrap()
    };
    assert_eq!(resolution("vol-idle"), "resource gone");
    assert_eq!(resolution("vol-web"), "condition ended");
    assert_eq!(
        waste_events(&w).await,
        [
            ("vol-idle".to_string(), "resolved".to_string()),
            ("vol-web".into(), "resolved".into())
        ]
    );

    // An older hour delivered late does not reopen them.
    aggregate(&w, "2025-06-04T05:00:00Z").await;
    assert!(
        w.agg
            .waste
            .findings(&w.tenant)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status == Status::Resolved)
    );
    assert_eq!(waste_events(&w).await, []);
}

#[tokio::test]
async fn a_stored_accrual_is_extended_once_a_day_not_every_hour() {
    let w = world().await;
    history(
        &w,
        "vol-idle",
        &[
            (
                "2025-06-01T00:00:00Z",
                Change::Created,
                volume("in-use", Some("i-run")),
            ),
            (
                "2025-06-02T06:00:00Z",
                Change::StateChanged,
                volume("available", None),
            ),
        ],
    )
    .await;
    let row = |rows: Vec<kopter_store::waste::FindingRow>| {
        rows.into_iter()
            .find(|r| r.finding.resource_id == "vol-idle")
            .expect("vol-idle's finding")
    };
    aggregate(&w, "2025-06-04T05:00:00Z").await;
    let first = row(w.agg.waste.findings(&w.tenant).await.unwrap());
    assert_eq!(
        first.finding.accrued_through,
        Some(t("2025-06-04T06:00:00Z"))
    );
    assert!(first.finding.accrual_digest.is_some());
    // Three more hours: only the accrual moves, so the stored row stays
    // as it is (kopter_store::waste::ACCRUAL_REFRESH: one write per day,
    // not one per hourly evaluation).
    for hour in [
        "2025-06-04T06:00:00Z",
        "2025-06-04T07:00:00Z",
        "2025-06-04T08:00:00Z",
    ] {
        aggregate(&w, hour).await;
    }
    assert_eq!(row(w.agg.waste.findings(&w.tenant).await.unwrap()), first);
    // A day after the stored accrual, the evaluation writes it, adding
    // every hour since to the row read back from DynamoDB: 72 h × 100 GiB
    // × 0.08 / 720 = 576/720 USD.
    aggregate(&w, "2025-06-05T05:00:00Z").await;
    let last = row(w.agg.waste.findings(&w.tenant).await.unwrap());
    assert_eq!(
        last.finding.accrued_through,
        Some(t("2025-06-05T06:00:00Z"))
    );
    assert_eq!(last.evaluated_at, t("2025-06-05T06:00:00Z"));
    assert!(
        close(last.finding.accrued_usd, 576.0 / 720.0),
        "{:?}",
        last.finding
    );
    // A fresh evaluation of that hour (no stored row to extend) sums the
    // same to the bit.
    let fresh = world().await;
    history(
        &fresh,
        "vol-idle",
        &[
            (
                "2025-06-01T00:00:00Z",
                Change::Created,
                volume("in-use", Some("i-run")),
            ),
            (
                "2025-06-02T06:00:00Z",
                Change::StateChanged,
                volume("available", None),
            ),
        ],
    )
    .await;
    aggregate(&fresh, "2025-06-05T05:00:00Z").await;
    let full = row(fresh.agg.waste.findings(&fresh.tenant).await.unwrap());
    assert_eq!(
        full.finding.accrued_usd.to_bits(),
        last.finding.accrued_usd.to_bits()
    );
}

/// Puts 14 daily datapoints (June 1st–14th) of CPU maximum and network in
/// and out for an instance into CloudWatch, as the customer's account.
async fn put_days(cw: &aws_sdk_cloudwatch::Client, instance: &str, cpu: f64, net_bytes: f64) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    for day in 0..14 {
        let at = t("2025-06-01T12:00:00Z") + chrono::Duration::days(day);
        let ts = aws_smithy_types::DateTime::from_secs(at.timestamp());
        let datum = |name: &str, value: f64, unit: StandardUnit| {
            MetricDatum::builder()
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("InstanceId")
                        .value(instance)
                        .build(),
                )
                .timestamp(ts)
                .value(value)
                .unit(unit)
                .build()
        };
        cw.put_metric_data()
            .namespace("AWS/EC2")
            .metric_data(datum("CPUUtilization", cpu, StandardUnit::Percent))
            .metric_data(datum("NetworkIn", net_bytes / 2.0, StandardUnit::Bytes))
            .metric_data(datum("NetworkOut", net_bytes / 2.0, StandardUnit::Bytes))
            .send()
            .await
            .unwrap();
    }
}

/// The customer account's own CloudWatch, through its role (as Kopter
/// reads it): metrics put here are only in that account.
async fn customer_cloudwatch(w: &World) -> aws_sdk_cloudwatch::Client {
    let record = w
        .env
        .ctx
        .accounts
        .get(&w.tenant, &w.account)
        .await
        .unwrap()
        .unwrap();
    let sdk = w
        .env
        .ctx
        .credentials
        .sdk_config(
            &w.env.ctx.aws.sdk,
            &kopter_runtime::CustomerRole::from(&record),
            "us-east-1",
        )
        .await
        .unwrap();
    aws_sdk_cloudwatch::Client::new(&sdk)
}

#[tokio::test]
async fn idle_instances_from_cloudwatch_through_the_customers_role() {
    let w = world().await;
    for id in ["i-idle", "i-busy", "i-nodata"] {
        history(
            &w,
            id,
            &[(
                "2025-05-24T00:00:00Z",
                Change::Launched,
                instance("running"),
            )],
        )
        .await;
    }
    let cw = customer_cloudwatch(&w).await;
    // i-idle: CPU max 1 %, 2 MB a day; i-busy: 60 %; i-nodata: nothing.
    put_days(&cw, "i-idle", 1.0, 2e6).await;
    put_days(&cw, "i-busy", 60.0, 2e6).await;
    // The same instance id in Kopter's own account is not read.
    let own = aws_sdk_cloudwatch::Client::new(&w.env.ctx.aws.sdk);
    put_days(&own, "i-nodata", 1.0, 0.0).await;

    // Evaluated at June 15th 06:00: the window is June 1st–14th.
    aggregate(&w, "2025-06-15T05:00:00Z").await;
    let checks = w
        .agg
        .waste
        .idle_checks(&w.tenant, &w.account)
        .await
        .unwrap();
    use kopter_store::waste::IdleVerdict;
    assert_eq!(
        checks["i-idle"].verdict,
        IdleVerdict::Idle {
            idle_days: 14,
            first_idle_day: t("2025-06-01T00:00:00Z")
        }
    );
    assert_eq!(checks["i-busy"].verdict, IdleVerdict::Busy { idle_days: 0 });
    assert!(
        matches!(checks["i-nodata"].verdict, IdleVerdict::Undecided { .. }),
        "{:?}",
        checks["i-nodata"]
    );
    let rows = w.agg.waste.findings(&w.tenant).await.unwrap();
    let idle: Vec<_> = rows
        .iter()
        .filter(|r| r.finding.rule == Rule::IdleInstance)
        .collect();
    assert_eq!(idle.len(), 1, "{rows:#?}");
    let f = &idle[0].finding;
    assert_eq!(f.resource_id, "i-idle");
    // Since its first idle day (it ran from May 24th): June 1st → June
    // 15th 06:00 = 342 h × m5.large 0.096 = 32.832 USD; a month 70.08.
    assert_eq!(f.since, t("2025-06-01T00:00:00Z"));
    assert!(close(f.accrued_usd, 342.0 * 0.096), "{f:?}");
    assert!(close(f.monthly_usd.unwrap(), 730.0 * 0.096));

    // At most once a day: i-idle busy from now on is not read again
    // within the day, so the next hour keeps the verdict.
    put_days(&cw, "i-idle", 90.0, 2e9).await;
    aggregate(&w, "2025-06-15T06:00:00Z").await;
    let again = w
        .agg
        .waste
        .idle_checks(&w.tenant, &w.account)
        .await
        .unwrap();
    assert_eq!(again["i-idle"].checked_at, checks["i-idle"].checked_at);
    assert!(matches!(again["i-idle"].verdict, IdleVerdict::Idle { .. }));
}

#[tokio::test]
async fn a_throttled_cloudwatch_leaves_instances_undecided() {
    use kopter_tests::faults::{FaultPlan, FaultProxy};
    let env = TestEnv::new().await;
    let proxy = FaultProxy::start(
        &kopter_tests::endpoint(),
        FaultPlan {
            seed: 1,
            throttle: 1.0,
            server_error: 0.0,
            reset: 0.0,
        },
    )
    .await
    .unwrap();
    let conf = aws_sdk_cloudwatch::config::Builder::from(&env.ctx.aws.sdk)
        .endpoint_url(proxy.url())
        .retry_config(aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    let cw = aws_sdk_cloudwatch::Client::from_conf(conf);
    let ids: Vec<String> = (0..200).map(|i| format!("i-{i:03}")).collect();
    let (verdicts, calls) = aggregator::waste::idle::fetch(
        &cw,
        &ids,
        t("2025-06-15T00:00:00Z"),
        &aggregator::waste::idle::IdleRule::default(),
    )
    .await;
    // 200 CPU queries fit one call; it fails, so no instance reaches the
    // network stage.
    assert_eq!(calls, 1, "200 instances: one call of ≤ 500 CPU queries");
    assert_eq!(verdicts.len(), 200);
    for v in verdicts.values() {
        match v {
            kopter_store::waste::IdleVerdict::Undecided { reason } => {
                assert!(reason.contains("GetMetricData failed"), "{reason}")
            }
            other => panic!("throttled yet decided: {other:?}"),
        }
    }
}
