//! `kopterctl inventory` against moto: what the describer recorded, per
//! tenant, never another tenant's.

use std::process::Output;

use kopter_runtime::CustomerRole;
use kopter_runtime::accounts::Onboarding;
use kopter_tests::{TestEnv, random_account};

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    env.run(env!("CARGO_BIN_EXE_kopterctl"), args).await
}

#[tokio::test]
async fn inventory_lists_instances_volumes_and_snapshots_of_one_tenant() {
    let env = TestEnv::new().await;
    let mut launched = Vec::new();
    let mut recs = Vec::new();
    for tenant in ["acme", "globex"] {
        let account = random_account();
        let rec = env
            .ctx
            .accounts
            .onboard(
                Onboarding::parse(
                    tenant,
                    &account,
                    &format!("arn:aws:iam::{account}:role/KopterAccess"),
                    &["eu-west-1".to_string()],
                )
                .unwrap(),
                None,
            )
            .await
            .unwrap();
        let access = describer::AssumedRoles {
            base: env.ctx.aws.sdk.clone(),
            credentials: env.ctx.credentials.clone(),
        };
        let ec2 = describer::AccountAccess::ec2(&access, &CustomerRole::from(&rec), "eu-west-1")
            .await
            .unwrap();
        let out = ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .unwrap();
        let id = out.instances()[0].instance_id().unwrap().to_owned();
        let vol = out.instances()[0].block_device_mappings()[0]
            .ebs()
            .unwrap()
            .volume_id()
            .unwrap()
            .to_owned();
        ec2.create_snapshot().volume_id(&vol).send().await.unwrap();
        launched.push(id);
        recs.push(rec);
    }
    let d = describer::describer(&env.ctx);
    for rec in &recs {
        let target = kopter_schema::messages::AccountRegion {
            tenant: rec.tenant_id.clone(),
            account: rec.account_id.clone(),
            region: "eu-west-1".into(),
        };
        d.describe(&target, None).await.unwrap();
    }

    let out = kopterctl(&env, &["inventory", "--tenant", "acme"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&launched[0]), "{stdout}");
    assert!(
        !stdout.contains(&launched[1]),
        "globex's instance listed for acme: {stdout}"
    );
    let line = stdout.lines().find(|l| l.contains(&launched[0])).unwrap();
    assert!(
        line.contains("running") && line.contains("m5.large"),
        "{line}"
    );
    assert!(
        stdout.contains("1 instance(s), 1 volume(s), 1 snapshot(s)"),
        "{stdout}"
    );

    let out = kopterctl(
        &env,
        &[
            "inventory",
            "--tenant",
            "globex",
            "--account",
            recs[1].account_id.as_str(),
            "--region",
            "us-east-1",
        ],
    )
    .await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 instance(s)"));

    let out = kopterctl(&env, &["inventory", "--tenant", "acme", "--format", "json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant"] == "acme")
    );

    let out = kopterctl(&env, &["inventory", "--tenant", "Bad#Tenant"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn backup_policy_is_set_per_tenant_and_read_by_the_describer() {
    use std::time::Duration;

    use kopter_schema::TenantId;
    use kopter_store::backup::{BackupPolicy, BackupStore};

    let env = TestEnv::new().await;
    let store = BackupStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let (acme, globex) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("globex").unwrap(),
    );

    // No policy yet: the default (kopter:backup=true, 12 h, newest 14).
    let out = kopterctl(&env, &["backup-policy", "show", "--tenant", "acme"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("enabled"), "{text}");
    assert!(text.contains("kopter:backup=true"), "{text}");
    assert!(text.contains("every 12h"), "{text}");
    assert!(text.contains("the newest 14"), "{text}");

    let out = kopterctl(
        &env,
        &[
            "backup-policy",
            "set",
            "--tenant",
            "acme",
            "--tag",
            "backup=nightly",
            "--interval",
            "1d",
            "--keep-for",
            "30d",
            "--no-keep-count",
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    // The onboarding note: acme has no account in this environment.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no onboarded account"),
        "{out:?}"
    );
    let expected = BackupPolicy {
        enabled: true,
        tag_key: "backup".into(),
        tag_value: "nightly".into(),
        interval: Duration::from_secs(86_400),
        keep_count: None,
        keep_for: Some(Duration::from_secs(30 * 86_400)),
    };
    // What the describer's backup sweep reads.
    assert_eq!(store.policy(&acme).await.unwrap(), expected);
    // Another tenant keeps the default.
    assert_eq!(
        store.policy(&globex).await.unwrap(),
        BackupPolicy::default()
    );

    // Only the options given change.
    let out = kopterctl(
        &env,
        &["backup-policy", "set", "--tenant", "acme", "--disable"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        store.policy(&acme).await.unwrap(),
        BackupPolicy {
            enabled: false,
            ..expected.clone()
        }
    );

    // Invalid results are refused and change nothing.
    for bad in [
        &["--no-keep-for"][..],
        &["--interval", "10m"],
        &["--keep-count", "0"],
        &["--tag", "=x"],
        &["--tag", "novalue"],
    ] {
        let mut args = vec!["backup-policy", "set", "--tenant", "acme"];
        args.extend_from_slice(bad);
        let out = kopterctl(&env, &args).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("kopterctl:"),
            "{bad:?}: {out:?}"
        );
    }
    assert_eq!(
        store.policy(&acme).await.unwrap(),
        BackupPolicy {
            enabled: false,
            ..expected
        }
    );

    // JSON for scripts.
    let out = kopterctl(
        &env,
        &["backup-policy", "show", "--tenant", "acme", "--json"],
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["enabled"], false);
    assert_eq!(json["tag_key"], "backup");
}
