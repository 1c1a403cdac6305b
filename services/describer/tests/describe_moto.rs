//! The describer against moto: customer accounts are entered with
//! AssumeRole (moto switches accounts), EC2 resources are made there, and
//! the inventory, history rows, events and health land under the right
//! tenant.
//!
//! moto never refuses AssumeRole (it does not check trust policies or
//! ExternalIds), so a "broken role" is simulated by wrapping the real
//! account access and answering for one account exactly what the runtime
//! answers when STS says AccessDenied. A disabled region is real: moto's
//! DescribeRegions reports `ap-east-1` as `not-opted-in`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use describer::ec2::AccountError;
use describer::{AccountAccess, AssumedRoles, Describer, DescriberHandler, SweepKind};
use kopter_runtime::accounts::Onboarding;
use kopter_runtime::messaging::envelope;
use kopter_runtime::worker::{RunSummary, WorkerSettings};
use kopter_runtime::{AssumeRoleError, BoxFuture, CustomerRole, SqsQueue, Worker};
use kopter_schema::items::AccountRecord;
use kopter_schema::messages::{AccountRegion, Sweep, TargetedDescribe};
use kopter_schema::{AccountId, Envelope, Message, Service, TenantId};
use kopter_store::backup::{BackupPolicy, MANAGED_TAG};
use kopter_store::inventory::{Change, EventRow, Resource};
use kopter_tests::{TestEnv, eventually, random_account};
use tokio_util::sync::CancellationToken;

const AMI: &str = "ami-12c6146b";

/// The real access, except that some accounts' roles refuse us.
struct Refusing {
    inner: AssumedRoles,
    refused: HashSet<String>,
}

impl AccountAccess for Refusing {
    fn ec2<'a>(
        &'a self,
        role: &'a CustomerRole,
        region: &'a str,
    ) -> BoxFuture<'a, Result<aws_sdk_ec2::Client, AccountError>> {
        Box::pin(async move {
            if self.refused.contains(role.account.as_str()) {
                return Err(AssumeRoleError::Denied {
                    account: role.account.clone(),
                    role_arn: role.role_arn.clone(),
                    code: "AccessDenied".into(),
                    message: "User is not authorized to perform: sts:AssumeRole".into(),
                }
                .into());
            }
            self.inner.ec2(role, region).await
        })
    }
}

fn access(env: &TestEnv) -> AssumedRoles {
    AssumedRoles {
        base: env.ctx.aws.sdk.clone(),
        credentials: env.ctx.credentials.clone(),
    }
}

fn describer_refusing(env: &TestEnv, refused: &[&str]) -> Describer {
    describer::describer_with(
        &env.ctx,
        Arc::new(Refusing {
            inner: access(env),
            refused: refused.iter().map(|s| s.to_string()).collect(),
        }),
    )
}

async fn onboard(env: &TestEnv, tenant: &str, regions: &[&str]) -> AccountRecord {
    let account = random_account();
    let rec = env
        .ctx
        .accounts
        .onboard(
            Onboarding::parse(
                tenant,
                &account,
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &regions.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    // EC2 launch times have whole seconds: make everything made from now
    // on clearly after the onboarding.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rec
}

/// An EC2 client in the customer's account (through AssumeRole, as the
/// describer enters it).
async fn customer_ec2(env: &TestEnv, rec: &AccountRecord, region: &str) -> aws_sdk_ec2::Client {
    access(env)
        .ec2(&CustomerRole::from(rec), region)
        .await
        .unwrap()
}

async fn launch(ec2: &aws_sdk_ec2::Client, n: i32, tags: &[(&str, &str)]) -> Vec<String> {
    let mut req = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(InstanceType::T3Micro)
        .min_count(n)
        .max_count(n);
    if !tags.is_empty() {
        req = req.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .build(),
        );
    }
    req.send()
        .await
        .unwrap()
        .instances()
        .iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

fn target(rec: &AccountRecord, region: &str) -> AccountRegion {
    AccountRegion {
        tenant: rec.tenant_id.clone(),
        account: rec.account_id.clone(),
        region: region.into(),
    }
}

async fn history(d: &Describer, rec: &AccountRecord) -> Vec<EventRow> {
    d.store
        .history(&rec.tenant_id, &rec.account_id)
        .await
        .unwrap()
}

fn changes_of(rows: &[EventRow], id: &str) -> Vec<(Change, String)> {
    rows.iter()
        .filter(|r| r.resource_id == id)
        .map(|r| (r.change, r.resource.state().to_owned()))
        .collect()
}

/// Every message on a queue (received and left hidden).
async fn drain(env: &TestEnv, service: Service) -> Vec<Envelope> {
    let url = env.queue_url(service).await;
    let mut out = Vec::new();
    loop {
        let got = env.receive(&url, Duration::from_secs(120)).await;
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
async fn launches_stops_and_terminations_between_describes_become_history_and_events() {
    let env = TestEnv::new().await;
    let d = describer::describer(&env.ctx);
    let rec = onboard(&env, "acme", &[]).await;
    let ec2 = customer_ec2(&env, &rec, "us-east-1").await;
    let ids = launch(&ec2, 2, &[("Name", "web")]).await;
    let (i1, i2) = (&ids[0], &ids[1]);

    let r = d.describe(&target(&rec, "us-east-1"), None).await.unwrap();
    assert!(r.denied.is_none() && r.skipped.is_none(), "{r:?}");
    let rows = history(&d, &rec).await;
    assert_eq!(
        changes_of(&rows, i1),
        [(Change::Launched, "running".into())]
    );
    let first = rows.iter().find(|r| &r.resource_id == i1).unwrap();
    let Resource::Instance(fields) = &first.resource else {
        panic!("not an instance row: {first:?}")
    };
    assert_eq!(fields.instance_type, "t3.micro");
    assert_eq!(fields.lifecycle, "on-demand");
    assert_eq!(fields.tenancy, "default");
    assert_eq!(fields.tags.get("Name").map(String::as_str), Some("web"));
    assert_eq!(fields.volume_ids.len(), 1, "root volume attached");
    assert_eq!(Some(first.at), fields.launch_time);
    assert_eq!(first.resource_key, format!("acme#{i1}"));
    // The root volumes were created with the instances.
    let root = &fields.volume_ids[0];
    assert_eq!(
        changes_of(&rows, root),
        [(Change::Created, "in-use".into())]
    );

    // Same estate again: no new history.
    d.describe(&target(&rec, "us-east-1"), None).await.unwrap();
    assert_eq!(history(&d, &rec).await.len(), rows.len());

    // Stop one, terminate the other, launch a third, create a volume.
    ec2.stop_instances().instance_ids(i1).send().await.unwrap();
    ec2.terminate_instances()
        .instance_ids(i2)
        .send()
        .await
        .unwrap();
    let i3 = launch(&ec2, 1, &[]).await.remove(0);
    let vol = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(50)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
        .send()
        .await
        .unwrap()
        .volume_id
        .unwrap();
    d.describe(&target(&rec, "us-east-1"), None).await.unwrap();
    let rows = history(&d, &rec).await;
    assert_eq!(
        changes_of(&rows, i1),
        [
            (Change::Launched, "running".into()),
            (Change::StateChanged, "stopped".into())
        ]
    );
    assert_eq!(
        changes_of(&rows, i2),
        [
            (Change::Launched, "running".into()),
            (Change::Terminated, "terminated".into())
        ]
    );
    assert_eq!(
        changes_of(&rows, &i3),
        [(Change::Launched, "running".into())]
    );
    assert_eq!(
        changes_of(&rows, &vol),
        [(Change::Created, "available".into())]
    );
    // The stop's time comes from the StateTransitionReason, and history of
    // one resource is ordered by time.
    let stop = rows
        .iter()
        .find(|r| &r.resource_id == i1 && r.change == Change::StateChanged)
        .unwrap();
    assert!(stop.at <= stop.observed_at);
    assert!(rows.windows(2).all(|w| w[0].sk < w[1].sk));

    // Inventory: current state, nothing deleted.
    let inv = d
        .store
        .inventory(&rec.tenant_id, &rec.account_id, Some("us-east-1"), None)
        .await
        .unwrap();
    let state = |id: &str| {
        inv.values()
            .find(|r| r.resource_id == id)
            .map(|r| (r.state().to_owned(), r.gone))
    };
    assert_eq!(state(i1), Some(("stopped".into(), false)));
    assert_eq!(state(i2), Some(("terminated".into(), false)));
    assert_eq!(state(&vol), Some(("available".into(), false)));
    assert!(
        inv.values().all(|r| r.unpublished.is_empty()),
        "all published"
    );

    // A deleted volume vanishes: marked gone and deleted, row kept.
    ec2.delete_volume().volume_id(&vol).send().await.unwrap();
    d.describe(&target(&rec, "us-east-1"), None).await.unwrap();
    let rows = history(&d, &rec).await;
    assert_eq!(
        changes_of(&rows, &vol),
        [
            (Change::Created, "available".into()),
            (Change::Deleted, "deleted".into())
        ]
    );
    let inv = d
        .store
        .inventory(&rec.tenant_id, &rec.account_id, Some("us-east-1"), None)
        .await
        .unwrap();
    assert!(inv.values().any(|r| r.resource_id == vol && r.gone));

    // Every history row was published as inventory.changed, to the
    // aggregator (and the notifier), for this tenant only.
    let events: Vec<_> = drain(&env, Service::Aggregator)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::InventoryChanged(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), rows.len(), "{events:?}");
    assert!(events.iter().all(|e| e.tenant.as_str() == "acme"));
    assert!(
        events
            .iter()
            .any(|e| e.resource_id == *i2 && e.change == "terminated")
    );
    let e = events.iter().find(|e| e.resource_id == *i1).unwrap();
    assert_eq!(e.detail["instance_type"], "t3.micro");
}

#[tokio::test]
async fn a_targeted_describe_updates_only_the_named_instances() {
    let env = TestEnv::new().await;
    let d = describer::describer(&env.ctx);
    let rec = onboard(&env, "acme", &["eu-west-1"]).await;
    let ec2 = customer_ec2(&env, &rec, "eu-west-1").await;
    let ids = launch(&ec2, 2, &[]).await;
    d.describe(&target(&rec, "eu-west-1"), None).await.unwrap();
    ec2.stop_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .unwrap();
    let targeted = TargetedDescribe {
        tenant: rec.tenant_id.clone(),
        account: rec.account_id.clone(),
        region: "eu-west-1".into(),
        instance_ids: vec![ids[0].clone()],
        volume_ids: vec![],
        snapshot_ids: vec![],
    };
    // Through the queue handler, as trail-ingest's event arrives.
    let handler = DescriberHandler(d.clone());
    let env_msg = envelope(Message::DescribeTargeted(targeted));
    kopter_runtime::Handler::handle(
        &handler,
        &kopter_runtime::Delivery {
            message_id: "m-1".into(),
            body: env_msg.to_json(),
            receive_count: 1,
            attributes: Default::default(),
            sent_at_ms: None,
        },
    )
    .await
    .unwrap();
    let rows = history(&d, &rec).await;
    assert_eq!(
        changes_of(&rows, &ids[0]),
        [
            (Change::Launched, "running".into()),
            (Change::StateChanged, "stopped".into())
        ]
    );
    assert_eq!(
        changes_of(&rows, &ids[1]),
        [(Change::Launched, "running".into())]
    );
    let inv = d
        .store
        .inventory(&rec.tenant_id, &rec.account_id, None, None)
        .await
        .unwrap();
    let other = inv.values().find(|r| r.resource_id == ids[1]).unwrap();
    assert_eq!(other.state(), "running");
    // A region the tenant did not choose is skipped.
    let r = d.describe(&target(&rec, "us-east-1"), None).await.unwrap();
    assert!(r.skipped.is_some());
}

async fn run_worker(
    env: &TestEnv,
    d: Describer,
) -> (CancellationToken, tokio::task::JoinHandle<RunSummary>) {
    let q = SqsQueue::resolve(env.sqs(), &env.ctx.names.queue(Service::Describer))
        .await
        .unwrap();
    let token = CancellationToken::new();
    let mut settings = WorkerSettings::from(&env.config.worker);
    settings.concurrency = 16;
    let task = tokio::spawn(
        Worker::new(Arc::new(q), Arc::new(DescriberHandler(d)), settings).run(token.clone()),
    );
    (token, task)
}

#[tokio::test]
async fn a_broken_role_or_disabled_region_marks_only_that_account_unhealthy() {
    let env = TestEnv::with(|c| c.queues.max_receive_count = 2).await;
    let good = onboard(&env, "acme", &["us-east-1"]).await;
    let broken = onboard(&env, "acme", &["us-east-1"]).await;
    let other = onboard(&env, "globex", &["us-east-1"]).await;
    // ap-east-1 is opt-in and not enabled in moto's accounts.
    let disabled = onboard(&env, "globex", &["us-east-1", "ap-east-1"]).await;
    for rec in [&good, &broken, &other, &disabled] {
        launch(&customer_ec2(&env, rec, "us-east-1").await, 1, &[]).await;
    }
    let d = describer_refusing(&env, &[broken.account_id.as_str()]);

    let report = d.sweep(SweepKind::Describe).await.unwrap();
    assert_eq!(report.accounts, 4);
    assert_eq!(report.denied, 2, "{report:?}");
    assert_eq!(report.jobs, 3, "good, other, disabled's us-east-1");

    // The broken account's own job is acknowledged after recording.
    let r = d
        .describe(&target(&broken, "us-east-1"), None)
        .await
        .unwrap();
    assert!(r.denied.as_deref().unwrap().contains("AccessDenied"));

    let (stop, task) = run_worker(&env, d.clone()).await;
    for rec in [&good, &other, &disabled] {
        eventually(
            "the account's inventory",
            Duration::from_secs(60),
            || async {
                let inv = d
                    .store
                    .inventory(&rec.tenant_id, &rec.account_id, None, None)
                    .await
                    .unwrap();
                inv.values()
                    .any(|r| r.kind() == kopter_store::inventory::ResourceKind::Instance)
                    .then_some(())
            },
        )
        .await;
    }
    let url = env.queue_url(Service::Describer).await;
    eventually(
        "the describer queue to drain",
        Duration::from_secs(30),
        || async { (env.depth(&url).await == (0, 0)).then_some(()) },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    assert!(
        d.store
            .inventory(&broken.tenant_id, &broken.account_id, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(env.depth(&env.dlq_url(Service::Describer).await).await.0, 0);

    let get = |rec: &AccountRecord| {
        let (t, a) = (rec.tenant_id.clone(), rec.account_id.clone());
        let accounts = env.ctx.accounts.clone();
        async move { accounts.get(&t, &a).await.unwrap().unwrap() }
    };
    assert!(get(&good).await.healthy);
    assert!(get(&other).await.healthy);
    let b = get(&broken).await;
    assert!(!b.healthy);
    assert!(b.health_reason.unwrap().contains("AccessDenied"));
    assert!(b.health_checked_at.is_some());
    let x = get(&disabled).await;
    assert!(!x.healthy);
    assert!(x.health_reason.unwrap().contains("ap-east-1"));

    // account.health went to the notifier, once per change of health.
    let health: Vec<_> = drain(&env, Service::Notifier)
        .await
        .into_iter()
        .filter_map(|e| match e.message {
            Message::AccountHealth(h) => Some(h),
            _ => None,
        })
        .collect();
    let accounts: Vec<&str> = health.iter().map(|h| h.account.as_str()).collect();
    assert!(accounts.contains(&broken.account_id.as_str()), "{health:?}");
    assert!(
        accounts.contains(&disabled.account_id.as_str()),
        "{health:?}"
    );
    assert!(health.iter().all(|h| !h.healthy));
    assert_eq!(
        accounts
            .iter()
            .filter(|a| **a == broken.account_id.as_str())
            .count(),
        2,
        "sweep reason (role) and the job's reason (region-prefixed) differ: {health:?}"
    );

    // Once the role works again, the next sweep restores the account.
    let d = describer::describer(&env.ctx);
    d.sweep(SweepKind::Describe).await.unwrap();
    assert!(get(&broken).await.healthy);
}

#[tokio::test]
async fn twenty_accounts_by_three_regions_through_the_queue() {
    let env = TestEnv::new().await;
    let regions = ["us-east-1", "eu-west-1", "ap-southeast-2"];
    let mut recs = Vec::new();
    for n in 0..20 {
        let tenant = if n % 2 == 0 { "acme" } else { "globex" };
        let account = random_account();
        recs.push(
            env.ctx
                .accounts
                .onboard(
                    Onboarding::parse(
                        tenant,
                        &account,
                        &format!("arn:aws:iam::{account}:role/KopterAccess"),
                        &regions.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                    )
                    .unwrap(),
                    None,
                )
                .await
                .unwrap(),
        );
    }
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    for rec in &recs {
        for region in regions {
            let id = launch(&customer_ec2(&env, rec, region).await, 1, &[])
                .await
                .remove(0);
            expected.insert((rec.account_id.to_string(), region.to_owned()), id);
        }
    }
    let d = describer::describer(&env.ctx);
    let (stop, task) = run_worker(&env, d.clone()).await;
    let url = env.queue_url(Service::Describer).await;
    env.send_raw(&url, &envelope(Message::DescribeSweep(Sweep {})).to_json())
        .await;
    let all = eventually(
        "60 instances in the inventory",
        Duration::from_secs(240),
        || async {
            let mut rows = Vec::new();
            for tenant in ["acme", "globex"] {
                let t = TenantId::new(tenant).unwrap();
                rows.extend(
                    kopter_store::inventory::inventory_rows(&d.store, &d.accounts, &t, None, None)
                        .await
                        .unwrap(),
                );
            }
            let n = rows
                .iter()
                .filter(|r| r.kind() == kopter_store::inventory::ResourceKind::Instance)
                .count();
            (n >= 60).then_some(rows)
        },
    )
    .await;
    stop.cancel();
    let summary = task.await.unwrap();
    assert!(summary.received >= 61, "{summary:?}");
    let instances: Vec<_> = all
        .iter()
        .filter(|r| r.kind() == kopter_store::inventory::ResourceKind::Instance)
        .collect();
    assert_eq!(instances.len(), 60);
    for r in &instances {
        // Each instance under its own account, region and tenant.
        let key = (r.account.to_string(), r.region.clone());
        assert_eq!(expected.get(&key), Some(&r.resource_id), "{r:?}");
        let owner = recs.iter().find(|a| a.account_id == r.account).unwrap();
        assert_eq!(r.tenant, owner.tenant_id);
        assert!(r.pk.starts_with(&format!("{}#", owner.tenant_id)));
    }
}

#[tokio::test]
async fn backups_once_per_interval_and_retention_deletes_only_managed_snapshots() {
    let env = TestEnv::new().await;
    let d = describer::describer(&env.ctx);
    let rec = onboard(&env, "acme", &["us-east-1"]).await;
    let tenant = TenantId::new("acme").unwrap();
    d.backups
        .set_policy(
            &tenant,
            &BackupPolicy {
                keep_count: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ec2 = customer_ec2(&env, &rec, "us-east-1").await;
    let backed = launch(&ec2, 1, &[("kopter:backup", "true"), ("team", "data")])
        .await
        .remove(0);
    let not_backed = launch(&ec2, 1, &[("kopter:backup", "false")])
        .await
        .remove(0);
    let volume_of = |id: String| {
        let ec2 = ec2.clone();
        async move {
            ec2.describe_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap()
                .reservations()[0]
                .instances()[0]
                .block_device_mappings()[0]
                .ebs()
                .unwrap()
                .volume_id()
                .unwrap()
                .to_owned()
        }
    };
    let vol = volume_of(backed.clone()).await;
    let other_vol = volume_of(not_backed).await;
    ec2.create_tags()
        .resources(&vol)
        .tags(Tag::builder().key("cost-center").value("42").build())
        .send()
        .await
        .unwrap();
    // Older snapshots of the volume: three Kopter-managed, one not.
    let snap = |managed: bool| {
        let (ec2, vol) = (ec2.clone(), vol.clone());
        async move {
            let mut req = ec2.create_snapshot().volume_id(vol);
            if managed {
                req = req.tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Snapshot)
                        .tags(Tag::builder().key(MANAGED_TAG).value("true").build())
                        .build(),
                );
            }
            req.send().await.unwrap().snapshot_id.unwrap()
        }
    };
    let mut old_managed = Vec::new();
    for _ in 0..3 {
        old_managed.push(snap(true).await);
    }
    let unmanaged = snap(false).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let r = d.backup(&target(&rec, "us-east-1")).await.unwrap();
    assert_eq!(r.volumes, 1, "{r:?}");
    assert_eq!(r.created.len(), 1, "{r:?}");
    assert!(r.failed.is_empty(), "{r:?}");
    let created = r.created[0].clone();
    // Redelivery in the same interval: nothing new.
    let again = d.backup(&target(&rec, "us-east-1")).await.unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.already, 1);

    let snaps = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .unwrap();
    let mine: Vec<_> = snaps
        .snapshots()
        .iter()
        .filter(|s| s.owner_id() == Some(rec.account_id.as_str()))
        .collect();
    let ids: HashSet<&str> = mine.iter().filter_map(|s| s.snapshot_id()).collect();
    assert!(ids.contains(created.as_str()), "the new snapshot is kept");
    assert!(
        ids.contains(unmanaged.as_str()),
        "unmanaged snapshots are never deleted"
    );
    let managed_left = mine
        .iter()
        .filter(|s| s.tags().iter().any(|t| t.key() == Some(MANAGED_TAG)))
        .count();
    assert_eq!(managed_left, 2, "keep_count = 2");
    assert_eq!(
        old_managed
            .iter()
            .filter(|id| !ids.contains(id.as_str()))
            .count(),
        2
    );
    assert!(
        mine.iter()
            .all(|s| s.volume_id() != Some(other_vol.as_str())),
        "the untagged instance's volume is not backed up"
    );
    // Tags copied, plus Kopter's.
    let new = mine
        .iter()
        .find(|s| s.snapshot_id() == Some(&created))
        .unwrap();
    let tags: BTreeMap<_, _> = new
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get("cost-center"), Some(&"42"));
    assert_eq!(tags.get(MANAGED_TAG), Some(&"true"));
    assert_eq!(tags.get("kopter:instance"), Some(&backed.as_str()));

    // The snapshots table has the new one, and the deletions it made.
    let rows = d.backups.snapshots(&tenant, &rec.account_id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].snapshot_id, created);
    assert_eq!(rows[0].volume_key, format!("acme#{vol}"));
    assert!(rows[0].managed);
    let acct = AccountId::new(rec.account_id.to_string()).unwrap();
    assert_eq!(rows[0].account, acct);
}

/// A describe that AWS keeps throttling fails with back-pressure the
/// worker recognises (`HandlerError::backpressure`), whether STS refuses
/// the AssumeRole or EC2 the describe: the worker then retries it
/// in-process instead of spending one of the message's receives. (Before,
/// both errors were flattened to text and counted as plain failures, and
/// under the chaos run's throttling describe jobs ran out of receives.)
#[tokio::test]
async fn throttled_sts_or_ec2_fails_a_describe_as_backpressure() {
    use kopter_runtime::aws::ErrorClass;
    use kopter_tests::faults::{FaultPlan, FaultProxy};
    let proxy = FaultProxy::start(&kopter_tests::endpoint(), FaultPlan::none())
        .await
        .unwrap();
    let env = TestEnv::with(|c| {
        c.aws.endpoint_url = Some(proxy.url());
        c.aws.max_attempts = 2;
    })
    .await;
    let d = describer::describer(&env.ctx);
    let rec = onboard(&env, "acme", &["eu-west-1"]).await;
    for (needle, what) in [
        ("Action=AssumeRole", "could not assume"),
        ("Action=DescribeInstances", "DescribeInstances"),
    ] {
        proxy.throttle_matching(&[needle]);
        let err = d
            .describe(&target(&rec, "eu-west-1"), None)
            .await
            .expect_err(needle);
        assert_eq!(
            err.backpressure(),
            Some(ErrorClass::Throttling),
            "{needle}: {err}"
        );
        assert!(!err.is_permanent());
        assert!(err.to_string().contains(what), "{needle}: {err}");
    }
    proxy.throttle_matching(&[]);
    d.describe(&target(&rec, "eu-west-1"), None).await.unwrap();
}

/// The real access, but the first `ec2()` of each describer waits at a
/// barrier shared with the other: two describers started together then read
/// the inventory at about the same time and race on its writes. Later calls
/// (the in-process retry of a lost race) go straight through — waiting
/// again would wait for a partner that may already be done.
struct Together {
    inner: AssumedRoles,
    barrier: Arc<tokio::sync::Barrier>,
    waited: std::sync::atomic::AtomicBool,
}

impl AccountAccess for Together {
    fn ec2<'a>(
        &'a self,
        role: &'a CustomerRole,
        region: &'a str,
    ) -> BoxFuture<'a, Result<aws_sdk_ec2::Client, AccountError>> {
        Box::pin(async move {
            if !self.waited.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.barrier.wait().await;
            }
            self.inner.ec2(role, region).await
        })
    }
}

fn conflict_retries() -> u64 {
    kopter_runtime::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix("kopter_describer_conflict_retries_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Two describes of one region at once (a targeted re-describe beside the
/// scheduled one, or two tasks): the loser of a write race describes again
/// in process instead of failing the message, and history stays exact.
#[tokio::test]
async fn concurrent_describes_of_one_region_retry_lost_races_in_process() {
    let env = TestEnv::new().await;
    let rec = onboard(&env, "acme", &["eu-west-1"]).await;
    let ec2 = customer_ec2(&env, &rec, "eu-west-1").await;
    let before = conflict_retries();
    let mut launched = Vec::new();
    let mut last = None;
    // The barrier lines up the two describers' EC2 calls, not their
    // inventory reads: under load one may write before the other reads,
    // and that round has no race. Rounds go on (at least 3, at most 12)
    // until one raced.
    for round in 0..12 {
        if round >= 3 && conflict_retries() > before {
            break;
        }
        launched.extend(launch(&ec2, 4, &[("round", &round.to_string())]).await);
        // Two describers per round: each has its own per-account permit,
        // like two tasks, and meets the other once at the barrier.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let [a, b] = [0, 1].map(|_| {
            describer::describer_with(
                &env.ctx,
                Arc::new(Together {
                    inner: access(&env),
                    barrier: barrier.clone(),
                    waited: false.into(),
                }),
            )
        });
        let job = target(&rec, "eu-west-1");
        let (ra, rb) = tokio::time::timeout(Duration::from_secs(120), async {
            tokio::join!(a.describe(&job, None), b.describe(&job, None))
        })
        .await
        .expect("both describes end within 120 s");
        ra.expect("describer a");
        rb.expect("describer b");
        last = Some(a);
    }
    let a = last.expect("rounds ran");
    assert!(
        conflict_retries() > before,
        "the two describers raced on the same rows at least once in 12 rounds"
    );
    let rows = history(&a, &rec).await;
    for id in &launched {
        assert_eq!(
            changes_of(&rows, id),
            [(Change::Launched, "running".into())],
            "{id}: one history row"
        );
    }
}

/// Issue 23: a whole-region describe that observes what the inventory was
/// last reconciled with does not read the region's inventory. Any describe
/// that writes a changed row stores no digest and moves the region's
/// generation, so the next one reads; a writer that died between its two
/// bumps (its lease) blocks digests; a describe that read before a write
/// cannot store its digest after it.
#[tokio::test]
async fn an_unchanged_region_is_not_read_again_until_something_wrote_it() {
    use kopter_store::inventory::{
        InventoryStore, REGION_WRITE_LEASE, RegionDigest as RegionDigestOf, ResourceKind, Write,
    };
    let env = TestEnv::new().await;
    let mut d = describer::describer(&env.ctx);
    let log = kopter_tests::queries::QueryLog::default();
    d.store = InventoryStore::new(log.client(&env.ctx.aws.dynamodb()), &env.ctx.names);
    let inventory_table = env.ctx.names.table(kopter_schema::Table::Inventory);
    let reads = || log.of_table(&inventory_table).len();
    let rec = onboard(&env, "acme", &["eu-west-1"]).await;
    let ec2 = customer_ec2(&env, &rec, "eu-west-1").await;
    let ids = launch(&ec2, 2, &[]).await;
    let region = "eu-west-1";
    let (tenant, account) = (&rec.tenant_id, &rec.account_id);
    let digest = || d.store.region_digest(tenant, account, region);
    let whole = target(&rec, region);
    let sweep = || d.describe(&whole, None);

    // First sight: read, written, no digest stored (it wrote), the
    // generation moved twice.
    let first = sweep().await.unwrap();
    // The instances and their root volumes.
    assert!(
        first.written >= 2 && first.written == first.observed,
        "{first:?}"
    );
    assert_eq!(reads(), 1);
    let g = digest().await.unwrap();
    assert_eq!((g.generation, g.digest.as_deref()), (2, None), "{g:?}");
    assert_eq!(g.writers, 0, "{g:?}");
    // Nothing to write: read once more, and the digest stored.
    let second = sweep().await.unwrap();
    assert_eq!((second.observed, second.written), (first.observed, 0));
    assert_eq!(reads(), 2);
    let stored = digest().await.unwrap();
    assert!(
        stored.digest.is_some() && stored.digest_generation == Some(2),
        "{stored:?}"
    );
    // Unchanged since: observed, neither read nor written.
    let again = sweep().await.unwrap();
    assert_eq!((again.observed, again.written), (first.observed, 0));
    assert_eq!(reads(), 2, "an unchanged region's inventory is not read");

    // A change in EC2: read and written; the generation moves past the
    // digest, so the next describe reads (and stores).
    ec2.stop_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    assert_eq!(sweep().await.unwrap().written, 1);
    assert_eq!(reads(), 3);
    assert_eq!(digest().await.unwrap().generation, 4);
    assert_eq!(sweep().await.unwrap().written, 0);
    assert_eq!(reads(), 4);
    assert_eq!(sweep().await.unwrap().written, 0);
    assert_eq!(reads(), 4);
    let state_of = |id: String| {
        let d = &d;
        async move {
            d.store
                .inventory(tenant, account, Some(region), None)
                .await
                .unwrap()
                .into_values()
                .find(|r| r.resource_id == id)
                .unwrap()
        }
    };
    assert_eq!(state_of(ids[0].clone()).await.state(), "stopped");
    let base = reads() + 1;

    // A writer that dies between its writes and its second bump: its row
    // (running, while EC2 says stopped, as the stored digest does), its
    // token and its lease stay. The next describe reads and corrects the
    // row, and stores no digest (it wrote); nor does one that finds
    // nothing to write while the dead writer's lease is live. Another
    // writer's end leaves the dead one's token.
    let now = chrono::Utc::now();
    d.store
        .begin_region_write(tenant, account, region, now)
        .await
        .unwrap();
    let mut row = state_of(ids[0].clone()).await;
    let Resource::Instance(i) = &mut row.resource else {
        panic!("an instance row")
    };
    i.state = "running".into();
    let expected_version = Some(row.version);
    row.version += 1;
    d.store
        .apply(
            &Write::Put {
                row: Box::new(row),
                expected_version,
                events: vec![],
            },
            now,
            &kopter_schema::items::keys::tenant_account(tenant, account),
        )
        .await
        .unwrap();
    let fixed = sweep().await.unwrap();
    assert_eq!(fixed.written, 1, "{fixed:?}");
    assert_eq!(reads(), base + 1, "read while a writer's lease is live");
    assert_eq!(state_of(ids[0].clone()).await.state(), "stopped");
    let leased = digest().await.unwrap();
    assert_eq!(leased.writers, 1, "the dead writer's token: {leased:?}");
    assert!(leased.busy(now));
    let base = reads();
    let quiet = sweep().await.unwrap();
    assert_eq!(quiet.written, 0);
    assert_eq!(reads(), base + 1);
    let after = digest().await.unwrap();
    assert_ne!(after.digest_generation, Some(after.generation), "{after:?}");
    sweep().await.unwrap();
    assert_eq!(reads(), base + 2, "no digest while the lease is live");

    // Stores checked directly: not under a live lease, not over a newer
    // generation, not into an item made again after a TTL deletion; once
    // the lease has run out, yes (and the dead writer's token goes).
    let d0 = stored.digest.clone().unwrap();
    let until = now + chrono::Duration::hours(1);
    let put = |read: RegionDigestOf, at: chrono::DateTime<chrono::Utc>| {
        let (d, d0) = (&d, d0.clone());
        async move {
            d.store
                .put_region_digest(tenant, account, region, (&d0, until), &read, at)
                .await
                .unwrap()
        }
    };
    assert!(!put(after.clone(), now).await, "stored under a live lease");
    let later = now + REGION_WRITE_LEASE + chrono::Duration::seconds(1);
    assert!(
        !put(stored.clone(), later).await,
        "stored over a newer generation"
    );
    let reborn = RegionDigestOf {
        epoch: Some("another-item".into()),
        ..after.clone()
    };
    assert!(!put(reborn, later).await, "stored into another item");
    assert!(
        put(after.clone(), later).await,
        "a lapsed lease no longer blocks"
    );
    let now_stored = digest().await.unwrap();
    assert_eq!(now_stored.writers, 0);
    assert!(now_stored.holds(&d0, later));
    // A writer at work again: its first bump moves past the digest.
    let me = d
        .store
        .begin_region_write(tenant, account, region, chrono::Utc::now())
        .await
        .unwrap();
    assert!(!digest().await.unwrap().holds(&d0, later));
    d.store
        .end_region_write(tenant, account, region, &me)
        .await
        .unwrap();
    assert_eq!(digest().await.unwrap().writers, 0);
    sweep().await.unwrap();
    sweep().await.unwrap();

    // A targeted describe that writes moves the generation twice (before
    // and after its writes), reads only the named kind's rows, and no
    // digest stands after it.
    let before = digest().await.unwrap();
    assert_eq!(
        before.digest_generation,
        Some(before.generation),
        "{before:?}"
    );
    ec2.start_instances()
        .instance_ids(&ids[0])
        .send()
        .await
        .unwrap();
    let targeted = TargetedDescribe {
        tenant: tenant.clone(),
        account: account.clone(),
        region: region.into(),
        instance_ids: vec![ids[0].clone()],
        volume_ids: vec![],
        snapshot_ids: vec![],
    };
    let t = d
        .describe(&target(&rec, region), Some(&targeted))
        .await
        .unwrap();
    assert_eq!(t.written, 1, "{t:?}");
    let last = log.of_table(&inventory_table).pop().unwrap();
    assert_eq!(
        last.value(":prefix"),
        kopter_store::inventory::inventory_prefix(region, Some(ResourceKind::Instance))
    );
    let after = digest().await.unwrap();
    assert_eq!(after.generation, before.generation + 2);
    assert_ne!(after.digest_generation, Some(after.generation));
    let base = reads();
    let swept = sweep().await.unwrap();
    assert_eq!(reads(), base + 1, "read after a targeted write");
    assert_eq!(swept.observed, first.observed);
}
