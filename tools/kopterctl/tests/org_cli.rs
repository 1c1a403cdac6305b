//! `kopterctl org connect` and the describer's organization discovery
//! against moto's Organizations: an organization of 50 accounts, 2 added
//! between runs, 1 closed (moto's CloseAccount makes it SUSPENDED, as AWS
//! does after PENDING_CLOSURE).

use std::process::Output;

use kopter_runtime::CustomerRole;
use kopter_schema::{AccountId, Service, TenantId};
use kopter_tests::{TestEnv, random_account};

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    env.run(env!("CARGO_BIN_EXE_kopterctl"), args).await
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An Organizations client signed as `account` (moto's AssumeRole really
/// switches accounts).
async fn organizations_of(env: &TestEnv, account: &str) -> aws_sdk_organizations::Client {
    let role = CustomerRole {
        tenant: TenantId::new("setup").unwrap(),
        account: AccountId::new(account).unwrap(),
        role_arn: format!("arn:aws:iam::{account}:role/KopterAccess-Setup"),
        external_id: "setup".into(),
    };
    let sdk = env
        .ctx
        .credentials
        .sdk_config(&env.ctx.aws.sdk, &role, "us-east-1")
        .await
        .unwrap();
    aws_sdk_organizations::Client::new(&sdk)
}

async fn create_accounts(org: &aws_sdk_organizations::Client, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let out = org
            .create_account()
            .account_name(format!("{tag}-{i}"))
            .email(format!("{tag}-{i}@example.com"))
            .send()
            .await
            .unwrap();
        ids.push(
            out.create_account_status()
                .and_then(|s| s.account_id())
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

/// Events on the notifier's queue (its topic subscription takes
/// `account.org_change`), as raw bodies.
async fn drain_notifier_queue(env: &TestEnv) -> Vec<String> {
    let url = env.queue_url(Service::Notifier).await;
    let mut bodies = Vec::new();
    loop {
        let out = env
            .sqs()
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let msgs = out.messages();
        if msgs.is_empty() {
            return bodies;
        }
        for m in msgs {
            bodies.push(m.body().unwrap_or_default().to_owned());
            env.sqs()
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn changes(bodies: &[String], change: &str) -> usize {
    bodies
        .iter()
        .filter(|b| b.contains("account.org_change") && b.contains(change))
        .count()
}

#[tokio::test]
async fn an_organization_is_connected_discovered_again_and_refusals_write_nothing() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let management = random_account();
    let org = organizations_of(&env, &management).await;
    org.create_organization()
        .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    let members = create_accounts(&org, 50, "m").await;
    let role = format!("arn:aws:iam::{management}:role/KopterAccess-OrgRead");

    // Refusals first: nothing may be written by any of them.
    let orgless = random_account();
    let cases: Vec<(String, String)> = vec![
        (
            format!("arn:aws:iam::{orgless}:role/KopterAccess-OrgRead"),
            "is not in an AWS Organization".to_owned(),
        ),
        (
            format!("arn:aws:iam::{}:role/KopterAccess-OrgRead", members[0]),
            format!("is managed by account {management}"),
        ),
        (
            format!("arn:aws:iam::{management}:role/Admin"),
            "must start with".to_owned(),
        ),
        (
            "arn:aws:iam::12345:role/KopterAccess".to_owned(),
            "12-digit account".to_owned(),
        ),
    ];
    for (arn, why) in &cases {
        let out = kopterctl(
            &env,
            &[
                "org",
                "connect",
                "--tenant",
                "acme",
                "--management-role-arn",
                arn,
            ],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{arn}: {stdout}{stderr}");
        assert!(stderr.contains(why.as_str()), "{arn}: {stderr}");
    }
    assert!(env.ctx.accounts.list(None).await.unwrap().is_empty());
    let listed = kopterctl(&env, &["org", "list", "--format", "json"]).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(),
        serde_json::json!([])
    );
    drain_notifier_queue(&env).await;

    // One member is already another tenant's: discovery leaves it alone
    // (its owner is looked up in the batch of claims, not per account).
    let taken = &members[0];
    env.ctx
        .accounts
        .onboard(
            kopter_runtime::accounts::Onboarding::parse(
                "globex",
                taken,
                &format!("arn:aws:iam::{taken}:role/KopterAccess"),
                &[],
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();

    let out = kopterctl(
        &env,
        &[
            "org",
            "connect",
            "--tenant",
            "acme",
            "--management-role-arn",
            &role,
            "--regions",
            "us-east-1",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // 50 members and the management account, 20 per ListAccounts page.
    assert!(
        stdout.contains("51 account(s) listed in 3 call(s): 49 onboarded, 0 paused, 0 resumed, 0 unchanged, 1 onboarded by another tenant (left alone)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "conflict: account {taken} is onboarded by another tenant"
        )),
        "{stdout}"
    );
    let globex = env
        .ctx
        .accounts
        .list(Some(&TenantId::new("globex").unwrap()))
        .await
        .unwrap();
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0].account_id.as_str(), taken.as_str());
    assert_eq!(globex[0].organization, None, "globex's row is untouched");
    let tenant = TenantId::new("acme").unwrap();
    let accounts = env.ctx.accounts.list(Some(&tenant)).await.unwrap();
    assert_eq!(accounts.len(), 49);
    for a in &accounts {
        assert_ne!(&a.account_id.to_string(), taken);
        assert!(members.contains(&a.account_id.to_string()));
        assert_eq!(
            a.role_arn,
            format!("arn:aws:iam::{}:role/KopterAccess", a.account_id)
        );
        assert_eq!(a.external_id, format!("kopter-acme-members-{management}"));
        assert_eq!(
            a.organization.as_ref().map(|m| m.as_str()),
            Some(management.as_str())
        );
        assert_eq!(a.regions, ["us-east-1"]);
    }
    assert_eq!(changes(&drain_notifier_queue(&env).await, "onboarded"), 49);

    // Between runs: two accounts join, one is closed.
    let added = create_accounts(&org, 2, "late").await;
    org.close_account()
        .account_id(&members[7])
        .send()
        .await
        .unwrap();

    let d = describer::describer(&env.ctx);
    d.discover_organizations().await.unwrap();
    let accounts = env.ctx.accounts.list(Some(&tenant)).await.unwrap();
    assert_eq!(accounts.len(), 51);
    for a in &added {
        assert!(
            accounts
                .iter()
                .any(|r| r.account_id.as_str() == a && r.paused.is_none())
        );
    }
    let closed = accounts
        .iter()
        .find(|r| r.account_id.as_str() == members[7])
        .unwrap();
    assert!(
        closed
            .paused
            .as_deref()
            .unwrap()
            .starts_with("SUSPENDED in organization o-"),
        "{closed:?}"
    );
    let events = drain_notifier_queue(&env).await;
    assert_eq!(changes(&events, "onboarded"), 2, "{events:?}");
    assert_eq!(changes(&events, "paused"), 1, "{events:?}");

    // A discovery with nothing new changes nothing and tells nothing.
    d.discover_organizations().await.unwrap();
    assert!(drain_notifier_queue(&env).await.is_empty());
    // The sweep leaves the paused account out.
    let report = d
        .sweep(describer::describe::SweepKind::Describe)
        .await
        .unwrap();
    assert_eq!(report.accounts, 51);

    // Connecting again keeps the accounts and says so.
    let out = kopterctl(
        &env,
        &[
            "org",
            "connect",
            "--tenant",
            "acme",
            "--management-role-arn",
            &role,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        text(&out)
            .0
            .contains("53 account(s) listed in 3 call(s): 0 onboarded"),
        "{}",
        text(&out).0
    );
    let listed = kopterctl(
        &env,
        &["org", "list", "--tenant", "acme", "--format", "json"],
    )
    .await;
    let orgs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    assert_eq!(orgs[0]["management_account"], management.as_str());
}
