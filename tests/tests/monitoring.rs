//! The operators' view, tested for real: the five service binaries run
//! against moto, a real Prometheus (Debian's `prometheus` package, started
//! here on 127.0.0.1 with a temporary config and data dir) scrapes them and
//! evaluates deploy/prometheus/rules. Checks:
//! - `promtool check metrics` accepts every service's /metrics;
//! - every Grafana panel query returns data, unless its description says
//!   "Empty when …";
//! - every rule evaluates without error and every alert is quiet on the
//!   healthy fleet; a poison message makes KopterDLQNotEmpty fire, and a
//!   stopped service shows in KopterServiceDown's expression.
//!
//! The service binaries must be built (`cargo build --bins`; `make test`
//! does). Prometheus must be installed (`scripts/deps-prometheus.sh`).

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{Timelike, Utc};
use kopter_runtime::accounts::Onboarding;
use kopter_runtime::messaging::envelope;
use kopter_schema::items::TrailSource;
use kopter_schema::messages::{AccountHealth, AggregateHour, RegionOnly, Sweep};
use kopter_schema::{AccountId, Message, Service, TenantId};
use kopter_tests::{TestEnv, eventually, http_get, random_account, unique};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn need(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` not found: install Prometheus (Debian: `apt-get install prometheus`, \
             or run scripts/deps-prometheus.sh as root; `make test` does)"
        )
    })
}

/// target/debug (this test runs from target/debug/deps).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    addr: SocketAddr,
}

impl Prometheus {
    async fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.addr, path).await;
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {status} {e}: {body}"));
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// Instant query; panics if it does not parse or fails.
    async fn query(&self, q: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(q)))
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

/// A small static HTTP server for the price list (nothing emulates it).
async fn offer_site(files: Vec<(String, String)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split(' ').nth(1).unwrap_or("/").to_owned();
                let resp = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"{}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len(),
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .into()
                    }
                };
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    base
}

fn price_list() -> Vec<(String, String)> {
    let small = include_str!("../../services/pricing/tests/fixtures/offer_small.json");
    let region_file = "/offers/v1.0/aws/AmazonEC2/20250523232744/us-east-1/index.json";
    vec![
        (
            "/offers/v1.0/aws/index.json".into(),
            serde_json::json!({"formatVersion": "v1.0", "offers": {"AmazonEC2": {
                "offerCode": "AmazonEC2",
                "currentRegionIndexUrl": "/offers/v1.0/aws/AmazonEC2/current/region_index.json"}}})
            .to_string(),
        ),
        (
            "/offers/v1.0/aws/AmazonEC2/current/region_index.json".into(),
            serde_json::json!({"regions": {"us-east-1": {
                "regionCode": "us-east-1", "currentVersionUrl": region_file}}})
            .to_string(),
        ),
        (region_file.into(), small.to_owned()),
    ]
}

/// A CloudTrail log file of `account` with fresh records, gzipped.
fn trail_file(account: &str) -> Vec<u8> {
    let now = Utc::now() - chrono::Duration::minutes(1);
    let records: Vec<Value> = (0..5)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.08",
                "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE",
                    "arn": format!("arn:aws:iam::{account}:user/alice"),
                    "accountId": account, "userName": "alice"},
                "eventTime": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "eventSource": "ec2.amazonaws.com",
                "eventName": "DescribeInstances",
                "awsRegion": "us-east-1",
                "sourceIPAddress": "192.0.2.1",
                "userAgent": "aws-cli",
                "requestParameters": null,
                "responseElements": null,
                "eventID": format!("00000000-0000-4000-8000-{:012}", rand::random::<u32>() as u64 * 10 + i),
                "eventType": "AwsApiCall",
                "recipientAccountId": account
            })
        })
        .collect();
    let body = serde_json::json!({ "Records": records }).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    gz.finish().unwrap()
}

struct Fleet {
    children: Vec<(Service, tokio::process::Child)>,
}

impl Fleet {
    fn child(&mut self, s: Service) -> &mut tokio::process::Child {
        &mut self.children.iter_mut().find(|(x, _)| *x == s).unwrap().1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboards_and_alerts_work_against_the_running_fleet() {
    let prometheus_bin = need("prometheus");
    let promtool = need("promtool");
    let bins = bin_dir();
    for s in Service::ALL {
        let b = bins.join(s.name());
        assert!(
            b.is_file(),
            "{} is not built: run `cargo build --bins` first (`make test` does)",
            b.display()
        );
    }

    let site = offer_site(price_list()).await;
    let env = TestEnv::with(|c| c.queues.max_receive_count = 2).await;

    // One tenant account with a CloudTrail bucket notifying the trail queue.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&env.ctx.aws.sdk)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique("trail-");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let trail_url = env.queue_url(Service::TrailIngest).await;
    let trail_arn = env
        .sqs()
        .get_queue_attributes()
        .queue_url(&trail_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(trail_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let account = random_account();
    env.ctx
        .accounts
        .onboard(
            Onboarding::parse(
                "acme",
                &account,
                &format!("arn:aws:iam::{account}:role/KopterAccess"),
                &["us-east-1".to_owned()],
            )
            .unwrap(),
            Some(TrailSource {
                bucket: bucket.clone(),
                prefix: "acme".into(),
                customer_owned: false,
            }),
        )
        .await
        .unwrap();

    // The fleet, each service on its own port.
    let mut fleet = Fleet { children: vec![] };
    let mut targets = Vec::new();
    for s in Service::ALL {
        let port = free_port();
        let child = tokio::process::Command::new(bins.join(s.name()))
            .envs(env.env_vars())
            .env("KOPTER_TELEMETRY__LISTEN", format!("127.0.0.1:{port}"))
            .env("KOPTER_TELEMETRY__QUEUE_POLL_INTERVAL", "1s")
            .env("KOPTER_PRICING__OFFERS_URL", &site)
            .env("KOPTER_PRICING__ALLOW_HTTP", "true")
            .env("KOPTER_PRICING__REGIONS", "[us-east-1]")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        fleet.children.push((s, child));
        targets.push((s, SocketAddr::from(([127, 0, 0, 1], port))));
    }

    // Prometheus with the repo's rules, scraping every second.
    let dir = std::env::temp_dir().join(unique("kopter-prometheus-"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = root().join("deploy/prometheus/rules/kopter.yml");
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
        rules.canonicalize().unwrap().display()
    );
    for (s, addr) in &targets {
        config += &format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [\"{addr}\"]\n",
            s.name()
        );
    }
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    let prom_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _prometheus = tokio::process::Command::new(&prometheus_bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("prometheus.log")).unwrap(),
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prom = Prometheus { addr: prom_addr };

    eventually(
        "every service scraped and up",
        Duration::from_secs(90),
        || {
            let prom = &prom;
            async move {
                if tokio::net::TcpStream::connect(prom.addr).await.is_err()
                    || http_get(prom.addr, "/-/ready").await.0 != 200
                {
                    return None;
                }
                let up = prom.query("sum(up)").await;
                (up.first()?["value"][1] == "5").then_some(())
            }
        },
    )
    .await;

    // Work for every service, as the schedules and S3 would send it.
    let outbox = &env.ctx.outbox;
    outbox
        .send(
            Service::Describer,
            &envelope(Message::DescribeSweep(Sweep {})),
        )
        .await
        .unwrap();
    outbox
        .send(
            Service::Pricing,
            &envelope(Message::PricingRefreshRegion(RegionOnly {
                region: "us-east-1".into(),
            })),
        )
        .await
        .unwrap();
    let last_hour = Utc::now()
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
        - chrono::Duration::hours(1);
    outbox
        .send(
            Service::Aggregator,
            &envelope(Message::AggregateHour(AggregateHour {
                hour: last_hour,
                backfill_hours: 0,
                tenant: None,
            })),
        )
        .await
        .unwrap();
    let key = format!(
        "acme/AWSLogs/{account}/CloudTrail/us-east-1/{}/{account}_CloudTrail_us-east-1_{}_abcd.json.gz",
        Utc::now().format("%Y/%m/%d"),
        Utc::now().format("%Y%m%dT%H%MZ"),
    );
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(trail_file(&account).into())
        .send()
        .await
        .unwrap();

    for metric in [
        "kopter_describer_last_sweep_timestamp_seconds",
        "kopter_pricing_last_refresh_timestamp_seconds",
        "kopter_aggregator_last_computed_hour_timestamp_seconds",
        "kopter_trail_newest_event_timestamp_seconds",
        "kopter_queue_depth_messages",
    ] {
        eventually(metric, Duration::from_secs(120), || {
            let prom = &prom;
            async move { (!prom.query(metric).await.is_empty()).then_some(()) }
        })
        .await;
    }

    // Every /metrics passes promtool's lint.
    for (s, addr) in &targets {
        let (status, body) = http_get(*addr, "/metrics").await;
        assert_eq!(status, 200);
        let mut p = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics on {}: {}{}",
            s.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The healthy fleet: every rule evaluates, no alert is pending or firing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let groups = prom.api("/api/v1/rules").await;
    let mut alerts = Vec::new();
    for g in groups["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} : {}", r["name"], r["lastError"]);
            alerts.push((
                r["name"].as_str().unwrap().to_owned(),
                r["query"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(alerts.len(), 13, "{alerts:?}");
    for (name, query) in &alerts {
        // Alert expressions are empty when healthy, by construction.
        let got = prom.query(query).await;
        assert!(got.is_empty(), "{name} on the healthy fleet: {got:?}");
    }

    // A real event for the notifier (an account turning unhealthy).
    outbox
        .send(
            Service::Notifier,
            &envelope(Message::AccountHealth(AccountHealth {
                tenant: TenantId::new("acme").unwrap(),
                account: AccountId::new(account.clone()).unwrap(),
                healthy: false,
                reason: Some("AccessDenied".into()),
                at: Utc::now(),
            })),
        )
        .await
        .unwrap();

    // A poison message: the notifier refuses it, SQS moves it to the DLQ,
    // the poller sees it and the alert fires.
    env.send_raw(&env.queue_url(Service::Notifier).await, "{not json")
        .await;
    let firing = eventually("KopterDLQNotEmpty firing", Duration::from_secs(120), || {
        let prom = &prom;
        async move {
            let a = prom
                .query(r#"ALERTS{alertname="KopterDLQNotEmpty", alertstate="firing"}"#)
                .await;
            (!a.is_empty()).then_some(a)
        }
    })
    .await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["metric"]["queue"], "notifier");
    // The poison message is refused at once; the health event before it
    // takes a few writes (feed row, markers) — wait until Prometheus has
    // scraped its counter twice (`increase` needs two samples) before the
    // panels are checked.
    eventually(
        "the notifier handled the health event",
        Duration::from_secs(60),
        || {
            let prom = &prom;
            async move {
                let got = prom
                    .query(r#"increase(kopter_notifier_events_total{kind="account.health"}[1h])"#)
                    .await;
                (!got.is_empty()).then_some(())
            }
        },
    )
    .await;
    assert_eq!(firing[0]["metric"]["severity"], "ticket");
    let dlq_age = prom
        .query(r#"kopter_queue_oldest_message_age_seconds{queue="notifier", kind="dlq"} > 0"#)
        .await;
    assert_eq!(dlq_age.len(), 1, "DLQ age: {dlq_age:?}");

    // Every dashboard panel's query returns data, unless marked.
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("deploy/grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in dash["panels"].as_array().unwrap() {
            let may_be_empty = p["description"]
                .as_str()
                .is_some_and(|d| d.contains("Empty when"));
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let got = prom.query(expr).await;
                assert!(
                    may_be_empty || !got.is_empty(),
                    "{} / {}: no data for {expr}",
                    path.display(),
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "{checked} panel queries");

    // A stopped service shows in KopterServiceDown's expression.
    let notifier = fleet.child(Service::Notifier);
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(notifier.id().unwrap() as i32, libc::SIGTERM) },
        0
    );
    let _ = tokio::time::timeout(Duration::from_secs(20), notifier.wait()).await;
    let down = alerts
        .iter()
        .find(|(n, _)| n == "KopterServiceDown")
        .unwrap()
        .1
        .clone();
    let got = eventually("notifier down", Duration::from_secs(30), || {
        let (prom, down) = (&prom, &down);
        async move {
            let got = prom.query(down).await;
            (!got.is_empty()).then_some(got)
        }
    })
    .await;
    assert_eq!(got[0]["metric"]["job"], "notifier");

    drop(fleet);
    drop(_prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
