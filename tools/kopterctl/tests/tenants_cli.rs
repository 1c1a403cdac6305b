//! Tenants as rows: `kopterctl tenants`, the one `--tenant` check of every
//! verb, and `bootstrap` creating the tenants of existing accounts.

use std::process::Output;

use kopter_runtime::accounts::Onboarding;
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

/// Every item of every tenant-owned table whose key starts with `tenant`.
async fn rows_of(env: &TestEnv, tenant: &str) -> Vec<String> {
    let ddb = env.ctx.aws.dynamodb();
    let mut found = Vec::new();
    for table in Table::ALL.into_iter().filter(|t| t.spec().tenant_owned) {
        let out = ddb
            .scan()
            .table_name(env.ctx.names.table(table))
            .send()
            .await
            .unwrap();
        for item in out.items() {
            let pk = item["pk"].as_s().unwrap();
            if pk == tenant || pk.starts_with(&format!("{tenant}#")) {
                found.push(format!("{table:?}: {pk}"));
            }
        }
    }
    found
}

#[tokio::test]
async fn an_unknown_tenant_is_refused_by_every_verb_and_nothing_is_written() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme"]).await;
    let account = random_account();
    let arn = format!("arn:aws:iam::{account}:role/KopterAccess");
    let verbs: Vec<Vec<&str>> = vec![
        vec![
            "onboard",
            "--tenant",
            "acmee",
            "--account",
            &account,
            "--role-arn",
            &arn,
        ],
        vec!["budget", "set", "--tenant", "acmee", "--monthly-usd", "100"],
        vec!["channels", "set", "--tenant", "acmee", "--digest", "false"],
        vec!["backup-policy", "show", "--tenant", "acmee"],
        vec!["inventory", "--tenant", "acmee"],
        vec!["cost", "--tenant", "acmee"],
        vec!["notifications", "--tenant", "acmee"],
        vec!["audit", "--tenant", "acmee"],
        vec!["audit", "rules", "list", "--tenant", "acmee"],
        vec!["accounts", "list", "--tenant", "acmee"],
        vec!["tick", "aggregate", "--tenant", "acmee"],
    ];
    for args in &verbs {
        let out = kopterctl(&env, args).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("unknown tenant \"acmee\"")
                && stderr.contains("kopterctl tenants create acmee"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(rows_of(&env, "acmee").await, Vec::<String>::new());
    let accounts = env.ctx.accounts.list(None).await.unwrap();
    assert!(accounts.is_empty(), "{accounts:?}");
    // An id that cannot be a tenant names the flag.
    let out = kopterctl(&env, &["inventory", "--tenant", "Acme#1"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("--tenant: invalid tenant id"),
        "{}",
        text(&out).1
    );
    // The tenant that exists is served.
    let out = kopterctl(&env, &["inventory", "--tenant", "acme"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
}

#[tokio::test]
async fn tenants_are_created_once_listed_and_shown() {
    let env = TestEnv::new().await;
    let out = kopterctl(&env, &["tenants", "create", "acme"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0.trim(), "created tenant acme");
    let out = kopterctl(&env, &["tenants", "create", "acme"]).await;
    assert!(out.status.success());
    assert!(
        text(&out).0.contains("tenant acme exists already"),
        "{}",
        text(&out).0
    );
    let out = kopterctl(&env, &["tenants", "create", "Bad#Id"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("invalid tenant id"));

    let account = random_account();
    let arn = format!("arn:aws:iam::{account}:role/KopterAccess");
    let out = kopterctl(
        &env,
        &[
            "onboard",
            "--tenant",
            "acme",
            "--account",
            &account,
            "--role-arn",
            &arn,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    // Nothing reached the role yet: unchecked, not ok.
    let out = kopterctl(&env, &["accounts", "list", "--tenant", "acme"]).await;
    assert!(text(&out).0.contains("unchecked"), "{}", text(&out).0);

    let out = kopterctl(&env, &["tenants", "show", "acme", "--format", "json"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown[0]["id"], "acme");
    assert_eq!(shown[0]["accounts"], 1);
    assert_eq!(shown[0]["unchecked"], 1);
    let out = kopterctl(&env, &["tenants", "show", "globex"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unknown tenant \"globex\""));

    let out = kopterctl(&env, &["tenants", "create", "globex"]).await;
    assert!(out.status.success());
    let out = kopterctl(&env, &["tenants", "list", "--format", "json"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "globex"]);
}

#[tokio::test]
async fn bootstrap_creates_the_tenants_of_existing_accounts() {
    let env = TestEnv::new().await;
    // An account onboarded before tenants were rows.
    let account = random_account();
    env.ctx
        .accounts
        .onboard(
            Onboarding::parse(
                "legacy",
                &account,
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &[],
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let out = kopterctl(&env, &["inventory", "--tenant", "legacy"]).await;
    assert_eq!(out.status.code(), Some(2), "refused before the migration");
    let out = kopterctl(&env, &["bootstrap"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("tenant legacy: created (it has onboarded accounts)"),
        "{stdout}"
    );
    let out = kopterctl(&env, &["bootstrap"]).await;
    assert!(!text(&out).0.contains("tenant legacy"), "only once");
    let out = kopterctl(&env, &["inventory", "--tenant", "legacy"]).await;
    assert!(out.status.success(), "{}", text(&out).1);
}
