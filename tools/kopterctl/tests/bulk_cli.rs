//! `kopterctl onboard --from accounts.csv` against moto.

use std::process::Output;

use kopter_schema::TenantId;
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

fn csv_file(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_csv_is_checked_whole_then_onboarded_row_by_row() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let dir = std::env::temp_dir().join(kopter_tests::unique("kopter-bulk-"));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, c) = (random_account(), random_account(), random_account());
    let role = |acct: &str| format!("arn:aws:iam::{acct}:role/KopterAccess");

    // Every bad row is named by its line; none of the good rows is written.
    let bad = csv_file(
        &dir,
        "bad.csv",
        &format!(
            "tenant,account,role_arn,regions,trail_bucket,trail_prefix,trail_customer_owned\n\
             acme,{a},{},us-east-1;eu-west-1,,,\n\
             acme,12345678901,arn:aws:iam::12345678901:role/KopterAccess,,,,\n\
             acmee,{b},{},,,,\n\
             globex,{c},{},,,,\n\
             acme,{a},{},,,,\n\
             globex,{b},arn:aws:iam::{c}:role/KopterAccess,,,,\n\
             globex,{c}9,x,moon-1,,,maybe\n",
            role(&a),
            role(&b),
            role(&c),
            role(&a)
        ),
    );
    let out = kopterctl(&env, &["onboard", "--from", &bad]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for (line, why) in [
        (3, "exactly 12 digits"),
        (4, "unknown tenant \"acmee\""),
        (6, &*format!("account {a} is on line 2 too")),
        (7, "not in account"),
        (8, "exactly 12 digits"),
    ] {
        assert!(
            stderr.contains(&format!("bad.csv:{line}: ")) && stderr.contains(why),
            "line {line} ({why}): {stderr}"
        );
    }
    assert!(
        stderr.contains("5 bad row(s); nothing was onboarded"),
        "{stderr}"
    );
    assert!(env.ctx.accounts.list(None).await.unwrap().is_empty());

    let good = csv_file(
        &dir,
        "good.csv",
        &format!(
            "tenant,account,role_arn,regions,trail_bucket,trail_prefix\n\
             acme,{a},{},us-east-1;eu-west-1,trail-bucket,acme\n\
             globex,{b},{},,,\n",
            role(&a),
            role(&b)
        ),
    );
    let out = kopterctl(&env, &["onboard", "--from", &good]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("2 onboarded, 0 already onboarded"),
        "{stdout}"
    );
    let acme = env
        .ctx
        .accounts
        .list(Some(&TenantId::new("acme").unwrap()))
        .await
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].regions, ["us-east-1", "eu-west-1"]);
    let trail = acme[0].trail.as_ref().unwrap();
    assert_eq!(
        (trail.bucket.as_str(), trail.prefix.as_str()),
        ("trail-bucket", "acme")
    );
    assert!(stdout.contains(&acme[0].external_id), "{stdout}");

    // A re-run (say after an interruption) changes nothing.
    let out = kopterctl(&env, &["onboard", "--from", &good]).await;
    assert!(out.status.success());
    assert!(
        text(&out).0.contains("0 onboarded, 2 already onboarded"),
        "{}",
        text(&out).0
    );
    assert_eq!(env.ctx.accounts.list(None).await.unwrap().len(), 2);

    // --from replaces the single-account flags.
    let out = kopterctl(&env, &["onboard", "--from", &good, "--tenant", "acme"]).await;
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
