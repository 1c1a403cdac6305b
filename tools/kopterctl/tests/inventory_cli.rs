//! `kopterctl inventory` against moto: what the describer recorded, per
//! tenant, never another tenant's.

use std::process::Output;

use kopter_runtime::CustomerRole;
use kopter_runtime::accounts::Onboarding;
use kopter_tests::{TestEnv, random_account};

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kopterctl"))
        .envs(env.env_vars())
        .args(args)
        .output()
        .await
        .unwrap()
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

    let out = kopterctl(&env, &["inventory", "--tenant", "acme", "--json"]).await;
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
