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
    let policy_start = stdout.find('{').expect("policy JSON");
    let policy: serde_json::Value = serde_json::from_str(&stdout[policy_start..]).unwrap();
    assert_eq!(
        policy["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        external_id.as_str()
    );
    assert_eq!(
        policy["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );

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
    for (since, until) in [
        ("2026-11-29", "2026-11-29"),
        ("7d", "now"),
        ("2026-11-29T10:00:00Z", "36h"),
    ] {
        let out = kopterctl(
            &env,
            &[
                "audit", "--tenant", "acme", "--since", since, "--until", until,
            ],
        )
        .await;
        let (stdout, stderr) = text(&out);
        // `--since 36h` after `--until` 2026-11-29T10:00Z is refused below.
        if since == "2026-11-29T10:00:00Z" {
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
        "TIME,ACCOUNT,REGION,EVENT,FINDINGS,PRINCIPAL\n",
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
