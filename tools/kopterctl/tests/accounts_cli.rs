//! `kopterctl accounts verify|update|remove` against moto.

use std::process::Output;

use aws_sdk_dynamodb::types::AttributeValue;
use kopter_schema::Table;
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

async fn onboard(env: &TestEnv, tenant: &str, account: &str, extra: &[&str]) {
    let arn = format!("arn:aws:iam::{account}:role/KopterAccess");
    let mut args = vec![
        "onboard",
        "--tenant",
        tenant,
        "--account",
        account,
        "--role-arn",
        &arn,
    ];
    args.extend_from_slice(extra);
    let out = kopterctl(env, &args).await;
    assert!(out.status.success(), "onboard: {}", text(&out).1);
}

async fn listed(env: &TestEnv, tenant: &str) -> serde_json::Value {
    let out = kopterctl(
        env,
        &["accounts", "list", "--tenant", tenant, "--format", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn verify_checks_every_permission_and_sets_the_health() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme"]).await;
    let good = random_account();
    let bad_region = random_account();
    let bad_bucket = random_account();
    onboard(&env, "acme", &good, &["--regions", "us-east-1"]).await;
    // ap-east-1 is opt-in and not enabled in moto's accounts.
    onboard(
        &env,
        "acme",
        &bad_region,
        &["--regions", "us-east-1,ap-east-1"],
    )
    .await;
    onboard(
        &env,
        "acme",
        &bad_bucket,
        &[
            "--regions",
            "us-east-1",
            "--trail-bucket",
            "no-such-bucket-kopter-test",
            "--trail-customer-owned",
        ],
    )
    .await;
    let before = kopterctl(&env, &["accounts", "list", "--tenant", "acme"]).await;
    assert_eq!(
        text(&before).0.matches("unchecked").count(),
        3,
        "{}",
        text(&before).0
    );

    let out = kopterctl(
        &env,
        &[
            "accounts",
            "verify",
            "--tenant",
            "acme",
            "--account",
            &good,
            "--format",
            "json",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let outcome = |check: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["check"] == check)
            .unwrap_or_else(|| panic!("no {check} row: {rows}"))["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for check in [
        "sts:AssumeRole",
        "ec2:DescribeRegions",
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:DescribeSnapshots",
        "ec2:DescribeAvailabilityZones",
        "ec2:DescribeHosts",
        "regions",
    ] {
        assert_eq!(outcome(check), "ok", "{check}: {rows}");
    }
    assert_eq!(outcome("ec2:CreateSnapshot"), "skipped");

    // Every account of the tenant: two refusals, named.
    let out = kopterctl(&env, &["accounts", "verify", "--tenant", "acme"]).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("3 account(s) verified: 2 failing"),
        "{stdout}"
    );
    let accounts = listed(&env, "acme").await;
    let of = |id: &str| {
        accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&good)["healthy"], true);
    assert!(of(&good)["health_checked_at"].is_string());
    assert_eq!(of(&bad_region)["healthy"], false);
    assert!(
        of(&bad_region)["health_reason"]
            .as_str()
            .unwrap()
            .contains("regions refused: not enabled in the account: ap-east-1"),
        "{}",
        of(&bad_region)
    );
    assert_eq!(of(&bad_bucket)["healthy"], false);
    assert!(
        of(&bad_bucket)["health_reason"]
            .as_str()
            .unwrap()
            .contains("s3:GetObject refused: s3://no-such-bucket-kopter-test/"),
        "{}",
        of(&bad_bucket)
    );
    let table = kopterctl(&env, &["accounts", "list", "--tenant", "acme"]).await;
    assert_eq!(
        text(&table).0.matches("failing").count(),
        2,
        "{}",
        text(&table).0
    );
}

#[tokio::test]
async fn update_changes_regions_role_and_trail_and_refuses_bad_input() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme"]).await;
    let a = random_account();
    onboard(&env, "acme", &a, &["--regions", "us-east-1"]).await;
    let out = kopterctl(&env, &["accounts", "verify", "--tenant", "acme"]).await;
    assert!(out.status.success(), "{}", text(&out).0);

    let out = kopterctl(
        &env,
        &[
            "accounts",
            "update",
            "--tenant",
            "acme",
            "--account",
            &a,
            "--regions",
            "eu-west-1,us-east-1",
            "--trail-bucket",
            "trail",
            "--trail-prefix",
            "org",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let rec = &listed(&env, "acme").await[0];
    assert_eq!(
        rec["regions"],
        serde_json::json!(["eu-west-1", "us-east-1"])
    );
    assert_eq!(rec["trail"]["bucket"], "trail");
    assert_eq!(rec["trail"]["prefix"], "org");
    assert_eq!(rec["healthy"], true, "a region change keeps the health");
    assert!(rec["health_checked_at"].is_string());

    let new_role = format!("arn:aws:iam::{a}:role/KopterAccess-v2");
    let out = kopterctl(
        &env,
        &[
            "accounts",
            "update",
            "--tenant",
            "acme",
            "--account",
            &a,
            "--role-arn",
            &new_role,
            "--no-trail",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(
        text(&out).0.contains("health unchecked"),
        "{}",
        text(&out).0
    );
    let rec = &listed(&env, "acme").await[0];
    assert_eq!(rec["role_arn"], new_role.as_str());
    assert!(rec["trail"].is_null());
    assert!(rec["health_checked_at"].is_null());

    let other = random_account();
    let refused: [(Vec<String>, &str); 4] = [
        (
            vec![
                "--role-arn".into(),
                format!("arn:aws:iam::{other}:role/KopterAccess"),
            ],
            "not in account",
        ),
        (vec!["--regions".into(), "moon-1".into()], "invalid region"),
        (vec![], "nothing to change"),
        (
            vec![
                "--regions".into(),
                "eu-west-1".into(),
                "--account".into(),
                other.clone(),
            ],
            "",
        ),
    ];
    for (extra, why) in &refused {
        let mut args = vec!["accounts", "update", "--tenant", "acme"];
        if !extra.iter().any(|e| e == "--account") {
            args.extend(["--account", a.as_str()]);
        }
        args.extend(extra.iter().map(String::as_str));
        let out = kopterctl(&env, &args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).0);
        let want = if why.is_empty() {
            "is not onboarded under tenant acme"
        } else {
            why
        };
        assert!(text(&out).1.contains(want), "{args:?}: {}", text(&out).1);
    }
    let rec = &listed(&env, "acme").await[0];
    assert_eq!(rec["role_arn"], new_role.as_str(), "refusals wrote nothing");
}

/// Puts a bare row (keys and an `account` attribute) into `table`.
async fn put(env: &TestEnv, table: Table, pk: &str, sk: &str, account: Option<&str>) {
    let mut req = env
        .ctx
        .aws
        .dynamodb()
        .put_item()
        .table_name(env.ctx.names.table(table))
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()));
    if let Some(a) = account {
        req = req.item("account", AttributeValue::S(a.into()));
    }
    req.send().await.unwrap();
}

async fn count(env: &TestEnv, table: Table, pk_prefix: &str) -> usize {
    let out = env
        .ctx
        .aws
        .dynamodb()
        .scan()
        .table_name(env.ctx.names.table(table))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with(pk_prefix))
        .count()
}

#[tokio::test]
async fn remove_stops_an_account_and_purge_deletes_only_its_rows() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "acme-2", "globex"]).await;
    let a = random_account();
    let b = random_account();
    onboard(&env, "acme", &a, &[]).await;
    onboard(&env, "acme", &b, &[]).await;
    // acme's rows of A (60 inventory rows: more than two batches), of B,
    // and another tenant whose id starts like acme's.
    for n in 0..60 {
        put(
            &env,
            Table::Inventory,
            &format!("acme#{a}"),
            &format!("us-east-1#instance#i-{n}"),
            Some(&a),
        )
        .await;
    }
    put(
        &env,
        Table::Ec2Events,
        &format!("acme#{a}"),
        "2026-11-30T10:00:00.000Z#i-1#launched",
        Some(&a),
    )
    .await;
    put(
        &env,
        Table::PriceGraph,
        &format!("acme#{a}#res#2026-11-30T10"),
        "instance#i-1",
        None,
    )
    .await;
    put(&env, Table::AuditLog, "acme#2026-11-30", "e1", Some(&a)).await;
    put(&env, Table::AuditLog, "acme#2026-11-30", "e2", Some(&b)).await;
    put(&env, Table::Notifications, "acme", "n1", Some(&a)).await;
    put(
        &env,
        Table::Inventory,
        &format!("acme#{b}"),
        "us-east-1#instance#i-b",
        Some(&b),
    )
    .await;
    put(
        &env,
        Table::Inventory,
        &format!("acme-2#{a}"),
        "us-east-1#instance#i-x",
        Some(&a),
    )
    .await;
    put(&env, Table::AuditLog, "acme-2#2026-11-30", "e3", Some(&a)).await;

    let out = kopterctl(
        &env,
        &["accounts", "remove", "--tenant", "acme", "--account", &a],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("no longer described or ingested"),
        "{stdout}"
    );
    assert!(stdout.contains("--purge"), "{stdout}");
    let left: Vec<String> = listed(&env, "acme")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["account_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.as_slice(), std::slice::from_ref(&b));
    assert_eq!(
        count(&env, Table::Inventory, &format!("acme#{a}")).await,
        60,
        "data stays"
    );
    let again = kopterctl(
        &env,
        &["accounts", "remove", "--tenant", "acme", "--account", &a],
    )
    .await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again)
            .1
            .contains("is not onboarded under tenant acme")
    );

    // The claim is released: another tenant may onboard the account now.
    onboard(&env, "globex", &a, &[]).await;
    put(
        &env,
        Table::Inventory,
        &format!("globex#{a}"),
        "us-east-1#instance#i-g",
        Some(&a),
    )
    .await;

    let out = kopterctl(
        &env,
        &[
            "accounts",
            "remove",
            "--tenant",
            "acme",
            "--account",
            &a,
            "--purge",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed already; purging"), "{stdout}");
    assert!(stderr.contains("row(s) deleted"), "progress: {stderr}");
    assert!(
        stdout.contains(&format!("purged account {a} of tenant acme: 64 row(s)")),
        "{stdout}"
    );
    assert_eq!(count(&env, Table::Inventory, &format!("acme#{a}")).await, 0);
    assert_eq!(count(&env, Table::Ec2Events, &format!("acme#{a}")).await, 0);
    assert_eq!(
        count(&env, Table::PriceGraph, &format!("acme#{a}")).await,
        0
    );
    assert_eq!(count(&env, Table::Notifications, "acme").await, 0);
    assert_eq!(
        count(&env, Table::AuditLog, "acme#").await,
        1,
        "B's audit row stays"
    );
    assert_eq!(count(&env, Table::Inventory, &format!("acme#{b}")).await, 1);
    assert_eq!(
        count(&env, Table::Inventory, "acme-2#").await,
        1,
        "another tenant's rows stay"
    );
    assert_eq!(count(&env, Table::AuditLog, "acme-2#").await, 1);
    assert_eq!(count(&env, Table::Inventory, "globex#").await, 1);
    assert_eq!(listed(&env, "globex").await.as_array().unwrap().len(), 1);
}
