//! `kopterctl` as an operator runs it, against moto.

use std::process::Output;
use std::time::Duration;

use kopter_schema::{Envelope, Message, Service};
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
async fn bootstrap_says_when_nothing_changed() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let out = kopterctl(&env, &["bootstrap"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("nothing changed (23 resources)"),
        "{stdout}"
    );
    assert!(!stdout.contains("created"), "{stdout}");
}

#[tokio::test]
async fn onboard_prints_the_trust_policy_and_refuses_bad_input() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
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
            "--regions",
            "eu-west-1,us-east-1",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let external_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("external id: "))
        .expect("external id line")
        .to_owned();
    // The trust policy, then the permissions policy, each a JSON document.
    let policy_start = stdout.find('{').expect("policy JSON");
    let mut docs = serde_json::Deserializer::from_str(&stdout[policy_start..])
        .into_iter::<serde_json::Value>();
    let policy = docs.next().unwrap().unwrap();
    let rest = &stdout[policy_start + docs.byte_offset()..];
    let permissions: serde_json::Value =
        serde_json::Deserializer::from_str(&rest[rest.find('{').unwrap()..])
            .into_iter()
            .next()
            .unwrap()
            .unwrap();
    let sids: Vec<&str> = permissions["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert!(
        sids.contains(&"DescribeEstate") && sids.contains(&"DeleteManagedSnapshot"),
        "{sids:?}"
    );
    // As tight as the Terraform module's trust: Kopter's task roles only.
    assert_eq!(
        policy["Statement"][0]["Condition"]["ArnLike"]["aws:PrincipalArn"],
        "arn:aws:iam::123456789012:role/*-kopter-*-task"
    );
    assert!(
        stdout.contains("kopterctl accounts verify --tenant acme"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deploy/cloudformation/kopter-member-role.json"),
        "{stdout}"
    );
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        external_id.as_str()
    );
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );

    // Onboarding twice changes nothing and says where the ExternalId is.
    let again = kopterctl(
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
    assert_eq!(again.status.code(), Some(2));
    let (_, stderr) = text(&again);
    assert!(
        stderr.contains(&format!(
            "its ExternalId {external_id} is stored on the account's row"
        )),
        "{stderr}"
    );
    // With a hosted template, the one-click link carries the ExternalId.
    let other = random_account();
    let out = kopterctl(
        &env,
        &[
            "onboard",
            "--tenant",
            "acme",
            "--account",
            &other,
            "--role-arn",
            &format!("arn:aws:iam::{other}:role/KopterAccess"),
            "--template-url",
            "https://example-bucket.s3.amazonaws.com/kopter-member-role.json",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let link = stdout
        .lines()
        .find(|l| l.contains("#/stacks/quickcreate?"))
        .expect("quick-create link");
    let other_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("external id: "))
        .unwrap();
    assert!(
        link.contains(&format!("param_ExternalId={other_id}")),
        "{link}"
    );
    assert!(
        link.contains("param_KopterAccountId=123456789012"),
        "{link}"
    );
    let removed = kopterctl(
        &env,
        &[
            "accounts",
            "remove",
            "--tenant",
            "acme",
            "--account",
            &other,
        ],
    )
    .await;
    assert!(removed.status.success());

    let listed = kopterctl(&env, &["accounts", "list", "--format", "json"]).await;
    let accounts: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(accounts.as_array().unwrap().len(), 1);
    assert_eq!(accounts[0]["account_id"], account.as_str());
    assert_eq!(
        accounts[0]["regions"],
        serde_json::json!(["eu-west-1", "us-east-1"])
    );

    let cases: [(&[&str], &str); 4] = [
        (
            &["--account", "12345", "--role-arn", &arn],
            "exactly 12 digits",
        ),
        (
            &[
                "--account",
                &account,
                "--role-arn",
                "arn:aws:iam::000000000000:role/KopterAccess",
            ],
            "not in account",
        ),
        (
            &[
                "--account",
                &account,
                "--role-arn",
                &arn.replace("KopterAccess", "Admin"),
            ],
            "must start with \"KopterAccess\"",
        ),
        (
            &["--account", &account, "--role-arn", &arn],
            "already onboarded by another tenant",
        ),
    ];
    for (args, why) in cases {
        let mut full = vec!["onboard", "--tenant", "globex"];
        full.extend_from_slice(args);
        let out = kopterctl(&env, &full).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(why), "{full:?}: {stderr}");
    }
}

#[tokio::test]
async fn tick_sends_the_scheduled_message_and_queues_shows_it() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let out = kopterctl(
        &env,
        &[
            "tick",
            "aggregate",
            "--hour",
            "2026-11-26T10:17:00Z",
            "--backfill",
            "3",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let out = kopterctl(&env, &["tick", "describe-sweep"]).await;
    assert!(out.status.success());

    let q = kopterctl(&env, &["queues"]).await;
    let (stdout, _) = text(&q);
    let row = |svc: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(svc))
            .unwrap_or_else(|| panic!("no {svc} row in {stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("aggregator")[1], "1");
    assert_eq!(row("describer")[1], "1");
    assert_eq!(row("pricing")[1], "0");

    let url = env.queue_url(Service::Aggregator).await;
    let msgs = env.receive(&url, Duration::from_secs(30)).await;
    let env_msg = Envelope::decode(msgs[0].body.as_deref().unwrap()).unwrap();
    match env_msg.message {
        Message::AggregateHour(a) => {
            assert_eq!(a.hour.to_rfc3339(), "2026-11-26T10:00:00+00:00");
            assert_eq!(a.backfill_hours, 3);
        }
        other => panic!("unexpected {other:?}"),
    }

    let out = kopterctl(&env, &["tick", "pricing-region"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("exactly one --region"));
}

#[tokio::test]
async fn audit_searches_a_tenants_log() {
    use std::io::Write;
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let account = random_account();
    let rec = |id: &str, name: &str, minute: u32| {
        serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{account}:user/ops"), "accountId": account},
            "eventTime": format!("2022-11-10T17:{minute:02}:00Z"),
            "eventSource": "ec2.amazonaws.com", "eventName": name, "awsRegion": "eu-west-1",
            "eventID": id, "recipientAccountId": account,
            "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0aaa1111"}]}},
        })
    };
    let body = serde_json::json!({"Records": [
        rec("e0000000-0000-4000-8000-000000000001", "StopInstances", 1),
        rec("e0000000-0000-4000-8000-000000000002", "StartInstances", 2),
        rec("e0000000-0000-4000-8000-000000000003", "DescribeInstances", 3),
    ]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let ingestor = trail_ingest::ingestor(&env.ctx);
    let tenant = kopter_schema::TenantId::new("acme").unwrap();
    let acct = kopter_schema::AccountId::new(account.clone()).unwrap();
    ingestor
        .ingest_reader(
            &tenant,
            &acct,
            std::io::Cursor::new(gz.finish().unwrap()),
            true,
        )
        .await
        .unwrap();
    // A dry run writes nothing.
    let window = [
        "--since",
        "2022-11-10T00:00:00Z",
        "--until",
        "2022-11-11T00:00:00Z",
    ];
    let out = kopterctl(
        &env,
        &[&["audit", "--tenant", "acme"][..], &window[..]].concat(),
    )
    .await;
    assert!(text(&out).0.contains("0 event(s)"), "{}", text(&out).0);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    ingestor
        .ingest_reader(
            &tenant,
            &acct,
            std::io::Cursor::new(gz.finish().unwrap()),
            false,
        )
        .await
        .unwrap();
    let out = kopterctl(
        &env,
        &[&["audit", "--tenant", "acme"][..], &window[..]].concat(),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("3 event(s)"), "{stdout}");
    let first_row = stdout.lines().nth(1).unwrap();
    assert!(
        first_row.contains("ec2:DescribeInstances"),
        "newest first: {stdout}"
    );

    let out = kopterctl(
        &env,
        &[
            &[
                "audit",
                "--tenant",
                "acme",
                "--event",
                "StopInstances",
                "--json",
            ][..],
            &window[..],
        ]
        .concat(),
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["event_name"], "StopInstances");
    assert_eq!(rows[0]["resources"], serde_json::json!(["i-0aaa1111"]));

    let out = kopterctl(
        &env,
        &[&["audit", "--tenant", "globex"][..], &window[..]].concat(),
    )
    .await;
    assert!(text(&out).0.contains("0 event(s)"));
    let out = kopterctl(
        &env,
        &["audit", "--tenant", "acme", "--since", "yesterday-ish"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--since"));
}

#[tokio::test]
async fn audit_takes_the_same_time_forms_as_cost() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    // A time after `36h` (ago) whatever day the test runs.
    let later = (chrono::Utc::now() - chrono::Duration::hours(12))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for (since, until) in [
        ("2026-11-29", "2026-11-29"),
        ("7d", "now"),
        (later.as_str(), "36h"),
    ] {
        let out = kopterctl(
            &env,
            &[
                "audit", "--tenant", "acme", "--since", since, "--until", until,
            ],
        )
        .await;
        let (stdout, stderr) = text(&out);
        // `--since` 12 h ago is after `--until 36h` (ago): refused.
        if since == later {
            assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
            assert!(stderr.contains("is after --until"), "{stderr}");
            continue;
        }
        assert!(out.status.success(), "{since}..{until}: {stderr}");
        assert!(stdout.contains("0 event(s)"), "{stdout}");
    }
    let out = kopterctl(
        &env,
        &["audit", "--tenant", "acme", "--until", "2026-11-29x"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("--until: \"2026-11-29x\" is not a time: give a date"),
        "{stderr}"
    );
    let out = kopterctl(&env, &["audit", "--tenant", "acme", "--format", "csv"]).await;
    assert_eq!(
        text(&out).0,
        "TIME,ACCOUNT,CALLER,REGION,EVENT,FINDINGS,PRINCIPAL\n",
        "{}",
        text(&out).1
    );
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_target_is_printed_and_named_in_every_failure() {
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let endpoint = kopter_tests::endpoint();

    // bootstrap and onboard say where they go; --env picks the environment.
    let out = kopterctl(&env, &["--env", &env.config.env, "bootstrap"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!(
            "target: environment {} at {endpoint} (us-east-1)",
            env.config.env
        )
    );
    assert!(stdout.contains("nothing changed"), "{stdout}");

    // A stopped endpoint: refused at once, naming it and the environment.
    let down = format!("http://127.0.0.1:{}", closed_port());
    let started = std::time::Instant::now();
    let out = kopterctl(&env, &["--endpoint", &down, "queues"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!("cannot reach {down}"))
            && stderr.contains(&format!("environment {}", env.config.env))
            && stderr.contains("make moto-start"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("has `kopterctl bootstrap` run?"),
        "{stderr}"
    );

    // An environment never bootstrapped: the missing table is named, with
    // the environment, the endpoint and the command that creates it.
    let out = kopterctl(
        &env,
        &["--env", "nosuchenv", "inventory", "--tenant", "acme"],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("talking to environment nosuchenv at {endpoint}")),
        "{stderr}"
    );
    assert!(stderr.contains("nosuchenv-kopter-inventory"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "kopterctl --env nosuchenv --endpoint {endpoint} bootstrap"
        )),
        "{stderr}"
    );

    // A bad --env is refused like a bad KOPTER_ENV.
    let out = kopterctl(&env, &["--env", "Bad Env!", "queues"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("env"), "{}", text(&out).1);
}

/// Issue 18: `audit quarantine list|replay`, `audit rules`, and a search
/// that says the range it read.
#[tokio::test]
async fn audit_quarantine_rules_and_the_searched_range() {
    use std::io::Write;
    let env = TestEnv::new().await;
    env.create_tenants(&["acme", "globex"]).await;
    let account = random_account();
    let s3 = trail_ingest::s3_client(&env.ctx.aws.sdk);
    let bucket = kopter_tests::unique("trail-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let role = format!("arn:aws:iam::{account}:role/KopterAccess");
    let out = kopterctl(
        &env,
        &[
            "onboard",
            "--tenant",
            "acme",
            "--account",
            &account,
            "--role-arn",
            &role,
            "--trail-bucket",
            &bucket,
            "--trail-prefix",
            "acme",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out).1);
    let rec = |id: &str, blob: usize| {
        serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{account}:user/ops"), "accountId": account},
            "eventTime": "2022-11-10T17:00:00Z",
            "eventSource": "s3.amazonaws.com", "eventName": "PutObject", "awsRegion": "eu-west-1",
            "eventID": id, "recipientAccountId": account,
            "requestParameters": {"blob": "x".repeat(blob)},
        })
    };
    let body = serde_json::json!({"Records": [
        rec("a0000000-0000-4000-8000-000000000001", 10),
        rec("a0000000-0000-4000-8000-000000000002", 8 * 1024),
    ]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let key = format!(
        "acme/AWSLogs/{account}/CloudTrail/eu-west-1/2022/11/10/{account}_CloudTrail_eu-west-1_20221110T1700Z_q.json.gz"
    );
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(gz.finish().unwrap().into())
        .send()
        .await
        .unwrap();
    let mut ingestor = trail_ingest::ingestor(&env.ctx);
    ingestor.config.max_record_bytes = 4 * 1024;
    let obj = trail_ingest::notification::TrailObject {
        bucket: bucket.clone(),
        key: key.clone(),
    };
    ingestor.ingest_object(&obj).await.unwrap();

    let out = kopterctl(&env, &["audit", "quarantine", "list", "--tenant", "acme"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 quarantined record(s)"), "{stdout}");
    let row = stdout.lines().nth(1).unwrap();
    assert!(
        row.contains("too_large") && row.contains(&format!("s3://{bucket}/{key}")),
        "{row}"
    );
    let out = kopterctl(
        &env,
        &["audit", "quarantine", "list", "--tenant", "acme", "--json"],
    )
    .await;
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["reason"], "too_large");
    let out = kopterctl(&env, &["audit", "quarantine", "list", "--tenant", "globex"]).await;
    assert!(text(&out).0.contains("0 quarantined record(s)"));

    // Replay: the file goes back to trail-ingest's queue; handled with a
    // limit the record fits, it is filed and leaves the quarantine.
    let out = kopterctl(&env, &["audit", "quarantine", "replay", "--tenant", "acme"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("1 file(s) queued"), "{stdout}");
    let url = env.queue_url(Service::TrailIngest).await;
    let got = env.receive(&url, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    let replay = got[0].body.clone().unwrap();
    assert_eq!(
        replay,
        kopter_store::audit::quarantine_replay_body(&bucket, &key)
    );
    ingestor.config.max_record_bytes = 1 << 20;
    let delivery = kopter_runtime::Delivery {
        message_id: "m-replay".into(),
        body: replay,
        receive_count: 1,
        attributes: Default::default(),
        sent_at_ms: None,
    };
    kopter_runtime::Handler::handle(&trail_ingest::TrailHandler(ingestor), &delivery)
        .await
        .unwrap();
    let out = kopterctl(&env, &["audit", "quarantine", "list", "--tenant", "acme"]).await;
    assert!(
        text(&out).0.contains("0 quarantined record(s)"),
        "{}",
        text(&out).0
    );
    let window = [
        "--since",
        "2022-11-10T00:00:00Z",
        "--until",
        "2022-11-11T00:00:00Z",
    ];
    let out = kopterctl(
        &env,
        &[&["audit", "--tenant", "acme"][..], &window[..]].concat(),
    )
    .await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("2 event(s); searched 2022-11-10T00:00:00Z .. 2022-11-11T00:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(" {account} ")),
        "caller account shown: {stdout}"
    );

    // A search that reaches past the day walk's bound says so.
    let out = kopterctl(
        &env,
        &[
            "audit",
            "--tenant",
            "acme",
            "--since",
            "2020-01-01T00:00:00Z",
            "--until",
            "2026-11-30T12:00:00Z",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(
        stderr.contains("searched 2025-10-26T00:00:00Z .. 2026-11-30T12:00:00Z only")
            && stderr.contains("400 days"),
        "{stderr}"
    );
    assert!(stdout.contains("searched 2025-10-26T00:00:00Z"), "{stdout}");

    // Rules: off and on per tenant; an unknown rule is refused.
    let out = kopterctl(
        &env,
        &[
            "audit",
            "rules",
            "disable",
            "--tenant",
            "acme",
            "root-activity",
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("root-activity") && l.ends_with("off")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("vpc-changed") && l.ends_with("on"))
    );
    let store = kopter_store::audit::AuditStore::new(env.ctx.aws.dynamodb(), &env.ctx.names);
    let acme = kopter_schema::TenantId::new("acme").unwrap();
    assert!(
        store
            .settings(&acme)
            .await
            .unwrap()
            .disabled_rules
            .contains("root-activity")
    );
    let out = kopterctl(&env, &["audit", "rules", "list", "--tenant", "globex"]).await;
    assert!(!text(&out).0.contains("off"), "other tenants unaffected");
    let out = kopterctl(
        &env,
        &["audit", "rules", "disable", "--tenant", "acme", "nope"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("no rule \"nope\""));
    let out = kopterctl(
        &env,
        &[
            "audit",
            "rules",
            "enable",
            "--tenant",
            "acme",
            "root-activity",
        ],
    )
    .await;
    assert!(out.status.success());
    assert!(
        store
            .settings(&acme)
            .await
            .unwrap()
            .disabled_rules
            .is_empty()
    );
}
