//! `kopterctl notifications` and `kopterctl channels` against moto.

use std::process::Output;

use chrono::Utc;
use kopter_schema::messages::Severity;
use kopter_schema::{AccountId, TenantId};
use kopter_store::event::Event;
use kopter_store::feed::{FeedRow, FeedStore};
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

#[tokio::test]
async fn channels_are_set_shown_without_secrets_and_checked() {
    let env = TestEnv::new().await;
    let secret = "https://hooks.example.com/services/T0/B0/s3cr3tT0k3n";
    let out = kopterctl(
        &env,
        &[
            "channels",
            "set",
            "--tenant",
            "acme",
            "--webhook",
            secret,
            "--email",
            "ops@acme.example,sec@acme.example",
            "--email-min-severity",
            "critical",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("https://hooks.example.com/…"), "{stdout}");
    assert!(stdout.contains("min severity critical"), "{stdout}");
    assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));
    let out = kopterctl(&env, &["channels", "show", "--tenant", "acme"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("ops@acme.example,sec@acme.example"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    // globex has none.
    let out = kopterctl(&env, &["channels", "show", "--tenant", "globex"]).await;
    assert!(text(&out).0.contains("webhook  not configured"));

    for (url, why) in [
        ("http://hooks.example.com/services/x", "only https"),
        ("https://169.254.169.254/latest/meta-data/x", "link-local"),
        ("https://10.0.0.1/s3cr3t", "private"),
        ("https://user:s3cr3t@hooks.example.com/x", "credentials"),
    ] {
        let out = kopterctl(
            &env,
            &["channels", "set", "--tenant", "acme", "--webhook", url],
        )
        .await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("s3cr3t"), "{stderr}");
    }
    let out = kopterctl(
        &env,
        &["channels", "set", "--tenant", "acme", "--email", "nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn notifications_lists_a_tenants_feed_and_marks_read() {
    let env = TestEnv::new().await;
    let feed = FeedStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let acme = TenantId::new("acme").unwrap();
    let mut sks = Vec::new();
    for i in 0..2 {
        let ev = Event {
            tenant: acme.clone(),
            kind: "backup.failed",
            rule: "backup.failed".into(),
            identity: format!("backup:{i}"),
            severity: Severity::Warning,
            title: "Backup failed".into(),
            text: format!("Backup of vol-{i} failed"),
            at: Utc::now(),
            account: Some(AccountId::new(random_account()).unwrap()),
            resource: None,
            audit: None,
        };
        let row = FeedRow::from_event(&ev, 30);
        feed.put(&row).await.unwrap();
        sks.push(row.sk);
    }
    let out = kopterctl(&env, &["notifications", "--tenant", "acme"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("2 notification(s)"), "{stdout}");
    assert!(
        stdout.contains("vol-0") && stdout.contains("vol-1"),
        "{stdout}"
    );

    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "acme",
            "--mark-read",
            &sks[0],
            "--unread",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 unread notification(s)"), "{stdout}");
    assert!(
        stdout.contains("vol-1") && !stdout.contains("vol-0 "),
        "{stdout}"
    );

    // Another tenant sees none of it and cannot mark it.
    let out = kopterctl(&env, &["notifications", "--tenant", "globex"]).await;
    assert!(text(&out).0.contains("0 notification(s)"));
    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "globex",
            "--mark-read",
            &sks[1],
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(feed.list(&acme, true, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn notifications_order_by_event_time_filter_by_severity_and_take_the_listed_id() {
    let env = TestEnv::new().await;
    let feed = FeedStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let acme = TenantId::new("acme").unwrap();
    let at = |s: &str| s.parse::<chrono::DateTime<Utc>>().unwrap();
    // Written out of order; a budget crossing dated when it was crossed
    // (15:00), between an older warning and a newer info.
    for (identity, severity, title, when) in [
        (
            "budget:2026-11:100",
            Severity::Critical,
            "Budget 100% crossed",
            "2026-11-29T15:00:00Z",
        ),
        (
            "backup:old",
            Severity::Warning,
            "Backup failed",
            "2026-11-29T09:00:00Z",
        ),
        (
            "change:new",
            Severity::Info,
            "Instance launched",
            "2026-11-29T16:30:00Z",
        ),
    ] {
        let ev = Event {
            tenant: acme.clone(),
            kind: "x",
            rule: identity.split(':').next().unwrap().into(),
            identity: identity.into(),
            severity,
            title: title.into(),
            text: format!("{title} text"),
            at: at(when),
            account: None,
            resource: None,
            audit: None,
        };
        feed.put(&FeedRow::from_event(&ev, 30)).await.unwrap();
    }
    let out = kopterctl(&env, &["notifications", "--tenant", "acme"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let titles: Vec<&str> = ["Instance launched", "Budget 100% crossed", "Backup failed"]
        .into_iter()
        .filter(|t| stdout.contains(t))
        .collect();
    assert_eq!(titles.len(), 3, "{stdout}");
    let pos = |t: &str| stdout.find(t).unwrap();
    assert!(
        pos("Instance launched") < pos("Budget 100% crossed")
            && pos("Budget 100% crossed") < pos("Backup failed"),
        "not newest event first: {stdout}"
    );

    // --severity: only the critical one; two severities: both.
    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "acme",
            "--severity",
            "critical",
        ],
    )
    .await;
    let (stdout, _) = text(&out);
    assert!(stdout.contains("1 notification(s)"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("Budget 100% crossed"))
        .unwrap();
    // The ID column is what --mark-read takes.
    let short = line.split_whitespace().next().unwrap().to_owned();
    assert_eq!(short.len(), 12, "{line}");
    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "acme",
            "--severity",
            "critical,warning",
            "--format",
            "json",
        ],
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sev: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["severity"].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["critical", "warning"], "{rows}");
    let out = kopterctl(
        &env,
        &["notifications", "--tenant", "acme", "--severity", "loud"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));

    // The short id from the table, and the JSON's whole `id`, mark read.
    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "acme",
            "--mark-read",
            &short,
            "--unread",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("marked read: {short}")),
        "{stdout}"
    );
    assert!(!stdout.contains("Budget 100% crossed"), "{stdout}");
    let warning_id = rows[1]["id"].as_str().unwrap().to_owned();
    let out = kopterctl(
        &env,
        &[
            "notifications",
            "--tenant",
            "acme",
            "--mark-read",
            &warning_id,
            "--unread",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 unread notification(s)"), "{stdout}");
    // Another tenant cannot mark acme's by its short id.
    let out = kopterctl(
        &env,
        &["notifications", "--tenant", "globex", "--mark-read", &short],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("no notification with this id"),
        "{}",
        text(&out).1
    );
}
