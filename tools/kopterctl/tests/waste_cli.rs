//! `kopterctl waste` against moto: findings written by the store's own
//! reconciliation, listed as table, JSON and CSV; thresholds set, shown
//! and refused when wrong.

use std::collections::HashSet;
use std::process::Output;

use chrono::{DateTime, Utc};
use kopter_schema::{AccountId, TenantId};
use kopter_store::inventory::ResourceKind;
use kopter_store::waste::{Finding, Rule, WasteStore};
use kopter_tests::{TestEnv, random_account, unique};

async fn kopterctl(env: &TestEnv, args: &[&str]) -> Output {
    env.run(env!("CARGO_BIN_EXE_kopterctl"), args).await
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn finding(account: &AccountId, id: &str, rule: Rule, monthly: Option<f64>) -> Finding {
    Finding {
        account: account.clone(),
        region: "us-east-1".into(),
        resource_id: id.into(),
        kind: ResourceKind::Volume,
        rule,
        since: t("2026-11-01T06:00:00Z"),
        accrued_usd: 12.5,
        unpriced_hours: if monthly.is_none() { 3 } else { 0 },
        unpriced_reason: monthly.is_none().then(|| "no EBS gp3 storage price".into()),
        accrued_through: None,
        accrual_digest: None,
        monthly_usd: monthly,
        action: "Delete it".into(),
        detail: String::new(),
    }
}

#[tokio::test]
async fn findings_are_listed_in_every_format_and_thresholds_set() {
    let env = TestEnv::new().await;
    let tenant = TenantId::new(unique("w-")).unwrap();
    env.create_tenants(&[tenant.as_str()]).await;
    let account = AccountId::new(random_account()).unwrap();
    let store = WasteStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let present: HashSet<String> = ["vol-a", "vol-b", "vol-c"].map(String::from).into();
    store
        .reconcile(
            &tenant,
            &account,
            t("2026-11-02T00:00:00Z"),
            &[
                finding(&account, "vol-a", Rule::UnattachedVolume, Some(9.6)),
                finding(&account, "vol-b", Rule::Gp2ToGp3, Some(1.84)),
                finding(&account, "vol-c", Rule::UnattachedVolume, None),
            ],
            &present,
        )
        .await
        .unwrap();
    // vol-c's condition ends at the next evaluation.
    store
        .reconcile(
            &tenant,
            &account,
            t("2026-11-02T01:00:00Z"),
            &[
                finding(&account, "vol-a", Rule::UnattachedVolume, Some(9.6)),
                finding(&account, "vol-b", Rule::Gp2ToGp3, Some(1.84)),
            ],
            &present,
        )
        .await
        .unwrap();

    let out = kopterctl(&env, &["waste", "--tenant", tenant.as_str()]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ACCOUNT"), "{stdout}");
    // Largest monthly amount first; the resolved one not listed.
    assert!(
        lines[1].contains("vol-a") && lines[1].contains("9.60"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("vol-b") && lines[2].contains("gp2-to-gp3"),
        "{stdout}"
    );
    assert!(!stdout.contains("vol-c"), "{stdout}");
    assert!(
        stdout.contains(
            "1 idle resource, 9.60 USD/month; 1 with a cheaper equivalent, 1.84 USD/month"
        ),
        "{stdout}"
    );

    let out = kopterctl(
        &env,
        &[
            "waste",
            "--tenant",
            tenant.as_str(),
            "--all",
            "--format",
            "json",
        ],
    )
    .await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3);
    let c = rows.iter().find(|r| r["resource_id"] == "vol-c").unwrap();
    assert_eq!(c["status"], "resolved");
    assert_eq!(c["resolution"], "condition ended");
    assert_eq!(c["unpriced_hours"], 3);
    assert!(c["monthly_usd"].is_null());

    let out = kopterctl(
        &env,
        &["waste", "--tenant", tenant.as_str(), "--format", "csv"],
    )
    .await;
    let csv = text(&out).0;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("ACCOUNT,REGION,RESOURCE,RULE,SINCE,SINCE USD,USD/MONTH,STATUS,ACTION")
    );

    // Thresholds: defaults, set, shown; bad values refused (exit 2).
    let out = kopterctl(&env, &["waste", "thresholds", "--tenant", tenant.as_str()]).await;
    let s = text(&out).0;
    assert!(
        s.contains("unattached volume       24 h") && s.contains("snapshot retention      off"),
        "{s}"
    );
    let out = kopterctl(
        &env,
        &[
            "waste",
            "thresholds",
            "--tenant",
            tenant.as_str(),
            "--unattached-hours",
            "12",
            "--snapshot-retention-days",
            "90",
            "--disable",
            "gp2-to-gp3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let th = store.thresholds(&tenant).await.unwrap();
    assert_eq!(th.unattached_volume_hours, 12);
    assert_eq!(th.snapshot_retention_days, Some(90));
    assert_eq!(th.disabled, [Rule::Gp2ToGp3]);
    assert_eq!(
        th.stopped_instance_days, 7,
        "untouched fields keep their value"
    );
    for bad in [
        &["--disable", "idle-cats"][..],
        &["--snapshot-retention-days", "soon"][..],
    ] {
        let mut args = vec!["waste", "thresholds", "--tenant", tenant.as_str()];
        args.extend_from_slice(bad);
        let out = kopterctl(&env, &args).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(text(&out).1.contains(bad[0]), "{}", text(&out).1);
    }
    let out = kopterctl(&env, &["waste"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--tenant is required"));
}
