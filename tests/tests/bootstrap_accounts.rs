//! Bootstrap idempotency, onboarding, and cross-account access (moto's
//! AssumeRole really switches accounts).

use std::collections::BTreeSet;

use kopter_runtime::accounts::{AccountStore, OnboardError, Onboarding};
use kopter_runtime::provision::{self, Action};
use kopter_runtime::{CustomerRole, aws};
use kopter_schema::{Service, Table};
use kopter_tests::{TestEnv, random_account};

#[tokio::test]
async fn bootstrap_twice_changes_nothing_the_second_time() {
    let env = TestEnv::new().await; // first run inside
    let second = provision::bootstrap(&env.ctx.aws, &env.config)
        .await
        .unwrap();
    let changed: Vec<_> = second
        .iter()
        .filter(|c| c.action != Action::Unchanged)
        .collect();
    assert!(changed.is_empty(), "second bootstrap changed {changed:?}");
    // Everything the schema declares exists: 5 queues + 5 DLQs, 1 topic,
    // 3 subscriptions, 9 tables.
    let kinds: Vec<_> = second.iter().map(|c| c.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "queue").count(), 10);
    assert_eq!(kinds.iter().filter(|k| **k == "topic").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "subscription").count(), 3);
    assert_eq!(
        kinds.iter().filter(|k| **k == "table").count(),
        Table::ALL.len()
    );
}

#[tokio::test]
async fn bootstrap_repairs_a_drifted_redrive_policy() {
    let env = TestEnv::new().await;
    let mut changed = env.config.clone();
    changed.queues.max_receive_count = 9;
    let out = provision::bootstrap(&env.ctx.aws, &changed).await.unwrap();
    let updated: BTreeSet<_> = out
        .iter()
        .filter(|c| c.action == Action::Updated)
        .map(|c| c.name.clone())
        .collect();
    let expected: BTreeSet<_> = Service::ALL
        .iter()
        .map(|s| env.ctx.names.queue(*s))
        .collect();
    assert_eq!(updated, expected);
    let again = provision::bootstrap(&env.ctx.aws, &changed).await.unwrap();
    assert!(again.iter().all(|c| c.action == Action::Unchanged));
}

#[tokio::test]
async fn tables_have_the_declared_keys_indexes_and_ttl() {
    let env = TestEnv::new().await;
    let ddb = env.ctx.aws.dynamodb();
    for table in Table::ALL {
        let spec = table.spec();
        let name = env.ctx.names.table(table);
        let desc = ddb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        // Each index with its projection (the audit log's are keys only:
        // what an index copies is billed on every write).
        let gsis: BTreeSet<_> = desc
            .global_secondary_indexes()
            .iter()
            .filter_map(|g| {
                let projection = g.projection()?.projection_type()?.as_str().to_owned();
                Some((g.index_name()?.to_owned(), projection))
            })
            .collect();
        let want: BTreeSet<_> = spec
            .gsis
            .iter()
            .map(|g| (g.name.to_owned(), g.projection.as_str().to_owned()))
            .collect();
        assert_eq!(gsis, want, "{name}");
        let ttl = ddb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap();
        let attr = ttl.time_to_live_description.and_then(|d| d.attribute_name);
        assert_eq!(attr.as_deref(), spec.ttl_attribute, "{name}");
    }
}

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/KopterAccess")
}

#[tokio::test]
async fn onboarding_refuses_duplicates_and_other_tenants() {
    let env = TestEnv::new().await;
    let store = AccountStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let account = random_account();
    let req = Onboarding::parse("acme", &account, &role(&account), &["eu-west-1".into()]).unwrap();
    let rec = store.onboard(req.clone(), None).await.unwrap();
    assert!(rec.external_id.starts_with("kopter-"));
    assert!(matches!(
        store.onboard(req, None).await,
        Err(OnboardError::AlreadyOnboarded { .. })
    ));
    let other = Onboarding::parse("globex", &account, &role(&account), &[]).unwrap();
    let err = store.onboard(other, None).await.unwrap_err();
    assert!(matches!(err, OnboardError::OwnedByOtherTenant(_)), "{err}");
    assert!(
        !err.to_string().contains("acme"),
        "must not reveal the owner: {err}"
    );

    let owner = store.owner_of(&rec.account_id).await.unwrap().unwrap();
    assert_eq!(owner.tenant_id.as_str(), "acme");
    assert_eq!(owner.external_id, rec.external_id);
    let listed = store.list(Some(&rec.tenant_id)).await.unwrap();
    assert_eq!(listed, vec![rec.clone()]);
    let globex = kopter_schema::TenantId::new("globex").unwrap();
    assert!(store.list(Some(&globex)).await.unwrap().is_empty());
    // A job's read (eventually consistent, strong when nothing is found)
    // finds the record just onboarded, and not under another tenant.
    let for_job = store
        .get_for_job(&rec.tenant_id, &rec.account_id)
        .await
        .unwrap();
    assert_eq!(for_job, Some(rec.clone()));
    assert_eq!(
        store.get_for_job(&globex, &rec.account_id).await.unwrap(),
        None
    );
}

/// The AMI moto offers first in a region (moto only launches known AMIs).
async fn some_ami(ec2: &aws_sdk_ec2::Client) -> String {
    ec2.describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images
        .unwrap_or_default()
        .into_iter()
        .find_map(|i| i.image_id)
        .expect("moto has AMIs")
}

async fn launch(ec2: &aws_sdk_ec2::Client) -> String {
    let ami = some_ami(ec2).await;
    ec2.run_instances()
        .image_id(ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances
        .unwrap()[0]
        .instance_id
        .clone()
        .unwrap()
}

async fn instance_ids(ec2: &aws_sdk_ec2::Client) -> BTreeSet<String> {
    ec2.describe_instances()
        .send()
        .await
        .unwrap()
        .reservations
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.instances.unwrap_or_default())
        .filter_map(|i| i.instance_id)
        .collect()
}

#[tokio::test]
async fn assumed_role_sees_the_customer_account_and_not_ours() {
    let env = TestEnv::new().await;
    let store = AccountStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let account = random_account();
    let rec = store
        .onboard(
            Onboarding::parse("acme", &account, &role(&account), &[]).unwrap(),
            None,
        )
        .await
        .unwrap();
    let customer = CustomerRole::from(&rec);

    // One instance in our own (default) account, one in the customer's.
    let ours = launch(&env.ctx.aws.ec2()).await;
    let creds = env.ctx.credentials.clone();
    let customer_sdk = creds
        .sdk_config(&env.ctx.aws.sdk, &customer, "eu-west-1")
        .await
        .unwrap();
    let customer_ec2 = aws::ec2_client_for_account(&customer_sdk, &rec.account_id);
    let theirs = launch(&customer_ec2).await;

    let seen = instance_ids(&customer_ec2).await;
    assert_eq!(seen, BTreeSet::from([theirs.clone()]));
    assert!(!seen.contains(&ours));

    // The assumed identity is the customer's account, in a session named
    // after service and tenant.
    let who = aws::sts_client(&customer_sdk)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.account.as_deref(), Some(account.as_str()));
    assert!(who.arn.unwrap().contains("kopter-all-acme"));

    // Cached: a second client for another region reuses the credentials.
    let before = kopter_runtime::metrics::runtime()
        .assume_role
        .with_label_values(&["ok"])
        .get();
    let again = creds
        .sdk_config(&env.ctx.aws.sdk, &customer, "us-west-2")
        .await
        .unwrap();
    aws::ec2_client(&again)
        .describe_instances()
        .send()
        .await
        .unwrap();
    let after = kopter_runtime::metrics::runtime()
        .assume_role
        .with_label_values(&["ok"])
        .get();
    assert_eq!(
        before, after,
        "credentials were fetched again instead of cached"
    );
}
