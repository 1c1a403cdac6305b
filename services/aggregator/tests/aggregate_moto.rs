//! The aggregator against moto: describer history and pricing rows in
//! DynamoDB (written through the same row types and the pricing
//! ingestor), hours computed through the handler's entry point, the price
//! graph read back; recomputation replaces exactly; budget crossings and
//! spikes are published once.

use std::collections::{BTreeMap, HashMap};

use aggregator::Aggregator;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::keys;
use kopter_schema::messages::AggregateHour;
use kopter_schema::{AccountId, Envelope, Message, Service, Table, TenantId};
use kopter_store::graph::Budget;
use kopter_store::inventory::{
    Change, EventRow, InstanceFields, InventoryRow, Resource, VolumeFields, inventory_sk,
};
use kopter_tests::queries::QueryLog;
use kopter_tests::{TestEnv, random_account, unique};

const OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_small.json");

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn instance(state: &str, ty: &str, op: &str, tags: &[(&str, &str)]) -> Resource {
    Resource::Instance(InstanceFields {
        state: state.into(),
        instance_type: ty.into(),
        usage_operation: op.into(),
        platform_details: String::new(),
        tenancy: "default".into(),
        lifecycle: "on-demand".into(),
        availability_zone: "us-east-1a".into(),
        launch_time: None,
        state_transition_reason: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        volume_ids: vec![],
        zone: Default::default(),
        host_id: String::new(),
        capacity_reservation_id: String::new(),
    })
}

fn volume() -> Resource {
    Resource::Volume(VolumeFields {
        state: "in-use".into(),
        volume_type: "gp3".into(),
        size_gib: 100,
        iops: Some(3000),
        throughput: Some(125),
        attached_instance: Some("i-web".into()),
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

/// Writes a resource's history (each state from its time) and its
/// inventory row (the last state), as the describer does.
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
        last_seen: t("2025-06-02T12:00:00Z"),
        last_change_at: Some(t(last_at)),
        version: 1,
        unpublished: vec![],
        resource: last.clone(),
    };
    w.env.put_row(Table::Inventory, &inv).await;
}

/// Days the fixtures' cost rows are kept: their hours are in 2025, so a
/// retention counted from the hour (`expiry`) would have expired them
/// already, and DynamoDB Local's TTL sweep deletes expired items at any
/// moment of a test (moto never does).
const KEEP_DAYS: u32 = 36_500;

async fn world() -> World {
    let env = TestEnv::with(|c| {
        c.aggregator.retention_days = KEEP_DAYS;
        c.aggregator.spike_min_usd = 0.01;
        c.aggregator.forecast_after = std::time::Duration::from_secs(365 * 24 * 3600);
    })
    .await;
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
    // Prices: the pricing service's own ingest of the fixture (version
    // 20250523232744, published 2025-05-23): m5.large Linux 0.096/h,
    // Windows 0.188/h, gp3 0.08 GB-Mo.
    let pricing = pricing::ingest::Ingestor::new(&env.ctx).unwrap();
    pricing
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

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Hours 08–10 of 2025-06-02: i-web m5.large Linux running from 08:00,
/// stopped 10:30; its 100 GiB gp3 volume all along; i-odd of an unknown
/// type; i-win (Windows) launched at 10:00.
async fn estate(w: &World) {
    history(
        w,
        "i-web",
        &[
            (
                "2025-06-02T08:00:00Z",
                Change::Launched,
                instance("running", "m5.large", "RunInstances", &[("team", "web")]),
            ),
            (
                "2025-06-02T10:30:00Z",
                Change::StateChanged,
                instance("stopped", "m5.large", "RunInstances", &[("team", "web")]),
            ),
        ],
    )
    .await;
    history(
        w,
        "vol-1",
        &[("2025-06-02T08:00:00Z", Change::Created, volume())],
    )
    .await;
    history(
        w,
        "i-odd",
        &[(
            "2025-06-02T08:00:00Z",
            Change::Launched,
            instance("running", "x9.huge", "RunInstances", &[]),
        )],
    )
    .await;
    history(
        w,
        "i-win",
        &[(
            "2025-06-02T10:00:00Z",
            Change::Launched,
            instance(
                "running",
                "m5.large",
                "RunInstances:0002",
                &[("team", "data")],
            ),
        )],
    )
    .await;
}

/// The describer's `inventory.changed` for i-web's state at `at`.
fn web_changed(w: &World, at: &str) -> kopter_schema::messages::InventoryChanged {
    kopter_schema::messages::InventoryChanged {
        tenant: w.tenant.clone(),
        account: w.account.clone(),
        region: "us-east-1".into(),
        resource_id: "i-web".into(),
        resource_kind: "instance".into(),
        change: "state_changed".into(),
        at: t(at),
        detail: serde_json::Value::Null,
    }
}

async fn events(env: &TestEnv, service: Service) -> Vec<Envelope> {
    let url = env.queue_url(service).await;
    let mut out = Vec::new();
    loop {
        let got = env.receive(&url, std::time::Duration::from_secs(30)).await;
        if got.is_empty() {
            return out;
        }
        out.extend(
            got.iter()
                .map(|m| Envelope::decode(m.body.as_deref().unwrap()).unwrap()),
        );
    }
}

#[tokio::test]
async fn hours_are_priced_replaced_exactly_and_alert_once() {
    let w = world().await;
    estate(&w).await;
    w.agg
        .graph
        .put_budget(&Budget::new(&w.tenant, 0.45, vec![50, 80, 100]))
        .await
        .unwrap();

    let msg = AggregateHour {
        hour: t("2025-06-02T10:00:00Z"),
        backfill_hours: 2,
        tenant: Some(w.tenant.clone()),
    };
    let reports = w.agg.aggregate(&msg).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].hours, 3);

    // Hour 10, by resource. June has 30 days = 2 592 000 s.
    let vol_hour = 100.0 * 0.08 * 3600.0 / 2_592_000.0;
    let rows: HashMap<String, _> = w
        .agg
        .graph
        .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.resource_id.clone(), r))
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(close(rows["i-web"].cost_usd.unwrap(), 0.5 * 0.096));
    assert!(close(rows["i-web"].usage, 0.5));
    assert!(close(rows["i-win"].cost_usd.unwrap(), 0.188));
    assert!(close(rows["vol-1"].cost_usd.unwrap(), vol_hour));
    assert_eq!(rows["i-odd"].cost_usd, None);
    assert!(
        rows["i-odd"]
            .price_missing
            .as_deref()
            .unwrap()
            .contains("x9.huge")
    );
    // Reserved alternative (1 yr standard no upfront, 0.06/h for Linux).
    assert!(close(rows["i-web"].reserved_usd.unwrap(), 0.5 * 0.06));

    // Roll-ups: by family and by tag, hour and day; summed series.
    let fam = w
        .agg
        .graph
        .series(
            &w.tenant,
            None,
            "hour",
            "family",
            "2025-06-02T10",
            "2025-06-02T10",
        )
        .await
        .unwrap();
    let by: HashMap<_, _> = fam.iter().map(|p| (p.group.as_str(), p)).collect();
    assert!(close(by["m5"].cost_usd, 0.048 + 0.188));
    assert_eq!(by["x9"].price_missing, 1);
    assert!(close(by["ebs-gp3"].cost_usd, vol_hour));
    let team = w
        .agg
        .graph
        .series(
            &w.tenant,
            Some(&w.account),
            "day",
            "tag:team",
            "2025-06-02",
            "2025-06-02",
        )
        .await
        .unwrap();
    let by: HashMap<_, _> = team
        .iter()
        .map(|p| (p.group.as_str(), p.cost_usd))
        .collect();
    assert!(close(by["web"], 0.096 * 2.5), "{team:?}");
    assert!(close(by["data"], 0.188));
    assert!(close(by["(untagged)"], 3.0 * vol_hour));
    let day_total = w
        .agg
        .graph
        .daily_total(&w.tenant, "2025-06-02")
        .await
        .unwrap()
        .unwrap();
    assert!(close(day_total, 0.096 * 2.5 + 0.188 + 3.0 * vol_hour));

    // Recompute: identical rows. A stale row in the hour (a resource no
    // longer there) is removed; rows of other hours are untouched.
    let before = w
        .agg
        .graph
        .resource_hours(&w.tenant, &w.account, t("2025-06-02T09:00:00Z"))
        .await
        .unwrap();
    let mut stale = rows["vol-1"].clone();
    stale.sk = "volume#vol-stale".into();
    stale.resource_id = "vol-stale".into();
    w.env.put_row(Table::PriceGraph, &stale).await;
    w.agg.aggregate(&msg).await.unwrap();
    let after: Vec<_> = w
        .agg
        .graph
        .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|r| r.resource_id != "vol-stale"));
    assert_eq!(
        w.agg
            .graph
            .resource_hours(&w.tenant, &w.account, t("2025-06-02T09:00:00Z"))
            .await
            .unwrap(),
        before
    );
    let day_again = w
        .agg
        .graph
        .daily_total(&w.tenant, "2025-06-02")
        .await
        .unwrap()
        .unwrap();
    assert!(close(day_again, day_total));

    // Events: hour 10 (0.048 + 0.188 + vol) ≥ 2 × hour 9 (0.096 + vol):
    // one spike; the month so far (≈ 0.461 USD) crossed 50, 80 and 100 %
    // of 0.45 USD (the forecast is switched off in this test). Each once, although everything was computed twice.
    let got = events(&w.env, Service::Notifier).await;
    let spikes: Vec<_> = got
        .iter()
        .filter_map(|e| match &e.message {
            Message::CostSpike(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(spikes.len(), 1, "{got:?}");
    assert_eq!(spikes[0].hour, t("2025-06-02T10:00:00Z"));
    assert!(close(spikes[0].previous, 0.096 + vol_hour));
    let mut crossed: Vec<u32> = got
        .iter()
        .filter_map(|e| match &e.message {
            Message::BudgetCrossed(b) => Some(b.threshold_percent),
            _ => None,
        })
        .collect();
    crossed.sort_unstable();
    assert_eq!(crossed, vec![50, 80, 100], "{got:?}");
    // Dated by the crossing (the end of hour 10, where the month-to-date
    // passed the thresholds), not the month's start, so a newest-first
    // feed shows them with that hour's events.
    for e in &got {
        if let Message::BudgetCrossed(b) = &e.message {
            assert_eq!(b.crossed_at, Some(t("2025-06-02T11:00:00Z")), "{b:?}");
        }
    }
    // A republication (a crash between publishing and the marker, the
    // crossing found again hours later) keeps the first time: same feed key.
    let again = w
        .agg
        .graph
        .first_time(
            &format!("{}#budget", w.tenant),
            "crossing#2025-06#100",
            t("2025-06-02T15:00:00Z"),
            i64::MAX / 2,
        )
        .await
        .unwrap();
    assert_eq!(again, t("2025-06-02T11:00:00Z"));
}

#[tokio::test]
async fn tenants_do_not_see_each_other_and_changes_recompute_their_hour() {
    let w = world().await;
    estate(&w).await;
    let other = TenantId::new(unique("other-")).unwrap();
    // A change event recomputes only its account's hour.
    let handler = aggregator::AggregatorHandler(w.agg.clone());
    let env = kopter_runtime::messaging::envelope(Message::InventoryChanged(web_changed(
        &w,
        "2025-06-02T10:30:00Z",
    )));
    let delivery = kopter_runtime::Delivery {
        message_id: "m-1".into(),
        body: env.to_json(),
        receive_count: 1,
        attributes: HashMap::new(),
        sent_at_ms: None,
    };
    kopter_runtime::Handler::handle(&handler, &delivery)
        .await
        .unwrap();
    let rows = w
        .agg
        .graph
        .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        w.agg
            .graph
            .resource_hours(&w.tenant, &w.account, t("2025-06-02T09:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    // Nothing under another tenant, whatever it asks for.
    assert!(
        w.agg
            .graph
            .resource_hours(&other, &w.account, t("2025-06-02T10:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        w.agg
            .graph
            .series(
                &other,
                None,
                "hour",
                "account",
                "2025-06-02T00",
                "2025-06-02T23"
            )
            .await
            .unwrap()
            .is_empty()
    );
    // Every row of the tenant is under its own partition keys.
    let scan = w
        .env
        .ctx
        .aws
        .dynamodb()
        .scan()
        .table_name(w.env.ctx.names.table(Table::PriceGraph))
        .send()
        .await
        .unwrap();
    for item in scan.items.unwrap_or_default() {
        let pk = item["pk"].as_s().unwrap();
        assert!(pk.starts_with(&format!("{}#", w.tenant)), "{pk}");
        if let Some(AttributeValue::S(tn)) = item.get("tenant") {
            assert_eq!(tn, w.tenant.as_str());
        }
    }
    // A backfill beyond the cap is refused permanently.
    let too_long = AggregateHour {
        hour: t("2025-06-02T10:00:00Z"),
        backfill_hours: 100_000,
        tenant: None,
    };
    assert!(matches!(
        w.agg.aggregate(&too_long).await,
        Err(kopter_runtime::HandlerError::Permanent(_))
    ));
}

/// From the queue, the scheduled tick (no tenant) over several tenants only
/// queues one `aggregate.hour` per tenant (a crash then redoes one tenant,
/// not all); a tenant's message is computed.
#[tokio::test]
async fn an_aggregation_of_every_tenant_is_split_into_one_message_per_tenant() {
    use aggregator::AggregateWork;

    let w = world().await;
    estate(&w).await;
    let other = TenantId::new(unique("globex-")).unwrap();
    let other_account = random_account();
    w.env
        .ctx
        .accounts
        .onboard(
            Onboarding::parse(
                other.as_str(),
                &other_account,
                &format!("arn:aws:iam::{other_account}:role/KopterAccess"),
                &[],
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let tick = AggregateHour {
        hour: t("2025-06-02T10:00:00Z"),
        backfill_hours: 2,
        tenant: None,
    };
    let AggregateWork::FannedOut(mut tenants) = w.agg.handle_aggregate(&tick).await.unwrap() else {
        panic!("a tick over two tenants must be split");
    };
    tenants.sort();
    let mut expected = vec![w.tenant.clone(), other.clone()];
    expected.sort();
    assert_eq!(tenants, expected);
    // The fan-out itself computes nothing.
    assert!(
        w.agg
            .graph
            .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
            .await
            .unwrap()
            .is_empty()
    );
    let url = w.env.queue_url(Service::Aggregator).await;
    let is_hour = |e: &Envelope| matches!(e.message, Message::AggregateHour(_));
    let mut queued: Vec<TenantId> = w
        .env
        .receive_envelopes(&url, |got| got.iter().filter(|e| is_hour(e)).count() >= 2)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::AggregateHour(a) => {
                assert_eq!((a.hour, a.backfill_hours), (tick.hour, tick.backfill_hours));
                Some(a.tenant.expect("a tenant's message names it"))
            }
            _ => None,
        })
        .collect();
    queued.sort();
    assert_eq!(queued, expected);
    // A tenant's message is the work: its account's hours are computed.
    let mine = AggregateHour {
        tenant: Some(w.tenant.clone()),
        ..tick.clone()
    };
    let AggregateWork::Computed(reports) = w.agg.handle_aggregate(&mine).await.unwrap() else {
        panic!("a tenant's message must be computed, not split");
    };
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].hours, 3);
    assert_eq!(
        w.agg
            .graph
            .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
            .await
            .unwrap()
            .len(),
        4
    );
    // A backfill beyond the cap is refused before anything is queued.
    let too_long = AggregateHour {
        backfill_hours: 100_000,
        ..tick
    };
    assert!(matches!(
        w.agg.handle_aggregate(&too_long).await,
        Err(kopter_runtime::HandlerError::Permanent(_))
    ));
}

#[tokio::test]
async fn spot_instances_are_priced_from_the_spot_history_in_dynamodb() {
    use kopter_store::prices::SpotPoint;

    let w = world().await;
    let mut spot = instance("running", "m5.large", "RunInstances", &[]);
    if let Resource::Instance(i) = &mut spot {
        i.lifecycle = "spot".into();
    }
    history(
        &w,
        "i-spot",
        &[("2025-06-02T08:00:00Z", Change::Launched, spot)],
    )
    .await;
    // Spot history as the pricing service keeps it: a point long before
    // (replaced), the one in force at 10:00, a change at 10:30, one after
    // the hour, and another AZ's.
    let vpc = "Linux/UNIX (Amazon VPC)";
    for (az, at, usd) in [
        ("us-east-1a", "2025-05-01T00:00:00Z", 0.01),
        ("us-east-1a", "2025-06-02T07:00:00Z", 0.03),
        ("us-east-1a", "2025-06-02T10:30:00Z", 0.05),
        ("us-east-1a", "2025-06-02T11:15:00Z", 0.09),
        ("us-east-1b", "2025-06-02T10:00:00Z", 0.7),
    ] {
        let p = SpotPoint::new("us-east-1", "m5.large", az, vpc, t(at), usd);
        w.env.put_row(Table::Prices, &p).await;
    }
    let msg = AggregateHour {
        hour: t("2025-06-02T11:00:00Z"),
        backfill_hours: 1,
        tenant: Some(w.tenant.clone()),
    };
    w.agg.aggregate(&msg).await.unwrap();
    let cost = |hour: &'static str| {
        let w = &w;
        async move {
            let rows = w
                .agg
                .graph
                .resource_hours(&w.tenant, &w.account, t(hour))
                .await
                .unwrap();
            let row = rows.iter().find(|r| r.resource_id == "i-spot").unwrap();
            (row.cost_usd, row.lifecycle.clone())
        }
    };
    // 10:00–10:30 at 0.03, 10:30–11:00 at 0.05.
    let (c10, lifecycle) = cost("2025-06-02T10:00:00Z").await;
    assert!(close(c10.unwrap(), 0.5 * 0.03 + 0.5 * 0.05), "{c10:?}");
    assert_eq!(lifecycle, "spot");
    // 11:00–11:15 at 0.05, then 0.09.
    let (c11, _) = cost("2025-06-02T11:00:00Z").await;
    assert!(close(c11.unwrap(), 0.25 * 0.05 + 0.75 * 0.09), "{c11:?}");
}

#[tokio::test]
async fn a_burst_of_changes_of_one_account_hour_is_recomputed_once() {
    let w = world().await;
    estate(&w).await;
    let change = |at: &str| web_changed(&w, at);
    let now_ms = || Utc::now().timestamp_millis() as u64;
    let web_cost = || async {
        w.agg
            .graph
            .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.resource_id == "i-web")
            .unwrap()
            .cost_usd
            .unwrap()
    };

    // Five changes queued at about the same time: the first recomputes,
    // the others were queued before it started and are covered by it.
    let queued = now_ms() - 10_000;
    let first = w
        .agg
        .recompute_for_change(&change("2025-06-02T10:30:00Z"), Some(queued))
        .await
        .unwrap();
    assert!(first);
    for i in 0..4 {
        let again = w
            .agg
            .recompute_for_change(&change("2025-06-02T10:40:00Z"), Some(queued + i * 100))
            .await
            .unwrap();
        assert!(!again, "change {i} queued before the recompute started");
    }
    assert!(close(web_cost().await, 0.5 * 0.096));

    // A change queued after that recompute started is recomputed, and
    // what it wrote is seen: i-web started again at 10:45.
    w.env
        .put_row(
            Table::Ec2Events,
            &EventRow::new(
                &w.tenant,
                &w.account,
                "us-east-1",
                "i-web",
                Change::StateChanged,
                t("2025-06-02T10:45:00Z"),
                t("2025-06-02T10:45:00Z"),
                instance("running", "m5.large", "RunInstances", &[("team", "web")]),
            ),
        )
        .await;
    let later = w
        .agg
        .recompute_for_change(&change("2025-06-02T10:45:00Z"), Some(now_ms()))
        .await
        .unwrap();
    assert!(later);
    assert!(
        close(web_cost().await, 0.75 * 0.096),
        "{}",
        web_cost().await
    );

    // Another hour of the account is its own; without a queue timestamp
    // every change recomputes.
    assert!(
        w.agg
            .recompute_for_change(&change("2025-06-02T09:10:00Z"), Some(queued))
            .await
            .unwrap()
    );
    assert!(
        w.agg
            .recompute_for_change(&change("2025-06-02T10:50:00Z"), None)
            .await
            .unwrap()
    );
}

/// The price graph's items of partition `pk` (sort keys).
async fn partition_sks(w: &World, pk: &str) -> Vec<String> {
    w.env
        .ctx
        .aws
        .dynamodb()
        .query()
        .table_name(w.env.ctx.names.table(Table::PriceGraph))
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect()
}

/// Sets `untouched` on an item: a later put of the item drops it.
async fn mark(w: &World, pk: &str, sk: &str) {
    w.env
        .ctx
        .aws
        .dynamodb()
        .update_item()
        .table_name(w.env.ctx.names.table(Table::PriceGraph))
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .update_expression("SET untouched = :t")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":t", AttributeValue::Bool(true))
        .send()
        .await
        .unwrap_or_else(|e| panic!("mark {pk} {sk}: {e:?}"));
}

async fn marked(w: &World, pk: &str, sk: &str) -> bool {
    w.env
        .ctx
        .aws
        .dynamodb()
        .get_item()
        .table_name(w.env.ctx.names.table(Table::PriceGraph))
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("{pk} {sk} is gone"))
        .contains_key("untouched")
}

#[tokio::test]
async fn an_hour_is_one_packed_item_and_an_unchanged_recompute_writes_nothing() {
    use kopter_store::graph::{resource_hour_pk, resource_hour_sk};

    let w = world().await;
    estate(&w).await;
    let msg = AggregateHour {
        hour: t("2025-06-02T10:00:00Z"),
        backfill_hours: 0,
        tenant: Some(w.tenant.clone()),
    };
    w.agg.aggregate(&msg).await.unwrap();
    let h10 = t("2025-06-02T10:00:00Z");
    let pk = resource_hour_pk(&w.tenant, &w.account, h10);
    assert_eq!(partition_sks(&w, &pk).await, vec!["packed#0000"]);

    // Every reader sees the four resources of the packed hour.
    let graph = &w.agg.graph;
    let all = graph
        .resource_hours(&w.tenant, &w.account, h10)
        .await
        .unwrap();
    let sks: Vec<&str> = all.iter().map(|r| r.sk.as_str()).collect();
    assert_eq!(
        sks,
        vec![
            "instance#i-odd",
            "instance#i-web",
            "instance#i-win",
            "volume#vol-1"
        ]
    );
    assert!(all.iter().all(|r| r.pk == pk && r.hour == "2025-06-02T10"));
    let one = graph
        .resource_hours_by_key(&[(pk.clone(), resource_hour_sk("instance", "i-win"))])
        .await
        .unwrap();
    assert_eq!(one, vec![all[2].clone()]);
    let mut two = graph
        .resource_hours_by_key(&[
            (pk.clone(), resource_hour_sk("instance", "i-web")),
            (pk.clone(), resource_hour_sk("volume", "vol-1")),
            (pk.clone(), resource_hour_sk("volume", "vol-gone")),
        ])
        .await
        .unwrap();
    two.sort_by(|a, b| a.sk.cmp(&b.sk));
    assert_eq!(two, vec![all[1].clone(), all[3].clone()]);
    let first = graph
        .resource_hours_page(&w.tenant, &w.account, h10, None, 3)
        .await
        .unwrap();
    assert_eq!(first.items, all[..3].to_vec());
    let next = first.next.expect("a second page");
    let second = graph
        .resource_hours_page(&w.tenant, &w.account, h10, Some(&next), 3)
        .await
        .unwrap();
    assert_eq!(second.items, all[3..].to_vec());
    assert_eq!(second.next, None);
    // A cursor of this partition does not open another tenant's.
    let other = TenantId::new(unique("other-")).unwrap();
    assert!(
        graph
            .resource_hours_page(&other, &w.account, h10, Some(&next), 3)
            .await
            .is_err()
    );

    // The same hour computed again: neither the packed item nor any
    // roll-up nor the hour's roll-up entry is written.
    let day = "2025-06-02";
    let items = [
        (pk.clone(), "packed#0000".to_owned()),
        // Roll-ups: one packed item per dimension, period and account.
        (
            format!("{}#hour#account", w.tenant),
            format!("2025-06-02T10#{}", w.account),
        ),
        (
            format!("{}#hour#family", w.tenant),
            format!("2025-06-02T10#{}", w.account),
        ),
        (
            format!("{}#day#account", w.tenant),
            format!("{day}#{}", w.account),
        ),
        (
            format!("{}#{}#rollups#{day}", w.tenant, w.account),
            "2025-06-02T10".to_owned(),
        ),
    ];
    for (pk, sk) in &items {
        mark(&w, pk, sk).await;
    }
    w.agg.aggregate(&msg).await.unwrap();
    for (pk, sk) in &items {
        assert!(marked(&w, pk, sk).await, "{pk} {sk} was rewritten");
    }
    // A changed hour is rewritten (and its day): a launch at 10:15.
    history(
        &w,
        "i-new",
        &[(
            "2025-06-02T10:15:00Z",
            Change::Launched,
            instance("running", "m5.large", "RunInstances", &[]),
        )],
    )
    .await;
    let later = kopter_schema::messages::InventoryChanged {
        resource_id: "i-new".into(),
        change: "launched".into(),
        ..web_changed(&w, "2025-06-02T10:15:00Z")
    };
    w.agg.recompute_for_change(&later, None).await.unwrap();
    assert!(!marked(&w, &pk, "packed#0000").await);
    assert!(!marked(&w, &items[1].0, &items[1].1).await);
    assert!(!marked(&w, &items[4].0, &items[4].1).await);
}

#[tokio::test]
async fn hours_written_per_resource_before_packing_still_read_and_are_replaced() {
    use kopter_store::graph::{ResourceHourRow, resource_hour_pk, resource_hour_sk};

    let w = world().await;
    estate(&w).await;
    let h7 = t("2025-06-02T07:00:00Z");
    let pk = resource_hour_pk(&w.tenant, &w.account, h7);
    let row = |kind: &str, id: &str, cost: f64| ResourceHourRow {
        pk: pk.clone(),
        sk: resource_hour_sk(kind, id),
        tenant: w.tenant.clone(),
        account: w.account.clone(),
        region: "us-east-1".into(),
        resource_id: id.into(),
        kind: kind.into(),
        hour: "2025-06-02T07".into(),
        usage: 1.0,
        unit: "Hrs".into(),
        cost_usd: Some(cost),
        reserved_usd: None,
        price_missing: None,
        price_missing_part: None,
        family: "m5".into(),
        detail: "m5.large".into(),
        lifecycle: "on-demand".into(),
        tags: BTreeMap::from([("team".to_owned(), "web".to_owned())]),
        note: None,
        expires_at: 4_000_000_000,
    };
    let old = [
        row("instance", "i-old", 0.096),
        row("volume", "vol-old", 0.01),
    ];
    for r in &old {
        w.env.put_row(Table::PriceGraph, r).await;
    }
    let graph = &w.agg.graph;
    assert_eq!(
        graph
            .resource_hours(&w.tenant, &w.account, h7)
            .await
            .unwrap(),
        old.to_vec()
    );
    assert_eq!(
        graph
            .resource_hours_by_key(&[(pk.clone(), old[1].sk.clone())])
            .await
            .unwrap(),
        vec![old[1].clone()]
    );
    let mut both = graph
        .resource_hours_by_key(&[
            (pk.clone(), old[0].sk.clone()),
            (pk.clone(), old[1].sk.clone()),
        ])
        .await
        .unwrap();
    both.sort_by(|a, b| a.sk.cmp(&b.sk));
    assert_eq!(both, old.to_vec());
    let page = graph
        .resource_hours_page(&w.tenant, &w.account, h7, None, 1)
        .await
        .unwrap();
    assert_eq!(page.items, vec![old[0].clone()]);
    let page = graph
        .resource_hours_page(&w.tenant, &w.account, h7, page.next.as_ref(), 1)
        .await
        .unwrap();
    assert_eq!(page.items, vec![old[1].clone()]);
    assert_eq!(page.next, None);

    // Recomputed: the estate had nothing at 07:00, so the hour holds
    // nothing — the per-resource rows are gone, no packed item is written.
    w.agg
        .aggregate(&AggregateHour {
            hour: h7,
            backfill_hours: 0,
            tenant: Some(w.tenant.clone()),
        })
        .await
        .unwrap();
    assert_eq!(partition_sks(&w, &pk).await, Vec::<String>::new());
    assert!(
        graph
            .resource_hours(&w.tenant, &w.account, h7)
            .await
            .unwrap()
            .is_empty()
    );

    // An hour with per-resource rows of an earlier computation beside
    // them: the recompute leaves only its packed item.
    let h9 = t("2025-06-02T09:00:00Z");
    let pk9 = resource_hour_pk(&w.tenant, &w.account, h9);
    let mut stale = row("instance", "i-old", 0.096);
    stale.pk = pk9.clone();
    stale.hour = "2025-06-02T09".into();
    w.env.put_row(Table::PriceGraph, &stale).await;
    w.agg
        .aggregate(&AggregateHour {
            hour: h9,
            backfill_hours: 0,
            tenant: Some(w.tenant.clone()),
        })
        .await
        .unwrap();
    assert_eq!(partition_sks(&w, &pk9).await, vec!["packed#0000"]);
    let ids: Vec<String> = graph
        .resource_hours(&w.tenant, &w.account, h9)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.resource_id)
        .collect();
    assert_eq!(ids, vec!["i-odd", "i-web", "vol-1"]);
}

/// A cost line of `cost` USD for one hour (`team` tag when given).
fn cost_line(
    id: &str,
    hour: DateTime<Utc>,
    family: &str,
    team: Option<&str>,
    cost: Option<f64>,
) -> kopter_store::graph::CostLine {
    use std::sync::Arc;
    kopter_store::graph::CostLine {
        resource_id: Arc::from(id),
        kind: "instance",
        region: Arc::from("us-east-1"),
        hour,
        usage: 1.0,
        unit: "Hrs",
        cost_usd: cost,
        reserved_usd: None,
        missing: cost.is_none().then(|| "no price".to_owned()),
        missing_part: None,
        family: Arc::from(family),
        detail: Arc::from("m5.large"),
        lifecycle: Arc::from("on-demand"),
        tags: Arc::new(
            team.map(|t| BTreeMap::from([("team".to_owned(), t.to_owned())]))
                .unwrap_or_default(),
        ),
        note: None,
    }
}

/// Issue 23: an account-hour's recompute reads the account's own rows
/// (its hour partition, its day's roll-up entries), never the tenant-wide
/// roll-up partitions that hold every account's rows — so its cost does
/// not grow with the tenant's accounts. Day rows, the daily total and the
/// hour rows stay exact across accounts, recomputes and vanished groups;
/// an hour computed before entries existed is still counted in its day.
#[tokio::test]
async fn an_account_hour_reads_only_its_own_rows_and_days_stay_exact() {
    use kopter_store::graph::{GraphStore, expiry};

    let w = world().await;
    let queried = QueryLog::default();
    let graph = GraphStore::new(queried.client(&w.env.ctx.aws.dynamodb()), &w.env.ctx.names);
    let tenant = &w.tenant;
    let tags = vec!["team".to_owned()];
    let (a, b) = (w.account.clone(), AccountId::new(random_account()).unwrap());
    let h = |hh: u32| t(&format!("2025-06-02T{hh:02}:00:00Z"));
    let put = |acct: &AccountId, hour: DateTime<Utc>, lines: Vec<kopter_store::graph::CostLine>| {
        let (graph, tenant, tags, acct) = (&graph, tenant, &tags, acct.clone());
        async move {
            replace_retrying(graph, tenant, &acct, hour, &lines, tags).await;
        }
    };
    // Another account of the tenant, two hours.
    put(
        &b,
        h(9),
        vec![cost_line("i-b", h(9), "c5", Some("data"), Some(1.0))],
    )
    .await;
    put(
        &b,
        h(10),
        vec![cost_line("i-b", h(10), "c5", Some("data"), Some(1.0))],
    )
    .await;
    // Account a: 09 (two groups), 10, then 09 again with the web team gone
    // and a resource without a price.
    put(
        &a,
        h(9),
        vec![
            cost_line("i-1", h(9), "m5", Some("web"), Some(0.25)),
            cost_line("i-2", h(9), "m5", Some("api"), Some(0.5)),
        ],
    )
    .await;
    put(
        &a,
        h(10),
        vec![cost_line("i-2", h(10), "m5", Some("api"), Some(0.5))],
    )
    .await;
    put(
        &a,
        h(9),
        vec![
            cost_line("i-2", h(9), "m5", Some("api"), Some(0.5)),
            cost_line("i-3", h(9), "m5", Some("api"), None),
        ],
    )
    .await;
    // An account without costs: its new hours read nothing shared either.
    let empty = AccountId::new(random_account()).unwrap();
    put(&empty, h(9), vec![]).await;
    put(&empty, h(10), vec![]).await;
    let shared = |p: &String| {
        p.starts_with(&format!("{tenant}#hour#")) || p.starts_with(&format!("{tenant}#day#"))
    };
    {
        let q: Vec<String> = queried
            .queries()
            .iter()
            .map(|q| q.value(":pk").to_owned())
            .collect();
        assert!(!q.is_empty());
        assert!(!q.iter().any(shared), "tenant-wide partitions read: {q:?}");
    }
    // Exact figures: a's day 0.5 + 0.5 (the web team's 0.25 recomputed
    // away), one unpriced resource; b's day 2.0; the total both.
    let day = |dim: &str| {
        let graph = &graph;
        let dim = dim.to_owned();
        async move {
            graph
                .series(tenant, None, "day", &dim, "2025-06-02", "2025-06-02")
                .await
                .unwrap()
        }
    };
    let acct = day("account").await;
    let find = |pts: &[kopter_store::graph::SeriesPoint], g: &str| {
        pts.iter()
            .find(|p| p.group == g)
            .cloned()
            .unwrap_or_else(|| panic!("{g} in {pts:?}"))
    };
    assert_eq!(find(&acct, a.as_str()).cost_usd, 1.0);
    assert_eq!(find(&acct, a.as_str()).price_missing, 1);
    assert_eq!(find(&acct, a.as_str()).resources, 2);
    assert_eq!(find(&acct, b.as_str()).cost_usd, 2.0);
    let team = day("tag:team").await;
    assert!(team.iter().all(|p| p.group != "web"), "{team:?}");
    assert_eq!(find(&team, "api").cost_usd, 1.0);
    assert_eq!(find(&team, "data").cost_usd, 2.0);
    let hour9 = graph
        .series(
            tenant,
            Some(&a),
            "hour",
            "tag:team",
            "2025-06-02T09",
            "2025-06-02T09",
        )
        .await
        .unwrap();
    assert_eq!(
        hour9.len(),
        1,
        "the web team's hour row is deleted: {hour9:?}"
    );
    assert_eq!(
        graph.daily_total(tenant, "2025-06-02").await.unwrap(),
        Some(3.0)
    );
    assert_eq!(graph.daily_total(tenant, "2025-06-03").await.unwrap(), None);

    // An hour computed before roll-up entries existed: its rows are
    // there, its entry is not (deleted here). The day's next hour counts
    // it; recomputing it replaces its rows found the old way.
    let c = AccountId::new(random_account()).unwrap();
    put(
        &c,
        h(7),
        vec![cost_line("i-c", h(7), "r5", Some("web"), Some(2.0))],
    )
    .await;
    let table = w.env.ctx.names.table(Table::PriceGraph);
    let entries_pk = format!("{tenant}#{c}#rollups#2025-06-02");
    // Forgets c's entry of 07, as if 07 had been computed before entries.
    let forget_07 = || async {
        w.env
            .ctx
            .aws
            .dynamodb()
            .delete_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(entries_pk.clone()))
            .key("sk", AttributeValue::S("2025-06-02T07".into()))
            .send()
            .await
            .unwrap();
    };
    forget_07().await;
    put(
        &c,
        h(8),
        vec![cost_line("i-c", h(8), "r5", Some("web"), Some(2.0))],
    )
    .await;
    assert_eq!(find(&day("account").await, c.as_str()).cost_usd, 4.0);
    assert_eq!(
        graph.daily_total(tenant, "2025-06-02").await.unwrap(),
        Some(7.0)
    );
    // 07 again, retagged: the old web rows go (found in the tenant-wide
    // partition, the one time an hour without an entry is recomputed).
    forget_07().await;
    put(
        &c,
        h(7),
        vec![cost_line("i-c", h(7), "r5", Some("ml"), Some(2.0))],
    )
    .await;
    let hour7 = graph
        .series(
            tenant,
            Some(&c),
            "hour",
            "tag:team",
            "2025-06-02T07",
            "2025-06-02T07",
        )
        .await
        .unwrap();
    assert_eq!(
        hour7.iter().map(|p| p.group.as_str()).collect::<Vec<_>>(),
        ["ml"]
    );
    let team = day("tag:team").await;
    assert_eq!(find(&team, "ml").cost_usd, 2.0);
    // c's web: 08 only.
    assert_eq!(find(&team, "web").cost_usd, 2.0);
    assert_eq!(find(&day("account").await, c.as_str()).cost_usd, 4.0);

    // A recompute that died between its rows and its entry (here: a row
    // of a group it wrote, "ghost", and its entry left unsure): the next
    // recompute reads the hour's rows themselves and removes the ghost,
    // from the hour and from the day.
    let ghost = |period: &str, gran: &str| kopter_store::graph::RollupRow {
        pk: format!("{tenant}#{gran}#tag:team"),
        sk: format!("{period}#ghost#{c}"),
        tenant: tenant.clone(),
        account: c.clone(),
        dimension: "tag:team".into(),
        period: period.into(),
        group: "ghost".into(),
        cost_usd: 9.0,
        reserved_usd: 9.0,
        price_missing: 0,
        price_partial: 0,
        resources: 1,
        expires_at: expiry(h(8), KEEP_DAYS),
    };
    // Rows of before packing, and the packed items as the dead recompute
    // left them (the ghost among their groups).
    for (period, gran) in [("2025-06-02T08", "hour"), ("2025-06-02", "day")] {
        let row = ghost(period, gran);
        w.env.put_row(Table::PriceGraph, &row).await;
        let item = kopter_store::graph::rollups::packed_items(
            tenant,
            &c,
            &row.pk,
            "tag:team",
            period,
            [&row],
            row.expires_at,
        )
        .unwrap()
        .remove(0);
        w.env
            .ctx
            .aws
            .dynamodb()
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    assert!(day("tag:team").await.iter().any(|p| p.group == "ghost"));
    w.env
        .ctx
        .aws
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key(
            "pk",
            AttributeValue::S(format!("{tenant}#{c}#rollups#2025-06-02")),
        )
        .key("sk", AttributeValue::S("2025-06-02T08".into()))
        .update_expression("SET unsure = :t")
        .expression_attribute_values(":t", AttributeValue::Bool(true))
        .send()
        .await
        .unwrap();
    put(
        &c,
        h(8),
        vec![cost_line("i-c", h(8), "r5", Some("web"), Some(2.0))],
    )
    .await;
    assert!(day("tag:team").await.iter().all(|p| p.group != "ghost"));
    let hour8 = graph
        .series(
            tenant,
            Some(&c),
            "hour",
            "tag:team",
            "2025-06-02T08",
            "2025-06-02T08",
        )
        .await
        .unwrap();
    assert_eq!(
        hour8.iter().map(|p| p.group.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert_eq!(find(&day("account").await, c.as_str()).cost_usd, 4.0);

    // Two hours of one account-day recomputed at the same moment, again
    // and again with new costs: the day rows end as the sum of both.
    let d = AccountId::new(random_account()).unwrap();
    for round in 1..=4 {
        let cost = f64::from(round);
        tokio::join!(
            put(
                &d,
                h(11),
                vec![cost_line("i-d", h(11), "m5", Some("api"), Some(cost))]
            ),
            put(
                &d,
                h(12),
                vec![cost_line(
                    "i-d",
                    h(12),
                    "m5",
                    Some("api"),
                    Some(cost * 10.0)
                )]
            ),
        );
        assert_eq!(
            find(&day("account").await, d.as_str()).cost_usd,
            cost * 11.0,
            "round {round}"
        );
    }
}

/// Two recomputes of the same account-hour at once, from different
/// inputs (two messages of one change, a change and the hourly run):
/// whichever entry wins, the hour's and the day's roll-up rows end as
/// exactly its groups — no group of the loser stays behind. A recompute
/// that finds it overlapped another fails with `Contended` (the
/// aggregator runs the account again, from fresh inputs); here the test
/// does, with the same lines.
#[tokio::test]
async fn two_recomputes_of_one_account_hour_at_once_leave_no_stale_group() {
    use kopter_store::graph::GraphStore;

    let w = world().await;
    let graph = GraphStore::new(w.env.ctx.aws.dynamodb(), &w.env.ctx.names);
    let tenant = &w.tenant;
    let acct = AccountId::new(random_account()).unwrap();
    let tags = vec!["team".to_owned()];
    let hour = t("2025-06-02T14:00:00Z");
    let put = |team: String, cost: f64| {
        let (graph, tags, acct) = (&graph, &tags, acct.clone());
        async move {
            let lines = vec![cost_line("i-x", hour, "m5", Some(&team), Some(cost))];
            replace_retrying(graph, tenant, &acct, hour, &lines, tags).await
        }
    };
    let mut contended = 0;
    for round in 1..=6 {
        let (a, b) = tokio::join!(put(format!("a{round}"), 1.0), put(format!("b{round}"), 2.0));
        contended += (a > 1) as u32 + (b > 1) as u32;
        let hour_groups = graph
            .series(
                tenant,
                Some(&acct),
                "hour",
                "tag:team",
                "2025-06-02T14",
                "2025-06-02T14",
            )
            .await
            .unwrap();
        let day_groups = graph
            .series(
                tenant,
                Some(&acct),
                "day",
                "tag:team",
                "2025-06-02",
                "2025-06-02",
            )
            .await
            .unwrap();
        for (what, points) in [("hour", &hour_groups), ("day", &day_groups)] {
            let groups: Vec<(&str, f64)> = points
                .iter()
                .map(|p| (p.group.as_str(), p.cost_usd))
                .collect();
            assert!(
                groups == [(format!("a{round}").as_str(), 1.0)]
                    || groups == [(format!("b{round}").as_str(), 2.0)],
                "round {round}: {what} rows {groups:?}"
            );
        }
        let total = graph.daily_total(tenant, "2025-06-02").await.unwrap();
        assert_eq!(
            total,
            Some(hour_groups[0].cost_usd),
            "round {round}: one hour, one group"
        );
    }
    eprintln!("{contended} recomputes found they had overlapped another");

    // Another recompute's live lease keeps this one off (nothing written);
    // an expired one (its holder died) is taken over.
    let set_mark = |mark: String| {
        let ddb = w.env.ctx.aws.dynamodb();
        let table = w.env.ctx.names.table(Table::PriceGraph);
        let pk = format!("{tenant}#{acct}#rollups#2025-06-02");
        async move {
            ddb.update_item()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S("2025-06-02T14".into()))
                .update_expression("SET unsure = :m")
                .expression_attribute_values(":m", AttributeValue::S(mark))
                .send()
                .await
                .unwrap();
        }
    };
    let now_ms = Utc::now().timestamp_millis();
    set_mark(format!("{now_ms}.{:032x}", 7)).await;
    let lines = vec![cost_line("i-x", hour, "m5", Some("c"), Some(3.0))];
    let err = graph
        .replace_hour(
            tenant,
            &acct,
            hour,
            &lines,
            &tags,
            kopter_store::graph::expiry(hour, KEEP_DAYS),
        )
        .await
        .expect_err("a live lease of another recompute");
    assert!(
        err.downcast_ref::<kopter_store::graph::Contended>()
            .is_some(),
        "{err:#}"
    );
    let before = graph
        .series(
            tenant,
            Some(&acct),
            "hour",
            "tag:team",
            "2025-06-02T14",
            "2025-06-02T14",
        )
        .await
        .unwrap();
    assert!(
        before.iter().all(|p| p.group != "c"),
        "nothing written: {before:?}"
    );
    set_mark(format!("{}.{:032x}", now_ms - 3 * 60 * 1000, 7)).await;
    assert_eq!(
        replace_retrying(&graph, tenant, &acct, hour, &lines, &tags).await,
        1
    );
    let after = graph
        .series(
            tenant,
            Some(&acct),
            "hour",
            "tag:team",
            "2025-06-02T14",
            "2025-06-02T14",
        )
        .await
        .unwrap();
    assert_eq!(
        after
            .iter()
            .map(|p| (p.group.as_str(), p.cost_usd))
            .collect::<Vec<_>>(),
        [("c", 3.0)]
    );
}

/// `GraphStore::replace_hour`, again after a jittered pause while it
/// reports that another recompute of the hour holds or overlapped it (as
/// the aggregator does), at most 10 times; the attempts it took.
async fn replace_retrying(
    graph: &kopter_store::graph::GraphStore,
    tenant: &TenantId,
    acct: &AccountId,
    hour: DateTime<Utc>,
    lines: &[kopter_store::graph::CostLine],
    tags: &[String],
) -> u32 {
    use kopter_store::graph::{Contended, expiry};
    for attempt in 1..=10 {
        match graph
            .replace_hour(tenant, acct, hour, lines, tags, expiry(hour, KEEP_DAYS))
            .await
        {
            Ok(()) => return attempt,
            Err(e) if e.downcast_ref::<Contended>().is_some() => {
                // Jittered, as the aggregator waits: two that overlapped
                // do not start again together.
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::from(d.subsec_nanos()) % 100);
                let pause = 50 + jitter;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(e) => panic!("{e:#}"),
        }
    }
    panic!("{acct} {hour}: still contended after 10 attempts");
}

/// Fails the `n`th `BatchWriteItem` a DynamoDB client sends after it is
/// armed with `n` (0: disarmed).
#[derive(Debug, Clone, Default)]
struct FailNthBatchWrite(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl aws_smithy_runtime_api::client::interceptors::Intercept for FailNthBatchWrite {
    fn name(&self) -> &'static str {
        "FailNthBatchWrite"
    }

    fn read_before_execution(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        let batch = context
            .input()
            .downcast_ref::<aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput>()
            .is_some();
        if batch
            && self
                .0
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok_and(|n| n == 1)
        {
            return Err("injected: the roll-up rows' write failed".into());
        }
        Ok(())
    }
}

/// A recompute that fails after claiming its hour (here: its roll-up
/// rows' write) gives the claim back: the next attempt runs at once — it
/// is not refused for the lease's two minutes — and ends exact.
#[tokio::test]
async fn a_recompute_that_fails_after_its_claim_gives_the_hour_back() {
    use kopter_store::graph::{Contended, GraphStore, expiry};

    let w = world().await;
    let fail = FailNthBatchWrite::default();
    let ddb = w.env.ctx.aws.dynamodb();
    let failing = GraphStore::new(
        aws_sdk_dynamodb::Client::from_conf(
            ddb.config().to_builder().interceptor(fail.clone()).build(),
        ),
        &w.env.ctx.names,
    );
    let graph = GraphStore::new(ddb, &w.env.ctx.names);
    let (tenant, acct) = (&w.tenant, AccountId::new(random_account()).unwrap());
    let tags = vec!["team".to_owned()];
    let hour = t("2025-06-02T16:00:00Z");
    let line = |team: &str, cost: f64| vec![cost_line("i-y", hour, "m5", Some(team), Some(cost))];
    let keep = expiry(hour, KEEP_DAYS);
    graph
        .replace_hour(tenant, &acct, hour, &line("old", 1.0), &tags, keep)
        .await
        .unwrap();
    // A changed hour: its packed costs written (the first BatchWriteItem),
    // the entry claimed, then the roll-up rows' write fails.
    fail.0.store(2, std::sync::atomic::Ordering::SeqCst);
    let err = failing
        .replace_hour(tenant, &acct, hour, &line("new", 2.0), &tags, keep)
        .await
        .expect_err("the injected failure");
    assert!(err.downcast_ref::<Contended>().is_none(), "{err:#}");
    assert!(format!("{err:#}").contains("injected"), "{err:#}");
    // At once, not after the lease: the claim was given back.
    graph
        .replace_hour(tenant, &acct, hour, &line("new", 2.0), &tags, keep)
        .await
        .unwrap_or_else(|e| panic!("refused after a failed recompute: {e:#}"));
    for gran in ["hour", "day"] {
        let (from, to) = if gran == "hour" {
            ("2025-06-02T16", "2025-06-02T16")
        } else {
            ("2025-06-02", "2025-06-02")
        };
        let groups: Vec<(String, f64)> = graph
            .series(tenant, Some(&acct), gran, "tag:team", from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.group, p.cost_usd))
            .collect();
        assert_eq!(groups, [("new".to_owned(), 2.0)], "{gran}");
    }
}

/// An hour of more groups than one item holds (a roll-up tag of 3,000
/// values) is cut in chunks and reads back whole, hour and day; a smaller
/// result after it deletes the chunks it no longer needs.
#[tokio::test]
async fn a_roll_up_of_thousands_of_groups_is_chunked_and_shrinks_cleanly() {
    use kopter_store::graph::GraphStore;

    let w = world().await;
    let graph = GraphStore::new(w.env.ctx.aws.dynamodb(), &w.env.ctx.names);
    let tenant = &w.tenant;
    let tags = vec!["team".to_owned()];
    let h9 = t("2025-06-02T09:00:00Z");
    let pad = "x".repeat(40);
    let many: Vec<_> = (0..3000)
        .map(|i| {
            cost_line(
                &format!("i-{i:05}"),
                h9,
                "m5",
                Some(&format!("team-{i:05}-{pad}")),
                Some(0.001),
            )
        })
        .collect();
    replace_retrying(&graph, tenant, &w.account, h9, &many, &tags).await;
    let (hour_pk, day_pk) = (
        format!("{tenant}#hour#tag:team"),
        format!("{tenant}#day#tag:team"),
    );
    for pk in [&hour_pk, &day_pk] {
        let sks = partition_sks(&w, pk).await;
        assert!(sks.len() >= 2, "{pk}: {sks:?}");
    }
    let series = |gran: &'static str, period: &'static str| {
        let graph = &graph;
        async move {
            graph
                .series(tenant, None, gran, "tag:team", period, period)
                .await
                .unwrap()
        }
    };
    for points in [
        series("hour", "2025-06-02T09").await,
        series("day", "2025-06-02").await,
    ] {
        assert_eq!(points.len(), 3000);
        let total: f64 = points.iter().map(|p| p.cost_usd).sum();
        assert!((total - 3.0).abs() < 1e-9, "{total}");
    }

    // Ten resources now: one item each for the hour and the day.
    replace_retrying(&graph, tenant, &w.account, h9, &many[..10], &tags).await;
    assert_eq!(
        partition_sks(&w, &hour_pk).await,
        vec![format!("2025-06-02T09#{}", w.account)]
    );
    assert_eq!(
        partition_sks(&w, &day_pk).await,
        vec![format!("2025-06-02#{}", w.account)]
    );
    for points in [
        series("hour", "2025-06-02T09").await,
        series("day", "2025-06-02").await,
    ] {
        assert_eq!(points.len(), 10);
    }
}

/// Issue 23: an aggregate message reads an account's inventory and history
/// once for its costs and its waste rules, and reads the state before the
/// hour only of a resource that changed in it, not of one first seen in it.
#[tokio::test]
async fn an_aggregate_reads_an_account_once_and_nothing_before_a_first_sight() {
    let w = world().await;
    let m5 = |state: &str| instance(state, "m5.large", "RunInstances", &[]);
    // Discovered long before the hour, stopped at 10:30: its state at
    // 10:00 is read (running).
    history(
        &w,
        "i-old",
        &[
            ("2025-05-20T00:00:00Z", Change::Discovered, m5("running")),
            ("2025-06-02T10:30:00Z", Change::StateChanged, m5("stopped")),
        ],
    )
    .await;
    // Running before the hour, vanished at 10:20 and seen again at 10:40
    // (a first sight late in the hour): its state at 10:00 is read.
    history(
        &w,
        "i-back",
        &[
            ("2025-05-20T00:00:00Z", Change::Discovered, m5("running")),
            ("2025-06-02T10:20:00Z", Change::Gone, m5("terminated")),
            ("2025-06-02T10:40:00Z", Change::Discovered, m5("running")),
        ],
    )
    .await;
    // Launched at 10:15: nothing before it.
    history(
        &w,
        "i-new",
        &[("2025-06-02T10:15:00Z", Change::Launched, m5("running"))],
    )
    .await;
    // Created at 10:15, deleted at 10:45 (its first row is in the hour).
    history(
        &w,
        "vol-tmp",
        &[
            ("2025-06-02T10:15:00Z", Change::Created, volume()),
            ("2025-06-02T10:45:00Z", Change::Deleted, {
                let Resource::Volume(mut v) = volume() else {
                    unreachable!()
                };
                v.state = "deleted".into();
                Resource::Volume(v)
            }),
        ],
    )
    .await;
    let seen = QueryLog::default();
    let agg = Aggregator {
        history: aggregator::load::HistoryReader::new(
            seen.client(&w.env.ctx.aws.dynamodb()),
            &w.env.ctx.names,
        ),
        ..Aggregator::new(&w.env.ctx)
    };
    let reports = agg
        .aggregate(&AggregateHour {
            hour: t("2025-06-02T10:00:00Z"),
            backfill_hours: 0,
            tenant: Some(w.tenant.clone()),
        })
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);

    let seen = seen.queries();
    let names = &w.env.ctx.names;
    let (inventory, events) = (names.table(Table::Inventory), names.table(Table::Ec2Events));
    let count = |table: &str, index: Option<&str>| {
        seen.iter()
            .filter(|q| q.table == table && q.index.as_deref() == index)
            .count()
    };
    assert_eq!(count(&inventory, None), 1, "inventory read once: {seen:?}");
    assert_eq!(count(&events, None), 1, "history read once: {seen:?}");
    let mut before: Vec<&str> = seen
        .iter()
        .filter(|q| q.table == events && q.index.as_deref() == Some("by-resource"))
        .map(|q| q.value(":r"))
        .collect();
    before.sort();
    assert_eq!(
        before,
        vec![
            keys::tenant_resource(&w.tenant, "i-back"),
            keys::tenant_resource(&w.tenant, "i-old"),
        ],
        "only the states before the hour of i-back and i-old are read"
    );
    assert!(
        seen.iter().all(|q| {
            let key = if q.index.is_some() {
                q.value(":r")
            } else {
                q.value(":pk")
            };
            key.starts_with(&format!("{}#", w.tenant))
        }),
        "another tenant's partition read: {seen:?}"
    );

    // The costs as before: i-old running 10:00–10:30 (its state before the
    // hour found), i-new 10:15–11:00, vol-tmp 30 minutes of 100 GiB gp3
    // (June: 2 592 000 s).
    let rows: HashMap<String, _> = agg
        .graph
        .resource_hours(&w.tenant, &w.account, t("2025-06-02T10:00:00Z"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.resource_id.clone(), r))
        .collect();
    assert!(
        close(rows["i-old"].cost_usd.unwrap(), 0.5 * 0.096),
        "{rows:?}"
    );
    assert!(
        close(rows["i-new"].cost_usd.unwrap(), 0.75 * 0.096),
        "{rows:?}"
    );
    // i-back: 10:00–10:20 and 10:40–11:00.
    assert!(
        close(rows["i-back"].cost_usd.unwrap(), 40.0 / 60.0 * 0.096),
        "{rows:?}"
    );
    assert!(
        close(
            rows["vol-tmp"].cost_usd.unwrap(),
            100.0 * 0.08 * 1800.0 / 2_592_000.0
        ),
        "{rows:?}"
    );
}
