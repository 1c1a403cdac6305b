//! Issue 17 items 3 and 4 end to end on moto: offer fragments in the real
//! format ingested by the pricing service, inventory written by the
//! describer (or, for Local Zones, which moto does not have, as the
//! describer writes it), hours computed by the aggregator, and the price
//! graph read back. Fixtures and their figures:
//! `services/pricing/tests/fixtures/README.md`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aggregator::Aggregator;
use aws_sdk_ec2::types::InstanceType;
use chrono::{DateTime, DurationRound, Utc};

use describer::AssumedRoles;
use describer::describe::AccountAccess;
use kopter_runtime::CustomerRole;
use kopter_runtime::accounts::Onboarding;
use kopter_schema::items::{AccountRecord, keys};
use kopter_schema::messages::{AccountRegion, AggregateHour};
use kopter_schema::{AccountId, Table, TenantId};
use kopter_store::graph::ResourceHourRow;
use kopter_store::inventory::{
    Change, EventRow, InstanceFields, InventoryRow, Resource, VolumeFields, ZoneInfo, inventory_sk,
};
use kopter_tests::{TestEnv, random_account, unique};

const LAX_OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_lax_fragment.json");
const USW2_OFFER: &str = include_str!("../../pricing/tests/fixtures/offer_usw2_fragment.json");
/// moto's Amazon Linux and Windows images (as `tools/demo` uses them).
const LINUX_AMI: &str = "ami-760aaa0f";
const WINDOWS_AMI: &str = "ami-1ecc1e67";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

/// A fresh moto world: one onboarded account; both fragments ingested by
/// the pricing service (us-west-2 and its Los Angeles Local Zone, each its
/// own Price List region, version 20250523232744 of 2025-05-23).
async fn world() -> (TestEnv, Aggregator, AccountRecord) {
    let env = TestEnv::new().await;
    let tenant = unique("acme-");
    let account = random_account();
    let rec = env
        .ctx
        .accounts
        .onboard(
            Onboarding::parse(
                &tenant,
                &account,
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &["us-west-2".to_string()],
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let pricing = pricing::ingest::Ingestor::new(&env.ctx).unwrap();
    for (text, name, region) in [
        (LAX_OFFER, "offer_lax_fragment.json", "us-west-2-lax-1"),
        (USW2_OFFER, "offer_usw2_fragment.json", "us-west-2"),
    ] {
        pricing
            .ingest_reader(std::io::Cursor::new(text.as_bytes().to_vec()), name, region)
            .await
            .unwrap();
    }
    let agg = Aggregator::new(&env.ctx);
    (env, agg, rec)
}

async fn hour_rows(
    agg: &Aggregator,
    tenant: &TenantId,
    account: &AccountId,
    hour: DateTime<Utc>,
) -> HashMap<String, ResourceHourRow> {
    agg.graph
        .resource_hours(tenant, account, hour)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.resource_id.clone(), r))
        .collect()
}

/// Writes a resource in region `us-west-2` as the describer does: its
/// history row (launched or created at 08:00 on 2025-06-02) and its
/// inventory row. (For a Local Zone the describer records zone type
/// `local-zone` and price region `us-west-2-lax-1`, what `describer::zones`
/// makes of EC2's `ZoneType`/`GroupName`; moto has no Local Zones.)
async fn put_resource(env: &TestEnv, rec: &AccountRecord, id: &str, r: Resource) {
    let at = t("2025-06-02T08:00:00Z");
    let event = EventRow::new(
        &rec.tenant_id,
        &rec.account_id,
        "us-west-2",
        id,
        Change::Launched,
        at,
        at,
        r.clone(),
    );
    env.put_row(Table::Ec2Events, &event).await;
    let row = InventoryRow {
        pk: keys::tenant_account(&rec.tenant_id, &rec.account_id),
        sk: inventory_sk("us-west-2", r.kind(), id),
        tenant: rec.tenant_id.clone(),
        account: rec.account_id.clone(),
        region: "us-west-2".into(),
        resource_id: id.into(),
        gone: false,
        first_seen: at,
        last_seen: t("2025-06-02T12:00:00Z"),
        last_change_at: Some(at),
        version: 1,
        unpublished: vec![],
        resource: r,
    };
    env.put_row(Table::Inventory, &row).await;
}

/// Issue 17 item 3: an m5.xlarge and its 100 GiB gp3 volume in the Los
/// Angeles Local Zone for hour 10:00 of 2025-06-02. The m5.xlarge is
/// 0.23 × 1 h = 0.23 (the Local Zone's rate; us-west-2's 0.192 would be
/// 17 % low), the volume 100 GiB × 0.096 /GB-month × 3600 s / 2 592 000 s
/// (June) = 0.013333… (us-west-2's 0.08 would give 0.011111…). An
/// m5.xlarge in us-west-2a in the same account is 0.192.
#[tokio::test]
async fn local_zone_resources_are_priced_from_the_local_zone_rows_moto() {
    let (env, agg, rec) = world().await;
    let lax = ZoneInfo {
        zone_type: "local-zone".into(),
        price_region: "us-west-2-lax-1".into(),
    };
    let instance = |zone: ZoneInfo, az: &str| {
        Resource::Instance(InstanceFields {
            state: "running".into(),
            instance_type: "m5.xlarge".into(),
            usage_operation: "RunInstances".into(),
            platform_details: "Linux/UNIX".into(),
            tenancy: "default".into(),
            lifecycle: "on-demand".into(),
            availability_zone: az.into(),
            launch_time: Some(t("2025-06-02T08:00:00Z")),
            state_transition_reason: String::new(),
            tags: BTreeMap::new(),
            volume_ids: vec!["vol-lax".into()],
            zone,
            host_id: String::new(),
            capacity_reservation_id: String::new(),
        })
    };
    put_resource(
        &env,
        &rec,
        "i-lax",
        instance(lax.clone(), "us-west-2-lax-1a"),
    )
    .await;
    put_resource(
        &env,
        &rec,
        "i-oregon",
        instance(
            ZoneInfo {
                zone_type: "availability-zone".into(),
                price_region: String::new(),
            },
            "us-west-2a",
        ),
    )
    .await;
    put_resource(
        &env,
        &rec,
        "vol-lax",
        Resource::Volume(VolumeFields {
            state: "in-use".into(),
            volume_type: "gp3".into(),
            size_gib: 100,
            iops: Some(3000),
            throughput: Some(125),
            attached_instance: Some("i-lax".into()),
            availability_zone: "us-west-2-lax-1a".into(),
            create_time: Some(t("2025-06-02T08:00:00Z")),
            tags: BTreeMap::new(),
            zone: lax,
        }),
    )
    .await;

    let hour = t("2025-06-02T10:00:00Z");
    agg.aggregate(&AggregateHour {
        hour,
        backfill_hours: 0,
        tenant: Some(rec.tenant_id.clone()),
    })
    .await
    .unwrap();
    let rows = hour_rows(&agg, &rec.tenant_id, &rec.account_id, hour).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(close(rows["i-lax"].cost_usd, 0.23), "{:?}", rows["i-lax"]);
    assert_eq!(
        rows["i-lax"].region, "us-west-2",
        "lines keep the resource's region"
    );
    assert!(
        close(
            rows["vol-lax"].cost_usd,
            100.0 * 0.096 * 3600.0 / 2_592_000.0
        ),
        "{:?}",
        rows["vol-lax"]
    );
    assert!(
        close(rows["i-oregon"].cost_usd, 0.192),
        "{:?}",
        rows["i-oregon"]
    );
}

/// Issue 17 item 4, from moto's EC2 through the describer to the price
/// graph: a mac1 Dedicated Host allocated with `AllocateHosts` and a
/// mac1.metal launched onto it (`Placement.HostId`). The host is a
/// resource of kind `host` billed 1.083/h from its `AllocationTime` to the
/// end of the hour; the instance costs 0.00 (its Host-tenancy row) with a
/// note naming the host, never a silent 0.
///
/// What moto gives: `DescribeAvailabilityZones` answers `ZoneType`
/// `availability-zone` and no `GroupName` (so the zone is typed and priced
/// by region); the instance's `Placement.Tenancy` is `default` even on a
/// host (moto ignores it) but `Placement.HostId` is kept, which the
/// describer takes for tenancy `host` (counted as a fallback);
/// `DescribeHosts` has no `Instances` list.
#[tokio::test]
async fn a_dedicated_host_is_described_and_billed_for_its_instance_moto() {
    let (env, agg, rec) = world().await;
    let access = AssumedRoles {
        base: env.ctx.aws.sdk.clone(),
        credentials: env.ctx.credentials.clone(),
    };
    let ec2 = access
        .ec2(&CustomerRole::from(&rec), "us-west-2")
        .await
        .unwrap();
    let host_id = ec2
        .allocate_hosts()
        .availability_zone("us-west-2a")
        .instance_type("mac1.metal")
        .quantity(1)
        .send()
        .await
        .unwrap()
        .host_ids()[0]
        .clone();
    let launch = |ami: &'static str| {
        let ec2 = ec2.clone();
        let host_id = host_id.clone();
        async move {
            ec2.run_instances()
                .image_id(ami)
                .instance_type(InstanceType::Mac1Metal)
                .placement(
                    aws_sdk_ec2::types::Placement::builder()
                        .host_id(&host_id)
                        .build(),
                )
                .min_count(1)
                .max_count(1)
                .send()
                .await
                .unwrap()
                .instances()[0]
                .instance_id()
                .unwrap()
                .to_owned()
        }
    };
    let instance_id = launch(LINUX_AMI).await;
    let windows_id = launch(WINDOWS_AMI).await;

    let d = describer::describer(&env.ctx);
    let target = AccountRegion {
        tenant: rec.tenant_id.clone(),
        account: rec.account_id.clone(),
        region: "us-west-2".into(),
    };
    let report = d.describe(&target, None).await.unwrap();
    assert!(report.denied.is_none(), "{report:?}");
    let inv = d
        .store
        .inventory(&rec.tenant_id, &rec.account_id, Some("us-west-2"), None)
        .await
        .unwrap();
    let host = inv
        .values()
        .find(|r| r.resource_id == host_id)
        .unwrap_or_else(|| panic!("no host row in {inv:?}"));
    let Resource::Host(h) = &host.resource else {
        panic!("not a host: {host:?}")
    };
    assert_eq!(
        (
            h.state.as_str(),
            h.instance_family.as_str(),
            h.instance_type.as_str()
        ),
        ("available", "mac1", "mac1.metal")
    );
    assert_eq!(h.zone.zone_type, "availability-zone");
    let allocated = h.allocation_time.expect("moto gives AllocationTime");
    let inst = inv.values().find(|r| r.resource_id == instance_id).unwrap();
    let Resource::Instance(i) = &inst.resource else {
        panic!("not an instance: {inst:?}")
    };
    assert_eq!(
        (i.host_id.as_str(), i.tenancy.as_str()),
        (host_id.as_str(), "host")
    );
    assert_eq!(
        i.zone,
        ZoneInfo {
            zone_type: "availability-zone".into(),
            price_region: String::new()
        }
    );

    // The hour of the allocation (whatever hour the test ends in).
    let hour = allocated
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap();
    agg.aggregate(&AggregateHour {
        hour,
        backfill_hours: 0,
        tenant: Some(rec.tenant_id.clone()),
    })
    .await
    .unwrap();
    let rows = hour_rows(&agg, &rec.tenant_id, &rec.account_id, hour).await;
    let host_row = &rows[&host_id];
    // 1.083 USD/h × the hours from allocation to the end of the hour.
    let hours =
        (hour + chrono::Duration::hours(1) - allocated).num_milliseconds() as f64 / 3_600_000.0;
    assert_eq!(
        (host_row.kind.as_str(), host_row.family.as_str()),
        ("host", "mac1")
    );
    assert!(
        close(host_row.cost_usd, 1.083 * hours),
        "{host_row:?} for {hours} h"
    );
    assert!((host_row.usage - hours).abs() < 1e-9);
    let inst_row = &rows[&instance_id];
    assert_eq!(inst_row.cost_usd, Some(0.0), "{inst_row:?}");
    assert_eq!(inst_row.price_missing, None);
    assert!(
        inst_row
            .note
            .as_deref()
            .is_some_and(|n| n.contains(&host_id)),
        "{inst_row:?}"
    );
    // Windows on the host: the fragment has no Host-tenancy Windows row
    // (AWS bills the Windows license per instance there), so it is
    // marked, not 0.
    let win_row = &rows[&windows_id];
    assert_eq!(win_row.cost_usd, None, "{win_row:?}");
    assert!(
        win_row
            .price_missing
            .as_deref()
            .is_some_and(|m| m.contains("RunInstances:0002 Host")),
        "{win_row:?}"
    );

    // Released: the next describe records it, and its billing ends there.
    ec2.release_hosts().host_ids(&host_id).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    d.describe(&target, None).await.unwrap();
    let history = d
        .store
        .history(&rec.tenant_id, &rec.account_id)
        .await
        .unwrap();
    let host_changes: Vec<_> = history
        .iter()
        .filter(|e| e.resource_id == host_id)
        .map(|e| (e.change, e.resource.state().to_owned()))
        .collect();
    assert_eq!(
        host_changes,
        [
            (Change::Created, "available".into()),
            (Change::Deleted, "released".into())
        ]
    );
}

/// Issue 17 item 7 on the us-west-2 fragment: an m5.xlarge launched into
/// an On-Demand Capacity Reservation is billed 0.192 × 1 h = 0.192 (the
/// on-demand rate, as AWS bills it) with a note naming the reservation; an
/// m5.xlarge in a Capacity Block (`InstanceLifecycle` `capacity-block`),
/// priced 0.192 as plain on-demand before, is marked instead — the block
/// is paid up front at a price no offer-file row gives. The inventory
/// rows are written as the describer records them (its mapping is
/// unit-tested in `describer::ec2`): moto 5.2.5 has no
/// `CreateCapacityReservation` / Capacity Block API, its `RunInstances`
/// ignores `CapacityReservationSpecification`, and its DescribeInstances
/// never returns `CapacityReservationId` or an `InstanceLifecycle` other
/// than `spot`, so no instance in a reservation can be made there.
#[tokio::test]
async fn capacity_reservations_and_blocks_moto() {
    let (env, agg, rec) = world().await;
    let instance = |lifecycle: &str, reservation: &str| {
        Resource::Instance(InstanceFields {
            state: "running".into(),
            instance_type: "m5.xlarge".into(),
            usage_operation: "RunInstances".into(),
            platform_details: "Linux/UNIX".into(),
            tenancy: "default".into(),
            lifecycle: lifecycle.into(),
            availability_zone: "us-west-2a".into(),
            launch_time: Some(t("2025-06-02T08:00:00Z")),
            state_transition_reason: String::new(),
            tags: BTreeMap::new(),
            volume_ids: vec![],
            zone: ZoneInfo {
                zone_type: "availability-zone".into(),
                price_region: String::new(),
            },
            host_id: String::new(),
            capacity_reservation_id: reservation.into(),
        })
    };
    put_resource(
        &env,
        &rec,
        "i-odcr",
        instance("on-demand", "cr-0123456789abcdef0"),
    )
    .await;
    put_resource(
        &env,
        &rec,
        "i-block",
        instance("capacity-block", "cr-0fedcba9876543210"),
    )
    .await;
    let hour = t("2025-06-02T10:00:00Z");
    agg.aggregate(&AggregateHour {
        hour,
        backfill_hours: 0,
        tenant: Some(rec.tenant_id.clone()),
    })
    .await
    .unwrap();
    let rows = hour_rows(&agg, &rec.tenant_id, &rec.account_id, hour).await;
    let odcr = &rows["i-odcr"];
    assert!(close(odcr.cost_usd, 0.192), "{odcr:?}");
    assert!(
        odcr.note
            .as_deref()
            .is_some_and(|n| n.contains("cr-0123456789abcdef0")),
        "{odcr:?}"
    );
    let block = &rows["i-block"];
    assert_eq!(block.cost_usd, None, "{block:?}");
    assert!(
        block
            .price_missing
            .as_deref()
            .is_some_and(|m| m.contains("Capacity Block")),
        "{block:?}"
    );
    assert!((block.usage - 1.0).abs() < 1e-9);
    // The roll-up counts the block as unpriced, not as 0.
    let total = agg
        .graph
        .series(
            &rec.tenant_id,
            None,
            "hour",
            "account",
            "2025-06-02T10",
            "2025-06-02T10",
        )
        .await
        .unwrap();
    assert_eq!(total.len(), 1);
    assert!((total[0].cost_usd - 0.192).abs() < 1e-9);
    assert_eq!(total[0].price_missing, 1);
}
